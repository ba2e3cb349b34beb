"""The job's output: one explicit Arrow schema, atomic deterministic Parquet files, and the
scan that tells a rerun what is already done.

One row per page; a file that cannot be opened at all gives one row with a null
``page_index``. Polygons are in pixels of the page as given (see README).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ocr_actors.io.uriset import UriSet

LINE_TYPE = pa.struct(
    [
        pa.field("text", pa.string(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),
        pa.field("poly", pa.list_(pa.list_(pa.float32(), 2), 4), nullable=False),
        pa.field("box", pa.list_(pa.int32(), 4), nullable=False),
        pa.field("angle", pa.int16(), nullable=False),
    ]
)

PAGE_SCHEMA = pa.schema(
    [
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("page_index", pa.int32()),
        pa.field("page_count", pa.int32()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error_type", pa.string()),
        pa.field("error_message", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("dpi", pa.float32()),
        pa.field("doc_angle", pa.int16()),
        pa.field("text", pa.string()),
        pa.field("lines", pa.list_(LINE_TYPE)),
        pa.field("det_model", pa.string(), nullable=False),
        pa.field("rec_model", pa.string(), nullable=False),
        pa.field("job_id", pa.string(), nullable=False),
        pa.field("processed_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ],
    metadata={
        b"ocr_batch.coordinates": b"poly and box in pixels of the page as given "
        b"(of the unwarped page when unwarping is on)",
        b"ocr_batch.poly": b"4 points [x, y] clockwise from the text's top-left corner",
    },
)
"""One row per page (or per unreadable file). ``status`` is ``ok`` or ``error``; error rows
carry ``error_type`` and ``error_message`` and null OCR columns. ``text`` joins ``lines`` in
reading order with newlines. ``doc_angle`` is null when orientation was not classified."""

PART_PREFIX = "part-"
TMP_DIR = "_tmp"
JOBS_DIR = "_jobs"


def doc_id_for(uri: str) -> str:
    """Stable document id: the first 16 hex digits of the URI's SHA-1."""
    return hashlib.sha1(uri.encode()).hexdigest()[:16]


def part_name(rows: Sequence[Mapping[str, Any]]) -> str:
    """Deterministic file name from the ``(source_uri, page_index)`` keys of its rows."""
    keys = sorted(f"{r['source_uri']}\x00{r['page_index']}" for r in rows)
    digest = hashlib.sha1("\x01".join(keys).encode()).hexdigest()[:24]
    return f"{PART_PREFIX}{digest}.parquet"


def write_part(
    rows: Sequence[Mapping[str, Any]], output: str, storage_options: Mapping[str, Any], compression: str = "zstd"
) -> str:
    """Write rows as one Parquet file (one row group) atomically; returns the final path.

    The file is written under ``_tmp/`` and moved into place, so a reader or a rerun never
    sees a partial file: on object stores the final key appears only once it is complete.
    """
    import fsspec

    fs, root = fsspec.core.url_to_fs(output, **dict(storage_options))
    table = pa.Table.from_pylist(list(rows), schema=PAGE_SCHEMA)
    name = part_name(rows)
    final = f"{root.rstrip('/')}/{name}"
    tmp = f"{root.rstrip('/')}/{TMP_DIR}/{name}.{uuid.uuid4().hex}"
    fs.makedirs(f"{root.rstrip('/')}/{TMP_DIR}", exist_ok=True)
    with fs.open(tmp, "wb") as fh:
        pq.write_table(table, fh, compression=compression, row_group_size=max(len(rows), 1))
    fs.mv(tmp, final)
    return final


@dataclass
class DoneIndex:
    """What the output already holds, per source URI.

    Attributes:
        complete: URIs whose every page is present (most of an archive), as a compact
            digest set: 16 bytes per URI.
        pages: URI -> page indices present (ok or error rows), for the other documents.
        page_counts: URI -> the document's page count as recorded, for those in ``pages``.
        failed_files: URIs with a file-level error row (null page_index).
        rows: rows read.
        retry: URI -> pages (None: the file-level row) of its error rows of a type to retry
            (``output.retry_errors``). They count as not done: the planner plans them again.
        retry_parts: part file -> how many such rows it holds.
        part_rows: part file name (no folder) -> its rows, as read; a compaction at the run's
            end takes the counts from here instead of reading each footer again.
    """

    pages: dict[str, set[int]] = field(default_factory=dict)
    page_counts: dict[str, int] = field(default_factory=dict)
    failed_files: set[str] = field(default_factory=set)
    rows: int = 0
    complete: UriSet = field(default_factory=UriSet)
    retry: dict[str, set[int | None]] = field(default_factory=dict)
    retry_parts: dict[str, int] = field(default_factory=dict)
    part_rows: dict[str, int] = field(default_factory=dict)

    def holds(self, uri: str, in_complete: bool | None = None) -> bool:
        """True when the output has any row of this source. ``in_complete``: the answer of
        ``uri in self.complete`` when the caller has it already (bulk lookups)."""
        if uri in self.pages or uri in self.failed_files:
            return True
        return uri in self.complete if in_complete is None else in_complete

    def is_complete(self, uri: str, in_complete: bool | None = None) -> bool:
        """True when every page of the document (or its file-level error) is present."""
        return uri in self.failed_files or self.missing_pages(uri, in_complete) == []

    def missing_pages(self, uri: str, in_complete: bool | None = None) -> list[int] | None:
        """Pages still to do for a partly written document ([] when complete); None when
        nothing is known.

        Page-by-page rows take precedence over ``complete``: a source replaced in place by
        a longer document has a single-page row (the old file) and rows of the new page
        count, and every page of the new document missing from those rows is still to do,
        page 0 included (the old file's row says nothing of the new page 0).
        """
        done = self.pages.get(uri)
        count = self.page_counts.get(uri)
        if done is None or count is None:
            complete = uri in self.complete if in_complete is None else in_complete
            return [] if complete else None
        return [i for i in range(count) if i not in done]


def check_output_location(output: str, storage_options: Mapping[str, Any]) -> None:
    """Refuse an output that names a file (a local file, an object at that very key): the
    output is a folder or prefix. Raises ValueError."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(output, **dict(storage_options))
    if fs.isfile(root):
        raise ValueError(f"the output {output} is a file: give a folder or prefix (it may not exist yet)")


@dataclass
class JobRows:
    """What one run wrote, read back from the output: its part files and rows by status."""

    files: int = 0
    rows: int = 0
    pages_ok: int = 0
    error_rows: int = 0
    errors_by_type: dict[str, int] = field(default_factory=dict)


def count_job_rows(
    output: str,
    storage_options: Mapping[str, Any],
    job_id: str,
    skip_names: Container[str] = (),
    timeout_s: float | None = None,
) -> JobRows:
    """The rows of ``job_id`` in the part files whose names are not in ``skip_names`` (those
    already counted, or known to hold none), counted from their ``job_id``, ``status`` and
    ``error_type`` columns, eight files at a time. For a run stopped midway: its driver hears of
    part files late, so its own counts fall short of what the output holds.

    Raises:
        TimeoutError: the files could not all be read within ``timeout_s``.
    """
    import concurrent.futures

    import fsspec
    import pyarrow.compute as pc

    fs, _ = fsspec.core.url_to_fs(output, **dict(storage_options))

    def rows_of_job(path: str) -> pa.Table:
        with fs.open(path, "rb") as fh:
            table = pq.read_table(fh, columns=["job_id", "status", "error_type"])
        return table.filter(pc.equal(table["job_id"], job_id))

    paths = [p for p in list_parts(output, storage_options) if p.rsplit("/", 1)[-1] not in skip_names]
    found = JobRows()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)
    try:
        for ours in pool.map(rows_of_job, paths, timeout=timeout_s):
            if not ours.num_rows:
                continue
            found.files += 1
            found.rows += ours.num_rows
            found.pages_ok += pc.sum(pc.equal(ours["status"], "ok")).as_py() or 0
            failed = ours.filter(pc.equal(ours["status"], "error"))
            found.error_rows += failed.num_rows
            for kind in failed["error_type"].to_pylist():
                found.errors_by_type[kind or "unknown"] = found.errors_by_type.get(kind or "unknown", 0) + 1
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return found


def list_parts(output: str, storage_options: Mapping[str, Any]) -> list[str]:
    """Paths of the finished part files under the output (none if it does not exist)."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(output, **dict(storage_options))
    if not fs.exists(root):
        return []
    return sorted(p for p in fs.ls(root, detail=False) if p.rsplit("/", 1)[-1].startswith(PART_PREFIX))


def scan_done(output: str, storage_options: Mapping[str, Any], retry_errors: Sequence[str] = ()) -> DoneIndex:
    """Read the key columns of every finished part file into a :class:`DoneIndex`.

    Part by part: single-page documents (page 0 of 1: most of an archive) go straight into
    ``complete`` with vectorised filters; multi-page ones are tracked page by page and
    promoted to ``complete`` at the end once every page is in. Error rows whose
    ``error_type`` is in ``retry_errors`` go to ``retry`` instead, as not done.
    """
    import fsspec
    import pyarrow.compute as pc

    fs, _ = fsspec.core.url_to_fs(output, **dict(storage_options))
    index = DoneIndex()
    columns = ["source_uri", "page_index", "page_count"]
    for path in list_parts(output, storage_options):
        with fs.open(path, "rb") as fh:
            table = pq.read_table(fh, columns=[*columns, "error_type"] if retry_errors else columns)
        index.rows += table.num_rows
        index.part_rows[path.rsplit("/", 1)[-1]] = table.num_rows
        if retry_errors:
            to_retry = pc.fill_null(pc.is_in(table["error_type"], pa.array(list(retry_errors), pa.string())), False)
            if pc.any(to_retry).as_py():
                retried = table.filter(to_retry)
                for uri, page in zip(*(retried.column(c).to_pylist() for c in columns[:2]), strict=True):
                    index.retry.setdefault(uri, set()).add(page)
                index.retry_parts[path] = retried.num_rows
                table = table.filter(pc.invert(to_retry))
            table = table.select(columns)
        file_level = pc.is_null(table["page_index"])
        single = pc.fill_null(pc.and_(pc.equal(table["page_count"], 1), pc.equal(table["page_index"], 0)), False)
        index.failed_files.update(table["source_uri"].filter(file_level).to_pylist())
        index.complete.add(table["source_uri"].filter(single).to_pylist())
        rest = table.filter(pc.invert(pc.or_(single, file_level)))
        for uri, page, count in zip(*(rest.column(c).to_pylist() for c in columns), strict=True):
            index.pages.setdefault(uri, set()).add(int(page))
            if count is not None:
                index.page_counts[uri] = int(count)
    promoted = [u for u, count in index.page_counts.items() if len(index.pages[u]) >= count]
    index.complete.add(promoted)
    for uri in promoted:
        del index.pages[uri], index.page_counts[uri]
    return index


def drop_retried_rows(
    output: str, storage_options: Mapping[str, Any], index: DoneIndex, planned: set[str], compression: str = "zstd"
) -> int:
    """Remove from their part files the error rows that ``index.retry`` lists for the sources
    in ``planned`` (planned again by this run, which writes their rows anew); returns how many
    rows went. Each file is rewritten under its own name (written under ``_tmp/``, moved over
    the old one: a reader sees the old file or the new, never a mix) or removed when no row is
    left. A run killed after this and before the new rows are written leaves those sources
    without rows, so the next run plans them again: nothing is lost, nothing doubled."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(output, **dict(storage_options))
    dropped = 0
    for path in index.retry_parts:
        with fs.open(path, "rb") as fh:
            table = pq.read_table(fh, schema=PAGE_SCHEMA)
        uris, pages, errors = (table.column(c).to_pylist() for c in ("source_uri", "page_index", "error_type"))
        keep = [
            not (error is not None and uri in planned and page in index.retry.get(uri, ()))
            for uri, page, error in zip(uris, pages, errors, strict=True)
        ]
        if all(keep):
            continue
        kept = table.filter(pa.array(keep))
        dropped += table.num_rows - kept.num_rows
        if kept.num_rows == 0:
            fs.rm(path)
            continue
        tmp = f"{root.rstrip('/')}/{TMP_DIR}/{path.rsplit('/', 1)[-1]}.{uuid.uuid4().hex}"
        fs.makedirs(f"{root.rstrip('/')}/{TMP_DIR}", exist_ok=True)
        with fs.open(tmp, "wb") as fh:
            pq.write_table(kept, fh, compression=compression, row_group_size=max(kept.num_rows, 1))
        fs.mv(tmp, path)
    return dropped


def remove_parts(output: str, storage_options: Mapping[str, Any]) -> int:
    """Delete the part files (and leftovers under ``_tmp/``); returns how many parts."""
    import fsspec

    fs, _ = fsspec.core.url_to_fs(output, **dict(storage_options))
    parts = list_parts(output, storage_options)
    for path in parts:
        fs.rm(path)
    clean_tmp(output, storage_options)
    return len(parts)


def clean_tmp(output: str, storage_options: Mapping[str, Any]) -> None:
    """Remove temporary files left by an interrupted run."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(output, **dict(storage_options))
    tmp = f"{root.rstrip('/')}/{TMP_DIR}"
    if fs.exists(tmp):
        fs.rm(tmp, recursive=True)
