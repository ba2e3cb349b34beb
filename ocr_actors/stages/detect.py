"""Detection stage (model actor, GPU in production): pages -> text quads."""

from __future__ import annotations

import numpy as np

from ocr_actors.config import OCRConfig
from ocr_actors.runtime.runners import TextDetector
from ocr_actors.stages.common import Batch, mark_failed, ok_rows, ragged, require, timed, writable_status

NO_QUADS = np.zeros((0, 4, 2), dtype=np.float32)


class DetectText:
    """Adds ``quads`` ``(N, 4, 2)`` float32 (pixels of the page the detector saw) and
    ``det_scores`` ``(N,)``; pages of the batch with the same resized shape share one call."""

    def __init__(self, config: OCRConfig) -> None:
        self.detector = TextDetector(config.text_detection, config.engine)

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
        return out
