"""Per-page result of the Python API, shaped like the reference pipeline's ``OCRResult``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ocr_actors.runtime.models import shipped_cjk_font
from ocr_actors.runtime.ocr import PageOCR


def page_stem(input_path: str | None, page_index: int | None) -> str:
    """The name a page's outputs take: the input's file name without its suffix, and the page
    of a multi-page input (``report_0``); ``array`` for an image given as an array."""
    stem = Path(input_path).stem if input_path else "array"
    return f"{stem}_{page_index}" if page_index is not None else stem


def pixel_coordinates(values: np.ndarray) -> np.ndarray:
    """Whole-pixel coordinates as int16, the reference's dtype, or as int32 when a value does
    not fit (a page of 32768 px or more on a side), never wrapped round."""
    values = np.asarray(values)
    if values.size and (values.max() > np.iinfo(np.int16).max or values.min() < np.iinfo(np.int16).min):
        return values.astype(np.int32)
    return values.astype(np.int16)


class OCRResult(dict[str, Any]):
    """One page's OCR result: a dict with the reference's keys plus helpers.

    Keys: ``input_path``, ``page_index``, ``model_settings``, ``doc_preprocessor_res``
    (with ``angle``), ``dt_polys``, ``text_det_params``, ``text_type``,
    ``textline_orientation_angles``, ``text_rec_score_thresh``, ``rec_texts``,
    ``rec_scores``, ``rec_polys``, ``rec_boxes``. Polygons are ``(N, 4, 2)`` int16 arrays (as
    the reference gives them; int32 on a page of 32768 px or more on a side) in the pixel
    frame of the page as given (of the unwarped page when unwarping is on); ``rec_boxes`` is
    ``(N, 4)`` ``[x_min, y_min, x_max, y_max]``.
    """

    def __init__(self, page: PageOCR, input_path: str | None, page_index: int | None, source_image: np.ndarray) -> None:
        params = page.params
        super().__init__(
            input_path=input_path,
            page_index=page_index,
            model_settings={
                "use_doc_preprocessor": params.use_doc_preprocessor,
                "use_textline_orientation": params.use_textline_orientation,
            },
            doc_preprocessor_res={
                "input_path": None,
                "page_index": None,
                "model_settings": {
                    "use_doc_orientation_classify": params.use_doc_orientation_classify,
                    "use_doc_unwarping": params.use_doc_unwarping,
                },
                "angle": page.frame.angle,
            },
            dt_polys=pixel_coordinates(np.round(page.dt_polys)),
            text_det_params=params.det.as_reference_dict(),
            text_type="general",
            textline_orientation_angles=list(page.textline_angles),
            text_rec_score_thresh=params.text_rec_score_thresh,
            rec_texts=list(page.rec_texts),
            rec_scores=np.asarray(page.rec_scores, dtype=np.float32),
            rec_polys=pixel_coordinates(np.round(page.rec_polys)),
            rec_boxes=pixel_coordinates(page.rec_boxes),
        )
        self._page = page
        self._source_image = source_image

    # ------------------------------------------------------------------ views
    @property
    def page(self) -> PageOCR:
        """The typed record behind this result."""
        return self._page

    @property
    def json(self) -> dict[str, Any]:
        """JSON-ready ``{"res": {...}}`` (arrays as nested lists)."""
        return {"res": _jsonable(dict(self))}

    @property
    def img(self) -> dict[str, np.ndarray]:
        """Annotated images (BGR uint8): ``ocr_res_img``; with document preprocessing on,
        also ``preprocessed_img`` (the upright/unwarped page the detector saw)."""
        images = {"ocr_res_img": draw_ocr(self._output_frame_image(), self["rec_polys"], self["rec_texts"])}
        if self._page.prepared_image is not None:
            images["preprocessed_img"] = self._page.prepared_image
        return images

    def _output_frame_image(self) -> np.ndarray:
        page = self._page
        return page.prepared_image if page.frame.unwarped and page.prepared_image is not None else self._source_image

    # ------------------------------------------------------------------ output
    def print(self, file: Any = None) -> None:
        """Print the JSON form, indented."""
        print(json.dumps(self.json, ensure_ascii=False, indent=2), file=file or sys.stdout)

    def save_to_json(self, save_path: str | Path, stem: str | None = None) -> Path:
        """Write ``<name>_res.json`` into a folder, or to ``save_path`` if it ends in ``.json``:
        the result itself (``json["res"]``, as the reference's ``save_to_json`` writes it).
        ``stem``: the name instead of the input's file name (and page)."""
        target = Path(save_path)
        if target.suffix.lower() != ".json":
            target.mkdir(parents=True, exist_ok=True)
            target = target / f"{stem or page_stem(self['input_path'], self['page_index'])}_res.json"
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.json["res"], ensure_ascii=False, indent=2), encoding="utf-8")
        return target

    def save_to_img(self, save_path: str | Path, stem: str | None = None) -> list[Path]:
        """Write ``<name>_<image key><suffix>`` per annotated image into a folder (the folder of
        ``save_path`` when it names a file: ends in ``.json`` or an image suffix). The suffix is
        the input image's own (``.jpg`` for a JPEG), as the reference keeps it, and ``.png`` for
        PDFs, arrays and kinds OpenCV does not write. ``stem``: the name instead of the input's
        file name (and page)."""
        folder = Path(save_path)
        if folder.suffix.lower() in (".json", *SAVED_IMAGE_SUFFIXES):
            folder = folder.parent
        folder.mkdir(parents=True, exist_ok=True)
        stem = stem or page_stem(self["input_path"], self["page_index"])
        input_suffix = Path(self["input_path"] or "").suffix
        suffix = input_suffix if input_suffix.lower() in SAVED_IMAGE_SUFFIXES else ".png"
        written = []
        for key, image in self.img.items():
            path = folder / f"{stem}_{key}{suffix}"
            if not cv2.imwrite(str(path), image):
                raise OSError(f"could not write {path}")
            written.append(path)
        return written


SAVED_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""Input suffixes the annotated images keep (OpenCV writes these kinds)."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def draw_ocr(image: np.ndarray, polys: np.ndarray, texts: list[str]) -> np.ndarray:
    """Side-by-side visualisation: polygons on the page (left), texts in place (right).

    Args:
        image: BGR ``(H, W, 3)`` uint8 page in the polygons' frame.
        polys: ``(N, 4, 2)`` polygons in page pixels.
        texts: N recognised strings.

    Returns:
        BGR ``(H, 2W, 3)`` uint8 image.
    """
    from PIL import Image, ImageDraw, ImageFont

    h, w = image.shape[:2]
    left = image.copy()
    rng = np.random.default_rng(0)
    colours = [tuple(int(c) for c in rng.integers(0, 200, 3)) for _ in range(len(polys))]
    overlay = left.copy()
    for poly, colour in zip(polys, colours, strict=True):
        cv2.fillPoly(overlay, [np.asarray(poly, np.int32)], colour)
    left = cv2.addWeighted(overlay, 0.35, left, 0.65, 0)
    right = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(right)
    font_file = shipped_cjk_font()

    def font_of(size: int):  # type: ignore[no-untyped-def]
        return ImageFont.truetype(font_file, size) if font_file else ImageFont.load_default(size)

    for poly, text, colour in zip(polys, texts, colours, strict=True):
        pts = np.asarray(poly, np.int32)
        draw.polygon([tuple(p) for p in pts.tolist()], outline=colour[::-1])
        box_w = max(int(np.linalg.norm(pts[0] - pts[1])), 1)
        box_h = max(int(np.linalg.norm(pts[0] - pts[3])), 1)
        x, y = int(pts[0][0]) + 2, int(pts[0][1])
        if box_h > 2 * box_w and len(text) > 1:  # a vertical line: one character under another
            size = text_size(min(box_w * 0.8, box_h / len(text)))
            font = font_of(size)
            for k, char in enumerate(text):
                draw.text((x, y + k * size), char, fill=(0, 0, 0), font=font)
            continue
        size = text_size(box_h * 0.8)
        font = font_of(size)
        length = draw.textlength(text, font=font)
        if length > box_w:  # fit the box's width: a long text in a short box
            size = text_size(size * box_w / length)
            font = font_of(size)
        draw.text((x, y), text, fill=(0, 0, 0), font=font)
    return np.hstack([left, np.asarray(right)[:, :, ::-1]])


def text_size(size: float) -> int:
    """A font size in pixels for the annotated image: at least 6, at most 256 (a font of a
    box's size on a tall page, say 4,000 px, would make Pillow build a glyph mask of billions
    of pixels)."""
    return int(min(max(size, 6), 256))
