#!/usr/bin/env python
"""Planning at archive scale: what the driver holds and how long it takes before any page runs.

    python scripts/bench_plan.py --sources 1000000 --done 500000

Writes a manifest of ``--sources`` S3-style URIs and an output holding ``--done`` of them
(Parquet parts of 2000 rows in the job's schema, key columns filled), then times, each in a
fresh process: the listing alone held as a Python list (the reference: what a driver that lists first
holds), and the whole planning of a resume run as the job does it (streamed listing +
reading the output's key columns + the chunked planner writing the work files).
Prints seconds, the driver's peak RSS, bytes per source, and the ratios to the listing alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_inputs(folder: Path, sources: int, done: int, rows_per_part: int = 2000) -> tuple[str, str]:
    """A manifest and an output folder; returns their paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ocr_actors.io.parquet import PAGE_SCHEMA

    uris = [f"s3://archive-bucket/scans/2019/box{i // 1000:05d}/page-{i:08d}.tif" for i in range(sources)]
    manifest = folder / "manifest.txt"
    manifest.write_text("\n".join(uris) + "\n")
    output = folder / "output"
    output.mkdir()
    now = datetime.now(UTC)
    for start in range(0, done, rows_per_part):
        chunk = uris[start : min(start + rows_per_part, done)]
        n = len(chunk)
        columns = {f.name: pa.nulls(n, f.type) for f in PAGE_SCHEMA}
        columns.update(
            source_uri=pa.array(chunk),
            page_index=pa.array([0] * n, pa.int32()),
            page_count=pa.array([1] * n, pa.int32()),
            processed_at=pa.array([now] * n, pa.timestamp("us", tz="UTC")),
        )
        for name in ("doc_id", "status", "det_model", "rec_model", "job_id"):
            columns[name] = pa.array(["x"] * n)
        pq.write_table(pa.table(columns, schema=PAGE_SCHEMA), output / f"part-{start:09d}.parquet")
    return str(manifest), str(output)


def worker(kind: str, manifest: str, output: str) -> dict[str, float]:
    import fsspec
    from bench_engine import max_rss_mb  # scripts/ sibling

    from ocr_actors.io.listing import iter_sources, list_sources
    from ocr_actors.io.parquet import scan_done
    from ocr_actors.io.workfiles import WorkSpool
    from ocr_actors.pipeline.plan import Planner

    base = max_rss_mb()
    start = time.perf_counter()
    result: dict[str, float] = {}
    if kind == "list":
        result["sources"] = len(list_sources(manifest, "", {}))
    else:  # what the job's driver does: done index, streamed listing, chunked planner, work files
        planner = Planner(scan_done(output, {}), "resume", None)
        spool = WorkSpool(output, "bench", {})
        for chunk in iter_sources(manifest, "", {}):
            spool.append(planner.plan_chunk(chunk))
        counts = planner.counts
        result.update(sources=counts.sources_total, items=spool.rows, skipped=counts.sources_skipped)
        result["work_files_mb"] = sum(fsspec.core.url_to_fs(f.path)[0].size(f.path) for f in spool.files) / 2**20
    result["seconds"] = time.perf_counter() - start
    result["rss_mb"] = max_rss_mb() - base
    if kind != "list":
        spool.remove()
    return result


def main() -> int:
    from bench_engine import run_worker_process  # scripts/ sibling

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=1_000_000)
    parser.add_argument("--done", type=int, default=500_000)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return 0
    folder = Path(tempfile.mkdtemp(prefix="bench_plan_"))
    try:
        manifest, output = make_inputs(folder, args.sources, args.done)
        runs = {kind: run_worker_process(__file__, kind, manifest, output) for kind in ("list", "plan")}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    listing, plan = runs["list"], runs["plan"]
    assert plan["items"] == args.sources - args.done and plan["skipped"] == args.done, plan
    print(f"{args.sources} sources, {args.done} already in the output (resume run)")
    print(f"{'run':<28}{'seconds':>9}{'driver MB':>11}{'bytes/source':>14}")
    for name, run in (("listing as a list (ref.)", listing), ("listing + done index + plan", plan)):
        print(f"{name:<28}{run['seconds']:>9.2f}{run['rss_mb']:>11.0f}{run['rss_mb'] * 2**20 / args.sources:>14.0f}")
    print(
        f"planning / listing: {plan['seconds'] / listing['seconds']:.2f}x time, "
        f"{plan['rss_mb'] / max(listing['rss_mb'], 1):.2f}x memory; {plan['items']} items to run "
        f"in {plan['work_files_mb']:.1f} MB of work files"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
