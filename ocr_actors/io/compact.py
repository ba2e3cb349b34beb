"""Compaction: merge an output's small part files into fewer, fuller ones.

Each run writes at least one part file, so a scheduled incremental backfill (a few new scans
a day) leaves many small files, and readers (DuckDB, Spark, Polars) pay per file opened. A
compaction merges the part files holding fewer than half of ``rows_per_file`` rows into files
of at most ``rows_per_file`` rows, rows sorted by ``(source_uri, page_index)``. It runs under
the output's lease (the job at its end with ``output.compact``; ``ocr-batch compact`` on its
own), so no run plans or writes meanwhile.

**Crash safety.** For each group of files: the merged file is written under ``_tmp/``; a
journal ``_jobs/_compact/<merged name>.json`` names the merged file and the files it
replaces; the merged file is moved into place; the replaced files are deleted; the journal is
deleted. A compaction killed after the move and before the deletes leaves those rows twice
until the next job or compaction on the output, which first finishes every journal it finds
(:func:`finish_compactions`): if the merged file is in place the replaced files still there are
deleted, else nothing had moved and the journal just goes (so does a journal cut off while
being written: the merged file moves only after it). No row is ever lost: the replaced files
go only once the merged file is in place.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ocr_actors.io.parquet import JOBS_DIR, PAGE_SCHEMA, TMP_DIR, list_parts, part_name

COMPACT_DIR = "_compact"


@dataclass(frozen=True)
class PartFile:
    """One committed part file: its path (as the filesystem names it) and row count."""

    path: str
    rows: int


@dataclass
class CompactionSummary:
    """What a compaction did: part files before and after, files merged, rows moved, merged
    files written, journals of an interrupted compaction finished first, and part files whose
    footer it read for their row count (the others' counts were known)."""

    files_before: int = 0
    files_after: int = 0
    files_merged: int = 0
    rows_moved: int = 0
    files_written: int = 0
    journals_finished: int = 0
    footers_read: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def plan_groups(parts: Sequence[PartFile], rows_per_file: int) -> list[list[PartFile]]:
    """Groups of small part files to merge, in path order: a file is small when it holds
    fewer than half of ``rows_per_file`` rows; consecutive small files are packed into groups
    of at most ``rows_per_file`` rows, and only groups of two files or more are kept."""
    small = [p for p in parts if p.rows < max(rows_per_file // 2, 1)]
    groups: list[list[PartFile]] = []
    current: list[PartFile] = []
    for part in sorted(small, key=lambda p: p.path):
        if current and sum(p.rows for p in current) + part.rows > rows_per_file:
            groups.append(current)
            current = []
        current.append(part)
    groups.append(current)
    return [g for g in groups if len(g) >= 2]


def journal_folder(root: str) -> str:
    """The compaction journals' folder under an output's filesystem path ``root``."""
    return f"{root.rstrip('/')}/{JOBS_DIR}/{COMPACT_DIR}"


def list_journals(fs: Any, root: str) -> list[str]:
    """Paths of the compaction journals under the output's filesystem path ``root`` (fresh
    listing): compactions an interrupted run left."""
    folder = journal_folder(root)
    fs.invalidate_cache(folder)
    if not fs.exists(folder):
        return []
    return sorted(str(p) for p in fs.ls(folder, detail=False) if str(p).endswith(".json"))


def finish_compactions(output: str, storage_options: Mapping[str, Any]) -> int:
    """Complete the compactions an interrupted run left (see the module doc); returns how
    many journals it found. Call it holding the output's lease, before reading the output."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(output, **dict(storage_options))
    journals = list_journals(fs, root)
    for journal in journals:
        with fs.open(journal, "rb") as fh:
            text = fh.read()
        try:
            entry = json.loads(text)
        except ValueError:  # cut off while being written: the merged file had not moved yet
            fs.rm(journal)
            continue
        if fs.exists(f"{root.rstrip('/')}/{entry['merged']}"):
            for name in entry["replaced"]:
                path = f"{root.rstrip('/')}/{name}"
                if fs.exists(path):
                    fs.rm(path)
        fs.rm(journal)
    return len(journals)


def read_part_sizes(
    output: str, storage_options: Mapping[str, Any], known_rows: Mapping[str, int] | None = None
) -> list[PartFile]:
    """Every committed part file with its row count: a file whose name (no folder) is in
    ``known_rows`` takes its count from there, any other from its Parquet footer. Only the
    listing says which files exist."""
    import fsspec

    fs, _ = fsspec.core.url_to_fs(output, **dict(storage_options))
    known = known_rows or {}
    sizes = []
    for path in list_parts(output, storage_options):
        rows = known.get(path.rsplit("/", 1)[-1])
        if rows is None:
            with fs.open(path, "rb") as fh:
                rows = pq.ParquetFile(fh).metadata.num_rows
        sizes.append(PartFile(path, rows))
    return sizes


def merge_group(
    output: str,
    storage_options: Mapping[str, Any],
    group: Sequence[PartFile],
    compression: str = "zstd",
    before_delete: Callable[[], None] = lambda: None,
) -> str:
    """Merge ``group``'s files into one part file (rows sorted by ``(source_uri,
    page_index)``, one row group, named by its keys as the job names its files) and delete
    them, journalled as the module doc says; ``before_delete`` runs between the move and the
    deletes (the job's lease check). Returns the merged file's path."""
    import fsspec
    import pyarrow.compute as pc

    fs, root = fsspec.core.url_to_fs(output, **dict(storage_options))
    base = root.rstrip("/")
    tables = []
    for part in group:
        with fs.open(part.path, "rb") as fh:
            tables.append(pq.read_table(fh, schema=PAGE_SCHEMA))
    table = pa.concat_tables(tables)
    table = table.take(pc.sort_indices(table, [("source_uri", "ascending"), ("page_index", "ascending")]))
    keys = [
        {"source_uri": uri, "page_index": page}
        for uri, page in zip(table["source_uri"].to_pylist(), table["page_index"].to_pylist(), strict=True)
    ]
    name = part_name(keys)
    final = f"{base}/{name}"
    tmp = f"{base}/{TMP_DIR}/{name}.{uuid.uuid4().hex}"
    fs.makedirs(f"{base}/{TMP_DIR}", exist_ok=True)
    with fs.open(tmp, "wb") as fh:
        pq.write_table(table, fh, compression=compression, row_group_size=max(table.num_rows, 1))
    replaced = [p.path.rsplit("/", 1)[-1] for p in group if p.path != final]
    journal = f"{journal_folder(root)}/{name}.json"
    fs.makedirs(journal_folder(root), exist_ok=True)
    with fs.open(journal, "wb") as fh:
        fh.write(json.dumps({"merged": name, "replaced": replaced}).encode())
    fs.mv(tmp, final)
    before_delete()
    for replaced_name in replaced:
        fs.rm(f"{base}/{replaced_name}")
    fs.rm(journal)
    return final


def compact(
    output: str,
    storage_options: Mapping[str, Any],
    rows_per_file: int,
    compression: str = "zstd",
    before_delete: Callable[[], None] = lambda: None,
    known_rows: Mapping[str, int] | None = None,
) -> CompactionSummary:
    """Finish interrupted compactions, then merge the small part files (:func:`plan_groups`).
    Hold the output's lease; ``before_delete`` runs before each group's files go;
    ``known_rows``: part file name -> rows, for files whose count the caller knows (the job:
    those it read at its start and those it wrote), so only the others' footers are read."""
    summary = CompactionSummary(journals_finished=finish_compactions(output, storage_options))
    parts = read_part_sizes(output, storage_options, known_rows)
    summary.footers_read = sum(p.path.rsplit("/", 1)[-1] not in (known_rows or {}) for p in parts)
    summary.files_before = len(parts)
    for group in plan_groups(parts, rows_per_file):
        merge_group(output, storage_options, group, compression, before_delete)
        summary.files_merged += len(group)
        summary.rows_moved += sum(p.rows for p in group)
        summary.files_written += 1
    summary.files_after = summary.files_before - summary.files_merged + summary.files_written
    return summary
