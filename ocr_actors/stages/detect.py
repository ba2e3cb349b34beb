"""Detection stage (model actor, GPU in production): pages -> text quads."""

from __future__ import annotations

import threading

import numpy as np

from ocr_actors.config import OCRConfig
from ocr_actors.runtime.runners import TextDetector
from ocr_actors.stages.common import (
    Batch,
    ragged,
    require,
    run_isolating_pages,
    say_warmup,
    timed,
    writable_status,
)
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
        say_warmup("detector", (self.detector.warmup_timings, self.detector.setup_wait_s))

    def __call__(self, batch: Batch) -> Batch:
        say_warmup("detector", self.detector.warm_this_thread(), threading.current_thread().name)
        rows = require(batch, "detect", "image", "status")
        out = writable_status(batch)
        quads: list[np.ndarray] = [NO_QUADS] * rows
        scores: list[np.ndarray] = [np.zeros(0, np.float32)] * rows
        with timed(out, "detect"):
            detections = run_isolating_pages(out, list(batch["image"]), self.detector.detect, "text detection")
        for i, det in enumerate(detections):
            if det is not None:
                quads[i], scores[i] = det.quads, det.scores
        out["quads"] = ragged(quads)
        out["det_scores"] = ragged(scores)
        return crop_text_lines(out) if self.crop else out
