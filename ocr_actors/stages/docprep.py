"""Document preprocessing stage (model actor): page orientation and unwarping."""

from __future__ import annotations

import numpy as np

from ocr_actors.config import OCRConfig
from ocr_actors.preprocess import as_bgr
from ocr_actors.runtime.ocr import DocPreprocessor
from ocr_actors.stages.common import Batch, mark_failed, ok_rows, ragged, require, timed, writable_status


class DocPreprocess:
    """Turns pages upright (``doc_angle``) and/or unwarps them (``unwarped``)."""

    def __init__(self, config: OCRConfig) -> None:
        self.use_orientation = config.doc_preprocessor.use_doc_orientation_classify
        self.use_unwarping = config.doc_preprocessor.use_doc_unwarping
        self.runner = DocPreprocessor(config.doc_preprocessor, config.engine)

    def __call__(self, batch: Batch) -> Batch:
        require(batch, "docprep", "image", "status", "doc_angle", "unwarped")
        out = writable_status(batch)
        images = list(batch["image"])
        angles = np.asarray(batch["doc_angle"]).copy()
        unwarped = np.asarray(batch["unwarped"]).copy()
        with timed(out, "docprep"):
            for i in ok_rows(out):
                try:  # the models take BGR: a grey page (one channel) turns BGR here
                    prepared = self.runner.prepare(as_bgr(images[i]), self.use_orientation, self.use_unwarping)
                except Exception as exc:  # a page the models cannot handle becomes an error row
                    mark_failed(out, i, "ocr_failed", f"document preprocessing failed: {exc!r}")
                    continue
                images[i] = prepared.image
                angles[i] = prepared.frame.angle
                unwarped[i] = prepared.frame.unwarped
        out["image"] = ragged(images)
        out["doc_angle"] = angles
        out["unwarped"] = unwarped
        return out
