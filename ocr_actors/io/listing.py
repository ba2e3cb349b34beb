"""Listing the job's sources: a folder/prefix, a glob, or a manifest of URIs.

Listing streams: :func:`iter_sources` yields URIs in chunks, so the driver never builds
the whole list (a manifest of tens of millions of URIs is read a chunk at a time).
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, ClassVar

from ocr_actors.io.parquet import PART_PREFIX
from ocr_actors.io.sources import expand_inputs, refuse_http_status, storage_access

MANIFEST_SUFFIXES = (".txt", ".csv", ".parquet", ".lst")
CHUNK_SIZE = 50_000


def manifest_name(uri: str) -> str:
    """The part of a URI whose suffix says what a manifest is: an ``http(s)`` URL without its
    query (a signed URL: ``…/list.txt?X-Amz-Signature=…``), anything else as it is."""
    return uri.split("?", 1)[0] if uri.lower().startswith(("http://", "https://")) else uri


def is_manifest(uri: str) -> bool:
    """A manifest is a ``.txt``/``.lst``, ``.csv`` or ``.parquet`` file of URIs."""
    return manifest_name(uri).lower().endswith(MANIFEST_SUFFIXES)


def local_key(path: str) -> str:
    """A local path as sources are keyed: absolute, ``~`` expanded, with no ``.`` parts or
    doubled slashes, and symbolic links kept as named (lexically, as :func:`os.path.abspath`
    does); a path with ``..`` parts is resolved (:func:`os.path.realpath`), since ``link/..``
    is the link target's parent, the folder the file is read from."""
    expanded = os.path.expanduser(path)
    if ".." in expanded.split("/"):
        return os.path.realpath(expanded)
    absolute = os.path.abspath(expanded)
    return "/" + absolute.lstrip("/") if absolute.startswith("//") else absolute  # POSIX keeps a leading "//"


def listing_form(uri: str) -> str:
    """A folder or prefix in the form folder listings give the paths under it: a local path
    (or ``file://`` URI) normal and absolute, a store's URI as given; no trailing slash."""
    if "://" in uri and not uri.startswith("file://"):
        return uri.rstrip("/")
    return local_key(uri.removeprefix("file://")).rstrip("/")


def iter_manifest(uri: str, column: str, storage_options: Mapping[str, Any]) -> Iterator[str]:
    """URIs listed in a manifest, in file order, streamed; blank lines and ``#`` comments
    skipped. Relative entries are resolved against the manifest's folder (an absolute path for a
    local manifest, so workers with another working directory find them).

    Raises:
        ValueError: a CSV or Parquet manifest without the column ``column``.
    """
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri, **dict(storage_options))
    # a store's folder as written (a signed URL's without its query); a local one absolute, for the workers
    base = manifest_name(uri).rsplit("/", 1)[0] if "://" in uri else os.path.dirname(os.path.abspath(path))
    try:
        opened = fs.open(path, "rb")
    except (FileNotFoundError, IsADirectoryError) as exc:  # S3 says only the key, or "bucket does not exist"
        from ocr_actors.io.decode import InputNotFoundError

        if isinstance(exc, FileNotFoundError):
            refuse_http_status(exc, uri)  # a manifest behind a signed URL that expired: access denied
        what = "a folder, not a manifest file" if isinstance(exc, IsADirectoryError) else "not found"
        raise InputNotFoundError(f"input not found: the manifest {uri} ({what}: {exc})") from exc
    with opened as fh:
        try:
            for entry in _manifest_entries(fh, uri, column):
                if "://" in entry:
                    yield entry
                elif "://" in base:  # relative to a manifest in object storage: a key as written
                    yield entry if entry.startswith("/") else f"{base}/{entry}"
                else:
                    yield local_key(entry if entry.startswith("/") else f"{base}/{entry}")
        except UnicodeDecodeError as exc:
            raise ValueError(f"manifest {uri} is not UTF-8 text: {exc.reason} at byte {exc.start} of a block") from exc


def _manifest_entries(fh: Any, uri: str, column: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    lower = manifest_name(uri).lower()
    if lower.endswith(".parquet"):
        parquet = pq.ParquetFile(fh)
        if column not in parquet.schema_arrow.names:
            raise ValueError(f"manifest {uri} has no column {column!r} (columns: {parquet.schema_arrow.names})")
        for batch in parquet.iter_batches(batch_size=CHUNK_SIZE, columns=[column]):
            yield from (str(v) for v in batch.column(0).to_pylist() if v)
        return
    if lower.endswith(".csv"):
        reader = csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8-sig", newline=""))
        if reader.fieldnames is None or column not in reader.fieldnames:
            raise ValueError(f"manifest {uri} has no column {column!r} (columns: {reader.fieldnames})")
        for row in reader:
            value = (row[column] or "").strip()
            if value:
                yield value
        return
    for line in _text_lines(fh):
        entry = line.strip()
        if entry and not entry.startswith("#"):
            yield entry


def _text_lines(fh: Any, block_size: int = 8 << 20) -> Iterator[str]:
    """Lines of a UTF-8 file (BOM dropped), read ``block_size`` bytes at a time."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    tail = ""
    while True:
        data = fh.read(block_size)
        text = tail + decoder.decode(data, final=not data)
        lines = text.splitlines(keepends=True)
        tail = ""
        if data and lines and lines[-1].splitlines()[0] == lines[-1]:  # no line break yet
            tail = lines.pop()
        for line in lines:
            yield line.splitlines()[0] if line else line
        if not data:
            return


def read_manifest(uri: str, column: str, storage_options: Mapping[str, Any]) -> list[str]:
    """Every URI of a manifest, as a list (see :func:`iter_manifest`)."""
    return list(iter_manifest(uri, column, storage_options))


@dataclass
class ListingReport:
    """What a folder listing left out: counts per reason (at most ``MAX_REASONS`` kinds; the
    rest count as "other") and the first ``MAX_EXAMPLES`` paths."""

    skipped: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    own_output: str = ""
    """The job's output folder, in the form listings give paths (:func:`listing_form`): its
    own files (part files at its top, ``_jobs/``, ``_tmp/`` and the other ``_`` entries) are
    passed over without a word when the output lies inside the input."""

    MAX_REASONS: ClassVar[int] = 50
    MAX_EXAMPLES: ClassVar[int] = 5

    def is_own_output(self, path: str) -> bool:
        """Whether ``path`` (as a listing gives it) is one of the job output's own files."""
        if not self.own_output:
            return False
        key = path if "://" in path else local_key(path)
        if not key.startswith(self.own_output + "/"):
            return False
        entry = key[len(self.own_output) + 1 :].split("/", 1)
        return entry[0].startswith("_") or (len(entry) == 1 and entry[0].startswith(PART_PREFIX))

    def skip(self, path: str, reason: str) -> None:
        if self.is_own_output(path):
            return
        if reason not in self.skipped and len(self.skipped) >= self.MAX_REASONS:
            reason = "other"
        self.skipped[reason] += 1
        if len(self.examples) < self.MAX_EXAMPLES:
            self.examples.append(f"{path} ({reason})")

    @property
    def total(self) -> int:
        return sum(self.skipped.values())


def iter_sources(
    uri: str,
    manifest_column: str,
    storage_options: Mapping[str, Any],
    chunk_size: int = CHUNK_SIZE,
    report: ListingReport | None = None,
) -> Iterator[list[str]]:
    """The job's document URIs in listing order, in lists of at most ``chunk_size``.

    Duplicates are kept: the planner drops them across chunks. ``report`` counts the entries
    of listed folders left out (not an image or PDF, links that lead nowhere or to folders).

    Raises:
        ValueError: no ``uri``.
        SourceAccessError: storage refused the listing or the manifest.
    """
    if not uri:
        raise ValueError("no input given: set source.uri (or --input)")
    return _iter_sources(uri, manifest_column, storage_options, chunk_size, report)


def _iter_sources(
    uri: str, manifest_column: str, storage_options: Mapping[str, Any], chunk_size: int, report: ListingReport | None
) -> Iterator[list[str]]:
    if is_manifest(uri):
        with storage_access(f"reading the manifest {uri}"):
            yield from _chunked(iter_manifest(uri, manifest_column, storage_options), chunk_size)
        return
    on_skip = None if report is None else report.skip
    # The job keys rows by source_uri: a local path is made absolute and normal (no "." or
    # ".." parts), so resume depends neither on the working folder nor on how the input was
    # spelt ("scans/../scans/" and "scans/" are the same files).
    uris = (u if "://" in u else local_key(u) for u in expand_inputs(uri, storage_options, on_skip))
    if report is not None and report.own_output:  # a glob (in/**) names the output's own files too
        uris = (u for u in uris if not report.is_own_output(u))
    yield from _chunked(uris, chunk_size)


def list_sources(uri: str, manifest_column: str, storage_options: Mapping[str, Any]) -> list[str]:
    """Every document URI of the job, deduplicated, in listing order (small jobs and tools;
    the job itself streams :func:`iter_sources`)."""
    return list(dict.fromkeys(u for chunk in iter_sources(uri, manifest_column, storage_options) for u in chunk))


def _chunked(uris: Iterator[str], size: int) -> Iterator[list[str]]:
    while chunk := list(islice(uris, size)):
        yield chunk
