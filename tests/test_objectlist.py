"""Streamed folder/prefix listing (ocr_actors.io.objectlist) on a local disk, a real S3 server
(SeaweedFS) and a real GCS emulator: the same files in the same order as ``sorted(find)``,
paged in small pages, nothing outside the prefix, and no listing cache left behind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

from ocr_actors.io.objectlist import iter_files, iter_glob
from ocr_actors.io.sources import expand_inputs
from tests.gcs_server import running_gcs_server
from tests.s3_server import running_s3_server

# Names chosen so that a per-folder walk and a full-path sort could disagree: "b" is a folder
# and "b.txt", "b-c.png", "b0.png" are files beside it ('-' and '.' sort before '/', '0' after).
KEYS = (
    "a.png",
    "A.png",
    "b/x.png",
    "b/y/z.png",
    "b.txt",
    "b-c.png",
    "b0.png",
    "deep/1/2/3/4.pdf",
    "sp ace.png",
    "\u00e9t\u00e9.png",
    "\u65e5\u672c.tif",
)
OUTSIDE = ("tree2/n.png", "tre.png", "other/tree/a.png")  # share the prefix's leading characters


def expected(root: str, suffix: str = "") -> list[str]:
    return sorted(f"{root}/{k}" for k in KEYS if k.endswith(suffix))


def expected_recursive_png(root: str) -> list[str]:
    """What ``root/**/*.png`` matches: any depth, the root folder included."""
    return expected(root, ".png")


# --------------------------------------------------------------------------- local


@pytest.fixture
def local_tree(tmp_path: Path) -> Path:
    for key in (*(f"tree/{k}" for k in KEYS), *OUTSIDE):
        path = tmp_path / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(key.encode())
    (tmp_path / "tree" / "empty").mkdir()
    return tmp_path


def test_local_walk_matches_sorted_find(local_tree: Path) -> None:
    root = str(local_tree / "tree")
    found = list(iter_files(fsspec.filesystem("file"), root))
    assert found == expected(root)
    assert found == sorted(fsspec.filesystem("file").find(root))


def test_local_walk_does_not_follow_folder_links(local_tree: Path) -> None:
    root = local_tree / "tree"
    os.symlink(root, root / "b" / "loop")  # a cycle: tree/b/loop -> tree
    os.symlink(local_tree / "tree2", root / "0-outside")  # out of the tree, sorting first
    os.symlink(root / "missing.png", root / "dangling.png")
    os.symlink(root / "a.png", root / "c-link.png")  # a link to a file is a file
    found = list(iter_files(fsspec.filesystem("file"), str(root)))
    assert found == sorted([*expected(str(root)), f"{root}/c-link.png"])
    assert found == [
        p
        for p in sorted(fsspec.filesystem("file").find(str(root)))
        if "loop" not in p and "0-outside" not in p and "dangling" not in p
    ]


def test_a_recursive_glob_needs_a_fixed_folder(local_tree: Path) -> None:
    with pytest.raises(ValueError, match="needs a fixed folder"):
        list(iter_glob(fsspec.filesystem("file"), "/**/*.png"))


def test_local_recursive_glob_streams(local_tree: Path) -> None:
    root = str(local_tree / "tree")
    fs = fsspec.filesystem("file")
    assert list(iter_glob(fs, f"{root}/**/*.png")) == expected_recursive_png(root)
    assert list(iter_glob(fs, f"{root}/b/**/*.png")) == [f"{root}/b/x.png", f"{root}/b/y/z.png"]
    assert list(iter_glob(fs, f"{root}/nothing/**/*.png")) == []


def test_expand_inputs_lists_documents_through_the_stream(local_tree: Path) -> None:
    root = str(local_tree / "tree")
    documents = [p for p in expected(root) if not p.endswith(".txt")]
    assert list(expand_inputs(root)) == documents
    assert list(expand_inputs(f"{root}/**/*.pdf")) == [f"{root}/deep/1/2/3/4.pdf"]


# --------------------------------------------------------------------------- object stores


def _fill(fs: Any, bucket: str) -> None:
    for key in (*(f"tree/{k}" for k in KEYS), *OUTSIDE):
        fs.pipe(f"{bucket}/{key}", key.encode())


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    with running_s3_server("listing", tmp_path_factory.mktemp("s3list")) as server:
        fs = server.filesystem()
        _fill(fs, server.bucket)
        # A zero-byte "folder marker" key, as consoles and some tools create.
        fs.call_s3("put_object", Bucket=server.bucket, Key="tree/empty/", Body=b"")
        yield server.filesystem(), server.bucket


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    with running_gcs_server("listing", tmp_path_factory.mktemp("gcslist")) as server:
        fs = server.filesystem()
        _fill(fs, server.bucket)
        fs.pipe(f"{server.bucket}/tree/empty/", b"")
        yield server.filesystem(), server.bucket


@pytest.fixture(params=["s3", "gcs"])
def store(request: pytest.FixtureRequest) -> tuple[Any, str]:
    fs, bucket = request.getfixturevalue(request.param)
    fs.invalidate_cache()
    return fs, bucket


@pytest.mark.parametrize("page_size", [1, 3, 1000])
def test_store_listing_pages_in_sorted_order(store: tuple[Any, str], page_size: int) -> None:
    fs, bucket = store
    found = list(iter_files(fs, f"{bucket}/tree", page_size=page_size))
    # Stores list in their own order (S3 and GCS: by key; SeaweedFS: folder by folder), the
    # same for any page size; every file exactly once.
    assert sorted(found) == expected(f"{bucket}/tree")
    assert len(set(found)) == len(found)
    assert found == list(iter_files(fs, f"{bucket}/tree", page_size=1000))
    assert not fs.dircache, "the stream must not fill the listing cache"
    assert sorted(found) == sorted(p for p in fs.find(f"{bucket}/tree") if not p.endswith("/"))


def test_store_listing_of_a_whole_bucket_and_a_subfolder(store: tuple[Any, str]) -> None:
    fs, bucket = store
    everything = sorted([*(f"{bucket}/tree/{k}" for k in KEYS), *(f"{bucket}/{k}" for k in OUTSIDE)])
    assert sorted(iter_files(fs, bucket, page_size=4)) == everything
    assert list(iter_files(fs, f"{bucket}/tree/b/", page_size=1)) == [
        f"{bucket}/tree/b/x.png",
        f"{bucket}/tree/b/y/z.png",
    ]
    assert list(iter_files(fs, f"{bucket}/tree/nothing", page_size=2)) == []


def test_store_recursive_glob(store: tuple[Any, str]) -> None:
    fs, bucket = store
    assert sorted(iter_glob(fs, f"{bucket}/tree/**/*.png", page_size=2)) == expected_recursive_png(f"{bucket}/tree")


def test_expand_inputs_on_a_store_keeps_the_scheme(store: tuple[Any, str]) -> None:
    fs, bucket = store
    scheme = "s3" if "s3" in fs.protocol else "gs"
    options = {k: v for k, v in fs.storage_options.items()}
    found = list(expand_inputs(f"{scheme}://{bucket}/tree", options))
    assert sorted(found) == [f"{scheme}://{p}" for p in expected(f"{bucket}/tree") if not p.endswith(".txt")]
