"""Listing the job's sources: a folder/prefix, a glob, or a manifest of URIs."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

from ocr_actors.io.sources import expand_inputs, storage_access

MANIFEST_SUFFIXES = (".txt", ".csv", ".parquet", ".lst")


def is_manifest(uri: str) -> bool:
    """A manifest is a ``.txt``/``.lst``, ``.csv`` or ``.parquet`` file of URIs."""
    return uri.lower().endswith(MANIFEST_SUFFIXES)


def read_manifest(uri: str, column: str, storage_options: Mapping[str, Any]) -> list[str]:
    """URIs listed in a manifest, in file order, blank lines and ``#`` comments skipped.

    Relative entries are resolved against the manifest's folder.
    """
    import fsspec
    import pyarrow.parquet as pq

    fs, path = fsspec.core.url_to_fs(uri, **dict(storage_options))
    lower = uri.lower()
    if lower.endswith(".parquet"):
        with fs.open(path, "rb") as fh:
            table = pq.read_table(fh, columns=[column])
        entries = [str(v) for v in table.column(column).to_pylist() if v]
    else:
        with fs.open(path, "rb") as fh:
            text = fh.read().decode("utf-8-sig")
        if lower.endswith(".csv"):
            reader = csv.DictReader(io.StringIO(text))
            if reader.fieldnames is None or column not in reader.fieldnames:
                raise ValueError(f"manifest {uri} has no column {column!r} (columns: {reader.fieldnames})")
            entries = [row[column].strip() for row in reader if row[column] and row[column].strip()]
        else:
            entries = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    base = uri.rsplit("/", 1)[0]
    return [e if "://" in e or e.startswith("/") else f"{base}/{e}" for e in entries]


def list_sources(uri: str, manifest_column: str, storage_options: Mapping[str, Any]) -> list[str]:
    """Every document URI of the job, deduplicated, in a stable order."""
    if not uri:
        raise ValueError("no input given: set source.uri (or --input)")
    with storage_access(f"reading the manifest {uri}"):
        return _list_sources(uri, manifest_column, storage_options)


def _list_sources(uri: str, manifest_column: str, storage_options: Mapping[str, Any]) -> list[str]:
    uris = (
        read_manifest(uri, manifest_column, storage_options)
        if is_manifest(uri)
        else expand_inputs(uri, storage_options)
    )
    return list(dict.fromkeys(uris))
