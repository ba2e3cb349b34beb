"""The plan on storage: work items spooled to Parquet files next to the job's summary, so the
driver holds none of them; the loading actors or load tasks read them back in ranges where they run.

``<output>/_jobs/<job_id>/work/work-00000.plan``, ... (Parquet files of :data:`WORK_SCHEMA`
rows, row groups of :data:`ROW_GROUP` items; not named ``.parquet``, so a reader globbing the
output for ``**/*.parquet`` never takes them for part files). The folder is removed when the
job ends; a driver that is killed leaves it (a few bytes per source, safe to delete).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ocr_actors.io.parquet import JOBS_DIR

WORK_SCHEMA = pa.schema(
    [pa.field("source_uri", pa.string(), nullable=False), pa.field("todo_pages", pa.string(), nullable=False)]
)
"""One row per source to load; ``todo_pages`` is a JSON list of page indices, "" for all."""

ROW_GROUP = 1000
MAX_TASKS = 1000
"""Work is split into at most about this many ranges while a range holds <= ROW_GROUP items."""


@dataclass(frozen=True, slots=True)
class WorkFile:
    """One spooled file of work items (``path``: a full URL, valid on every node)."""

    path: str
    rows: int


@dataclass(frozen=True, slots=True)
class WorkRange:
    """Rows ``[start, stop)`` of one work file: what one load task or loading actor call reads."""

    path: str
    start: int
    stop: int


WORK_SUFFIX = ".plan"
"""Work files are Parquet, named apart from the output's part files."""


def work_folder(output: str, job_id: str) -> str:
    """Where a job's work files go (a URI or path under the output)."""
    return f"{output.rstrip('/')}/{JOBS_DIR}/{job_id}/work"


class WorkSpool:
    """Appends work-item tables to numbered Parquet files under :func:`work_folder`."""

    def __init__(self, output: str, job_id: str, storage_options: Mapping[str, Any]) -> None:
        import fsspec

        self.folder = work_folder(output, job_id)
        self._fs, self._root = fsspec.core.url_to_fs(self.folder, **dict(storage_options))
        self.files: list[WorkFile] = []

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    def append(self, items: pa.Table) -> None:
        """Write one table of :data:`WORK_SCHEMA` rows as the next file (nothing if empty)."""
        if not items.num_rows:
            return
        if not self.files:  # a run that reuses a job id starts from an empty folder
            self.remove()
            self._fs.makedirs(self._root, exist_ok=True)
        name = f"work-{len(self.files):05d}{WORK_SUFFIX}"
        with self._fs.open(f"{self._root}/{name}", "wb") as fh:
            pq.write_table(items.cast(WORK_SCHEMA), fh, row_group_size=ROW_GROUP, compression="zstd")
        self.files.append(WorkFile(self._fs.unstrip_protocol(f"{self._root}/{name}"), items.num_rows))

    def remove(self) -> None:
        """Delete the spooled files and their folder (idempotent)."""
        if self._fs.exists(self._root):
            self._fs.rm(self._root, recursive=True)
        self._fs.invalidate_cache(self._root)
        if self._fs.exists(self._root):  # stores with real folders (SeaweedFS) keep an empty one
            self._fs.rm(self._root)


def work_ranges(files: list[WorkFile], max_tasks: int = MAX_TASKS, max_items: int = ROW_GROUP) -> list[WorkRange]:
    """Split the work into ranges of equal size ``ceil(total / max_tasks)``, at least 1 and
    at most ``max_items``, never across files: a small job gets one item per range (every
    source its own task), a large one ranges of ``max_items`` items."""
    total = sum(f.rows for f in files)
    size = min(max(1, math.ceil(total / max_tasks)), max_items)
    return [WorkRange(f.path, a, min(a + size, f.rows)) for f in files for a in range(0, f.rows, size)]


def read_work_range(work: WorkRange, storage_options: Mapping[str, Any]) -> pa.Table:
    """The rows of one range, reading only the row groups it overlaps."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(work.path, **dict(storage_options))
    with fs.open(path, "rb") as fh:
        parquet = pq.ParquetFile(fh)
        groups: list[int] = []
        offset = begin = 0
        for i in range(parquet.metadata.num_row_groups):
            rows = parquet.metadata.row_group(i).num_rows
            if offset < work.stop and offset + rows > work.start:
                if not groups:
                    begin = offset
                groups.append(i)
            offset += rows
        table = parquet.read_row_groups(groups)
    return table.slice(work.start - begin, work.stop - work.start)
