"""Unit tests for ocr_actors.io.sources: local folders, globs and fsspec URIs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from ocr_actors.io.decode import InputNotFoundError, TooLargeInputError
from ocr_actors.io.sources import expand_inputs, is_remote, read_bytes


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """docs/ with images and PDFs at several depths plus files that are not documents."""
    root = tmp_path / "docs"
    files = {
        "b.png": b"png",
        "a.pdf": b"%PDF",
        "notes.txt": b"text",
        "sub/c.JPG": b"jpg",
        "sub/deeper/d.tiff": b"tif",
        "sub/deeper/e.webp": b"webp",
        "sub/readme.md": b"md",
        "sub/data.json": b"{}",
        "z.pdf.bak": b"bak",
    }
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    (root / "empty_dir").mkdir()
    return root


def test_expand_folder_recursive_sorted_documents_only(tree: Path) -> None:
    found = list(expand_inputs(str(tree)))
    expected = [str(tree / n) for n in ("a.pdf", "b.png", "sub/c.JPG", "sub/deeper/d.tiff", "sub/deeper/e.webp")]
    assert found == expected


def test_a_folder_listing_takes_every_image_kind_the_decoder_reads(tmp_path: Path) -> None:
    """JPEG 2000 codestreams, AVIF, HEIC, JFIF and PNM names are listed like PNGs; other names
    are left out with their suffix as the reason."""
    names = ("a.j2k", "b.avif", "c.jfif", "d.pnm", "e.jpe", "f.HEIC", "g.hif", "h.psd", "i.doc")
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    skipped: list[tuple[str, str]] = []
    found = list(expand_inputs(str(tmp_path), on_skip=lambda uri, why: skipped.append((Path(uri).name, why))))
    assert found == [str(tmp_path / n) for n in names[:7]]
    assert skipped == [("h.psd", "not an image or PDF: .psd"), ("i.doc", "not an image or PDF: .doc")]


def test_a_glob_under_a_missing_folder_is_not_found_and_folders_named_like_patterns_are_walked(tmp_path: Path) -> None:
    """A glob whose fixed folder does not exist is an input not found, like a missing folder
    (a mistyped path in a scheduled job is no empty success); one that matches nothing in an
    existing folder is an empty listing. A folder whose very name holds ``[`` or ``*`` on a
    glob's way is that folder, not a pattern (``scans [2024]/*.png``)."""
    with pytest.raises(InputNotFoundError, match=rf"input not found: .*\(nothing at {tmp_path}/nope/2024\)"):
        list(expand_inputs(str(tmp_path / "nope" / "2024" / "*.png")))
    with pytest.raises(InputNotFoundError):
        list(expand_inputs(str(tmp_path / "nope" / "**" / "*.png")))
    assert list(expand_inputs(str(tmp_path / "*.png"))) == []
    odd = tmp_path / "scans [2024]" / "box *1"
    odd.mkdir(parents=True)
    (odd / "a.png").write_bytes(b"x")
    (tmp_path / "scans 2").mkdir()
    (tmp_path / "scans 2" / "b.png").write_bytes(b"x")  # what "[2024]" as a pattern would match
    assert list(expand_inputs(str(tmp_path / "scans [2024]" / "box *1" / "*.png"))) == [str(odd / "a.png")]
    assert list(expand_inputs(str(tmp_path / "scans [2024]" / "**" / "*.png"))) == [str(odd / "a.png")]
    assert list(expand_inputs(str(tmp_path / "scans [2]" / "*.png"))) == [str(tmp_path / "scans 2" / "b.png")]


def test_expand_file_uri_folder(tree: Path) -> None:
    found = list(expand_inputs(f"file://{tree}"))
    assert [Path(p).name for p in found] == ["a.pdf", "b.png", "c.JPG", "d.tiff", "e.webp"]
    assert all(Path(p).exists() for p in found)


def test_expand_glob(tree: Path) -> None:
    assert list(expand_inputs(str(tree / "[ab].*"))) == [str(tree / "a.pdf"), str(tree / "b.png")]
    # A glob matching folders yields only files.
    assert list(expand_inputs(str(tree / "*"))) == [str(tree / n) for n in ("a.pdf", "b.png", "notes.txt", "z.pdf.bak")]
    assert list(expand_inputs(str(tree / "**" / "*.tiff"))) == [str(tree / "sub/deeper/d.tiff")]
    assert list(expand_inputs(str(tree / "*.gif"))) == []


def test_expand_explicit_file_is_kept_as_is(tree: Path) -> None:
    # A file named explicitly is yielded even without a document suffix.
    assert list(expand_inputs(str(tree / "notes.txt"))) == [str(tree / "notes.txt")]


def test_paths_with_glob_characters_that_exist_are_paths_and_urls_are_one_object(tmp_path: Path) -> None:
    """``scans [2024]/`` is a folder and ``scan[1].png`` a file when they exist (a glob only
    otherwise: ``plain/scan[12].png`` still matches ``plain/scan1.png``); an http(s) URL is one object,
    its ``?`` a query (a signed URL), never listed or globbed."""
    folder = tmp_path / "scans [2024]"
    folder.mkdir()
    for name in ("scan1.png", "scan[1].png", "what?.png"):
        (folder / name).write_bytes(b"x")
    assert list(expand_inputs(str(folder))) == [str(folder / n) for n in ("scan1.png", "scan[1].png", "what?.png")]
    assert list(expand_inputs(str(folder / "scan[1].png"))) == [str(folder / "scan[1].png")]
    assert list(expand_inputs(str(folder / "what?.png"))) == [str(folder / "what?.png")]
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "scan1.png").write_bytes(b"x")
    assert list(expand_inputs(str(plain / "scan[12].png"))) == [str(plain / "scan1.png")]
    signed = "https://127.0.0.1:1/p.png?X-Amz-Signature=abc&X-Amz-Expires=60"
    assert list(expand_inputs(signed)) == [signed]


def test_names_that_are_not_utf8_are_left_out_with_a_reason(tmp_path: Path) -> None:
    """A file name with bytes that are not UTF-8 cannot be a ``source_uri``: the listing leaves
    it out (counted, with a printable example) instead of failing the whole job."""
    import os

    (tmp_path / "ok.png").write_bytes(b"x")
    os.close(os.open(os.path.join(os.fsencode(tmp_path), b"r\xe9sum\xe9.png"), os.O_CREAT | os.O_WRONLY))
    skipped: list[tuple[str, str]] = []
    assert list(expand_inputs(str(tmp_path), on_skip=lambda p, r: skipped.append((p, r)))) == [str(tmp_path / "ok.png")]
    assert skipped == [(f"{tmp_path}/r\ufffdsum\ufffd.png", "name is not UTF-8")]
    assert list(expand_inputs(str(tmp_path / "*.png"), on_skip=lambda p, r: skipped.append((p, r)))) == [
        str(tmp_path / "ok.png")
    ]
    assert len(skipped) == 2


def test_expand_several_inputs_in_order(tree: Path) -> None:
    found = list(expand_inputs([str(tree / "sub" / "deeper"), str(tree / "a.pdf")]))
    assert found == [str(tree / "sub/deeper/d.tiff"), str(tree / "sub/deeper/e.webp"), str(tree / "a.pdf")]


def test_expand_empty_folder(tree: Path) -> None:
    assert list(expand_inputs(str(tree / "empty_dir"))) == []


def test_expand_missing_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope" / "scan.png")
    with pytest.raises(InputNotFoundError, match="input not found") as info:
        list(expand_inputs(missing))
    assert missing in str(info.value)
    assert info.value.error_type == "not_found"


def test_read_bytes_local(tree: Path) -> None:
    assert read_bytes(str(tree / "b.png")) == b"png"
    assert read_bytes(f"file://{tree / 'a.pdf'}") == b"%PDF"


def test_read_bytes_max_bytes(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(b"x" * 1000)
    assert len(read_bytes(str(path), max_bytes=1000)) == 1000
    with pytest.raises(TooLargeInputError) as info:
        read_bytes(str(path), max_bytes=999)
    assert "1000 bytes, above the limit of 999" in str(info.value)
    assert info.value.error_type == "too_large"


def test_read_bytes_missing(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match="input not found"):
        read_bytes(str(tmp_path / "missing.png"))


def test_is_remote() -> None:
    assert is_remote("s3://bucket/key.png")
    assert is_remote("memory://x/y")
    assert not is_remote("/tmp/a.png")
    assert not is_remote("file:///tmp/a.png")


@pytest.fixture
def memory_bucket() -> Iterator[str]:
    """A unique folder in fsspec's in-memory filesystem, removed afterwards."""
    name = f"bucket-{uuid.uuid4().hex}"
    contents = {"docs/a.png": b"A" * 10, "docs/sub/b.pdf": b"%PDF-B", "docs/c.txt": b"text"}
    for key, value in contents.items():
        with fsspec.open(f"memory://{name}/{key}", "wb") as fh:
            fh.write(value)
    yield name
    fs = fsspec.filesystem("memory")
    fs.rm(f"/{name}", recursive=True)


def test_memory_uri_expand_and_read(memory_bucket: str) -> None:
    uris = list(expand_inputs(f"memory://{memory_bucket}/docs"))
    assert len(uris) == 2
    assert all(u.startswith("memory://") for u in uris)
    assert [u.split("://", 1)[1].lstrip("/") for u in uris] == [
        f"{memory_bucket}/docs/a.png",
        f"{memory_bucket}/docs/sub/b.pdf",
    ]
    assert [read_bytes(u) for u in uris] == [b"A" * 10, b"%PDF-B"]


def test_memory_uri_glob_and_explicit(memory_bucket: str) -> None:
    globbed = list(expand_inputs(f"memory://{memory_bucket}/docs/*.png"))
    assert len(globbed) == 1 and globbed[0].endswith(f"{memory_bucket}/docs/a.png")
    assert read_bytes(globbed[0]) == b"A" * 10
    explicit = f"memory://{memory_bucket}/docs/c.txt"
    assert list(expand_inputs(explicit)) == [explicit]
    assert read_bytes(explicit) == b"text"


def test_memory_uri_limits_and_missing(memory_bucket: str) -> None:
    with pytest.raises(TooLargeInputError):
        read_bytes(f"memory://{memory_bucket}/docs/a.png", max_bytes=9)
    with pytest.raises(InputNotFoundError):
        read_bytes(f"memory://{memory_bucket}/docs/missing.png")
    with pytest.raises(InputNotFoundError):
        list(expand_inputs(f"memory://{memory_bucket}/nothing-here.png"))


def test_http_refusals_are_access_denied_server_errors_read_failures_and_only_404_not_found() -> None:
    """An expired signed URL answers 403: that is access denied (re-sign it), not a missing
    object; a 5xx is a failed read; only a 404 is "not found"."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from ocr_actors.io.decode import ReadFailedError
    from ocr_actors.io.listing import iter_sources
    from ocr_actors.io.sources import SourceAccessError

    class Refusing(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            status = int(self.path.strip("/").split(".")[0])
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for status in (401, 403):
            with pytest.raises(SourceAccessError, match="access denied"):
                read_bytes(f"{base}/{status}.png?X-Amz-Signature=abc")
        for status in (400, 429, 503):  # GCS's expired signed URL is a 400 ExpiredToken
            with pytest.raises(ReadFailedError, match=f"HTTP {status}"):
                read_bytes(f"{base}/{status}.png")
        for status in (404, 410):
            with pytest.raises(InputNotFoundError):
                read_bytes(f"{base}/{status}.png")
        with pytest.raises(SourceAccessError, match="access denied reading the manifest"):  # a signed manifest URL
            next(iter_sources(f"{base}/403.txt?X-Amz-Signature=abc", "uri", {}))
    finally:
        server.shutdown()
        server.server_close()


def test_credentials_written_into_a_store_uri_are_refused_without_showing_them(tmp_path: Path) -> None:
    """``s3://KEY:SECRET@bucket/…`` (s3fs and gcsfs do not read it and would quote it in their
    errors; half of AWS secrets hold "/", which once slipped past the redaction): the job's
    config refuses it as input or output, a manifest's entry gets an unsupported-type error,
    and no message shows the secret."""
    from ocr_actors.config import ConfigError
    from ocr_actors.io.decode import UnsupportedInputError
    from ocr_actors.job_config import OutputConfig, SourceConfig
    from ocr_actors.redaction import redact_text, redact_uri, store_uri_has_credentials

    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY"
    uri = f"s3://AKIAFAKE:{secret}@bucket/scans/"
    assert redact_uri(uri) == "s3://***@bucket/scans/"
    assert redact_uri(f"s3://AKIAFAKE:{secret}@bucket/a@b.png") == "s3://***@bucket/a@b.png"
    assert redact_text(f"error: input not found: {uri} (x)") == "error: input not found: s3://***@bucket/scans/ (x)"
    assert store_uri_has_credentials(uri) and store_uri_has_credentials("gs://K:S@b/x")
    for plain in ("s3://bucket/a@b.png", "gs://b/x:y@z.png", "https://u:p@host/x", "/tmp/a:b@c.png", "s3://b/k?v=1"):
        assert not store_uri_has_credentials(plain), plain
    # secrets starting with digits and "/" or with "//" (a port or a scheme to the general rule)
    assert redact_text("s3://KEY:1/abc@bucket x") == "s3://***@bucket x"
    assert redact_text("at s3://AKIAX://abcdef@bucket/k.png") == "at s3://***@bucket/k.png"
    # other stores' names are kept whole: a container, a user name, a port before an "@" in a key
    for kept in (
        "abfs://container@account.dfs.core.windows.net/a.png",
        "sftp://user@host/a",
        "hdfs://nn:8020/a/x@1.png",
    ):
        assert redact_uri(kept) == kept and not store_uri_has_credentials(kept), kept
    assert redact_uri("hdfs://nn:8020/a/x@1.png") != redact_uri("hdfs://nn:8020/b/x@1.png")
    with pytest.raises(UnsupportedInputError, match="credentials written into the URI"):  # the API's listing
        next(expand_inputs(uri))
    for make, key in ((lambda: SourceConfig(uri=uri), "source.uri"), (lambda: OutputConfig(uri=uri), "output.uri")):
        with pytest.raises(ConfigError, match=f"{key}: credentials written into a s3:// URI") as refused:
            make()
        assert secret.split("/")[0] not in str(refused.value) and "s3://***@bucket/scans/" in str(refused.value)
    with pytest.raises(UnsupportedInputError) as entry:
        read_bytes(f"s3://AKIAFAKE:{secret}@bucket/a.png")
    assert "AKIAFAKE" not in str(entry.value) and secret.split("/")[0] not in str(entry.value)


def test_a_missing_manifest_is_an_input_not_found_that_names_it(tmp_path: Path) -> None:
    from ocr_actors.io.listing import iter_sources

    missing = tmp_path / "lists" / "nope.txt"
    with pytest.raises(InputNotFoundError, match=f"input not found: the manifest {missing}"):
        next(iter_sources(str(missing), "uri", {}))


def test_a_store_that_never_answers_is_unreachable_not_an_unknown_failure() -> None:
    """botocore's ReadTimeoutError (a store that takes connections and never answers) is an
    unreachable store: exit 2 with "cannot reach the store", not a traceback and exit 5."""
    from botocore.exceptions import ReadTimeoutError

    from ocr_actors.io.sources import StorageUnreachableError, storage_access

    unreachable = pytest.raises(StorageUnreachableError, match="cannot reach the store listing s3://b/")
    with unreachable, storage_access("listing s3://b/"):
        raise ReadTimeoutError(endpoint_url="http://127.0.0.1:9")
