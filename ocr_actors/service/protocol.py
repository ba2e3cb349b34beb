"""The ``POST /ocr`` protocol of the reference pipeline: request parsing, response envelopes.

Pure code (no Ray, no web framework): a request body (parsed JSON) becomes an
:class:`OcrRequest`; results become the reference's response. Every client error raises
:class:`ApiError` with the HTTP status it maps to.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ocr_actors.io.decode import InputError, PageFailure, decode_document, sniff_kind
from ocr_actors.service.config import ServiceConfig

SWITCHES = {
    "useDocOrientationClassify": ("use_doc_orientation_classify", bool),
    "useDocUnwarping": ("use_doc_unwarping", bool),
    "useTextlineOrientation": ("use_textline_orientation", bool),
    "textDetLimitSideLen": ("text_det_limit_side_len", int),
    "textDetLimitType": ("text_det_limit_type", str),
    "textDetThresh": ("text_det_thresh", float),
    "textDetBoxThresh": ("text_det_box_thresh", float),
    "textDetUnclipRatio": ("text_det_unclip_ratio", float),
    "textRecScoreThresh": ("text_rec_score_thresh", float),
}
KNOWN_FIELDS = {"file", "fileType", "visualize", "inferenceParams", "returnWordBox", *SWITCHES}
API_NAMES = {name: api_name for api_name, (name, _) in SWITCHES.items()}


class ApiError(Exception):
    """A request the service refuses: ``status`` is the HTTP status, ``message`` is safe to show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class OcrRequest:
    """A validated request.

    Attributes:
        pages: BGR uint8 pages, already limited (PDF pages, max long side).
        file_type: 0 PDF, 1 image.
        switches: keyword arguments for :meth:`OCREngine.params`.
        data_info: the reference's ``dataInfo`` for the input.
    """

    pages: list[np.ndarray]
    file_type: int
    switches: dict[str, Any] = field(default_factory=dict)
    visualize: bool = True
    data_info: dict[str, Any] = field(default_factory=dict)


def _typed(name: str, value: Any, kind: type) -> Any:
    if value is None:
        return None
    if kind is bool:
        if not isinstance(value, bool):
            raise ApiError(422, f"{name} must be true or false")
        return value
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ApiError(422, f"{name} must be a number")
        try:
            if kind is int and isinstance(value, float) and not value.is_integer():
                raise ApiError(422, f"{name} must be an integer")
            return kind(value)
        except OverflowError as exc:  # a JSON integer like 1e400 written out: no float holds it
            raise ApiError(422, f"{name} is out of range") from exc
    if not isinstance(value, str):
        raise ApiError(422, f"{name} must be a string")
    return value


def decode_base64(text: str) -> bytes:
    """Standard or URL-safe base64, with or without padding or a ``data:`` prefix."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    cleaned = "".join(text.split())
    try:
        padded = cleaned + "=" * (-len(cleaned) % 4)
        return base64.b64decode(padded, altchars=b"-_" if ("-" in cleaned or "_" in cleaned) else None, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(422, "file is neither valid base64 nor an allowed URL") from exc


def parse_request(body: Any, config: ServiceConfig, fetch_url: Any = None) -> OcrRequest:
    """Validate a request body and decode its pages.

    Args:
        body: the parsed JSON body.
        fetch_url: ``(url) -> bytes`` used when URL inputs are allowed (see :mod:`fetch`).

    Raises:
        ApiError: 4xx for anything wrong with the request or its file.
    """
    if not isinstance(body, dict):
        raise ApiError(422, "the request body must be a JSON object")
    unknown = set(body) - KNOWN_FIELDS
    if unknown:
        raise ApiError(422, f"unknown field(s): {', '.join(sorted(unknown))}")
    file = body.get("file")
    if not isinstance(file, str) or not file:
        raise ApiError(422, "file is required: base64 content (or a URL where URL inputs are enabled)")
    if file.startswith(("http://", "https://")) or "://" in file[:16]:
        if not config.allow_url_inputs or fetch_url is None:
            raise ApiError(403, "URL inputs are disabled on this service; send the file as base64")
        data = fetch_url(file)
    else:
        data = decode_base64(file)
    if len(data) > config.max_body_bytes:
        raise ApiError(413, f"file is larger than {config.max_body_bytes} bytes")
    file_type = body.get("fileType")
    try:
        kind = sniff_kind(data)
    except InputError as exc:
        raise ApiError(422, f"file: {exc}") from exc
    detected = 0 if kind == "pdf" else 1
    if file_type is not None and (isinstance(file_type, bool) or file_type not in (0, 1)):
        raise ApiError(422, "fileType must be 0 (PDF) or 1 (image)")
    if file_type is not None and file_type != detected:
        raise ApiError(
            422, f"fileType {file_type} does not match the content ({'a PDF' if detected == 0 else 'an image'})"
        )
    switches = {}
    for api_name, (name, kind_type) in SWITCHES.items():
        value = _typed(api_name, body.get(api_name), kind_type)
        if value is not None:
            switches[name] = value
    visualize = _typed("visualize", body.get("visualize"), bool)
    if visualize is None:
        visualize = config.visualize
    if _typed("returnWordBox", body.get("returnWordBox"), bool):
        raise ApiError(422, "returnWordBox: word boxes are not supported; send false or leave it out")
    inference = body.get("inferenceParams") or {}
    if not isinstance(inference, dict) or set(inference) - {"maxLongSide"}:
        raise ApiError(422, "inferenceParams may only hold maxLongSide")
    max_long_side = _typed("inferenceParams.maxLongSide", inference.get("maxLongSide"), int)
    if max_long_side is not None and max_long_side < 32:
        raise ApiError(422, "inferenceParams.maxLongSide must be at least 32")
    pages = _decode_pages(data, config)
    if max_long_side:
        pages = [_shrink(page, max_long_side) for page in pages]
    data_info: dict[str, Any]
    if detected == 0:
        data_info = {
            "type": "pdf",
            "numPages": len(pages),
            "pages": [{"width": p.shape[1], "height": p.shape[0]} for p in pages],
        }
    else:
        data_info = {"type": "image", "width": pages[0].shape[1], "height": pages[0].shape[0]}
        if len(pages) > 1:  # a multi-frame image (TIFF): one result per frame, as for a PDF
            data_info.update(numPages=len(pages), pages=[{"width": p.shape[1], "height": p.shape[0]} for p in pages])
    return OcrRequest(pages, detected, switches, visualize, data_info)


def _decode_pages(data: bytes, config: ServiceConfig) -> list[np.ndarray]:
    cfg = config.ocr.input
    budget = config.max_request_pixels
    try:
        pages: list[np.ndarray] = []
        held = 0
        for item in decode_document(
            data, pdf_dpi=cfg.pdf_dpi, max_pixels=min(cfg.max_pixels, budget), pdf_page_limit=config.max_pdf_pages
        ):
            if isinstance(item, PageFailure):  # not asked for; decode_document raises instead
                raise item.error
            held += item.image.shape[0] * item.image.shape[1]
            if held > budget:
                raise ApiError(
                    413,
                    f"file: its first {len(pages) + 1} pages hold {held} pixels, above {budget} (max_request_pixels)",
                )
            pages.append(item.image)
            if len(pages) >= config.max_pdf_pages:
                break
    except InputError as exc:
        status = 413 if exc.error_type == "too_large" else 422
        raise ApiError(status, f"file: {exc}") from exc
    if not pages:
        raise ApiError(422, "file: no pages")
    return pages


def _shrink(page: np.ndarray, max_long_side: int) -> np.ndarray:
    h, w = page.shape[:2]
    if max(h, w) <= max_long_side:
        return page
    scale = max_long_side / max(h, w)
    return cv2.resize(page, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def new_log_id() -> str:
    return str(uuid.uuid4())


def success(log_id: str, ocr_results: list[dict[str, Any]], data_info: dict[str, Any]) -> dict[str, Any]:
    """The reference's success envelope."""
    return {
        "logId": log_id,
        "errorCode": 0,
        "errorMsg": "Success",
        "result": {"ocrResults": ocr_results, "dataInfo": data_info},
    }


def failure(log_id: str, status: int, message: str) -> dict[str, Any]:
    """The reference's error envelope: ``errorCode`` is the HTTP status."""
    return {"logId": log_id, "errorCode": status, "errorMsg": message}


def pruned_result(result_json: dict[str, Any]) -> dict[str, Any]:
    """The API result without the input's location: ``input_path`` removed at every level,
    as the reference's ``prunedResult`` (``page_index`` stays: the PDF page, or null)."""

    def prune(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: prune(v) for k, v in value.items() if k != "input_path"}
        if isinstance(value, list):
            return [prune(v) for v in value]
        return value

    return prune(result_json["res"])


def request_names(message: str) -> str:
    """An engine message with switch names as a request spells them (``textDetThresh``)."""
    for name, api_name in API_NAMES.items():
        message = message.replace(name, api_name)
    return message


JPEG_MAX_SIDE = 65_500


def jpeg_base64(image: np.ndarray, quality: int = 85) -> str:
    """A BGR image as base64 JPEG, scaled down to fit JPEG's 65,535 px a side when larger."""
    longest = max(image.shape[:2])
    if longest > JPEG_MAX_SIDE:
        scale = JPEG_MAX_SIDE / longest
        size = (max(round(image.shape[1] * scale), 1), max(round(image.shape[0] * scale), 1))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode the annotated image")
    return base64.b64encode(encoded.tobytes()).decode("ascii")
