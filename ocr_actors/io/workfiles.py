"""The plan on storage: work items spooled to Parquet files next to the job's summary, so the
driver holds none of them; the loading actors or load tasks read them back in ranges where they run.

``<output>/_jobs/<job_id>/work/work-00000.plan``, ... (Parquet files of :data:`WORK_FILE_SCHEMA`
rows, row groups of :data:`ROW_GROUP` items; not named ``.parquet``, so a reader globbing the
output for ``**/*.parquet`` never takes them for part files). The folder is removed when the
job ends; a driver that is killed leaves it (a few bytes per source, safe to delete).

A source URI that carries credentials (a ``user:password@`` authority, a signed URL's query:
whatever :func:`~ocr_actors.redaction.redact_uri` removes) is stored sealed (:class:`UriSeal`):
the file holds its redacted form and the URI encrypted with a key of the run's own that never
reaches storage, so a work file left behind gives nobody the secret.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ocr_actors.io.parquet import JOBS_DIR
from ocr_actors.redaction import redact_uri

WORK_SCHEMA = pa.schema(
    [pa.field("source_uri", pa.string(), nullable=False), pa.field("todo_pages", pa.string(), nullable=False)]
)
"""One row per source to load; ``todo_pages`` is a JSON list of page indices, "" for all."""

WORK_FILE_SCHEMA = WORK_SCHEMA.append(pa.field("sealed_uri", pa.binary(), nullable=True))
"""A work file's rows: :data:`WORK_SCHEMA` with ``source_uri`` redacted where it holds
credentials, and ``sealed_uri`` the whole URI sealed by :class:`UriSeal` there (else null)."""


class SealError(ValueError):
    """A work file's sealed URIs cannot be opened with the key at hand."""


class UriSeal:
    """Seals source URIs that hold credentials before work files reach storage.

    AES-256-GCM (the ``cryptography`` package) with a random key made per run, held in memory
    by the driver and handed to the loading tasks or actors through Ray with their other
    arguments (as storage options are), and a random 96-bit nonce per URI. Rows whose URI has
    nothing to redact are stored as they are.
    """

    def __init__(self, key: bytes | None = None) -> None:
        self.key = os.urandom(32) if key is None else key

    def seal(self, items: pa.Table) -> pa.Table:
        """:data:`WORK_SCHEMA` rows -> :data:`WORK_FILE_SCHEMA` rows."""
        uris = items.column("source_uri").to_pylist()
        shown = [redact_uri(uri) for uri in uris]
        sealed: list[bytes | None] = [None] * len(uris)
        secret = [i for i, (uri, redacted) in enumerate(zip(uris, shown, strict=True)) if uri != redacted]
        if secret:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            aead = AESGCM(self.key)
            for i in secret:
                nonce = os.urandom(12)
                sealed[i] = nonce + aead.encrypt(nonce, uris[i].encode(), None)
        columns = {"source_uri": shown, "todo_pages": items.column("todo_pages")}
        return pa.table({**columns, "sealed_uri": pa.array(sealed, pa.binary())}, schema=WORK_FILE_SCHEMA)


def unseal_rows(rows: pa.Table, seal: UriSeal | None) -> pa.Table:
    """A work file's rows as :data:`WORK_SCHEMA`, sealed URIs opened with ``seal``'s key.
    Raises :class:`SealError` when some are sealed and ``seal`` is None or holds another key."""
    if "sealed_uri" not in rows.column_names:
        return rows
    sealed = rows.column("sealed_uri")
    plain = rows.drop_columns(["sealed_uri"])
    if sealed.null_count == len(sealed):
        return plain
    if seal is None:
        raise SealError("the work file holds sealed source URIs but the run's key was not given")
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead = AESGCM(seal.key)
    uris = plain.column("source_uri").to_pylist()
    for i, blob in enumerate(sealed.to_pylist()):
        if blob is not None:
            try:
                uris[i] = aead.decrypt(blob[:12], blob[12:], None).decode()
            except InvalidTag as exc:
                raise SealError("the work file's sealed source URIs were sealed with another run's key") from exc
    return plain.set_column(0, "source_uri", pa.array(uris, pa.string()))


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

    def __init__(
        self, output: str, job_id: str, storage_options: Mapping[str, Any], seal: UriSeal | None = None
    ) -> None:
        import fsspec

        self.seal = seal or UriSeal()
        """Seals the URIs that hold credentials; the loaders need it to read the files back."""
        self.folder = work_folder(output, job_id)
        self._fs, self._root = fsspec.core.url_to_fs(self.folder, **dict(storage_options))
        self.files: list[WorkFile] = []

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    def append(self, items: pa.Table) -> None:
        """Write one table of :data:`WORK_SCHEMA` rows as the next file (nothing if empty),
        URIs with credentials sealed."""
        if not items.num_rows:
            return
        if not self.files:  # a run that reuses a job id starts from an empty folder
            self.remove()
            self._fs.makedirs(self._root, exist_ok=True)
        name = f"work-{len(self.files):05d}{WORK_SUFFIX}"
        with self._fs.open(f"{self._root}/{name}", "wb") as fh:
            pq.write_table(self.seal.seal(items.cast(WORK_SCHEMA)), fh, row_group_size=ROW_GROUP, compression="zstd")
        self.files.append(WorkFile(self._fs.unstrip_protocol(f"{self._root}/{name}"), items.num_rows))

    def remove(self) -> None:
        """Delete the spooled files and their folder (idempotent)."""
        if self._fs.exists(self._root):
            self._fs.rm(self._root, recursive=True)
        self._fs.invalidate_cache(self._root)
        if self._fs.exists(self._root):  # stores with real folders (SeaweedFS) keep an empty one
            self._fs.rm(self._root)


def work_ranges(
    files: list[WorkFile], max_tasks: int = MAX_TASKS, max_items: int = ROW_GROUP, min_items: int = 1
) -> list[WorkRange]:
    """Split the work into ranges of equal size ``ceil(total / max_tasks)``, at least
    ``min_items`` and at most ``max_items``, never across files: a small job gets ``min_items``
    items per range (with 1, every source its own task), a large one ranges of ``max_items``."""
    total = sum(f.rows for f in files)
    size = min(max(min_items, math.ceil(total / max_tasks)), max_items)
    return [WorkRange(f.path, a, min(a + size, f.rows)) for f in files for a in range(0, f.rows, size)]


def read_work_range(work: WorkRange, storage_options: Mapping[str, Any], seal: UriSeal | None = None) -> pa.Table:
    """The :data:`WORK_SCHEMA` rows of one range, reading only the row groups it overlaps;
    sealed URIs are opened with ``seal`` (the spool's, :class:`SealError` without it)."""
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
    return unseal_rows(table.slice(work.start - begin, work.stop - work.start), seal)
