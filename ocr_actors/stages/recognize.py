"""Recognition stage (model actor, GPU in production): crops of many pages, batched by
aspect ratio across pages -> texts and scores."""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from ocr_actors.config import OCRConfig
from ocr_actors.runtime.ocr import orient_lines
from ocr_actors.runtime.runners import TextRecognizer
from ocr_actors.stages.common import Batch, ragged, require, timed, unpack_crops


class RecognizeText:
    """Adds ``rec_texts`` (a JSON list of str: Arrow cannot type an all-empty list column),
    ``rec_scores`` ``(N,)`` float32 and
    ``line_angles`` ``(N,)`` int16 (0/180, -1 when orientation is off); drops the crops."""

    def __init__(self, config: OCRConfig) -> None:
        self.recognizer = TextRecognizer(config.text_recognition, config.engine)
        self.orientation = config.textline_orientation
        if self.recognizer.warmup_timings:
            print(warmup_message(self.recognizer.warmup_timings), file=sys.stderr, flush=True)

    def __call__(self, batch: Batch) -> Batch:
        require(batch, "recognize", "crop_pixels", "crop_shapes")
        out = {k: v for k, v in batch.items() if k not in ("crop_pixels", "crop_shapes", "line_cls")}
        per_page = [unpack_crops(p, s) for p, s in zip(batch["crop_pixels"], batch["crop_shapes"], strict=True)]
        flat = [c for crops in per_page for c in crops]
        with timed(out, "recognize"):
            recognized = self.recognizer.recognize(flat) if flat else []
            if self.orientation.use_textline_orientation:
                classified = [tuple(row) for cls in batch["line_cls"] for row in np.asarray(cls).reshape(-1, 2)]
                recognized, angles = orient_lines(
                    flat,
                    recognized,
                    [(int(a), float(p)) for a, p in classified],
                    self.recognizer,
                    self.orientation.thresh,
                    self.orientation.verify_score_below,
                )
            else:
                angles = [-1] * len(flat)
        texts, scores, page_angles = [], [], []
        start = 0
        for crops in per_page:
            end = start + len(crops)
            texts.append([t for t, _ in recognized[start:end]])
            scores.append(np.array([s for _, s in recognized[start:end]], dtype=np.float32))
            page_angles.append(np.array(angles[start:end], dtype=np.int16))
            start = end
        out["rec_texts"] = np.array([json.dumps(t, ensure_ascii=False) for t in texts], dtype=object)
        out["rec_scores"] = ragged(scores)
        out["line_angles"] = ragged(page_angles)
        return out


def warmup_message(timings: list[tuple[tuple[int, int, int, int], float]]) -> str:
    """One line on the recogniser's start-up runs: shapes, total and slowest seconds."""
    total = sum(seconds for _, seconds in timings)
    shape, slowest = max(timings, key=lambda item: item[1])
    return (
        f"recognizer warm-up (pid {os.getpid()}): {len(timings)} shapes in {total:.1f} s, "
        f"slowest {slowest:.2f} s at {'x'.join(map(str, shape))}"
    )
