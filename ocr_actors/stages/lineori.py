"""Text-line orientation stage (model actor): crops -> 0/180 classification."""

from __future__ import annotations

import numpy as np

from ocr_actors.config import OCRConfig
from ocr_actors.runtime.runners import TextlineClassifier
from ocr_actors.stages.common import Batch, ragged, require, run_isolating_pages, timed, unpack_crops, writable_status

NO_CLASSES = np.zeros((0, 2), dtype=np.float32)


class ClassifyTextlines:
    """Adds ``line_cls`` ``(N, 2)`` float32: (angle 0/180, probability) per crop."""

    def __init__(self, config: OCRConfig) -> None:
        cfg = config.textline_orientation
        self.classifier = TextlineClassifier(cfg.model, config.engine, cfg.batch_size, cfg.thresh)

    def __call__(self, batch: Batch) -> Batch:
        require(batch, "lineori", "crop_pixels", "crop_shapes", "status")
        out = writable_status(batch)
        per_page = [unpack_crops(p, s) for p, s in zip(batch["crop_pixels"], batch["crop_shapes"], strict=True)]
        with timed(out, "lineori"):
            results = run_isolating_pages(out, per_page, self.classify_pages, "text-line orientation")
        out["line_cls"] = ragged([r if r is not None else NO_CLASSES for r in results])
        return out

    def classify_pages(self, pages: list[list[np.ndarray]]) -> list[np.ndarray]:
        """Classifies the crops of all ``pages`` together; per page ``(N, 2)`` float32."""
        flat = [crop for crops in pages for crop in crops]
        results = self.classifier.classify(flat) if flat else []
        classes: list[np.ndarray] = []
        start = 0
        for crops in pages:
            classes.append(np.array(results[start : start + len(crops)], dtype=np.float32).reshape(-1, 2))
            start += len(crops)
        return classes
