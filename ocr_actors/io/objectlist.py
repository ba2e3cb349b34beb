"""Streamed listing of every file under a folder or prefix, in sorted path order.

fsspec's ``find`` builds the whole listing before it returns, and s3fs and gcsfs also keep
every object's details in their listing cache: about 1 KB of driver memory per object, so a
prefix of ten million scans costs gigabytes before the first page is planned. Here S3 and GCS
listings are paged ``page_size`` keys per request with no cache, and local folders are walked
one directory at a time. Paths are fsspec paths without the scheme (``bucket/scans/p1.png``).

Order: local folders, AWS S3 and GCS give ``sorted(fs.find(root))`` order (the stores list by
key). An S3-compatible store lists in its own stable order (SeaweedFS goes folder by folder);
the job does not depend on the order, only on every file coming once. Other fsspec backends
fall back to ``sorted(find)``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import Any

from ocr_actors.redaction import redacting_logger

log = redacting_logger(__name__)

PAGE_SIZE = 1000


def protocols(fs: Any) -> set[str]:
    """The names an fsspec filesystem answers to (``{"s3", "s3a"}``, ``{"file", "local"}``)."""
    return {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)


def is_local(fs: Any) -> bool:
    return bool(protocols(fs) & {"file", "local"})


SkipReporter = Callable[[str, str], None]
"""Called with (path, reason) for each entry a listing leaves out."""


def iter_files(fs: Any, root: str, page_size: int = PAGE_SIZE, on_skip: SkipReporter | None = None) -> Iterator[str]:
    """Every file (not folder marker) under the folder/prefix ``root``, each once, streamed.

    Args:
        fs: an fsspec filesystem; ``root`` is a path in its own form (no scheme).
        page_size: keys per listing request on object stores (S3 and GCS allow up to 1000).
        on_skip: told of each entry left out of a local walk (a link to a folder, a dangling
            or looping link).
    """
    names = protocols(fs)
    if names & {"s3", "s3a"} and hasattr(fs, "call_s3"):
        return _iter_s3(fs, root, page_size)
    if names & {"gs", "gcs"} and hasattr(fs, "call"):
        return _iter_gcs(fs, root, page_size)
    if is_local(fs):
        return _iter_local(root, on_skip)
    return iter(sorted(fs.find(root)))


def iter_glob(fs: Any, pattern: str, page_size: int = PAGE_SIZE) -> Iterator[str]:
    """Files matching a recursive glob (one with ``**``), streamed in :func:`iter_files` order.

    The listing starts at the folder above the first wildcard; each path is matched with
    fsspec's own glob semantics (:func:`fsspec.utils.glob_translate`).

    Raises:
        ValueError: the pattern has no fixed folder before its first wildcard (``/**/x``,
            ``bucket-*/**``): that would list a whole store.
    """
    from fsspec.utils import glob_translate

    wildcard = min(pattern.find(ch) for ch in "*?[" if ch in pattern)
    root = pattern[:wildcard].rsplit("/", 1)[0] if "/" in pattern[:wildcard] else ""
    if not root.strip("/"):
        raise ValueError(f"the glob {pattern!r} needs a fixed folder or bucket before its first wildcard")
    matcher = re.compile(glob_translate(pattern))
    if not fs.isdir(root):
        return iter(())
    return (path for path in iter_files(fs, root, page_size) if matcher.match(path))


def _bucket_and_prefix(root: str) -> tuple[str, str]:
    bucket, _, key = root.strip("/").partition("/")
    return bucket, f"{key.rstrip('/')}/" if key else ""


def _iter_s3(fs: Any, root: str, page_size: int) -> Iterator[str]:
    """S3 ``ListObjectsV2`` pages (AWS lists keys in UTF-8 byte order, i.e. code-point order)."""
    bucket, prefix = _bucket_and_prefix(root)
    request: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
    while True:
        page = fs.call_s3("list_objects_v2", **request)
        for entry in page.get("Contents", []):
            if not entry["Key"].endswith("/"):
                yield f"{bucket}/{entry['Key']}"
        if not page.get("IsTruncated"):
            return
        token = page.get("NextContinuationToken")
        if not token:  # a store that pages without tokens: go on after the last key
            contents = page.get("Contents") or []
            if not contents:
                raise OSError(f"the listing of s3://{bucket}/{prefix} was cut short by the store (no way to go on)")
            request.pop("ContinuationToken", None)
            request["StartAfter"] = contents[-1]["Key"]
            continue
        request["ContinuationToken"] = token


def _iter_gcs(fs: Any, root: str, page_size: int) -> Iterator[str]:
    """GCS JSON API object pages (names come in lexicographic order)."""
    bucket, prefix = _bucket_and_prefix(root)
    token = None
    while True:
        page = fs.call(
            "GET",
            "b/{}/o",
            bucket,
            json_out=True,
            prefix=prefix or None,
            maxResults=page_size,
            pageToken=token,
            fields="items(name),nextPageToken",
        )
        for entry in page.get("items", []):
            if not entry["name"].endswith("/"):
                yield f"{bucket}/{entry['name']}"
        token = page.get("nextPageToken")
        if not token:
            return


def _iter_local(root: str, on_skip: SkipReporter | None = None) -> Iterator[str]:
    """Depth-first walk, entries sorted by name with ``/`` after folder names, which gives
    full-path sorted order. Like fsspec's ``find``, links to folders are not followed (a link
    out of the tree would pull in another tree, and one into it would list files twice);
    links to files are listed, dangling links are not. A subfolder that vanishes or cannot be
    read during the walk is skipped with a warning; the root itself must be readable."""

    def walk(folder: str, top: bool) -> Iterator[str]:
        try:
            with os.scandir(folder) as scan:
                entries = [(*_entry_key(e), e.path) for e in scan]
        except OSError as exc:
            if top:
                raise
            log.warning("skipping the folder %s: %s", folder, exc.strerror or type(exc).__name__)
            return
        for key, reason, path in sorted(entries):
            if not key:
                if on_skip is not None:
                    on_skip(path, reason)
                continue
            if key.endswith("/"):
                yield from walk(path, top=False)
            else:
                yield path

    return walk(root.rstrip("/") or "/", top=True)


def _entry_key(entry: os.DirEntry[str]) -> tuple[str, str]:
    """(``name/`` for a real folder, ``name`` for a file or a link to one, "" to skip; why it
    is skipped: a link to a folder, a dangling or looping link, anything unreadable)."""
    try:
        if entry.is_dir(follow_symlinks=False):
            return entry.name + "/", ""
        if entry.is_symlink():
            try:
                if entry.is_file():
                    return entry.name, ""
                return "", "a link to a folder" if entry.is_dir() else "a dangling or looping link"
            except OSError:  # a loop: following it fails
                return "", "a dangling or looping link"
        return entry.name, ""
    except OSError as exc:
        return "", f"unreadable: {exc.strerror or type(exc).__name__}"
