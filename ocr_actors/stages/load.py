"""Load stage (CPU task): source URIs -> page rows; PDFs fan out; bad files become error rows."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from ocr_actors.config import InputConfig
from ocr_actors.io.decode import InputError, PageFailure, decode_document
from ocr_actors.io.parquet import doc_id_for
from ocr_actors.io.sources import read_bytes
from ocr_actors.io.workfiles import UriSeal, WorkRange, read_work_range
from ocr_actors.redaction import redact_text, redact_uri
from ocr_actors.stages.common import ERROR, OK, Batch, concat_batches, ragged, require

PLACEHOLDER_IMAGE = np.zeros((1, 1, 3), dtype=np.uint8)


def page_row(
    uri: str,
    page_index: int,
    page_count: int,
    image: np.ndarray,
    dpi: float | None,
    status: str = OK,
    error_type: str = "",
    error_message: str = "",
) -> dict[str, Any]:
    """One row of the load stage's output. Sentinels (-1, "") stand in for nulls inside the
    pipeline; the writer turns them into Parquet nulls."""
    written_uri = redact_uri(uri)  # a signed URL or user:password@ never reaches the output
    return {
        "source_uri": written_uri,
        "doc_id": doc_id_for(written_uri),
        "page_index": page_index,
        "page_count": page_count,
        "dpi": -1.0 if dpi is None else float(dpi),
        "status": status,
        "error_type": error_type,
        "error_message": redact_message(error_message, uri, written_uri),
        "width": int(image.shape[1]) if status == OK else 0,
        "height": int(image.shape[0]) if status == OK else 0,
        "image": image,
        "doc_angle": -1,
        "unwarped": False,
        "source_done": False,
    }


def redact_message(message: str, uri: str, written_uri: str) -> str:
    """An error message with credentials removed (:func:`redact_text`), where the source's own
    URI reads as the output's ``source_uri`` (:func:`redact_uri`): a file name holding ``:`` and
    ``@`` is not mangled, a signed URL's secrets are still gone."""
    if not message or uri not in message:
        return redact_text(message)
    return written_uri.join(redact_text(part) for part in message.split(uri))


def _as_batch(row: dict[str, Any], seconds: float, cpu_seconds: float) -> Batch:
    """One page row as a batch, with its wall and CPU seconds (``t_load``, ``c_load``)."""
    batch = {k: np.array([v]) if k != "image" else ragged([v]) for k, v in row.items()}
    batch["t_load"] = np.array([seconds])
    batch["c_load"] = np.array([cpu_seconds])
    return batch


def load_pages(
    uri: str,
    config: InputConfig,
    storage_options: Mapping[str, Any],
    page_indices: list[int] | None,
    pdf_pages: list[int] | None = None,
) -> Iterator[dict[str, Any]]:
    """Rows for one source: one per page, an error row per failed page, or one file-level
    error row (``page_index`` -1) when the file cannot be read at all. The last row of the
    source has ``source_done`` set (the job's progress counts sources by it).

    Args:
        page_indices: only these pages (resume of a partly written document), or None.
        pdf_pages: page ranges applied to PDFs only (``source.pdf_pages``), or None.
    """
    previous = None
    for row in _source_rows(uri, config, storage_options, page_indices, pdf_pages):
        if previous is not None:
            yield previous
        previous = row
    if previous is not None:
        previous["source_done"] = True
        yield previous


def _source_rows(
    uri: str,
    config: InputConfig,
    storage_options: Mapping[str, Any],
    page_indices: list[int] | None,
    pdf_pages: list[int] | None,
) -> Iterator[dict[str, Any]]:
    try:
        data = read_bytes(uri, storage_options, config.max_bytes)
        if pdf_pages is not None and data.lstrip()[:4] == b"%PDF":
            page_indices = pdf_pages if page_indices is None else sorted(set(page_indices) & set(pdf_pages))
        for item in decode_document(
            data,
            pdf_dpi=config.pdf_dpi,
            max_pixels=config.max_pixels,
            pdf_page_limit=config.pdf_page_limit,
            page_indices=page_indices,
            yield_page_failures=True,
            keep_grey=True,  # a grey page moves between stages as one channel: a third of the bytes
        ):
            if isinstance(item, PageFailure):
                yield page_row(
                    uri,
                    item.page_index,
                    item.page_count,
                    PLACEHOLDER_IMAGE,
                    None,
                    ERROR,
                    item.error.error_type,
                    str(item.error),
                )
            else:
                yield page_row(uri, item.page_index, item.page_count, item.image, item.dpi)
    except InputError as exc:
        yield page_row(uri, -1, -1, PLACEHOLDER_IMAGE, None, ERROR, exc.error_type, str(exc))
    except PermissionError as exc:
        yield page_row(uri, -1, -1, PLACEHOLDER_IMAGE, None, ERROR, "access_denied", f"{uri}: access denied ({exc})")
    except Exception as exc:  # a decoder failing in a way of its own: this file fails, the job goes on
        message = f"{uri}: could not decode: {type(exc).__name__}: {exc}"
        yield page_row(uri, -1, -1, PLACEHOLDER_IMAGE, None, ERROR, "corrupt", message)


def load_documents(
    batch: Batch, *, config: InputConfig, storage_options: Mapping[str, Any], pdf_pages: list[int] | None = None
) -> Iterator[Batch]:
    """``map_batches`` generator UDF (task): rows ``source_uri``, ``todo_pages`` (JSON list,
    or "" for every page) -> one output batch per page, so a long PDF streams."""
    require(batch, "load", "source_uri", "todo_pages")
    for uri, todo in zip(batch["source_uri"], batch["todo_pages"], strict=True):
        pages = json.loads(todo) if todo else None
        start, cpu_start = time.perf_counter(), time.process_time()
        for row in load_pages(str(uri), config, storage_options, pages, pdf_pages):
            yield _as_batch(row, time.perf_counter() - start, time.process_time() - cpu_start)
            start, cpu_start = time.perf_counter(), time.process_time()


def load_work(
    batch: Batch,
    *,
    work_storage_options: Mapping[str, Any],
    config: InputConfig,
    storage_options: Mapping[str, Any],
    pdf_pages: list[int] | None = None,
    work_seal: UriSeal | None = None,
) -> Iterator[Batch]:
    """``map_batches`` generator UDF (task): rows ``work_path``, ``work_start``, ``work_stop``
    (ranges of the job's work files) -> the pages of their work items, as
    :func:`load_documents`. Reading the range here keeps the work items out of the driver
    without another Ray operator; ``work_seal`` opens the URIs the files hold sealed."""
    require(batch, "load", "work_path", "work_start", "work_stop")
    for path, start, stop in zip(batch["work_path"], batch["work_start"], batch["work_stop"], strict=True):
        items = read_work_range(WorkRange(str(path), int(start), int(stop)), work_storage_options, work_seal)
        work = {name: np.asarray(items.column(name).to_pylist(), dtype=object) for name in items.column_names}
        yield from load_documents(work, config=config, storage_options=storage_options, pdf_pages=pdf_pages)


class LoadThen:
    """A model stage that loads its own pages (``resources.load_in_actors``): work ranges in,
    the stage's output out, so a decoded page never moves between Ray processes before the
    model sees it.

    Each call reads its ranges like :func:`load_work` (same rows, error rows and ``t_load`` /
    ``c_load``) and hands the pages to ``stage_class(*stage_args)`` in batches of
    ``page_batch_size`` (the stage's own ``batch_size``), yielding each result as it comes: a
    long PDF streams, and at most ``page_batch_size`` decoded pages are held at once.
    """

    def __init__(
        self,
        stage_class: Callable[..., Callable[[Batch], Batch]],
        stage_args: tuple[Any, ...],
        page_batch_size: int,
        load_kwargs: Mapping[str, Any],
    ) -> None:
        if page_batch_size < 1:
            raise ValueError(f"page_batch_size must be at least 1, got {page_batch_size}")
        self.stage = stage_class(*stage_args)
        self.page_batch_size = page_batch_size
        self.load_kwargs = dict(load_kwargs)

    def __call__(self, batch: Batch) -> Iterator[Batch]:
        pending: list[Batch] = []
        for page in load_work(batch, **self.load_kwargs):
            pending.append(page)
            if len(pending) == self.page_batch_size:
                yield self.stage(concat_batches(pending))
                pending = []
        if pending:
            yield self.stage(concat_batches(pending))
