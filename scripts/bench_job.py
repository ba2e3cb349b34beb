"""Benchmark of the batch job against the engine alone, on the same generated pages.

    python scripts/bench_job.py --pages 20 --scale 10

Runs, one after another, each in its own process:
1. the engine alone (``create_pipeline("OCR")``, one process, 2 threads) on N pages;
2. the whole job (``ocr-batch run`` with an embedded local Ray of ``--cpus`` CPUs) on the same N pages;
3. the whole job on ``--scale`` x N pages (the same pages repeated under new names).

Prints pages/s of each, the job/engine ratio, wall and CPU time per stage (from the job
summary) and the driver's peak RSS at N and scale x N pages, the machine's CPU seconds per page
of the engine and of the job, split into the stages' own CPU and the rest (Ray's own work), and
the job's CPU per kind of process (driver, each actor pool, task workers, Ray's daemons).
Targets: ratio >= 0.9, RSS growth <= 10%.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parent.parent


def make_pages(folder: Path, count: int, unique: int) -> None:
    """Write ``count`` PNG pages cycling through ``unique`` distinct text-heavy pages."""
    from ocr_actors.synth import render_page

    folder.mkdir(parents=True, exist_ok=True)
    encoded = []
    for i in range(unique):
        page = render_page(
            seed=9000 + i, columns=1 + i % 2, lines_per_column=22, kinds=("prose", "prose", "number", "currency")
        )
        encoded.append(cv2.imencode(".png", page.image)[1].tobytes())
    for i in range(count):
        (folder / f"page{i:05d}.png").write_bytes(encoded[i % unique])


def engine_worker(folder: str, threads: int) -> dict[str, float]:
    """The engine alone: load, warm up on one page, then time every page."""
    from ocr_actors import create_pipeline

    pipeline = create_pipeline("OCR", engine__threads=threads)
    paths = sorted(str(p) for p in Path(folder).glob("*.png"))
    next(pipeline.predict(paths[0]))
    start = time.perf_counter()
    pages = sum(1 for _ in pipeline.predict(paths))
    seconds = time.perf_counter() - start
    return {"pages": pages, "seconds": seconds, "pages_per_s": pages / seconds, "peak_rss_mb": _peak_rss_mb()}


def process_kind(title: str, comm: str) -> str:
    """Group a process by what it is in a Ray job: an actor pool (its class), the task workers
    (``ray::IDLE`` between tasks, ``ray::MapBatches(...)`` in one), a Ray system actor, or
    the command name (raylet, gcs_server)."""
    title = title or comm
    if title.startswith("ray::"):
        name = title[5:].split()[0] if title[5:].strip() else "?"
        if name.startswith("MapWorker("):  # a title too long for its argv space ends early
            actor = name[len("MapWorker(MapBatches(") :].rstrip(")")
            return f"{actor} actors" if actor else "actors (title cut short)"
        if name == "IDLE" or name.startswith("MapBatches("):
            return "task workers (write; load, crop when tasks)"  # one worker runs every kind of task
        return name
    return comm


class ProcessCpuSampler:
    """CPU seconds per :func:`process_kind` of every process that ran while in the ``with``
    block (``/proc``, sampled every ``interval_s``: a process that lives shorter than that may
    be missed); this process is ``driver``."""

    def __init__(self, interval_s: float = 0.25) -> None:
        import threading

        self.interval_s = interval_s
        self._seen: dict[int, list] = {}  # pid -> [kind, cpu at first sight, latest cpu]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK")

    def _sample(self, first: bool = False) -> None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except (OSError, IndexError):
                continue
            cpu = (int(stat[11]) + int(stat[12])) / self._tick
            kind = "driver" if pid == os.getpid() else process_kind(title.strip(), comm)
            if pid not in self._seen:
                self._seen[pid] = [kind, cpu if first else 0.0, cpu]
            else:
                self._seen[pid][2] = cpu
                self._seen[pid][0] = kind  # a worker that became an actor counts as the actor

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> ProcessCpuSampler:
        self._sample(first=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()

    def by_kind(self) -> dict[str, float]:
        """CPU seconds used while sampling, per kind, largest first (kinds under 0.05 s left out)."""
        totals: dict[str, float] = {}
        for kind, first, last in self._seen.values():
            totals[kind] = totals.get(kind, 0.0) + last - first
        return {k: round(v, 2) for k, v in sorted(totals.items(), key=lambda kv: -kv[1]) if v >= 0.05}


def job_worker(folder: str, output: str, cpus: int, overrides: dict[str, object]) -> dict[str, object]:
    """The whole job with an embedded Ray; returns its summary plus the driver's peak RSS."""
    from ocr_actors.config import load_config
    from ocr_actors.job_config import JobConfig
    from ocr_actors.pipeline import run_job

    config = load_config(
        JobConfig,
        None,
        {
            "source.uri": folder,
            "output.uri": output,
            "ray.num_cpus": cpus,
            "ray.object_store_memory": 1 << 30,
            "output.rows_per_file": 20,
            **overrides,
        },
    )
    start = time.perf_counter()
    with ProcessCpuSampler() as processes:
        summary = run_job(config, progress=None).as_dict()
    summary["job_seconds_incl_ray_start"] = time.perf_counter() - start
    summary["cpu_seconds_by_process"] = processes.by_kind()
    summary["driver_peak_rss_mb"] = _peak_rss_mb()
    return summary


def _peak_rss_mb() -> float:
    from bench_engine import max_rss_mb  # scripts/ sibling: VmHWM, not the forking parent's peak

    return max_rss_mb()


def machine_cpu_seconds() -> float:
    """CPU time every process of this machine has used so far: a run's delta counts the Ray
    daemons and workers too, as long as nothing else runs."""
    from bench_engine import machine_busy_seconds  # scripts/ sibling

    busy = machine_busy_seconds()
    if busy is None:
        raise RuntimeError("needs Linux /proc/stat")
    return busy


def _run_worker(*args: str) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cpu_before = machine_cpu_seconds()
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", *args], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args[0]} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["machine_cpu_seconds"] = machine_cpu_seconds() - cpu_before
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=20, help="N pages (default 20)")
    parser.add_argument("--scale", type=int, default=10, help="the large run has scale x N pages (default 10)")
    parser.add_argument("--unique", type=int, default=10, help="distinct pages rendered (default 10)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the embedded Ray and engine threads")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="job config override (repeatable)"
    )
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        if kind == "engine":
            result = engine_worker(rest[0], int(rest[1]))
        else:
            result = job_worker(rest[0], rest[1], int(rest[2]), json.loads(rest[3]))
        print(json.dumps(result))
        return

    from ocr_actors.config import parse_override

    overrides = json.dumps(dict(parse_override(text) for text in args.set))
    work = Path(tempfile.mkdtemp(prefix="bench_job_"))
    try:
        one, small, large = work / "one", work / "small", work / "large"
        make_pages(one, 1, 1)
        make_pages(small, args.pages, min(args.unique, args.pages))
        make_pages(large, args.pages * args.scale, min(args.unique, args.pages))
        print(f"{args.pages} and {args.pages * args.scale} pages in {work}; {args.cpus} CPUs", flush=True)
        engine = _run_worker("engine", str(small), str(args.cpus))
        print(f"engine alone: {engine['pages_per_s']:.2f} pages/s", flush=True)
        runs = {}
        for name, folder in (("1 page", one), ("N pages", small), ("scale x N pages", large)):
            runs[name] = _run_worker("job", str(folder), str(work / f"out_{folder.name}"), str(args.cpus), overrides)
            print(f"job on {name}: {runs[name]['job_seconds_incl_ray_start']:.1f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # A 1-page run measures the fixed start-up (Ray, actors, model loading): subtracting it
    # leaves the rate a long job runs at.
    startup = runs["1 page"]["job_seconds_incl_ray_start"]
    print()
    print(
        f"{'run':<24}{'pages':>7}{'wall s':>9}{'pages/s':>9}{'after start-up':>16}{'x engine':>10}{'driver RSS MB':>15}"
    )
    print(
        f"{'engine alone, 1 process':<24}{engine['pages']:>7}{engine['seconds']:>9.1f}{engine['pages_per_s']:>9.2f}"
        f"{engine['pages_per_s']:>16.2f}{1.0:>10.2f}{engine['peak_rss_mb']:>15.0f}"
    )
    ratios = {}
    for name in ("N pages", "scale x N pages"):
        run = runs[name]
        wall = run["job_seconds_incl_ray_start"]
        steady = run["rows_written"] / max(wall - startup, 1e-9)
        ratios[name] = steady / engine["pages_per_s"]
        print(
            f"{'job, ' + name:<24}{run['rows_written']:>7}{wall:>9.1f}{run['rows_written'] / wall:>9.2f}"
            f"{steady:>16.2f}{ratios[name]:>10.2f}{run['driver_peak_rss_mb']:>15.0f}"
        )
    print(f"start-up (job on 1 page): {startup:.1f} s")
    large_run = runs["scale x N pages"]
    stages = large_run["seconds_per_stage"]
    total = sum(stages.values())
    cpu_stages = large_run["cpu_seconds_per_stage"]
    pages = large_run["rows_written"]
    print("time per stage on the large run (seconds summed over pages; share of all stage time; CPU time):")
    for stage, seconds in stages.items():
        print(
            f"  {stage:<10} {seconds:8.1f} s  {1000 * seconds / pages:7.1f} ms/page  "
            f"{100 * seconds / total:5.1f}%  CPU {1000 * cpu_stages.get(stage, 0.0) / pages:7.1f} ms/page"
        )
    # CPU per page with start-up removed: the large run minus the N-page run, over the pages
    # between them (a 1-page run starts fewer Ray workers than any longer run, so subtracting it
    # would charge worker start-ups to pages), against the engine's whole run per page.
    small_run = runs["N pages"]
    extra_pages = pages - small_run["rows_written"]
    job_cpu = (large_run["machine_cpu_seconds"] - small_run["machine_cpu_seconds"]) / extra_pages
    engine_cpu = engine["machine_cpu_seconds"] / engine["pages"]
    print(
        f"CPU per page (whole machine, large run minus N-page run): engine {engine_cpu:.3f} core-s, "
        f"job {job_cpu:.3f} core-s ({job_cpu / engine_cpu:.2f}x)"
    )
    # The stages' own CPU (every thread of the process running each, while it ran) against the
    # machine's: the rest is Ray's (driver, raylet, object store, (de)serialisation between stages,
    # and its daemons' CPU for the longer run time).
    small_stages = small_run["cpu_seconds_per_stage"]
    in_stages = sum(v - small_stages.get(k, 0.0) for k, v in cpu_stages.items()) / extra_pages
    print(
        f"of which inside the stages {in_stages:.3f} core-s, outside them {job_cpu - in_stages:.3f} core-s "
        f"({100 * (job_cpu - in_stages) / job_cpu:.0f}%: Ray's own work, between and around the stages)"
    )
    # Where the CPU went, per kind of process, per page between the two runs.
    small_by_process = small_run["cpu_seconds_by_process"]
    by_process = large_run["cpu_seconds_by_process"]
    print(f"CPU by process, ms per page (large run minus N-page run, over {extra_pages} pages):")
    for kind, seconds in by_process.items():
        extra = 1000 * (seconds - small_by_process.get(kind, 0.0)) / extra_pages
        print(f"  {kind:<36} {extra:7.1f}")
    growth = large_run["driver_peak_rss_mb"] / runs["N pages"]["driver_peak_rss_mb"] - 1
    ratio = ratios["scale x N pages"]
    print()
    print(
        f"targets: job/engine >= 0.90 -> {ratio:.2f} ({'met' if ratio >= 0.9 else 'missed'}); "
        f"driver RSS growth N -> {args.scale}N <= 10% -> {100 * growth:+.1f}% ({'met' if growth <= 0.10 else 'missed'})"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"engine": engine, **runs}, indent=2))


if __name__ == "__main__":
    main()
