"""Recognition stage (model actor, GPU in production): crops of many pages, batched by
aspect ratio across pages -> texts and scores."""

from __future__ import annotations

import json
import threading

import numpy as np

from ocr_actors.config import OCRConfig
from ocr_actors.runtime.ocr import orient_lines
from ocr_actors.runtime.runners import TextRecognizer
from ocr_actors.stages.common import (
    Batch,
    ragged,
    require,
    run_isolating_pages,
    say_warmup,
    timed,
    unpack_crops,
    writable_status,
)

LineClasses = list[tuple[int, float]]
"""Per line of a page: (angle 0/180, probability) from the text-line orientation stage."""
PageLines = tuple[list[str], np.ndarray, np.ndarray]
"""Per page: texts, scores ``(N,)`` float32, angles ``(N,)`` int16 (-1 when orientation is off)."""
NOT_RECOGNIZED: PageLines = ([], np.zeros(0, np.float32), np.zeros(0, np.int16))


class RecognizeText:
    """Adds ``rec_texts`` (a JSON list of str: Arrow cannot type an all-empty list column),
    ``rec_scores`` ``(N,)`` float32 and
    ``line_angles`` ``(N,)`` int16 (0/180, -1 when orientation is off); drops the crops."""

    def __init__(self, config: OCRConfig) -> None:
        self.recognizer = TextRecognizer(config.text_recognition, config.engine)
        self.orientation = config.textline_orientation
        say_warmup("recognizer", (self.recognizer.warmup_timings, self.recognizer.setup_wait_s))

    def __call__(self, batch: Batch) -> Batch:
        say_warmup("recognizer", self.recognizer.warm_this_thread(), threading.current_thread().name)
        rows = require(batch, "recognize", "crop_pixels", "crop_shapes", "status")
        out = writable_status({k: v for k, v in batch.items() if k not in ("crop_pixels", "crop_shapes", "line_cls")})
        per_page = [unpack_crops(p, s) for p, s in zip(batch["crop_pixels"], batch["crop_shapes"], strict=True)]
        classes: list[LineClasses | None] = [None] * rows
        if self.orientation.use_textline_orientation:
            classes = [[(int(a), float(p)) for a, p in np.asarray(c).reshape(-1, 2)] for c in batch["line_cls"]]
        with timed(out, "recognize"):
            results = run_isolating_pages(
                out, list(zip(per_page, classes, strict=True)), self.recognize_pages, "text recognition"
            )
        texts, scores, angles = [], [], []
        for result in results:
            page_texts, page_scores, page_angles = result if result is not None else NOT_RECOGNIZED
            texts.append(json.dumps(page_texts, ensure_ascii=False))
            scores.append(page_scores)
            angles.append(page_angles)
        out["rec_texts"] = np.array(texts, dtype=object)
        out["rec_scores"] = ragged(scores)
        out["line_angles"] = ragged(angles)
        return out

    def recognize_pages(self, pages: list[tuple[list[np.ndarray], LineClasses | None]]) -> list[PageLines]:
        """Recognises the crops of all ``pages`` together (the recogniser batches them by aspect
        ratio across pages); per page: texts, scores ``(N,)`` float32, angles ``(N,)`` int16."""
        flat = [crop for crops, _ in pages for crop in crops]
        recognized = self.recognizer.recognize(flat) if flat else []
        if self.orientation.use_textline_orientation:
            recognized, angles = orient_lines(
                flat,
                recognized,
                [c for _, classes in pages for c in classes or []],
                self.recognizer,
                self.orientation.thresh,
                self.orientation.verify_score_below,
            )
        else:
            angles = [-1] * len(flat)
        per_page: list[PageLines] = []
        start = 0
        for crops, _ in pages:
            end = start + len(crops)
            per_page.append(
                (
                    [text for text, _ in recognized[start:end]],
                    np.array([score for _, score in recognized[start:end]], dtype=np.float32),
                    np.array(angles[start:end], dtype=np.int16),
                )
            )
            start = end
        return per_page
