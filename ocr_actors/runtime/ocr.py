"""The General OCR flow on one process, built from the runners.

The steps are separate functions so the batch job's Ray stages can call them one by
one; :class:`OCREngine` chains them for the Python API, the CLI and the service.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from ocr_actors.config import DocPreprocessorConfig, EngineConfig, OCRConfig
from ocr_actors.geometry import crop_quad, quads_to_boxes, reading_order, unrotate_points
from ocr_actors.postprocess import DBParams
from ocr_actors.runtime.models import resolve_model
from ocr_actors.runtime.runners import (
    DetParams,
    DocOrientationClassifier,
    DocUnwarper,
    TextDetector,
    TextlineClassifier,
    TextRecognizer,
    det_params,
)


@dataclass(frozen=True)
class PredictParams:
    """Per-call switches of the reference pipeline (never stored on the engine)."""

    use_doc_orientation_classify: bool
    use_doc_unwarping: bool
    use_textline_orientation: bool
    det: DetParams
    text_rec_score_thresh: float

    @property
    def use_doc_preprocessor(self) -> bool:
        return self.use_doc_orientation_classify or self.use_doc_unwarping


@dataclass(frozen=True)
class PageFrame:
    """How the detector's page relates to the page as given.

    Attributes:
        angle: clockwise turn the input page's content shows (0/90/180/270); the page was
            turned counter-clockwise by it to be upright. -1 when not classified.
        unwarped: True when the page was unwarped; polygons then refer to the unwarped page.
        upright_shape: ``(H, W)`` of the page the detector saw.
        source_shape: ``(H, W)`` of the page as given.
    """

    angle: int
    unwarped: bool
    upright_shape: tuple[int, int]
    source_shape: tuple[int, int]

    @property
    def output_shape(self) -> tuple[int, int]:
        """``(H, W)`` of the frame polygons are reported in."""
        return self.upright_shape if self.unwarped else self.source_shape


@dataclass(frozen=True)
class PreparedPage:
    """A page after document preprocessing: the BGR uint8 ``image`` the detector sees
    (upright, unwarped if asked) and its :class:`PageFrame`."""

    image: np.ndarray
    frame: PageFrame


@dataclass(frozen=True)
class PageOCR:
    """OCR of one page. Polygons are ``(N, 4, 2)`` float32 in the output frame:
    the page as given, or the unwarped page when ``frame.unwarped``.

    Attributes:
        dt_polys / dt_scores / textline_angles: every detected line, in reading order.
        rec_polys / rec_texts / rec_scores: the lines kept after the recognition score
            threshold, in reading order; ``rec_indices`` are their positions in ``dt_polys``.
        prepared_image: the page the detector saw, when kept (the API keeps it).
    """

    frame: PageFrame
    dt_polys: np.ndarray
    dt_scores: np.ndarray
    rec_polys: np.ndarray
    rec_texts: list[str]
    rec_scores: list[float]
    textline_angles: list[int]
    rec_indices: list[int]
    params: PredictParams
    prepared_image: np.ndarray | None = None

    @property
    def rec_boxes(self) -> np.ndarray:
        """``(N, 4)`` int32 ``[x_min, y_min, x_max, y_max]`` of ``rec_polys``."""
        return quads_to_boxes(self.rec_polys)

    @property
    def text(self) -> str:
        """Recognised lines joined with newlines, in reading order."""
        return "\n".join(self.rec_texts)


def crop_lines(image: np.ndarray, quads: np.ndarray) -> list[np.ndarray]:
    """Perspective crops of every quad ``(N, 4, 2)`` of a BGR (or grey ``(H, W, 1)``) page."""
    return [crop_quad(image, q) for q in quads]


def orient_lines(
    crops: Sequence[np.ndarray],
    recognized: Sequence[tuple[str, float]],
    classified: Sequence[tuple[int, float]],
    recognizer: TextRecognizer,
    cls_thresh: float,
    verify_score_below: float,
) -> tuple[list[tuple[str, float]], list[int]]:
    """Settle each line's 0/180 orientation by classifier *and* recognition score.

    Suspects are lines the classifier calls 180 (probability >= ``cls_thresh``) and lines
    read with a score below ``verify_score_below``; each suspect is read again turned by
    180 degrees and the better-scoring reading wins.

    Returns:
        The final ``(text, score)`` per crop and the angle (0 or 180) per crop.
    """
    final = list(recognized)
    angles = [0] * len(crops)
    suspects = [
        i
        for i, ((angle, prob), (_, score)) in enumerate(zip(classified, recognized, strict=True))
        if (angle == 180 and prob >= cls_thresh) or score < verify_score_below
    ]
    if not suspects:
        return final, angles
    second = recognizer.recognize([cv2.rotate(crops[i], cv2.ROTATE_180) for i in suspects])
    for i, reading in zip(suspects, second, strict=True):
        if reading[1] > final[i][1]:
            final[i] = reading
            angles[i] = 180
    return final, angles


def to_output_frame(quads: np.ndarray, frame: PageFrame) -> np.ndarray:
    """Map quads from the detector's frame back to the page as given (unless unwarped)."""
    if frame.unwarped or frame.angle <= 0 or len(quads) == 0:
        return quads.astype(np.float32)
    # The upright page is the input turned counter-clockwise by ``angle``.
    return unrotate_points(quads, frame.angle, frame.upright_shape)


def assemble_page(
    frame: PageFrame,
    quads: np.ndarray,
    det_scores: np.ndarray,
    recognized: Sequence[tuple[str, float]],
    textline_angles: Sequence[int] | None,
    params: PredictParams,
    prepared_image: np.ndarray | None = None,
) -> PageOCR:
    """Put a page's lines in reading order, apply the score threshold, map polygons back.

    Args:
        quads: ``(N, 4, 2)`` detector quads in pixels of the page the detector saw.
        recognized: ``(text, score)`` per quad, same order as ``quads``.
        textline_angles: 0/180 per quad, or None when the classifier was off.
    """
    order = reading_order(quads)
    quads, det_scores = quads[order], det_scores[order]
    recognized = [recognized[i] for i in order]
    angles = [textline_angles[i] for i in order] if textline_angles is not None else [-1] * len(order)
    output_quads = to_output_frame(quads, frame)
    keep = [i for i, (text, score) in enumerate(recognized) if text and score >= params.text_rec_score_thresh]
    return PageOCR(
        frame=frame,
        dt_polys=output_quads,
        dt_scores=det_scores,
        rec_polys=output_quads[keep] if keep else np.zeros((0, 4, 2), np.float32),
        rec_texts=[recognized[i][0] for i in keep],
        rec_scores=[recognized[i][1] for i in keep],
        textline_angles=angles,
        rec_indices=keep,
        params=params,
        prepared_image=prepared_image,
    )


def apply_switches(
    base: PredictParams,
    *,
    use_doc_orientation_classify: bool | None = None,
    use_doc_unwarping: bool | None = None,
    use_textline_orientation: bool | None = None,
    text_det_limit_side_len: int | None = None,
    text_det_limit_type: str | None = None,
    text_det_thresh: float | None = None,
    text_det_box_thresh: float | None = None,
    text_det_unclip_ratio: float | None = None,
    text_rec_score_thresh: float | None = None,
) -> PredictParams:
    """``base`` with the given switches replaced, each checked (ValueError: a value out
    of range, not finite, a side length that is not a whole number). Pure: no model is
    needed, so a command checks its switches before it loads any."""
    det = base.det
    db: DBParams = det.db
    if text_det_limit_type is not None and text_det_limit_type not in ("max", "min", "resize_long"):
        raise ValueError(f"text_det_limit_type must be 'max', 'min' or 'resize_long', got {text_det_limit_type!r}")
    for name, value in (
        ("text_det_limit_side_len", text_det_limit_side_len),
        ("text_det_thresh", text_det_thresh),
        ("text_det_box_thresh", text_det_box_thresh),
        ("text_det_unclip_ratio", text_det_unclip_ratio),
        ("text_rec_score_thresh", text_rec_score_thresh),
    ):  # NaN and infinities pass every comparison below (JSON parsers accept them)
        try:
            finite = value is None or math.isfinite(value)
        except (OverflowError, TypeError) as exc:  # an int too large for a float; not a number
            shown = str(value)
            if len(shown) > 24:  # an integer of hundreds of digits: its start and its length
                shown = f"{shown[:12]}... ({len(shown)} digits)"
            raise ValueError(f"{name} must be a finite number, got {shown}") from exc
        if not finite:
            raise ValueError(f"{name} must be a finite number, got {value}")
    if text_det_limit_side_len is not None and (
        isinstance(text_det_limit_side_len, bool) or int(text_det_limit_side_len) != text_det_limit_side_len
    ):
        raise ValueError(f"text_det_limit_side_len must be a whole number of pixels, got {text_det_limit_side_len}")
    for name, value in (
        ("text_det_limit_side_len", text_det_limit_side_len),
        ("text_det_unclip_ratio", text_det_unclip_ratio),
    ):
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
    for name, value in (("text_det_thresh", text_det_thresh), ("text_det_box_thresh", text_det_box_thresh)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {value}")
    db = replace(
        db,
        thresh=db.thresh if text_det_thresh is None else float(text_det_thresh),
        box_thresh=db.box_thresh if text_det_box_thresh is None else float(text_det_box_thresh),
        unclip_ratio=db.unclip_ratio if text_det_unclip_ratio is None else float(text_det_unclip_ratio),
    )
    det = replace(
        det,
        limit_side_len=det.limit_side_len if text_det_limit_side_len is None else int(text_det_limit_side_len),
        limit_type=det.limit_type if text_det_limit_type is None else text_det_limit_type,
        db=db,
    )
    return PredictParams(
        use_doc_orientation_classify=base.use_doc_orientation_classify
        if use_doc_orientation_classify is None
        else bool(use_doc_orientation_classify),
        use_doc_unwarping=base.use_doc_unwarping if use_doc_unwarping is None else bool(use_doc_unwarping),
        use_textline_orientation=base.use_textline_orientation
        if use_textline_orientation is None
        else bool(use_textline_orientation),
        det=det,
        text_rec_score_thresh=base.text_rec_score_thresh
        if text_rec_score_thresh is None
        else float(text_rec_score_thresh),
    )


def params_from_config(config: OCRConfig) -> PredictParams:
    """The configured switches as :class:`PredictParams`, without loading any model."""
    resolved = resolve_model(config.text_detection.model, config.engine.engine)
    return PredictParams(
        use_doc_orientation_classify=config.doc_preprocessor.use_doc_orientation_classify,
        use_doc_unwarping=config.doc_preprocessor.use_doc_unwarping,
        use_textline_orientation=config.textline_orientation.use_textline_orientation,
        det=det_params(config.text_detection, resolved.det_defaults),
        text_rec_score_thresh=config.text_recognition.score_thresh,
    )


def check_models(config: OCRConfig) -> None:
    """Resolve every model the configuration switches on, for its engine, without opening
    any: a misspelt name, a missing model package or a format the engine cannot open raises
    :class:`~ocr_actors.runtime.models.ModelNotFoundError` here (the job calls this before
    Ray starts) instead of in an actor's constructor. A model given by URI is left to the
    actors, which fetch it."""
    engine = config.engine.engine
    names = [config.text_detection.model, config.text_recognition.model]
    if config.doc_preprocessor.use_doc_orientation_classify:
        names.append(config.doc_preprocessor.orientation_model)
    if config.doc_preprocessor.use_doc_unwarping:
        names.append(config.doc_preprocessor.unwarping_model)
    if config.textline_orientation.use_textline_orientation:
        names.append(config.textline_orientation.model)
    for name in names:
        if "://" not in name or name.startswith("file://"):
            resolve_model(name, engine).path_for(engine)


class DocPreprocessor:
    """Page orientation and unwarping; each model loads on first use."""

    def __init__(self, config: DocPreprocessorConfig, engine: EngineConfig) -> None:
        self.config = config
        self.engine = engine
        self._orientation: DocOrientationClassifier | None = None
        self._unwarper: DocUnwarper | None = None

    @property
    def orientation(self) -> DocOrientationClassifier:
        if self._orientation is None:
            self._orientation = DocOrientationClassifier(self.config.orientation_model, self.engine)
        return self._orientation

    @property
    def unwarper(self) -> DocUnwarper:
        if self._unwarper is None:
            self._unwarper = DocUnwarper(self.config.unwarping_model, self.engine)
        return self._unwarper

    def prepare(self, image: np.ndarray, use_orientation: bool, use_unwarping: bool) -> PreparedPage:
        """Turn the page upright, then unwarp it (each optional)."""
        angle = -1
        working = image
        if use_orientation:
            angle, _ = self.orientation.classify(image)
            working = DocOrientationClassifier.upright(image, angle)
        if use_unwarping:
            working = self.unwarper.unwarp(working)
        frame = PageFrame(angle, use_unwarping, working.shape[:2], image.shape[:2])
        return PreparedPage(working, frame)


class OCREngine:
    """Detector, recogniser and optional classifiers, built once and reused.

    Optional models load on first use, so a pipeline that never turns a switch on
    never loads (or needs) that model.
    """

    def __init__(self, config: OCRConfig) -> None:
        self.config = config
        self.detector = TextDetector(config.text_detection, config.engine)
        self.recognizer = TextRecognizer(config.text_recognition, config.engine)
        self.doc_preprocessor = DocPreprocessor(config.doc_preprocessor, config.engine)
        self._textline: TextlineClassifier | None = None

    @property
    def textline(self) -> TextlineClassifier:
        if self._textline is None:
            cfg = self.config.textline_orientation
            self._textline = TextlineClassifier(cfg.model, self.config.engine, cfg.batch_size, cfg.thresh)
        return self._textline

    def default_params(self) -> PredictParams:
        cfg = self.config
        return PredictParams(
            use_doc_orientation_classify=cfg.doc_preprocessor.use_doc_orientation_classify,
            use_doc_unwarping=cfg.doc_preprocessor.use_doc_unwarping,
            use_textline_orientation=cfg.textline_orientation.use_textline_orientation,
            det=self.detector.default_params,
            text_rec_score_thresh=cfg.text_recognition.score_thresh,
        )

    def prepare(self, image: np.ndarray, params: PredictParams) -> PreparedPage:
        """Document preprocessing as the per-call switches ask."""
        return self.doc_preprocessor.prepare(image, params.use_doc_orientation_classify, params.use_doc_unwarping)

    def ocr_pages(self, images: Sequence[np.ndarray], params: PredictParams | None = None) -> list[PageOCR]:
        """Run the whole flow on BGR pages; recognition batches mix the crops of all pages."""
        p = params or self.default_params()
        prepared = [self.prepare(im, p) for im in images]
        detections = self.detector.detect([pp.image for pp in prepared], p.det)
        crops: list[np.ndarray] = []
        spans: list[tuple[int, int]] = []
        for pp, det in zip(prepared, detections, strict=True):
            start = len(crops)
            crops.extend(crop_lines(pp.image, det.quads))
            spans.append((start, len(crops)))
        recognized = self.recognizer.recognize(crops) if crops else []
        angles: list[int] | None = None
        if p.use_textline_orientation:
            cfg = self.config.textline_orientation
            recognized, angles = orient_lines(
                crops, recognized, self.textline.classify(crops), self.recognizer, cfg.thresh, cfg.verify_score_below
            )
        return [
            assemble_page(
                pp.frame,
                det.quads,
                det.scores,
                recognized[a:b],
                angles[a:b] if angles is not None else None,
                p,
                pp.image if p.use_doc_preprocessor else None,
            )
            for pp, det, (a, b) in zip(prepared, detections, spans, strict=True)
        ]
