"""Text-line orientation stage (model actor): crops -> 0/180 classification."""

from __future__ import annotations

import numpy as np

from ocr_actors.config import OCRConfig
from ocr_actors.runtime.runners import TextlineClassifier
from ocr_actors.stages.common import Batch, ragged, require, timed, unpack_crops


class ClassifyTextlines:
    """Adds ``line_cls`` ``(N, 2)`` float32: (angle 0/180, probability) per crop."""

    def __init__(self, config: OCRConfig) -> None:
        cfg = config.textline_orientation
        self.classifier = TextlineClassifier(cfg.model, config.engine, cfg.batch_size, cfg.thresh)

    def __call__(self, batch: Batch) -> Batch:
        require(batch, "lineori", "crop_pixels", "crop_shapes")
        out = dict(batch)
        per_page = [unpack_crops(p, s) for p, s in zip(batch["crop_pixels"], batch["crop_shapes"], strict=True)]
        flat = [c for crops in per_page for c in crops]
        with timed(out, "lineori"):
            results = self.classifier.classify(flat) if flat else []
        classes: list[np.ndarray] = []
        start = 0
        for crops in per_page:
            chunk = results[start : start + len(crops)]
            classes.append(np.array(chunk, dtype=np.float32).reshape(-1, 2))
            start += len(crops)
        out["line_cls"] = ragged(classes)
        return out
