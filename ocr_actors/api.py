"""Python API mirroring the reference: ``create_pipeline("OCR", ...).predict(input, ...)``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ocr_actors.config import OCRConfig, load_config, to_dict
from ocr_actors.io.decode import (
    EmptyInputError,
    InputError,
    Page,
    PageFailure,
    TooLargeInputError,
    UnsupportedInputError,
    decode_document,
    sniff_kind,
)
from ocr_actors.io.sources import expand_inputs, read_bytes
from ocr_actors.result import OCRResult
from ocr_actors.runtime.ocr import OCREngine, PredictParams, apply_switches

PipelineInput = str | Path | np.ndarray | bytes | Iterable[str | Path | np.ndarray | bytes]


class OCRPipeline:
    """The General OCR pipeline on one process.

    Build it once (models load here); call :meth:`predict` as often as needed. Per-call
    switches never change the pipeline's own configuration.
    """

    def __init__(self, config: OCRConfig) -> None:
        self.config = config
        self.engine = OCREngine(config)

    def predict(
        self,
        input: PipelineInput,
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
    ) -> Iterator[OCRResult]:
        """OCR every page of the input; yields one :class:`OCRResult` per page, in order.

        Args:
            input: a path, folder, glob, fsspec URI, BGR ``(H, W, 3)`` uint8 array
                (grey ``(H, W)`` accepted), a file's bytes (any image kind or a PDF), or a
                list of those. PDFs yield every page
                (see ``input.pdf_page_limit`` in the config).
            other arguments: the reference's switches; None keeps the configured value.

        Raises:
            InputError: an input cannot be read or decoded (the message says why).
        """
        params = apply_switches(
            self.engine.default_params(),
            use_doc_orientation_classify=use_doc_orientation_classify,
            use_doc_unwarping=use_doc_unwarping,
            use_textline_orientation=use_textline_orientation,
            text_det_limit_side_len=text_det_limit_side_len,
            text_det_limit_type=text_det_limit_type,
            text_det_thresh=text_det_thresh,
            text_det_box_thresh=text_det_box_thresh,
            text_det_unclip_ratio=text_det_unclip_ratio,
            text_rec_score_thresh=text_rec_score_thresh,
        )
        chunk: list[tuple[str | None, int | None, np.ndarray]] = []
        for item in self._pages(input):
            chunk.append(item)
            if len(chunk) >= self.config.page_batch_size:
                yield from self._run_chunk(chunk, params)
                chunk = []
        if chunk:
            yield from self._run_chunk(chunk, params)

    def _run_chunk(
        self, chunk: list[tuple[str | None, int | None, np.ndarray]], params: PredictParams
    ) -> Iterator[OCRResult]:
        pages = self.engine.ocr_pages([image for _, _, image in chunk], params)
        for (path, page_index, image), page in zip(chunk, pages, strict=True):
            yield OCRResult(page, path, page_index, image)

    def _pages(self, input: PipelineInput) -> Iterator[tuple[str | None, int | None, np.ndarray]]:
        single = (str, os.PathLike, np.ndarray, bytes, bytearray, memoryview)
        items: Iterable[Any] = [input] if isinstance(input, single) else input
        cfg = self.config.input
        for item in items:
            if isinstance(item, np.ndarray):
                yield None, None, as_bgr_page(item)
            elif isinstance(item, (bytes, bytearray, memoryview)):
                if len(item) > cfg.max_bytes:  # as a file of that size is
                    raise TooLargeInputError(f"the input is {len(item)} bytes, above the limit of {cfg.max_bytes}")
                yield from self._decoded(None, bytes(item))
            elif isinstance(item, (str, os.PathLike)):
                for uri in expand_inputs(str(item), cfg.storage_options):
                    yield from self._decoded(uri, read_bytes(uri, cfg.storage_options, cfg.max_bytes))
            else:
                raise UnsupportedInputError(
                    f"an input must be a path or URI, a numpy array or a file's bytes, got {type(item).__name__}"
                )

    def _decoded(self, uri: str | None, data: bytes) -> Iterator[tuple[str | None, int | None, np.ndarray]]:
        """The pages of one file's bytes; errors name ``uri`` (None for bytes given directly)."""
        cfg = self.config.input
        try:
            for page in decode_document(
                data, pdf_dpi=cfg.pdf_dpi, max_pixels=cfg.max_pixels, pdf_page_limit=cfg.pdf_page_limit
            ):
                if isinstance(page, PageFailure):  # not asked for: decode_document raises them
                    raise page.error
                yield uri, _page_index(data, page), page.image
        except InputError as exc:
            if uri is None:
                raise
            raise type(exc)(f"{uri}: {exc}") from exc


def _page_index(data: bytes, page: Page) -> int | None:
    """The reference reports ``page_index`` for PDF pages (by content, whatever the file's
    name) and multi-page images, and None for single images."""
    return page.page_index if page.page_count > 1 or sniff_kind(data) == "pdf" else None


def as_bgr_page(array: np.ndarray) -> np.ndarray:
    """Validate a user array: BGR ``(H, W, 3)`` uint8, grey ``(H, W)`` or ``(H, W, 1)``, or BGRA
    ``(H, W, 4)``."""
    if array.dtype != np.uint8:
        raise UnsupportedInputError(f"arrays must be uint8, got {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 1:  # grey, as decode_document(keep_grey=True) gives
        array = np.repeat(array, 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]
    if array.ndim != 3 or array.shape[2] != 3:
        raise UnsupportedInputError(
            f"arrays must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {array.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise EmptyInputError(f"the array is empty: shape {array.shape}")
    return np.ascontiguousarray(array)


def create_pipeline(
    pipeline: str = "OCR",
    config: str | Path | Mapping[str, Any] | OCRConfig | None = None,
    device: str | None = None,
    **overrides: Any,
) -> OCRPipeline:
    """Create the OCR pipeline, like the reference's ``create_pipeline``.

    Args:
        pipeline: only ``"OCR"`` is provided.
        config: a YAML path, a mapping, an :class:`OCRConfig`, or None for defaults.
        device: ``"cpu"``, ``"gpu"`` or ``"gpu:N"``; overrides ``engine.device``.
        overrides: dotted keys with ``__`` for dots, e.g. ``text_recognition__batch_size=16``.
    """
    if pipeline != "OCR":
        raise ValueError(f"unknown pipeline {pipeline!r}; this package provides 'OCR'")
    dotted = {key.replace("__", "."): value for key, value in overrides.items()}
    if isinstance(config, OCRConfig):
        cfg = config if not dotted else load_config(OCRConfig, to_dict(config), dotted)
    else:
        cfg = load_config(OCRConfig, config, dotted)
    if device is not None:
        cfg = replace(cfg, engine=replace(cfg.engine, device=device))
    return OCRPipeline(cfg)
