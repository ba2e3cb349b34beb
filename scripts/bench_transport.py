#!/usr/bin/env python
"""What moving pages between the batch job's Ray stages costs in CPU, by layout and by colour.

    python scripts/bench_transport.py --pages 400

Runs the job's Ray Data operators ([load tasks] -> detection actors -> [crop tasks] ->
recognition actors -> write tasks, with the job's batch sizes of ``job_gpu.yaml``) with each
stage's own work left out: every stage hands on the columns the real one hands on (the load
task reads a decoded page from a ``.npy`` file; cropping reads the page's real line crops,
cut once beforehand from the rendered page at its known line boxes; recognition drops the
crops), so what is left is Ray's part: blocks into the object store and out, tasks and actor
calls. Pages are the job benchmark's text-heavy 1240 x 1754 pages. Variants:

- ``crop task, BGR``: the page goes load -> detection actor -> crop task (before ``crop_in_detect``);
- ``crop in detect, BGR``: the detection actor crops (``resources.crop_in_detect``, default);
- ``crop in detect, grey``: the same with grey pages moved as one channel (the load stage's
  ``keep_grey``; colour pages still move as three).
- ``load in detect, grey``: no load tasks; the detection actor reads its own pages
  (``resources.load_in_actors``), so a page never moves before the crops do.
- ``one pool, grey`` and ``one pool, load in actor, grey``: ``job_gpu.yaml``'s layout
  (``resources.models_in_one_actor``): one actor pool detects, crops and recognises, so crops
  never move; with load tasks (its default) or with the actors reading their own pages.
- ``one pool, ranges of 16`` (``job_gpu.yaml``'s ``resources.sources_per_range``), ``one pool,
  ranges of 50`` and ``one pool, load in actor, ranges of 50``: the same two, with
  the input as a large job gives it: ranges of work items (the planner makes ranges of up to
  1000 items once a job has more than 1000 sources), so a load task reads a range and yields
  its pages, and a loading actor's call reads one and hands on 16 pages at a time: one input
  row per range, not a task per page.

``--variants`` picks layouts by name, separated by ``;``.

For each it prints the machine's CPU ms per page (every process, ``/proc/stat``; a run of
``--pages`` minus a run of a quarter as many in the same Ray, after a first run that starts the
workers, so start-ups drop out), pages/s, and the ratio to the first variant. Nothing else may
run on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS = {
    "crop task, BGR": {"crop_in_detect": False, "grey": False},
    "crop in detect, BGR": {"crop_in_detect": True, "grey": False},
    "crop in detect, grey": {"crop_in_detect": True, "grey": True},
    "load in detect, grey": {"crop_in_detect": True, "grey": True, "load_in_detect": True},
    "one pool, grey": {"crop_in_detect": True, "grey": True, "one_pool": True},
    "one pool, load in actor, grey": {"crop_in_detect": True, "grey": True, "load_in_detect": True, "one_pool": True},
    "one pool, ranges of 16": {"crop_in_detect": True, "grey": True, "one_pool": True, "range_size": 16},
    "one pool, ranges of 50": {"crop_in_detect": True, "grey": True, "one_pool": True, "range_size": 50},
    "one pool, load in actor, ranges of 50": {
        "crop_in_detect": True,
        "grey": True,
        "load_in_detect": True,
        "one_pool": True,
        "range_size": 50,
    },
}
FLAGS = ("crop_in_detect", "grey", "load_in_detect", "one_pool")


def write_inputs(folder: Path, unique: int) -> None:
    """``page<i>.npy`` (BGR), ``grey<i>.npy`` (H, W, 1) and the packed crops of each page."""
    import numpy as np

    from ocr_actors.runtime.ocr import crop_lines
    from ocr_actors.stages.common import pack_crops
    from ocr_actors.synth import render_page

    for i in range(unique):
        page = render_page(
            seed=9000 + i, columns=1 + i % 2, lines_per_column=22, kinds=("prose", "prose", "number", "currency")
        )
        quads = np.stack([line.quad for line in page.lines]).astype(np.float32)
        np.save(folder / f"page{i}.npy", page.image)
        grey = page.image[:, :, 1:2].copy()
        np.save(folder / f"grey{i}.npy", grey)
        for name, image in (("page", page.image), ("grey", grey)):
            pixels, shapes = pack_crops(crop_lines(image, quads))
            np.save(folder / f"{name}{i}_crop_pixels.npy", pixels)
            np.save(folder / f"{name}{i}_crop_shapes.npy", shapes)


def machine_cpu_seconds() -> float:
    with open("/proc/stat") as fh:
        values = [int(x) for x in fh.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def build(  # type: ignore[no-untyped-def]
    folder: str,
    pages: int,
    unique: int,
    crop_in_detect: bool,
    grey: bool,
    load_in_detect: bool = False,
    one_pool: bool = False,
    range_size: int = 1,
):
    """The job's operator layout with hand-on-only stages (see the module docstring)."""
    import numpy as np
    import ray.data

    from ocr_actors.stages.common import concat_batches, ragged

    prefix = "grey" if grey else "page"

    def crops_of(index: int) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.load(f"{folder}/{prefix}{index}_crop_pixels.npy"),
            np.load(f"{folder}/{prefix}{index}_crop_shapes.npy"),
        )

    def load(batch):  # type: ignore[no-untyped-def]
        for i in batch["id"]:
            image = np.load(f"{folder}/{prefix}{int(i) % unique}.npy")
            yield {"page": np.array([int(i) % unique]), "image": ragged([image]), "status": np.array(["ok"])}

    def with_crops(batch):  # type: ignore[no-untyped-def]
        out = {k: v for k, v in batch.items() if k != "image"}
        packed = [crops_of(int(i)) for i in batch["page"]]
        out["crop_pixels"] = ragged([p for p, _ in packed])
        out["crop_shapes"] = ragged([s for _, s in packed])
        return out

    def page_ids(rows: np.ndarray) -> list[int]:
        """The pages of these input rows: each row a page, or a range of ``range_size`` pages."""
        if range_size == 1:
            return [int(r) for r in rows]
        return [p for r in rows for p in range(int(r) * range_size, min((int(r) + 1) * range_size, pages))]

    def load_range(batch):  # type: ignore[no-untyped-def]
        """A load task of the job at scale: a range in, its pages out one by one."""
        yield from load({"id": page_ids(batch["id"])})

    class Detect:
        def __call__(self, batch):  # type: ignore[no-untyped-def]
            if load_in_detect and range_size > 1:  # each row a range, handed on 16 pages at a time (LoadThen)
                ids = page_ids(batch["id"])
                for at in range(0, len(ids), 16):
                    yield self.one_batch({"id": np.array(ids[at : at + 16])})
            else:
                yield self.one_batch(batch)

        def one_batch(self, batch):  # type: ignore[no-untyped-def]
            if load_in_detect:  # the pages as the load tasks would have given them
                batch = concat_batches(list(load({"id": batch["id"]})))
            out = dict(batch)
            out["quads"] = ragged([np.zeros((40, 4, 2), np.float32) for _ in batch["page"]])
            if one_pool:  # and recognises the crops it cut, in the same actor
                return Recognize()(with_crops(out))
            return with_crops(out) if crop_in_detect else out

    class Recognize:
        def __call__(self, batch):  # type: ignore[no-untyped-def]
            out = {k: v for k, v in batch.items() if k not in ("crop_pixels", "crop_shapes")}
            out["rec_texts"] = np.array(["[]"] * len(batch["page"]), dtype=object)
            return out

    def write(batch):  # type: ignore[no-untyped-def]
        return {"rows": np.array([len(batch["page"])])}

    rows = -(-pages // range_size)  # a row per page, or per range of pages
    ds = ray.data.range(rows, override_num_blocks=min(rows, 1000) if range_size > 1 else rows)
    if not load_in_detect:
        ds = ds.map_batches(load_range, batch_size=1, batch_format="numpy", num_cpus=0.25)
    ds = ds.map_batches(
        Detect,
        batch_size=max(1, 16 // range_size) if load_in_detect else 16,  # ranges_per_call
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=1),
        num_cpus=0.5,
    )
    if not crop_in_detect:
        ds = ds.map_batches(with_crops, batch_size=8, batch_format="numpy", num_cpus=0.25)
    if not one_pool:
        ds = ds.map_batches(
            Recognize, batch_size=32, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=1), num_cpus=0.5
        )
    return ds.map_batches(write, batch_size=150, batch_format="numpy", num_cpus=0.25)


def run_variant(
    folder: str,
    pages: int,
    unique: int,
    crop_in_detect: bool,
    grey: bool,
    load_in_detect: bool,
    one_pool: bool,
    range_size: int = 1,
) -> dict[str, float]:
    """CPU ms per page and pages/s of ``pages`` pages, less a run of ``pages // 4``."""
    import ray

    ray.init(address="local", num_cpus=2, object_store_memory=2 << 30, include_dashboard=False, log_to_driver=False)
    runs = []
    # A first run starts the task workers; each later run starts its own actors, so the large
    # run minus the small one leaves the per-page cost alone.
    for count in (pages // 4, pages // 4, pages):
        cpu, start = machine_cpu_seconds(), time.perf_counter()
        rows = sum(
            int(b["rows"].sum())
            for b in build(
                folder, count, unique, crop_in_detect, grey, load_in_detect, one_pool, range_size
            ).iter_batches()
        )
        runs.append((count, rows, machine_cpu_seconds() - cpu, time.perf_counter() - start))
    ray.shutdown()
    (small, small_rows, small_cpu, small_wall), (large, large_rows, large_cpu, large_wall) = runs[1:]
    if (small_rows, large_rows) != (small, large):
        raise RuntimeError(f"pages lost: {small_rows}/{small}, {large_rows}/{large}")
    extra = large - small
    return {
        "cpu_ms_per_page": 1000 * (large_cpu - small_cpu) / extra,
        "pages_per_second": extra / max(large_wall - small_wall, 1e-9),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=400)
    parser.add_argument("--unique", type=int, default=8, help="distinct rendered pages (default 8)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--worker", nargs=8, help=argparse.SUPPRESS)
    parser.add_argument("--variants", default="", help="layout names separated by ';' (default: all)")
    args = parser.parse_args()
    if args.worker:
        folder, pages, unique, range_size, *flags = args.worker
        switches = (flag == "1" for flag in flags)
        print(json.dumps(run_variant(folder, int(pages), int(unique), *switches, range_size=int(range_size))))
        return 0
    if args.pages < 8:
        parser.error("--pages must be at least 8")
    unknown = [name for name in args.variants.split(";") if args.variants and name not in VARIANTS]
    if unknown:
        parser.error(f"unknown --variants {unknown}; known: {'; '.join(VARIANTS)}")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_transport_") as tmp:
        write_inputs(Path(tmp), args.unique)
        for name, variant in VARIANTS.items():  # one process (and one Ray) per variant
            if args.variants and name not in args.variants.split(";"):
                continue
            flags = ["1" if variant.get(key) else "0" for key in FLAGS]
            range_size = str(variant.get("range_size", 1))
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", tmp, str(args.pages), str(args.unique), range_size, *flags],
                capture_output=True,
                text=True,
                check=False,
                timeout=900,  # a layout whose stages cannot all get a CPU would wait forever
            )
            if proc.returncode != 0:
                raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
            results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    reference = next(iter(results.values()))["cpu_ms_per_page"]
    print(f"{args.pages} pages (less a run of {args.pages // 4}), 1240 x 1754, 2 Ray CPUs; Ray's part only\n")
    print(f"{'layout':38s} {'CPU ms/page':>12s} {'ratio':>6s} {'pages/s':>8s}")
    for name, result in results.items():
        ratio = result["cpu_ms_per_page"] / reference
        print(f"{name:38s} {result['cpu_ms_per_page']:12.1f} {ratio:6.2f} {result['pages_per_second']:8.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"pages": args.pages, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
