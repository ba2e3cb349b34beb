"""Where inputs come from: local paths, folders, globs and fsspec URIs (``s3://``, ``gs://``).

Reading is lazy: :func:`expand_inputs` lists URIs; :func:`read_bytes` fetches one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ocr_actors.io.decode import (
    InputError,
    InputNotFoundError,
    ReadFailedError,
    TooLargeInputError,
    UnsupportedInputError,
)
from ocr_actors.redaction import redact_uri, store_uri_has_credentials

IMAGE_SUFFIXES = (
    *(".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".tif", ".tiff", ".bmp", ".dib", ".webp", ".gif"),
    *(".jp2", ".j2k", ".j2c", ".jpf", ".jpx", ".avif", ".heic", ".heif", ".hif", ".pbm", ".pgm", ".ppm", ".pnm"),
)
"""Names a folder listing takes as images (the content decides what a file is: :func:`sniff_kind`)."""
DOCUMENT_SUFFIXES = (*IMAGE_SUFFIXES, ".pdf")


class SourceAccessError(PermissionError):
    """Storage refused access (bad or missing credentials, no permission)."""


class StorageUnreachableError(SourceAccessError):
    """The store could not be reached at all (endpoint refused or timed out, DNS)."""


UNREACHABLE_ERRORS = (
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",  # botocore: a store that accepts connections and never answers
    "ConnectionClosedError",
    "ClientConnectorError",
    "ServerTimeoutError",
    "ReadTimeout",  # requests (Google's auth library)
)


def _suffix(path: str) -> str:
    """The name's suffix, lower case ("no suffix" when there is none)."""
    name = path.rsplit("/", 1)[-1]
    return "." + name.rsplit(".", 1)[-1].lower() if "." in name.strip(".") else "no suffix"


def is_remote(uri: str) -> bool:
    """True for URIs with a scheme other than ``file://``."""
    return "://" in uri and not uri.startswith("file://")


def _filesystem(uri: str, storage_options: Mapping[str, Any] | None):  # type: ignore[no-untyped-def]
    """(fsspec filesystem, path in its form) for ``uri``. ``::`` chains filesystems only after
    a protocol name (``simplecache::s3://…``); elsewhere it is part of the name (an S3 key or
    file called ``a::b.png``), which ``url_to_fs`` alone would cut there."""
    import fsspec

    head = uri.split("::", 1)[0]
    if "::" in uri and head not in fsspec.available_protocols():
        cls = fsspec.get_filesystem_class(fsspec.core.split_protocol(uri)[0] or "file")
        options = {**cls._get_kwargs_from_urls(uri), **dict(storage_options or {})}
        return cls(**options), cls._strip_protocol(uri)
    return fsspec.core.url_to_fs(uri, **dict(storage_options or {}))


def is_utf8(name: str) -> bool:
    """False for a name the OS gave with undecodable bytes (``surrogateescape``)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(name: str) -> str:
    """``name`` with undecodable bytes shown as U+FFFD, fit for a message."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _with_scheme(uri: str, path: str) -> str:
    if is_remote(uri):
        scheme = uri.split("://", 1)[0]
        return f"{scheme}://{path}"
    return path


def expand_inputs(
    inputs: str | Iterable[str],
    storage_options: Mapping[str, Any] | None = None,
    on_skip: Callable[[str, str], None] | None = None,
) -> Iterator[str]:
    """Expand paths, folders (recursively), globs and URIs into document URIs, streamed per
    input in listing order (sorted for local folders, S3 and GCS; see
    :mod:`ocr_actors.io.objectlist`).

    Folders yield files with a known image/PDF suffix; a path named explicitly is yielded
    as-is (so a wrong type gets a clear decoding error instead of vanishing). A path with
    ``*``, ``?`` or ``[`` is a glob only when no file or folder has that very name; an
    ``http(s)`` URL is always one object. ``on_skip`` is
    told (path, reason) of each entry of a folder left out.
    """
    items = [inputs] if isinstance(inputs, str) else list(inputs)
    for item in items:
        with storage_access(f"listing {item}"):
            yield from _expand_one(item, storage_options, on_skip)


def refuse_uri_credentials(uri: str) -> None:
    """Raise :class:`UnsupportedInputError` (naming the URI redacted) for credentials written
    into an S3 or GCS URI (:func:`store_uri_has_credentials`): its storage library does not
    read them, and would quote them in its errors."""
    if store_uri_has_credentials(uri):
        raise UnsupportedInputError(
            f"{redact_uri(uri)}: credentials written into the URI are not read; give them as storage options "
            "or through the environment"
        )


def http_status(exc: BaseException | None) -> int | None:
    """The HTTP status an HTTP client's error carries (aiohttp's ``status``, requests'
    ``response.status_code``), or None."""
    status = getattr(exc, "status", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def refuse_http_status(exc: FileNotFoundError, uri: str) -> None:
    """Raise what an HTTP answer behind a "not found" really was: 401 and 403 (an expired
    signed URL too) a :class:`PermissionError` (access denied), any other status but 404 and
    410 (a 400 ``ExpiredToken``, a 429, a 5xx) a :class:`ReadFailedError` naming it. Returns
    for a real "not found" and for errors that carry no status."""
    status = http_status(exc.__cause__)
    if status in (401, 403):
        raise PermissionError(f"HTTP {status}") from exc
    if status is not None and status not in (404, 410):
        raise ReadFailedError(f"could not read {uri}: the server answered HTTP {status}") from exc


def _unreachable(exc: BaseException | None) -> bool:
    """A failure to reach the store at all (not an answer from it)."""
    if exc is None:
        return False
    return type(exc).__name__ in UNREACHABLE_ERRORS or isinstance(exc, ConnectionError | TimeoutError)


@contextmanager
def storage_access(action: str) -> Iterator[None]:
    """Turn storage permission and missing-credential failures into :class:`SourceAccessError`,
    and a store that cannot be reached into :class:`StorageUnreachableError`, with a message
    that names the action (never the credentials)."""
    try:
        yield
    except SourceAccessError:
        raise
    except PermissionError as exc:
        raise SourceAccessError(
            f"access denied {action}: check the credentials (storage options or environment)"
        ) from exc
    except Exception as exc:
        name = type(exc).__name__
        if name in ("NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError"):
            raise SourceAccessError(f"no credentials found {action}: {name}") from exc
        if name == "ParamValidationError":  # e.g. a bucket name that cannot be one
            raise ValueError(f"invalid storage request {action}: {exc}") from exc
        if _unreachable(exc):
            raise StorageUnreachableError(f"cannot reach the store {action}: {name}: {exc}") from exc
        raise


WILDCARDS = "*?["


def glob_pattern(fs: Any, path: str) -> tuple[str, str]:
    """``(pattern, base)`` for a glob ``path``: folders on the way whose very names hold
    wildcard characters (``scans [2024]/*.png``) have them escaped (``scans [[]2024]``), and
    ``base`` is the folder above the first wildcard left (the whole path when none is)."""
    parts = path.split("/")
    escaped: list[str] = []
    for index, part in enumerate(parts):
        if any(ch in part for ch in WILDCARDS):
            literal = "/".join([*parts[:index], part])
            if index == len(parts) - 1 or not fs.isdir(literal):
                return "/".join([*escaped, *parts[index:]]), "/".join(parts[:index])
            part = re.sub(r"([*?\[])", r"[\1]", part)
        escaped.append(part)
    return "/".join(escaped), path


def _expand_one(
    item: str, storage_options: Mapping[str, Any] | None, on_skip: Callable[[str, str], None] | None
) -> Iterator[str]:
    """Expand one path, folder, glob or URI."""
    from ocr_actors.io.objectlist import iter_files, iter_glob

    refuse_uri_credentials(item)
    if item.lower().startswith(("http://", "https://")):
        yield item  # one object (a signed URL's "?" starts its query, never a pattern); a bad one is an error row
        return
    fs, path = _filesystem(item, storage_options)
    if any(ch in path for ch in WILDCARDS) and not fs.exists(path):  # "scans [2024]/" is a folder, not a pattern
        pattern, base = glob_pattern(fs, path)
        if base.strip("/") and not fs.exists(base):  # as a missing folder is: not an empty listing
            raise InputNotFoundError(f"input not found: {item} (nothing at {_with_scheme(item, base)})")
        if "**" in pattern:  # recursive: stream the listing below the first wildcard
            matches: Iterable[str] = iter_glob(fs, pattern)
        else:  # depth-bounded: fsspec lists only the folders the pattern can reach
            matches = (m for m in sorted(fs.glob(pattern)) if not fs.isdir(m))
        for match in matches:
            if is_utf8(match):
                yield _with_scheme(item, match)
            elif on_skip is not None:
                on_skip(printable(_with_scheme(item, match)), "name is not UTF-8")
        return
    if fs.isdir(path):
        for found in iter_files(fs, path, on_skip=on_skip):
            if not is_utf8(found):  # a URI the output's string columns cannot hold
                if on_skip is not None:
                    on_skip(printable(_with_scheme(item, found)), "name is not UTF-8")
            elif found.lower().endswith(DOCUMENT_SUFFIXES):
                yield _with_scheme(item, found)
            elif on_skip is not None:
                on_skip(_with_scheme(item, found), f"not an image or PDF: {_suffix(found)}")
        return
    if not fs.exists(path):
        raise InputNotFoundError(f"input not found: {item}")
    yield item


def read_bytes(uri: str, storage_options: Mapping[str, Any] | None = None, max_bytes: int = 512 << 20) -> bytes:
    """Read one object fully, refusing objects above ``max_bytes`` and anything that is not a
    regular file (a folder, a named pipe: reading one would block). Raises an
    :class:`InputError` (``not_found``, ``too_large``, ``unsupported_type``, ``read_failed``
    for any other storage or I/O failure) or :class:`SourceAccessError`."""
    refuse_uri_credentials(uri)  # a manifest's entry
    try:
        fs, path = _filesystem(uri, storage_options)
        with storage_access(f"reading {uri}"):
            try:
                info = fs.info(path)
            except FileNotFoundError as exc:
                if _unreachable(exc.__cause__):  # HTTP reports a refused connection as not found
                    raise ReadFailedError(f"could not read {uri}: {type(exc.__cause__).__name__}") from exc
                refuse_http_status(exc, uri)  # fsspec's HTTP filesystem reports every refusal as not found
                raise InputNotFoundError(f"input not found: {uri}") from exc
            kind = info.get("type", "file")
            if kind != "file":  # "directory", or "other": a named pipe, socket or device
                raise UnsupportedInputError(f"{uri} is not a regular file (type {kind})")
            size = info.get("size")
            if size is not None and size > max_bytes:
                raise TooLargeInputError(f"{uri} is {size} bytes, above the limit of {max_bytes}")
            with fs.open(path, "rb") as fh:
                data: bytes = fh.read()
    except StorageUnreachableError as exc:  # for one object: an error row, not a stopped job
        raise ReadFailedError(str(exc)) from exc
    except (InputError, PermissionError):
        raise
    except Exception as exc:  # network, I/O, symlink loops, a store that refuses the request
        raise ReadFailedError(f"could not read {uri}: {type(exc).__name__}: {exc}") from exc
    return data
