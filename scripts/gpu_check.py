#!/usr/bin/env python
"""GPU check: the batch job on N generated pages on this machine's GPUs, with GPU utilisation,
against RapidOCR on the same GPU and pages.

    bash scripts/gpu_check.sh                 # installs the GPU extra, then runs this
    python scripts/gpu_check.py --pages 3000  # already installed
    python scripts/gpu_check.py --device cpu --pages 8 --engine-pages 4 --reference-pages 2   # smoke run

Three runs, one after another, each in its own process, while ``nvidia-smi`` samples every
GPU every 200 ms:

1. **job**: ``run_job`` (embedded Ray using every CPU and GPU of the machine) on ``--pages``
   PNG pages (``--unique`` text-heavy generated pages, hard-linked under new names), with
   ``jobs/configs/job_gpu.yaml`` scaled to the machine's GPUs (``--set key=value`` overrides
   any setting); accuracy from the Parquet it wrote;
2. **ours, engine**: ``create_pipeline("OCR")`` in one process, same models and device;
3. **RapidOCR**: ``rapidocr`` 3.10 (PP-OCRv6 small) on ONNX Runtime's CUDA provider.

Prints pages/s (whole run, and for the job after the first part file and once every actor was
warm, with its pages per 30 s), pages/s per GPU, mean GPU utilisation and peak GPU memory over
each timed part, CER / WER / order-independent line CER, and the targets (>= 150 pages/s per
GPU, >= 70% utilisation; the job judged on its warm window when it has one). ``--json`` keeps it all.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

import bench_engine  # noqa: E402  (scripts/ sibling)

TARGET_PAGES_PER_GPU = 150.0
TARGET_UTILISATION = 70.0
SMI_QUERY = "timestamp,index,utilization.gpu,memory.used"


# ============================================================================ nvidia-smi


@dataclass(frozen=True)
class GpuSample:
    """One nvidia-smi reading: ``at`` epoch seconds, GPU index, utilisation %, memory used MiB."""

    at: float
    index: int
    utilisation: float
    memory_mb: float


def parse_smi_line(line: str, received_at: float) -> GpuSample | None:
    """Parse ``nvidia-smi --query-gpu=timestamp,index,utilization.gpu,memory.used
    --format=csv,noheader,nounits`` output; None for lines that are not readings
    (headers, blank lines, ``[N/A]`` fields). The sample's time is nvidia-smi's own
    timestamp (local time), since a piped nvidia-smi may deliver lines in bursts;
    ``received_at`` stands in when it cannot be read."""
    fields = [f.strip() for f in line.split(",")]
    if len(fields) != 4:
        return None
    try:
        at = datetime.strptime(fields[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
    except ValueError:
        at = received_at
    try:
        return GpuSample(at, int(fields[1]), float(fields[2]), float(fields[3]))
    except ValueError:
        return None


def summarise_samples(samples: Sequence[GpuSample], start: float, end: float) -> dict[str, float | int | None]:
    """Mean utilisation (over all GPUs) and peak memory of the samples taken in ``[start, end]``."""
    window = [s for s in samples if start <= s.at <= end]
    if not window:
        return {"samples": 0, "utilisation_mean": None, "memory_peak_mb": None}
    return {
        "samples": len(window),
        "utilisation_mean": round(sum(s.utilisation for s in window) / len(window), 1),
        "memory_peak_mb": max(s.memory_mb for s in window),
    }


def list_gpus() -> list[tuple[str, str]]:
    """``(nvidia-smi index, name)`` of the NVIDIA GPUs this process may use: nvidia-smi's
    list, narrowed to ``CUDA_VISIBLE_DEVICES`` (indices or ``GPU-…`` UUIDs) when that is
    set; empty without a driver."""
    if shutil.which("nvidia-smi") is None:
        return []
    proc = subprocess.run(
        ["nvidia-smi", "--query-gpu=index,uuid,name", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return []
    rows = [[f.strip() for f in line.split(",", 2)] for line in proc.stdout.splitlines() if line.count(",") >= 2]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [(index, name) for index, _, name in rows]
    wanted = [v.strip() for v in visible.split(",") if v.strip()]
    return [(index, name) for want in wanted for index, uuid, name in rows if want in (index, uuid)]


class GpuSampler:
    """Samples the GPUs (``gpu_ids``, else all) with ``nvidia-smi --loop-ms`` in the background
    while in the ``with`` block."""

    def __init__(self, gpu_ids: Sequence[str] = (), interval_ms: int = 200) -> None:
        self.gpu_ids = list(gpu_ids)
        self.interval_ms = interval_ms
        self.samples: list[GpuSample] = []
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi") is None:
            return self
        self._proc = subprocess.Popen(
            [
                "nvidia-smi",
                f"--query-gpu={SMI_QUERY}",
                "--format=csv,noheader,nounits",
                f"--loop-ms={self.interval_ms}",
                *([f"--id={','.join(self.gpu_ids)}"] if self.gpu_ids else []),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            sample = parse_smi_line(line, time.time())
            if sample is not None:
                self.samples.append(sample)

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=5)


# ============================================================================ host CPU


CGROUP_CPU_FILES = (
    ("/sys/fs/cgroup/cpu.stat", 1e-6),  # cgroup v2: "usage_usec N"
    ("/sys/fs/cgroup/cpuacct/cpuacct.usage", 1e-9),  # cgroup v1: nanoseconds
)


def host_cpu_seconds(cgroup_files: Sequence[tuple[str, float]] = CGROUP_CPU_FILES) -> float | None:
    """CPU seconds this machine's processes have used so far: the container's cgroup counter
    when there is one (other tenants of a shared host left out), else ``/proc/stat``'s busy time
    over the CPUs this process may run on; None when neither can be read."""
    for path, unit in cgroup_files:
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            fields = line.split()
            if len(fields) == 1 and fields[0].isdigit():
                return int(fields[0]) * unit
            if len(fields) == 2 and fields[0] == "usage_usec":
                return int(fields[1]) * unit
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    allowed = {f"cpu{i}" for i in os.sched_getaffinity(0)}
    busy = 0
    for line in lines:
        fields = line.split()
        if fields and fields[0] in allowed:
            values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
            busy += sum(values) - values[3] - values[4] - values[7]
    return busy / os.sysconf("SC_CLK_TCK")


def busy_cores(samples: Sequence[tuple[float, float]], start: float, end: float) -> float | None:
    """Mean cores busy over ``[start, end]`` from ``(epoch time, CPU seconds)`` samples in time
    order: the rate between the last sample at or before ``start`` and the first at or after
    ``end`` (the nearest ones inside when the sampling began late or ended early, so a short
    window still gets the rate around it); None when that leaves no time between them."""
    if not samples:
        return None
    before = next((s for s in reversed(samples) if s[0] <= start), samples[0])
    after = next((s for s in samples if s[0] >= end), samples[-1])
    if after[0] <= before[0]:
        return None
    return (after[1] - before[1]) / (after[0] - before[0])


class HostCpuSampler:
    """Samples :func:`host_cpu_seconds` every ``interval_s`` in the background while in the
    ``with`` block, so a run can say whether the host's cores, not the GPU, were the limit."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> HostCpuSampler:
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        seconds = host_cpu_seconds()
        if seconds is not None:
            self.samples.append((time.time(), seconds))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sample()

    def summary(self, start: float, end: float) -> dict[str, float | int | None]:
        """Mean busy cores over ``[start, end]`` and the cores this process may use."""
        cores = busy_cores(self.samples, start, end)
        return {"busy_cores": None if cores is None else round(cores, 2), "cores": len(os.sched_getaffinity(0))}


# ============================================================================ pages


def upright_specs(count: int) -> list[bench_engine.PageSpec]:
    """``count`` text-heavy upright pages of the benchmark mix (rotated variants left out)."""
    variants = [(tags, kwargs) for tags, kwargs in bench_engine.PAGE_VARIANTS if not kwargs.get("rotation")]
    return [
        bench_engine.PageSpec(i, 7000 + i, variants[i % len(variants)][0], dict(variants[i % len(variants)][1]))
        for i in range(count)
    ]


def write_pages(folder: Path, images: Sequence[Any], count: int) -> None:
    """``count`` PNG pages cycling through ``images`` (hard links where the disk allows)."""
    import cv2

    unique_dir = folder.parent / f"{folder.name}-unique"
    unique_dir.mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    originals = []
    for i, image in enumerate(images):
        path = unique_dir / f"u{i:04d}.png"
        cv2.imwrite(str(path), image)
        originals.append(path)
    for i in range(count):
        target = folder / f"page{i:06d}-u{i % len(images):04d}.png"
        try:
            os.link(originals[i % len(images)], target)
        except OSError:
            shutil.copyfile(originals[i % len(images)], target)


# ============================================================================ the job (worker side)


def job_overrides(
    device: str, gpus: int, pages: int, cpus: int, actors_per_gpu: int = 3, one_pool: bool = True
) -> dict[str, object]:
    """Job settings for this machine: ``job_gpu.yaml`` with a fixed actor layout per GPU.

    ``one_pool`` (``resources.models_in_one_actor``, as ``job_gpu.yaml``): ``actors_per_gpu``
    actors per GPU that each detect, crop and recognise (one CUDA context and one set of
    kernel set-ups each), sharing the GPU equally. Otherwise ``actors_per_gpu`` detection
    and as many recognition actors. The actors reserve a quarter of the CPUs between them
    (at least 0.25 and at most 4 each, one engine thread): per page the load and write
    tasks, with Ray's cost of moving pages, need more CPU than the actors' own pre- and
    post-processing (``bench_host_costs.py``: decoding alone is over half of the host work),
    and a reservation only caps how many run at once, so the tasks get the other three
    quarters. On CPU (smoke runs) the default job settings. About 20 part files, so the rate
    after the first one is measured over most of the run.
    """
    rows_per_file = max(1, min(200, pages // 20))
    base: dict[str, object] = {"ray.address": "", "output.rows_per_file": rows_per_file}
    if device == "cpu":
        return base
    stages = ("detect",) if one_pool else ("detect", "recognize")
    actors = len(stages) * actors_per_gpu * gpus
    per_actor = max(0.25, min(4.0, 0.25 * cpus / actors))
    gpu_share = int(100 / (len(stages) * actors_per_gpu)) / 100  # rounded down: the shares fit in one GPU
    layout: dict[str, object] = {**base, "resources.models_in_one_actor": one_pool}
    for stage in stages:
        layout.update(
            {
                f"resources.{stage}.min_actors": actors_per_gpu * gpus,
                f"resources.{stage}.max_actors": actors_per_gpu * gpus,
                f"resources.{stage}.num_gpus": gpu_share,
                f"resources.{stage}.num_cpus": per_actor,
                f"resources.{stage}.threads": 1,
            }
        )
    return layout


def one_pool_layout(sets: Sequence[str]) -> bool:
    """Whether the job runs its models in one actor pool: the last ``--set
    resources.models_in_one_actor=...``, else ``job_gpu.yaml``'s setting."""
    import yaml

    for item in reversed(sets):
        key, value = _parse_set(item)
        if key == "resources.models_in_one_actor":
            return bool(value)
    settings = yaml.safe_load((ROOT / "jobs" / "configs" / "job_gpu.yaml").read_text())
    return bool(settings.get("resources", {}).get("models_in_one_actor", False))


WARMUP_LINE = re.compile(r"\b(detector|recognizer) warm-up \(pid \d+[^)]*\):.*")


def actor_warmup_lines(ray_temp: Path | None = None, since: float = 0.0) -> list[str]:
    """The model actors' warm-up lines (``<model> warm-up (pid N): ...``, printed at actor
    start: shapes, seconds, wait for the GPU) from the worker logs of the newest Ray session
    under ``ray_temp`` (``RAY_TMPDIR``, else ``/tmp/ray``) started after ``since`` (epoch s);
    the job's embedded Ray keeps them out of the driver's output."""
    root = ray_temp or Path(os.environ.get("RAY_TMPDIR") or "/tmp/ray")
    sessions = [d for d in root.glob("session_2*") if d.is_dir() and d.stat().st_mtime >= since - 5]
    if not sessions:
        return []
    logs = max(sessions, key=lambda d: d.stat().st_mtime) / "logs"
    lines = []
    for path in sorted(logs.glob("worker-*")):
        with contextlib.suppress(OSError):
            for line in path.read_text(errors="replace").splitlines():
                match = WARMUP_LINE.search(line)
                if match:
                    lines.append(match.group(0))
    return lines


READY_AT = re.compile(r"ready at (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z")


def last_ready_at(warmup_lines: Sequence[str]) -> float | None:
    """Epoch seconds at which the last of the actors (and their call threads) got warm: the
    latest ``ready at <UTC time>Z`` of their warm-up lines; None when no line has one."""
    times = [
        datetime.fromisoformat(m.group(1)).replace(tzinfo=UTC).timestamp()
        for m in map(READY_AT.search, warmup_lines)
        if m
    ]
    return max(times) if times else None


def part_file_timeline(output: Path) -> list[tuple[float, int]]:
    """``(mtime epoch s, rows)`` of each committed part file (``part-*.parquet`` directly
    under ``output``), oldest first: when the job's pages reached the output."""
    import pyarrow.parquet as pq

    timeline = []
    for path in output.glob("part-*.parquet"):
        with contextlib.suppress(OSError, ValueError):
            timeline.append((path.stat().st_mtime, pq.ParquetFile(path).metadata.num_rows))
    return sorted(timeline)


def rate_after(timeline: Sequence[tuple[float, int]], start: float) -> tuple[float, int, float, float] | None:
    """Pages/s from the first part file written after ``start`` to the last one, counting
    the rows of the files after that first (whose pages may partly predate ``start``):
    ``(pages/s, pages counted, window start, window end)``; None with fewer than two files
    after ``start``."""
    after = [(at, rows) for at, rows in timeline if at > start]
    if len(after) < 2 or after[-1][0] <= after[0][0]:
        return None
    pages = sum(rows for _, rows in after[1:])
    return pages / (after[-1][0] - after[0][0]), pages, after[0][0], after[-1][0]


def pages_per_interval(timeline: Sequence[tuple[float, int]], start: float, end: float, step: float) -> list[int]:
    """Pages committed in each ``step`` seconds from ``start`` to ``end`` (a file counts in
    the interval its mtime falls in): how the run's rate grew after start-up."""
    count = max(1, int(-(-(end - start) // step)))
    buckets = [0] * count
    for at, rows in timeline:
        buckets[min(count - 1, max(0, int((at - start) // step)))] += rows
    return buckets


def gpu_ocr_overrides() -> dict[str, object]:
    """``job_gpu.yaml``'s ``ocr`` settings as dotted overrides (its CPU thread count left out),
    so the single-process engine runs with the job's GPU shapes: bucketed and padded
    recognition batches, one detection page shape, the recogniser's warm-up."""
    import yaml

    settings = yaml.safe_load((ROOT / "jobs" / "configs" / "job_gpu.yaml").read_text())["ocr"]
    flat: dict[str, object] = {}

    def walk(prefix: str, node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}{key}.", value)
        else:
            flat[prefix.rstrip(".")] = node

    walk("", settings)
    flat.pop("engine.threads", None)
    return flat


def job_worker(request: dict[str, Any]) -> dict[str, Any]:
    """Run the job; returns its summary with epoch times of its start and first output."""
    from ocr_actors.config import load_config
    from ocr_actors.job_config import JobConfig
    from ocr_actors.pipeline import run_job

    config_file = str(ROOT / "jobs" / "configs" / "job_gpu.yaml") if request["device"] != "cpu" else None
    overrides = {"source.uri": request["input"], "output.uri": request["output"], **request["overrides"]}
    config = load_config(JobConfig, config_file, overrides)
    started_at = time.time()
    try:
        summary = run_job(config, progress=sys.stderr).as_dict()
    except Exception as exc:  # the report says why instead of losing the other runs
        summary = {"status": "failed", "message": f"{type(exc).__name__}: {exc}"}
    summary["started_at"] = started_at
    Path(request["result_file"]).write_text(json.dumps(summary))
    return summary


def read_job_lines(output: str, count: int) -> list[list[bench_engine.Line]]:
    """The job's lines for the first ``count`` unique pages (``page…-uNNNN.png``), from its Parquet."""
    import numpy as np
    import pyarrow.dataset as ds

    table = ds.dataset(output, format="parquet").to_table(columns=["source_uri", "lines"])
    pages: list[list[bench_engine.Line] | None] = [None] * count
    for uri, lines in zip(table["source_uri"].to_pylist(), table["lines"].to_pylist(), strict=True):
        unique = int(Path(uri).stem.rsplit("-u", 1)[1])
        if unique < count and pages[unique] is None:
            pages[unique] = [
                bench_engine.Line(np.asarray(ln["poly"], np.float64), ln["text"], ln["score"]) for ln in lines or []
            ]
    return [p or [] for p in pages]


# ============================================================================ orchestration


def run_job_worker(request: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run the job in ``python gpu_check.py --job-worker`` (its own process group); its
    summary comes back through a file (libraries may print to stdout). At the time limit the
    group gets SIGINT, then SIGKILL 20 s later, so no Ray process of the job outlives it and
    holds the GPU during the later runs. A crash or timeout gives a failed summary."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--job-worker", json.dumps(request)],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process_group(proc)
        return {"status": "failed", "message": f"timed out after {timeout:g} s", "timed_out": True}
    finally:
        if proc.poll() is None:  # KeyboardInterrupt (gpu_check.sh's limit) while waiting
            stop_process_group(proc)
    result = Path(request["result_file"])
    if not result.exists():
        return {"status": "failed", "message": f"job worker exited with {proc.returncode} and no summary"}
    return json.loads(result.read_text())


def stop_process_group(proc: subprocess.Popen[Any], grace_s: float = 20.0) -> None:
    """SIGINT to ``proc``'s process group, up to ``grace_s`` for ``proc`` to end, then SIGKILL
    to whatever of the group is left (its Ray processes may linger); waits for ``proc``."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=grace_s)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def rows_committed(output: Path) -> int:
    """Rows in the job's committed part files so far (``_tmp``/``_jobs`` are ignored)."""
    import pyarrow.dataset as ds

    try:
        return int(ds.dataset(str(output), format="parquet").count_rows())
    except (FileNotFoundError, OSError, ValueError):
        return 0


def accuracy(predictions: Sequence[Sequence[bench_engine.Line]], truths: Sequence[Any]) -> dict[str, float]:
    total = sum(
        (bench_engine.score_page(p, t) for p, t in zip(predictions, truths, strict=True)), bench_engine.Counts()
    )
    return {k: round(v, 5) for k, v in total.summary().items()}


def engine_run(
    name: str, spec: bench_engine.EngineSpec, pages_file: Path, specs: Sequence[Any], truths: Sequence[Any], args: Any
) -> dict[str, Any]:
    """One engine in its own process, sampled; pages/s over the timed loop only."""
    repeat = max(1, -(-getattr(args, f"{name}_pages") // len(specs)))
    timeout = args.reference_timeout if name == "reference" else args.engine_timeout
    # on a GPU, a warm-up pass over every page: each new input shape costs a one-off kernel
    # set-up (about 1 s), which the timed loop over the same pages then no longer pays
    warmup_pages = len(specs) if args.device == "gpu" else 1
    with GpuSampler(args.gpu_ids[:1]) as sampler, HostCpuSampler() as cpu_sampler:  # one process, first GPU
        raw, error = bench_engine.run_engine(
            spec,
            pages_file,
            len(specs),
            args.threads,
            [False] * len(specs),
            args.verbose,
            repeat,
            timeout,
            warmup_pages,
        )
    if raw is None:
        return {"name": name, "ok": False, "error": error}
    result = bench_engine.evaluate(spec, raw, specs, truths)
    providers = result.info.get("providers")
    if args.device == "gpu" and providers and providers[0] != "CUDAExecutionProvider":
        return {"name": name, "ok": False, "error": f"ran on {providers}, not CUDA", "info": result.info}
    return {
        "name": name,
        "ok": True,
        "pages": len(specs) * repeat,
        "seconds": round(result.total_s, 3),
        "pages_per_s": round(result.pages_per_s, 2),
        "steady_pages_per_s": round(result.pages_per_s, 2),
        "load_s": round(result.load_s, 2),
        "warmup_s": round(result.warmup_s, 2),
        "warmup_pages": warmup_pages,
        "peak_rss_mb": round(result.peak_rss_mb),
        "gpu": summarise_samples(sampler.samples, raw["loop_started_at"], raw["loop_ended_at"]),
        "host_cpu": cpu_sampler.summary(raw["loop_started_at"], raw["loop_ended_at"]),
        "accuracy": {k: round(v, 5) for k, v in result.metrics.items()},
        "info": result.info,
    }


def parse_job_variants(texts: Sequence[str]) -> list[list[str]]:
    """Each ``--job-variant`` as its ``KEY=VALUE`` items (shell-quoted, so a YAML list with
    spaces stays one item), every item checked; ValueError for an empty or bad variant."""
    variants = []
    for text in texts:
        items = shlex.split(text)
        if not items:
            raise ValueError("--job-variant needs at least one KEY=VALUE")
        for item in items:
            _parse_set(item)
        variants.append(items)
    return variants


def job_variant_name(extra_sets: Sequence[str]) -> str:
    """``job``, or ``job [k=v ...]`` for a run with ``--job-variant`` settings."""
    return f"job [{' '.join(extra_sets)}]" if extra_sets else "job"


def is_job(run: dict[str, Any]) -> bool:
    return str(run["name"]).startswith("job")


def job_run(
    workdir: Path,
    specs: Sequence[Any],
    truths: Sequence[Any],
    args: Any,
    gpus: int,
    extra_sets: Sequence[str] = (),
    timeout: float | None = None,
) -> dict[str, Any]:
    """The job on the written pages with ``--set`` and then ``extra_sets`` (a ``--job-variant``),
    within ``timeout`` (default ``args.timeout``); each variant writes its own output."""
    name = job_variant_name(extra_sets)
    timeout = args.timeout if timeout is None else timeout
    sets = [*args.set, *extra_sets]
    pages_dir = workdir / "pages"
    slug = re.sub(r"[^A-Za-z0-9]+", "-", " ".join(extra_sets)).strip("-")
    output = workdir / (f"output-{slug}" if slug else "output")
    one_pool = one_pool_layout(sets)
    actors_per_gpu = args.actors_per_gpu or 3
    cpus = len(os.sched_getaffinity(0))
    overrides = job_overrides(args.device, gpus, args.pages, cpus, actors_per_gpu, one_pool)
    overrides.update(dict(_parse_set(item) for item in sets))
    request = {
        "device": args.device,
        "input": str(pages_dir),
        "output": str(output),
        "overrides": overrides,
        "result_file": str(workdir / ("job-summary.json" if not extra_sets else f"{output.name}-summary.json")),
    }
    started_at = time.time()
    with GpuSampler(args.gpu_ids) as sampler, HostCpuSampler() as cpu_sampler:
        summary = run_job_worker(request, timeout=timeout)
    warmups = actor_warmup_lines(since=started_at)
    timeline = part_file_timeline(output)
    if summary["status"] != "succeeded":
        failed: dict[str, Any] = {
            "name": name,
            "ok": False,
            "error": summary.get("message", summary["status"]),
            "overrides": overrides,
            "warmups": warmups,
        }
        if summary.get("timed_out"):  # what it did before the limit still tells a story
            ended_at = started_at + timeout
            rows = rows_committed(output)
            failed["partial"] = {
                "rows_committed": rows,
                "seconds": round(timeout, 1),
                "pages_per_s": round(rows / timeout, 2),
                "gpu": summarise_samples(sampler.samples, started_at, ended_at),
                "host_cpu": cpu_sampler.summary(started_at, ended_at),
                "pages_per_30s": pages_per_interval(timeline, started_at, ended_at, 30.0),
            }
            failed["partial"].update(warm_figures(timeline, warmups, sampler, cpu_sampler))
        return failed
    if args.device == "gpu" and summary["gpu_fallback"]:  # its figures would be a CPU run's
        return {"name": name, "ok": False, "error": "ran on CPU: the job's Ray cluster had no GPU (gpu_fallback)"}
    started = summary["started_at"]
    # the steady rate counts from the first part file; when every file came with the first one
    # (a short run) there is none, and the whole run's rate stands in
    steady_measured = summary["steady_pages_per_second"] > 0
    steady_start = started + (summary["first_output_seconds"] if steady_measured else 0.0)
    end = started + summary["wall_seconds"]
    return {
        "name": name,
        "ok": True,
        "pages": summary["rows_written"],
        "seconds": summary["wall_seconds"],
        "pages_per_s": summary["pages_per_second"],
        "steady_pages_per_s": summary["steady_pages_per_second"] if steady_measured else summary["pages_per_second"],
        "steady_measured": steady_measured,
        "first_output_s": summary["first_output_seconds"],
        "error_rows": summary["error_rows"],
        "gpu_fallback": summary["gpu_fallback"],
        "gpu": summarise_samples(sampler.samples, steady_start, end),
        "host_cpu": cpu_sampler.summary(steady_start, end),
        "host_cpu_run": cpu_sampler.summary(started, end),
        # pages cycle through the unique ones: fewer pages than unique ones score only those
        "accuracy": accuracy(read_job_lines(str(output), min(args.pages, len(specs))), truths[: args.pages]),
        "seconds_per_stage": summary["seconds_per_stage"],
        "cpu_seconds_per_stage": summary["cpu_seconds_per_stage"],
        "overrides": overrides,
        "warmups": warmups,
        "pages_per_30s": pages_per_interval(timeline, started, end, 30.0),
        **warm_figures(timeline, warmups, sampler, cpu_sampler),
    }


def warm_figures(
    timeline: Sequence[tuple[float, int]], warmups: Sequence[str], sampler: GpuSampler, cpu_sampler: HostCpuSampler
) -> dict[str, Any]:
    """The job's rate once every actor was warm (:func:`rate_after` the last ``ready at``),
    with GPU utilisation and host CPU over that window; ``warm_pages_per_s`` is None when
    fewer than two part files came after it (or no warm-up line had a time)."""
    ready_at = last_ready_at(warmups)
    if ready_at is None or (warm := rate_after(timeline, ready_at)) is None:
        return {"warm_pages_per_s": None, "last_ready_at": ready_at}
    rate, pages, start, end = warm
    return {
        "last_ready_at": ready_at,
        "warm_pages_per_s": round(rate, 2),
        "warm_window": {"pages": pages, "seconds": round(end - start, 1), "after_ready_s": round(start - ready_at, 1)},
        "gpu_warm": summarise_samples(sampler.samples, start, end),
        "host_cpu_warm": cpu_sampler.summary(start, end),
    }


def _parse_set(item: str) -> tuple[str, object]:
    from ocr_actors.config import parse_override

    return parse_override(item)


def host_cpu_per_page(run: dict[str, Any]) -> dict[str, Any] | None:
    """The job's host CPU per page in core-seconds over the whole run, start-up included
    (a steady window can mislead: part files may arrive in bursts): ``total`` (busy cores x
    seconds / pages), each stage's own (its CPU seconds / pages) and ``outside`` the stages
    (Ray's work, start-up, the rest of the machine); None without a host CPU reading."""
    host = run.get("host_cpu_run") or {}
    if host.get("busy_cores") is None or not run.get("seconds") or not run.get("pages"):
        return None
    total = host["busy_cores"] * run["seconds"] / run["pages"]
    stages = {k: v / run["pages"] for k, v in (run.get("cpu_seconds_per_stage") or {}).items()}
    return {"total": total, "stages": stages, "outside": total - sum(stages.values())}


def format_host_cpu(host: dict[str, Any] | None) -> str:
    """``"busy/cores"`` (mean cores busy over the timed part), or n/a."""
    if not host or host.get("busy_cores") is None:
        return "n/a"
    return f"{host['busy_cores']:.1f}/{host['cores']}"


def warm_lines(run: dict[str, Any], name: str = "job") -> list[str]:
    """The job's pages per 30 s and its rate once every actor was warm (:func:`warm_figures`),
    for a finished run or the ``partial`` figures of one that hit its time limit; lines start
    with the run's ``name``."""
    lines = []
    if run.get("pages_per_30s"):
        lines.append(f"{name} pages committed per 30 s from its start: " + " ".join(map(str, run["pages_per_30s"])))
    if run.get("warm_pages_per_s") is not None:
        window, gpu = run["warm_window"], run["gpu_warm"]
        util = "n/a" if gpu["utilisation_mean"] is None else f"{gpu['utilisation_mean']:.0f}%"
        lines.append(
            f"{name} once every actor was warm: {run['warm_pages_per_s']:.2f} pages/s ({window['pages']} pages in "
            f"{window['seconds']:.0f} s, from the first part file {window['after_ready_s']:.0f} s after the last "
            f"warm-up), GPU utilisation {util}, host CPU cores {format_host_cpu(run.get('host_cpu_warm'))}"
        )
    elif run.get("last_ready_at") is not None:
        lines.append(
            f"{name} once every actor was warm: fewer than two part files after the last warm-up; more --pages"
        )
    elif "warm_pages_per_s" in run:
        lines.append(f"{name} once every actor was warm: n/a (no actor printed a warm-up line: warm-up off, or none)")
    return lines


def cuda_session_problem(model: str = "PP-OCRv6_tiny_det") -> str | None:
    """Why a session of ``model`` cannot run on the CUDA provider, or None when it can: before
    any run, so a host whose CUDA or cuDNN libraries ONNX Runtime cannot load (it would run
    every model on the CPU with a mere warning) costs seconds, not the whole check."""
    from ocr_actors.runtime.engines import EngineUnavailableError, create_session
    from ocr_actors.runtime.models import resolve_model

    try:
        create_session(resolve_model(model).path_for("onnxruntime"), "onnxruntime", device="gpu", threads=1)
    except EngineUnavailableError as exc:
        return str(exc)
    return None


def report(runs: Sequence[dict[str, Any]], gpus: int, gpu_names: Sequence[str]) -> str:
    """The table and the verdict."""
    headers = [
        "run",
        "pages",
        "pages/s",
        "steady pages/s",
        "per GPU",
        "GPU util %",
        "GPU mem MB",
        "host CPU cores",
        "CER %",
        "line CER %",
    ]
    rows = []
    for run in runs:
        if not run["ok"]:
            rows.append([run["name"], "failed: " + run.get("error", "")[:60]] + [""] * (len(headers) - 2))
            continue
        gpu = run["gpu"]
        util = "n/a" if gpu["utilisation_mean"] is None else f"{gpu['utilisation_mean']:.0f}"
        mem = "n/a" if gpu["memory_peak_mb"] is None else f"{gpu['memory_peak_mb']:.0f}"
        acc = run["accuracy"]
        rows.append(
            [
                run["name"],
                str(run["pages"]),
                f"{run['pages_per_s']:.2f}",
                f"{run['steady_pages_per_s']:.2f}",
                f"{run['steady_pages_per_s'] / gpus:.2f}" if gpus else "n/a",
                util,
                mem,
                format_host_cpu(run.get("host_cpu")),
                f"{100 * acc['cer']:.2f}",
                f"{100 * acc['line_cer']:.2f}",
            ]
        )
    lines = [f"GPUs: {', '.join(gpu_names) or 'none (CPU run)'}", bench_engine.format_table(headers, rows)]
    for run in runs:
        partial = run.get("partial")
        if partial:
            util = partial["gpu"]["utilisation_mean"]
            lines.append(
                f"{run['name']} before its time limit: {partial['rows_committed']} pages committed in "
                f"{partial['seconds']:.0f} s ({partial['pages_per_s']:.2f} pages/s, start-up included), "
                f"GPU utilisation {'n/a' if util is None else f'{util:.0f}%'}, "
                f"host CPU cores {format_host_cpu(partial.get('host_cpu'))}"
            )
        lines.extend(warm_lines(run.get("partial", run) if is_job(run) else {}, run["name"]))
        per_page = host_cpu_per_page(run) if is_job(run) and run["ok"] else None
        if per_page:
            stages = ", ".join(f"{k} {1000 * v:.1f}" for k, v in per_page["stages"].items())
            lines.append(
                f"{run['name']} host CPU per page, start-up included: {1000 * per_page['total']:.0f} ms "
                f"(stages: {stages}; "
                f"outside them, Ray, start-up and the rest: {1000 * per_page['outside']:.0f})"
            )
        if run.get("steady_measured") is False:
            lines.append(
                f"{run['name']}: every part file came at once, so its steady pages/s is the whole run's "
                "(start-up included); more --pages measure it"
            )
        shapes = run.get("info", {}).get("input_shapes")
        if shapes:
            lines.append(
                f"{run['name']} input shapes (warm-up and timed loop): "
                + ", ".join(f"{k} {v['shapes']} (first runs {v['first_run_s']:.1f} s)" for k, v in shapes.items())
            )
        if run.get("info", {}).get("providers"):
            lines.append(f"{run['name']} ran on: {', '.join(run['info']['providers'])}")
        warmups = run.get("warmups") or []
        if warmups:
            lines.append(f"{run['name']} actors' warm-ups ({len(warmups)}, from the Ray worker logs):")
            lines.extend(f"  {line}" for line in warmups[:12])
    by_name = {r["name"]: r for r in runs if r["ok"]}
    reference = by_name.get("reference")
    for name in [r["name"] for r in runs if is_job(r)] + ["engine"]:
        if name in by_name and reference and reference["steady_pages_per_s"] > 0:
            ratio = by_name[name]["steady_pages_per_s"] / reference["steady_pages_per_s"]
            lines.append(f"{name} / RapidOCR on the same device and pages: {ratio:.2f}x")
    if reference and gpus:
        lines.append(
            "note: RapidOCR runs with its own CUDA settings (cuDNN EXHAUSTIVE kernel search), so new "
            "shapes in its timed loop include a kernel search; ours uses HEURISTIC"
        )
    for job in [r for r in runs if is_job(r) and r["ok"] and gpus]:
        warm = job.get("warm_pages_per_s") is not None
        per_gpu = (job["warm_pages_per_s"] if warm else job["steady_pages_per_s"]) / gpus
        util = (job["gpu_warm"] if warm else job["gpu"])["utilisation_mean"]
        shown = "n/a (nvidia-smi gave no utilisation, e.g. MIG)" if util is None else f"{util:.0f}%"
        met = per_gpu >= TARGET_PAGES_PER_GPU and util is not None and util >= TARGET_UTILISATION
        window = "once every actor was warm" if warm else "from the first part file on"
        lines.append(
            f"{job['name']}: target {TARGET_PAGES_PER_GPU:.0f} pages/s per GPU at >= {TARGET_UTILISATION:.0f}% "
            "utilisation: "
            f"{per_gpu:.1f} pages/s per GPU at {shown} -> {'met' if met else 'NOT met'} "
            f"({window}; the whole run, start-up included: {job['pages_per_s'] / gpus:.1f}; "
            "part files can arrive in bursts, so a short run's rate overstates)"
        )
        host = job.get("host_cpu") or {}
        if not met and host.get("busy_cores") is not None and host["busy_cores"] >= 0.9 * host["cores"]:
            lines.append(
                f"the host's CPUs were the limit ({host['busy_cores']:.1f} of {host['cores']} cores busy): "
                "more cores per GPU, CPU worker nodes for loading (cluster.yaml), or fewer page moves "
                "(--set resources.load_in_actors=true: the model actors decode their own pages, one batch "
                "while another is on the GPU)"
            )
    return "\n".join(lines)


def job_timeout(
    timeout: float | None, budget: float | None, skip: Sequence[str], engine_timeout: float, reference_timeout: float
) -> float:
    """The job's time limit: ``timeout`` when given; else, with a ``budget`` for the whole
    check, what the other runs' limits (those not skipped) and 40 s of page rendering and
    reporting leave of it (at least 60 s); else 240 s."""
    if timeout is not None:
        return timeout
    if budget is None:
        return 240.0
    others = (0.0 if "engine" in skip else engine_timeout) + (0.0 if "reference" in skip else reference_timeout)
    return max(60.0, budget - others - 40.0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="gpu", choices=("gpu", "cpu"), help="gpu (default) or cpu (smoke run)")
    parser.add_argument("--pages", type=int, default=3000, help="pages for the job (default 3000)")
    parser.add_argument(
        "--unique",
        type=int,
        default=12,
        help="distinct generated pages (default 12: on a GPU every distinct page brings new input shapes, "
        "whose one-off kernel set-up the warm-up passes pay)",
    )
    parser.add_argument(
        "--actors-per-gpu",
        type=int,
        default=0,
        help="model actors per GPU in the job (default 3: each detects and recognises, as job_gpu.yaml's "
        "models_in_one_actor; with --set resources.models_in_one_actor=false: detection actors, and as many "
        "recognition actors)",
    )
    parser.add_argument("--engine-pages", type=int, default=480, help="pages for our engine alone (default 480)")
    parser.add_argument("--reference-pages", type=int, default=96, help="pages for RapidOCR (default 96)")
    parser.add_argument("--threads", type=int, default=4, help="CPU threads of the single-process engines")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="job setting override")
    parser.add_argument(
        "--job-variant",
        action="append",
        default=[],
        metavar="'KEY=VALUE ...'",
        help="after the job, run it again with these settings added to --set (space-separated; repeatable), "
        "on the same pages: one check compares layouts; the job time limit is shared equally",
    )
    parser.add_argument("--skip", action="append", default=[], choices=("job", "engine", "reference"))
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds the job may take (default: what --budget leaves after the other runs' limits, else 240)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds the whole check may take (gpu_check.sh passes what is left of 8 minutes): the job gets "
        "what the engine and reference limits and 40 s of rendering and reporting leave",
    )
    parser.add_argument(
        "--engine-timeout", type=float, default=80, help="seconds our single-process engine may take (default 80)"
    )
    parser.add_argument(
        "--reference-timeout",
        type=float,
        default=150,
        help="seconds RapidOCR may take (default 150: its warm-up pass searches kernels for every new shape)",
    )
    parser.add_argument("--json", default=None, help="write every figure here")
    parser.add_argument("--workdir", default=None, help="keep pages and output here (default: a temp dir)")
    parser.add_argument("--verbose", action="store_true", help="show the engine workers' stderr")
    parser.add_argument("--job-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        args.job_variant = parse_job_variants(args.job_variant)
        for item in args.set:
            _parse_set(item)
    except ValueError as exc:  # ConfigError: before any run, not after the first job
        parser.error(str(exc))
    args.timeout = job_timeout(args.timeout, args.budget, args.skip, args.engine_timeout, args.reference_timeout)
    if args.job_worker:
        job_worker(json.loads(args.job_worker))
        return 0

    visible = list_gpus() if args.device == "gpu" else []
    gpu_names = [name for _, name in visible]
    args.gpu_ids = [index for index, _ in visible]
    if args.device == "gpu":
        if not gpu_names:
            print("error: no NVIDIA GPU found (nvidia-smi); use --device cpu for a smoke run", file=sys.stderr)
            return 2
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            print(
                "error: ONNX Runtime has no CUDA provider: run scripts/gpu_check.sh (installs onnxruntime-gpu)",
                file=sys.stderr,
            )
            return 2
        print(f"onnxruntime {onnxruntime.__version__} from {Path(onnxruntime.__file__).parent}", flush=True)
        problem = cuda_session_problem()
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
    gpus = len(gpu_names) if args.device == "gpu" else 0

    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        started = time.perf_counter()
        specs = upright_specs(args.unique)
        images, truths = bench_engine.render_pages(specs)
        write_pages(workdir / "pages", images, args.pages)
        pages_file = workdir / "unique.npz"
        import numpy as np

        np.savez(pages_file, **{f"page_{i}": im for i, im in enumerate(images)})
        print(f"{args.unique} unique pages rendered, {args.pages} written in {time.perf_counter() - started:.1f} s")

        runs: list[dict[str, Any]] = []

        def record(run: dict[str, Any]) -> None:
            """Keep a run and save the figures so far: a later run that overruns loses nothing."""
            runs.append(run)
            state = "ok" if run["ok"] else f"FAILED: {run.get('error', '')}"
            print(f"{run['name']}: {run.get('steady_pages_per_s', 0):.2f} pages/s ({state})", flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps({"gpus": gpu_names, "runs": runs}, indent=2))

        try:
            if "job" not in args.skip:
                variants = [[], *args.job_variant]
                for extra_sets in variants:
                    record(job_run(workdir, specs, truths, args, gpus, extra_sets, args.timeout / len(variants)))
            if "engine" not in args.skip:
                overrides = gpu_ocr_overrides() if gpus else {"text_recognition.batch_size": 8}
                spec = bench_engine.EngineSpec("ours", "ours", overrides)
                record(engine_run("engine", spec, pages_file, specs, truths, args))
            if "reference" not in args.skip:
                options = {"engine": "onnxruntime", "device": "gpu" if gpus else "cpu"}
                spec = bench_engine.EngineSpec("rapidocr-ort", "rapidocr", options)
                record(engine_run("reference", spec, pages_file, specs, truths, args))
        except KeyboardInterrupt:  # gpu_check.sh's time limit: report what finished
            print("interrupted: the report covers the runs that finished", file=sys.stderr)
        text = report(runs, gpus, gpu_names)
        print(text)
        if args.json:
            Path(args.json).write_text(json.dumps({"gpus": gpu_names, "runs": runs, "report": text}, indent=2))
        return 0 if runs and all(r["ok"] for r in runs) else 1
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
