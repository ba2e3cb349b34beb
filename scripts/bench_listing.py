#!/usr/bin/env python
"""Listing a folder/prefix of many scans: the driver's memory and time before planning starts.

    python scripts/bench_listing.py --objects 200000            # S3 (SeaweedFS on loopback)
    python scripts/bench_listing.py --objects 500000 --store local

Fills a prefix with ``--objects`` empty ``.tif`` objects (1,000 per folder), then, each in a fresh
process, lists it two ways: the reference is fsspec's ``sorted(fs.find(prefix))`` (what the job
did before: the whole listing, and for s3fs/gcsfs every object's details in its cache, held at
once), and the job's streamed listing (``ocr_actors.io.objectlist`` through ``expand_inputs``,
consumed in the job's 50,000-URI chunks). Prints seconds, the process's peak RSS growth, bytes
per object, and the ratios; both runs must find the same URIs (count and an order-independent
digest).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

PER_FOLDER = 1000


def object_keys(count: int) -> list[str]:
    return [f"scans/box{i // PER_FOLDER:05d}/page-{i:08d}.tif" for i in range(count)]


def fill_s3(fs: Any, bucket: str, count: int) -> None:
    keys = object_keys(count)
    for start in range(0, count, 10_000):
        fs.pipe({f"{bucket}/{k}": b"" for k in keys[start : start + 10_000]}, batch_size=64)


def fill_local(folder: Path, count: int) -> None:
    for key in object_keys(count):
        path = folder / key
        if not path.parent.exists():
            path.parent.mkdir(parents=True)
        path.touch()


def set_digest(paths: Any) -> tuple[int, int]:
    """(count, order-independent digest) of paths: the sum of their BLAKE2b hashes mod 2**128."""
    total, count = 0, 0
    for p in paths:
        total += int.from_bytes(hashlib.blake2b(p.encode(), digest_size=16).digest(), "little")
        count += 1
    return count, total % (1 << 128)


def worker(kind: str, url: str, options_json: str) -> dict[str, Any]:
    import fsspec
    from bench_engine import max_rss_mb

    from ocr_actors.io.listing import iter_sources

    options = json.loads(options_json)
    fs, path = fsspec.core.url_to_fs(url, **options)  # imports, client and session: not counted
    fs.isdir(path)
    fs.invalidate_cache()
    base = max_rss_mb()
    start = time.perf_counter()
    if kind == "find":
        count, digest = set_digest(sorted(fs.find(path)))
    else:  # the job's driver: 50,000-URI chunks, each planned and dropped
        count, digest = 0, 0
        for chunk in iter_sources(url, "", options):
            n, d = set_digest(u.split("://", 1)[-1] for u in chunk)
            count, digest = count + n, (digest + d) % (1 << 128)
    seconds = time.perf_counter() - start
    return {"objects": count, "seconds": seconds, "rss_mb": max_rss_mb() - base, "digest": str(digest)}


def main() -> int:
    from bench_engine import run_worker_process

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=200_000)
    parser.add_argument("--store", choices=("s3", "local"), default="s3")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return 0
    folder = Path(tempfile.mkdtemp(prefix="bench_listing_"))
    try:
        if args.store == "local":
            fill_start = time.perf_counter()
            fill_local(folder, args.objects)
            url, options = str(folder / "scans"), {}
            runs = {kind: run_worker_process(__file__, kind, url, json.dumps(options)) for kind in ("find", "stream")}
        else:
            from tests.s3_server import running_s3_server

            with running_s3_server("bench", folder) as server:
                fill_start = time.perf_counter()
                fill_s3(server.filesystem(), server.bucket, args.objects)
                url, options = server.url("scans"), server.storage_options
                runs = {
                    kind: run_worker_process(__file__, kind, url, json.dumps(options)) for kind in ("find", "stream")
                }
        print(f"filled and listed {args.objects} objects in {time.perf_counter() - fill_start:.0f} s")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    find, stream = runs["find"], runs["stream"]
    assert find["objects"] == stream["objects"] == args.objects, runs
    assert find["digest"] == stream["digest"], "the two listings found different URIs"
    print(f"{args.objects} objects on {args.store}, {PER_FOLDER} per folder")
    print(f"{'listing':<32}{'seconds':>9}{'peak MB':>9}{'bytes/object':>14}")
    for name, run in (("sorted(fs.find(prefix)) (ref.)", find), ("streamed (the job)", stream)):
        print(f"{name:<32}{run['seconds']:>9.2f}{run['rss_mb']:>9.0f}{run['rss_mb'] * 2**20 / args.objects:>14.0f}")
    print(
        f"streamed / find: {stream['seconds'] / find['seconds']:.2f}x time, "
        f"{stream['rss_mb'] / max(find['rss_mb'], 1):.3f}x memory; same {args.objects} URIs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
