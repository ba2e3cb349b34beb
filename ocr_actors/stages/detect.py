"""Detection stage (model actor, GPU in production): pages -> text quads."""

from __future__ import annotations

import numpy as np

from ocr_actors.config import OCRConfig
from ocr_actors.runtime.runners import TextDetector
from ocr_actors.stages.common import Batch, mark_failed, ok_rows, ragged, require, timed, writable_status
from ocr_actors.stages.crop import crop_text_lines

NO_QUADS = np.zeros((0, 4, 2), dtype=np.float32)


class DetectText:
    """Adds ``quads`` ``(N, 4, 2)`` float32 (pixels of the page the detector saw) and
    ``det_scores`` ``(N,)``; pages of the batch with the same resized shape share one call.
    With ``crop``, also crops the lines here (:func:`crop_text_lines`: the page image leaves
    the batch, the packed crops join it), so the page never travels to a crop task."""

    def __init__(self, config: OCRConfig, crop: bool = False) -> None:
        self.detector = TextDetector(config.text_detection, config.engine)
        self.crop = crop

    def __call__(self, batch: Batch) -> Batch:
        rows = require(batch, "detect", "image", "status")
        out = writable_status(batch)
        quads: list[np.ndarray] = [NO_QUADS] * rows
        scores: list[np.ndarray] = [np.zeros(0, np.float32)] * rows
        with timed(out, "detect"):
            live = ok_rows(out)
            try:
                detections = self.detector.detect([batch["image"][i] for i in live])
            except Exception:  # retry one page at a time to isolate a bad page
                detections = []
                for i in live:
                    try:
                        detections.extend(self.detector.detect([batch["image"][i]]))
                    except Exception as exc:
                        mark_failed(out, i, "ocr_failed", f"text detection failed: {exc!r}")
                live = ok_rows(out)
            for i, det in zip(live, detections, strict=True):
                quads[i], scores[i] = det.quads, det.scores
        out["quads"] = ragged(quads)
        out["det_scores"] = ragged(scores)
        return crop_text_lines(out) if self.crop else out
