#!/usr/bin/env python
"""What one page costs the GPU, stage by stage, and how sharing the GPU between processes scales.

    python scripts/gpu_stage_costs.py                      # on a machine with an NVIDIA GPU (~3 min)
    python scripts/gpu_stage_costs.py --variants f32,f16,f16-exhaustive --processes 1,2,4,6
    python scripts/gpu_stage_costs.py --device cpu --pages 2 --det-batches 1,2 --processes 1,2 \\
        --threads 2 --seconds 1 --variants f32             # smoke run without a GPU (a test does this)

The job's GPU work is two model calls per page: detection of the page (``job_gpu.yaml``: the
check's A4 pages on a 960 x 736 canvas, in runs of up to 16 pages) and recognition of its lines
(batches of 32 rows of one of 15 width buckets). This script times exactly those calls, with the job's models
and settings, on blank inputs (the GPU's work does not depend on the pixels), in three parts:

1. **Workload**: renders ``--pages`` distinct text-heavy pages of the GPU check, detects and
   crops their lines on the CPU, and lists the recognition shapes ``job_gpu.yaml``'s settings
   make of one recognition actor call (``resources.recognize.batch_size`` pages, the distinct
   pages in turn, as in the GPU check's job; :meth:`TextRecognizer.batch_shapes`): calls per
   page, and how often each width comes.
2. **Shapes**, one process, for each ``--variants`` entry (``f32``/``f16`` = ``engine.precision``,
   ``-exhaustive`` = ``engine.cudnn_conv_algo_search: EXHAUSTIVE``): each detector batch size
   and each recognition shape of the workload, its first run (kernel set-up) and its steady
   milliseconds per call; from them the GPU milliseconds per page = detection at the job's batch
   size + the workload's recognition calls per page.
3. **Sharing**: ``max(--processes)`` worker processes open the best variant's sessions and warm
   every shape once; then, for each count P, P of them at once run the workload in a loop
   for ``--seconds`` (a detection call of ``page_batch_size`` pages, then those pages' share of
   recognition calls), and last one process runs it in T threads on the same sessions for each
   ``--threads`` count: pages/s together, mean GPU utilisation (``nvidia-smi``), the speed-up
   over one process. On one GPU, processes (each its own CUDA context) take turns on it unless
   their calls leave it idle, while threads share one context, so this says how many actors
   per GPU pay, and whether threads in one actor would do better.

Prints one table per part and the projection: the best pages/s per GPU with the job's own host
work left out (the job's pages/s can only be lower: ``gpu_check.sh`` measures it), against the
150 pages/s target. ``--json`` keeps every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

import gpu_check  # noqa: E402  (scripts/ sibling)

from ocr_actors.runtime.runners import REC_HEIGHT  # noqa: E402

Shape = tuple[int, int, int, int]


# ============================================================================ settings


@dataclass(frozen=True)
class Variant:
    """One engine setting to time: ``engine.precision`` and ``engine.cudnn_conv_algo_search``;
    ``cuda_graph``: the models run as captured CUDA graphs (:class:`GraphSessions`), which the
    job does not do (yet): timed to learn what kernel-launch overhead costs the small models."""

    precision: str = "f32"
    conv_algo_search: str = "HEURISTIC"
    cuda_graph: bool = False

    @property
    def name(self) -> str:
        return (
            self.precision
            + ("-exhaustive" if self.conv_algo_search == "EXHAUSTIVE" else "")
            + ("-graph" if self.cuda_graph else "")
        )

    @property
    def overrides(self) -> dict[str, str]:
        """The job settings that select this variant."""
        return {"ocr.engine.precision": self.precision, "ocr.engine.cudnn_conv_algo_search": self.conv_algo_search}


def parse_variant(text: str) -> Variant:
    """``"f16"`` / ``"f32-exhaustive"`` / ``"f32-graph"`` / ``"f16-exhaustive-graph"`` -> :class:`Variant`."""
    precision, *options = text.strip().split("-")
    graph = options[-1:] == ["graph"]
    search = options[:-1] if graph else options
    if precision not in ("f32", "f16") or search not in ([], ["exhaustive"], ["heuristic"]):
        raise argparse.ArgumentTypeError(
            f"variant {text!r}: f32 or f16, optionally with -exhaustive, then optionally -graph"
        )
    return Variant(precision, search[0].upper() if search else "HEURISTIC", graph)


def gpu_ocr_config(device: str, variant: Variant, settings: Mapping[str, object] | None = None) -> Any:
    """``job_gpu.yaml``'s OCR settings on ``device`` with ``variant``'s engine settings and
    then ``settings`` (``--set``, dotted OCR keys), one CPU thread per session (no warm-ups:
    this script warms exactly the shapes it times)."""
    from ocr_actors.config import OCRConfig, load_config

    settings = {**gpu_check.gpu_ocr_overrides(), **(settings or {})}
    # one CPU thread, not spinning, per session: several processes share the host's cores
    settings.update({"engine.device": device, "engine.threads": 1, "engine.allow_spinning": False})
    # its thread rounds run the sessions from several threads at once (a CUDA stream each),
    # never through one model thread, whatever engine.gpu_run_thread says
    settings["engine.gpu_run_thread"] = False
    settings["text_recognition.warmup"] = False
    settings["text_detection.warmup"] = False
    settings.update({k.removeprefix("ocr."): v for k, v in variant.overrides.items()})
    return load_config(OCRConfig, None, settings)


# ============================================================================ workload


@dataclass(frozen=True)
class Workload:
    """The job's GPU calls for ``pages`` pages: detection at ``det_batch`` pages a call of
    ``det_shape`` ``(3, H, W)`` each, and ``rec_shapes`` in call order."""

    pages: int
    det_batch: int
    det_shape: tuple[int, int, int]
    rec_shapes: tuple[Shape, ...]

    @property
    def rec_calls_per_page(self) -> float:
        return len(self.rec_shapes) / self.pages

    def rec_widths(self) -> dict[int, int]:
        """``{width: calls}`` of the recognition shapes, narrowest first."""
        return dict(sorted(Counter(w for *_, w in self.rec_shapes).items()))

    def det_input_shape(self, batch: int) -> Shape:
        return (batch, *self.det_shape)


def job_call_sizes() -> tuple[int, int]:
    """``job_gpu.yaml``'s pages per detector run (``text_detection.batch_size``, else
    ``ocr.page_batch_size``) and per recognition call (the pages of one call of the actor
    that recognises: ``resources.detect.batch_size`` with ``models_in_one_actor``, else
    ``resources.recognize.batch_size``)."""
    from ocr_actors.config import load_config
    from ocr_actors.job_config import JobConfig

    job = load_config(JobConfig, ROOT / "jobs" / "configs" / "job_gpu.yaml")
    res = job.resources
    det_run = job.ocr.text_detection.batch_size or job.ocr.page_batch_size
    return det_run, (res.detect if res.models_in_one_actor else res.recognize).batch_size


def build_workload(
    unique: int, det_batch: int, rec_call_pages: int, settings: Mapping[str, object] | None = None
) -> Workload:
    """Render ``unique`` pages of the GPU check, detect and crop their lines on the CPU, and
    list the recognition shapes ``job_gpu.yaml`` (with ``settings`` on top, ``--set``) makes
    of one recognition actor call of ``rec_call_pages`` pages (the unique pages in turn, as
    the GPU check's job feeds them), and the detector's page canvas."""
    import bench_engine

    from ocr_actors.preprocess import det_resize_shape
    from ocr_actors.runtime.ocr import crop_lines
    from ocr_actors.runtime.runners import TextDetector, TextRecognizer, padded_shape

    config = gpu_ocr_config("cpu", Variant(), settings)
    images, _ = bench_engine.render_pages(gpu_check.upright_specs(unique))
    detector = TextDetector(config.text_detection, config.engine)
    recognizer = TextRecognizer(config.text_recognition, config.engine)
    page_sizes = [
        [crop.shape[:2] for crop in crop_lines(image, detection.quads)]
        for image, detection in zip(images, detector.detect(images), strict=True)
    ]
    sizes = [size for i in range(rec_call_pages) for size in page_sizes[i % unique]]
    p = detector.default_params
    det = config.text_detection
    h, w = det_resize_shape(images[0].shape[0], images[0].shape[1], p.limit_side_len, p.limit_type, p.max_side_limit)
    canvas = (3, *padded_shape((h, w), det.batch_pad_multiple, det.batch_canvases))
    return Workload(rec_call_pages, det_batch, canvas, tuple(recognizer.batch_shapes(sizes)))


# ============================================================================ timing


class Sessions:
    """The job's two sessions for one variant; ``run`` feeds a blank input of a shape."""

    def __init__(self, device: str, variant: Variant) -> None:
        import numpy as np

        from ocr_actors.runtime.runners import TextDetector, TextRecognizer

        config = gpu_ocr_config(device, variant)
        self.det = TextDetector(config.text_detection, config.engine).session
        recognizer = TextRecognizer(config.text_recognition, config.engine)
        self.rec = recognizer.session
        self.fused = recognizer.fused_decode
        self.pixels_in = recognizer.pixels_in
        self.providers = list(getattr(self.det, "providers", []))
        self._np = np
        self._blanks: dict[Shape, Any] = {}

    def blank(self, shape: Shape) -> Any:
        """A blank input for the model-facing shape ``(N, 3, H, W)``: float32 zeros, or with
        ``engine.normalize_in_model`` (on by default on a GPU) the pixels of one channel, as
        the check's grey pages and their lines reach the models."""
        from ocr_actors.runtime.runners import blank_input

        blank = self._blanks.get(shape)
        if blank is None:
            blank = self._blanks[shape] = blank_input(shape, self.pixels_in, channels=1)
        return blank

    def run(self, shape: Shape) -> None:
        """One call of the session this shape is for: recognition inputs are 48 px high
        (``REC_HEIGHT``), detection canvases are multiples of 32 px from 960 up."""
        session = self.rec if shape[2] == REC_HEIGHT else self.det
        session.run_all(self.blank(shape))

    def first_run(self, shape: Shape) -> float:
        started = time.perf_counter()
        self.run(shape)
        return time.perf_counter() - started

    def steady_ms(self, shape: Shape, seconds: float, min_calls: int = 3) -> float:
        """Mean ms per call over at least ``min_calls`` calls and ``seconds``."""
        calls, started = 0, time.perf_counter()
        while calls < min_calls or time.perf_counter() - started < seconds:
            self.run(shape)
            calls += 1
        return 1000 * (time.perf_counter() - started) / calls


class GraphSessions(Sessions):
    """The two models as captured CUDA graphs (ONNX Runtime's ``enable_cuda_graph``): for
    each input shape, input and output buffers on the GPU are bound once and a graph is
    captured under its own ``gpu_graph_id``; each call then copies its input in, replays the
    graph and copies the outputs out, as a job call would. The output shapes come from one
    run of the plain sessions. A new shape first runs twice with capture off (``gpu_graph_id``
    -1: its kernels and memory set up, since a capture may not allocate), then under its id
    until captured (ONNX Runtime counts two plain runs per id before capturing; older versions
    one count per thread): all in the shape's first call, timed as set-up. ONNX Runtime
    refuses (and this raises) when a model has nodes off the CUDA provider. Calls from
    several threads at once are not supported."""

    def __init__(self, device: str, variant: Variant) -> None:
        import dataclasses

        import onnxruntime as ort

        if not device.startswith("gpu"):
            raise RuntimeError("CUDA graphs need a GPU")
        super().__init__(device, dataclasses.replace(variant, cuda_graph=False))
        self._ort = ort
        self._device_id = int(device.split(":", 1)[1]) if ":" in device else 0
        provider = {
            "device_id": str(self._device_id),
            "cudnn_conv_algo_search": variant.conv_algo_search,
            "enable_cuda_graph": "1",
        }
        options = ort.SessionOptions()  # as the plain sessions: one thread, no spinning
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._graphs = {
            kind: ort.InferenceSession(str(plain.model_file), options, providers=[("CUDAExecutionProvider", provider)])
            for kind, plain in (("det", self.det), ("rec", self.rec))
        }
        self._bound: dict[Shape, tuple[Any, Any, Any, Any, Any]] = {}

    def run(self, shape: Shape) -> None:
        entry = self._bound.get(shape)
        if entry is None:
            kind = "rec" if shape[2] == REC_HEIGHT else "det"
            session, plain = self._graphs[kind], self.rec if kind == "rec" else self.det
            blank = self.blank(shape)
            outputs = plain.run_all(blank)  # the output shapes and dtypes of this input shape
            binding = session.io_binding()
            value = self._ort.OrtValue.ortvalue_from_numpy(blank, "cuda", self._device_id)
            binding.bind_ortvalue_input(session.get_inputs()[0].name, value)
            for meta, output in zip(session.get_outputs(), outputs, strict=True):
                buffer = self._ort.OrtValue.ortvalue_from_numpy(self._np.zeros_like(output), "cuda", self._device_id)
                binding.bind_ortvalue_output(meta.name, buffer)
            skip = self._ort.RunOptions()
            skip.add_run_config_entry("gpu_graph_id", "-1")  # ONNX Runtime's "no capture, no replay"
            for _ in range(2):  # kernel set-up and this shape's memory, which a capture may not allocate
                session.run_with_iobinding(binding, skip)
            run_options = self._ort.RunOptions()
            run_options.add_run_config_entry("gpu_graph_id", str(len(self._bound) + 1))
            for _ in range(3):  # the runs ONNX Runtime counts under a graph id before it captures, then the capture
                session.run_with_iobinding(binding, run_options)
            entry = self._bound[shape] = (session, binding, value, run_options, blank)
        session, binding, value, run_options, blank = entry
        value.update_inplace(blank)
        session.run_with_iobinding(binding, run_options)
        binding.copy_outputs_to_cpu()


def open_sessions(device: str, variant: Variant) -> Sessions:
    """:class:`GraphSessions` for a ``-graph`` variant, else :class:`Sessions`."""
    return GraphSessions(device, variant) if variant.cuda_graph else Sessions(device, variant)


def time_variant(
    device: str, variant: Variant, workload: Workload, det_batches: Sequence[int], seconds: float, min_calls: int = 3
) -> dict[str, Any]:
    """Part 2 for one variant: first and steady run of every shape, and GPU ms per page."""
    opened = time.perf_counter()
    sessions = open_sessions(device, variant)
    open_s = time.perf_counter() - opened
    det = {}
    for batch in det_batches:
        shape = workload.det_input_shape(batch)
        first = sessions.first_run(shape)
        ms = sessions.steady_ms(shape, seconds, min_calls)
        det[batch] = {"first_s": round(first, 3), "ms_per_call": round(ms, 3), "ms_per_page": round(ms / batch, 3)}
    rec = {}
    for shape in sorted(set(workload.rec_shapes), key=lambda s: s[3]):
        first = sessions.first_run(shape)
        ms = sessions.steady_ms(shape, seconds / 4, min_calls)
        rec[shape[3]] = {"rows": shape[0], "first_s": round(first, 3), "ms_per_call": round(ms, 3)}
    rec_ms_per_page = sum(rec[w]["ms_per_call"] * n for w, n in workload.rec_widths().items()) / workload.pages
    job_det = det.get(workload.det_batch) or det[max(det)]
    return {
        "variant": variant.name,
        "overrides": variant.overrides,
        "providers": sessions.providers,
        "fused_decode": sessions.fused,
        "open_s": round(open_s, 2),
        "set_up_s": round(sum(d["first_s"] for d in det.values()) + sum(r["first_s"] for r in rec.values()), 2),
        "det": det,
        "rec": rec,
        "det_ms_per_page": job_det["ms_per_page"],
        "rec_ms_per_page": round(rec_ms_per_page, 3),
        "gpu_ms_per_page": round(job_det["ms_per_page"] + rec_ms_per_page, 3),
    }


# ============================================================================ sharing


def workload_loop(sessions: Sessions, workload: Workload, seconds: float, offset: int = 0) -> int:
    """Run the workload for ``seconds``: a detection call of ``det_batch`` pages, then those
    pages' share of the recognition calls (starting at call ``offset``), again and again;
    returns the pages done."""
    det_shape = workload.det_input_shape(workload.det_batch)
    rec_per_call = workload.det_batch * workload.rec_calls_per_page
    pages, owed, next_rec, began = 0, 0.0, offset, time.perf_counter()
    while time.perf_counter() - began < seconds:
        sessions.run(det_shape)
        owed += rec_per_call
        while owed >= 1:
            sessions.run(workload.rec_shapes[next_rec % len(workload.rec_shapes)])
            next_rec, owed = next_rec + 1, owed - 1
        pages += workload.det_batch
    return pages


def sharing_worker(conn: Any, device: str, variant: Variant, workload: Workload, turns: bool = True) -> None:
    """A worker process: open and warm the sessions, then run the workload loop on request.

    Messages: it sends ``("ready", warm-up seconds, seconds of those waiting for the other
    workers' set-up)`` (or ``("error", text)``); it receives
    ``(start_at, seconds, threads)`` and answers ``(pages, elapsed)`` (``threads`` loops at once
    on the same sessions, which ONNX Runtime allows), or ``None`` and exits.
    """
    from concurrent.futures import ThreadPoolExecutor

    from ocr_actors.runtime.gpu_setup import GpuSetupLock

    try:
        started = time.perf_counter()
        with GpuSetupLock(device, turns) as lock:  # as the job's actors: set-ups take turns per GPU
            sessions = open_sessions(device, variant)
            for shape in {workload.det_input_shape(workload.det_batch), *workload.rec_shapes}:
                sessions.run(shape)
        conn.send(("ready", time.perf_counter() - started, lock.waited_s))
    except Exception as exc:  # reported to the parent, which says what failed
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    while (request := conn.recv()) is not None:
        start_at, seconds, threads = request
        time.sleep(max(0.0, start_at - time.time()))
        began = time.perf_counter()
        offsets = [i * len(workload.rec_shapes) // threads for i in range(threads)]
        with ThreadPoolExecutor(threads) as pool:
            done = pool.map(lambda offset: workload_loop(sessions, workload, seconds, offset), offsets)  # noqa: B023
            pages = sum(done)
        conn.send((pages, time.perf_counter() - began))


def sharing_layouts(process_counts: Sequence[int], thread_counts: Sequence[int]) -> list[tuple[int, int]]:
    """``(processes, threads per process)`` of the sharing rounds: each process count with one
    thread, then one process with each thread count above one."""
    return [(p, 1) for p in process_counts] + [(1, t) for t in thread_counts if t > 1]


def measure_sharing(
    device: str,
    variant: Variant,
    workload: Workload,
    layouts: Sequence[tuple[int, int]],
    seconds: float,
    gpu_ids: Sequence[str],
    warmup_timeout: float = 150.0,
    turns: bool = True,
    say: Any = print,
) -> dict[str, Any]:
    """Part 3: pages/s of each ``(processes, threads)`` layout sharing the device, with GPU
    utilisation; the speed-up is against the first layout. The workers set up their sessions
    first (in turns per GPU unless ``turns`` is false), each reported as it finishes; if they
    are not all ready within ``warmup_timeout`` seconds the rounds are skipped."""
    context = multiprocessing.get_context("spawn")
    workers = []
    opened = time.perf_counter()
    for _ in range(max(p for p, _ in layouts)):
        parent, child = context.Pipe()
        proc = context.Process(target=sharing_worker, args=(child, device, variant, workload, turns), daemon=True)
        proc.start()
        workers.append((proc, parent))
    rounds: list[dict[str, Any]] = []
    warm: list[dict[str, float]] = []
    result: dict[str, Any] = {"variant": variant.name, "setup_turns": turns, "rounds": rounds, "warm_ups": warm}
    try:
        for k, (_, parent) in enumerate(workers):
            left = warmup_timeout - (time.perf_counter() - opened)
            if left <= 0 or not parent.poll(left):
                result["error"] = (
                    f"{len(warm)} of {len(workers)} workers set up within {warmup_timeout:g} s "
                    f"({'in turns' if turns else 'all at once'})"
                )
                say(f"sharing: {result['error']}", flush=True)
                return result
            message = parent.recv()
            if message[0] == "error":
                result["error"] = message[1]
                say(f"sharing: worker {k + 1} failed: {message[1]}", flush=True)
                return result
            _, ready_s, waited_s = message
            warm.append({"seconds": round(ready_s, 2), "waited_s": round(waited_s, 2)})
            say(
                f"sharing: worker {k + 1} of {len(workers)} ready after {ready_s:.1f} s "
                f"(of which {waited_s:.1f} s waiting for another's set-up; "
                f"{time.perf_counter() - opened:.1f} s since start)",
                flush=True,
            )
        result["warm_up_s"] = round(max(w["seconds"] for w in warm), 1)
        result["all_ready_s"] = round(time.perf_counter() - opened, 1)
        with gpu_check.GpuSampler(gpu_ids) as sampler:
            for processes, threads in layouts:
                start_at = time.time() + 0.5
                for _, parent in workers[:processes]:
                    parent.send((start_at, seconds, threads))
                answers = [parent.recv() for _, parent in workers[:processes]]
                pages = sum(p for p, _ in answers)
                elapsed = max(e for _, e in answers)
                gpu = gpu_check.summarise_samples(sampler.samples, start_at + 0.5, start_at + elapsed)
                rounds.append(
                    {"processes": processes, "threads": threads, "pages": pages, "seconds": round(elapsed, 2)}
                    | {"pages_per_s": round(pages / elapsed, 1), "gpu": gpu}
                )
                util = gpu.get("utilisation_mean")
                say(
                    f"sharing: {processes} process(es) x {threads} thread(s): {pages / elapsed:.1f} pages/s, "
                    f"GPU util {util if util is not None else 'n/a'}%",
                    flush=True,
                )
    finally:
        for k, (proc, parent) in enumerate(workers):
            if k >= len(warm):  # still setting up (or failed): it would not read a message
                proc.kill()
            with contextlib.suppress(BrokenPipeError, OSError):
                parent.send(None)
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        one = rounds[0]["pages_per_s"] if rounds else 0.0
        for r in rounds:
            r["speed_up"] = round(r["pages_per_s"] / one, 2) if one else None
    return result


# ============================================================================ report


def projection(variants: Sequence[dict[str, Any]], sharing: dict[str, Any] | None) -> dict[str, Any]:
    """The best variant (fewest GPU ms per page) and the best process count, with pages/s."""
    best = min(variants, key=lambda v: v["gpu_ms_per_page"])
    result: dict[str, Any] = {
        "variant": best["variant"],
        "overrides": best["overrides"],
        "gpu_ms_per_page": best["gpu_ms_per_page"],
        "one_process_pages_per_s": round(1000 / best["gpu_ms_per_page"], 1),
    }
    rounds = (sharing or {}).get("rounds") or []
    if rounds:
        top = max(rounds, key=lambda r: r["pages_per_s"])
        result.update(
            {"processes": top["processes"], "threads": top.get("threads", 1), "pages_per_s": top["pages_per_s"]}
        )
    else:
        result["pages_per_s"] = result["one_process_pages_per_s"]
    result["meets_target"] = result["pages_per_s"] >= gpu_check.TARGET_PAGES_PER_GPU
    return result


def report(workload: Workload, variants: Sequence[dict[str, Any]], sharing: dict[str, Any] | None) -> str:
    widths = ", ".join(f"{w}:{n}" for w, n in workload.rec_widths().items())
    lines = [
        f"workload: {workload.pages} pages, detection {workload.det_batch} x {workload.det_shape} a call, "
        f"{len(workload.rec_shapes)} recognition calls ({workload.rec_calls_per_page:.2f} a page) "
        f"of {workload.rec_shapes[0][0] if workload.rec_shapes else 0} rows, width:calls {widths}",
        "",
        "variant          providers        set-up s  det ms/page (batch: ms/call)          rec ms/page  GPU ms/page",
    ]
    for v in variants:
        det = "  ".join(f"{b}:{d['ms_per_call']:.1f}" for b, d in v["det"].items())
        provider = (v["providers"] or ["?"])[0].replace("ExecutionProvider", "")
        lines.append(
            f"{v['variant']:<16} {provider:<16} {v['set_up_s']:>8.1f}  {v['det_ms_per_page']:>6.2f} ({det})"
            f"{'':<4}{v['rec_ms_per_page']:>8.2f}  {v['gpu_ms_per_page']:>10.2f}"
        )
        rec = "  ".join(f"{w}:{r['ms_per_call']:.1f}" for w, r in v["rec"].items())
        lines.append(f"{'':<17}rec ms/call by width: {rec}")
    if sharing is not None:
        turns = "in turns" if sharing.get("setup_turns", True) else "all at once"
        lines += [
            "",
            f"sharing ({sharing['variant']}; set-up {turns}: slowest worker {sharing.get('warm_up_s', '?')} s, "
            f"all ready after {sharing.get('all_ready_s', '?')} s):",
        ]
        if sharing.get("error"):
            lines.append(f"  failed: {sharing['error']}")
        for r in sharing["rounds"]:
            util = r["gpu"].get("utilisation_mean")
            lines.append(
                f"  {r['processes']} process(es) x {r.get('threads', 1)} thread(s): {r['pages_per_s']:>7.1f} pages/s"
                f"  x{r['speed_up']}  "
                f"GPU util {util if util is not None else 'n/a'}%  ({r['pages']} pages in {r['seconds']} s)"
            )
    p = projection(variants, sharing)
    lines += [
        "",
        f"projection: {p['variant']} ({p['gpu_ms_per_page']:.2f} GPU ms a page): {p['pages_per_s']:.1f} pages/s per GPU"
        + (f" with {p['processes']} process(es) x {p['threads']} thread(s)" if "processes" in p else "")
        + f" for the models alone; target {gpu_check.TARGET_PAGES_PER_GPU:.0f}: "
        + ("reachable if the host keeps up" if p["meets_target"] else "NOT reachable with these settings"),
        "job settings for it: "
        + " ".join(f"--set {k}={v}" for k, v in p["overrides"].items())
        + (" (CUDA graphs: not in the job yet)" if p["variant"].endswith("-graph") else ""),
    ]
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: positive integers separated by commas")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="gpu", choices=("gpu", "cpu"), help="gpu (default) or cpu (smoke run)")
    parser.add_argument("--pages", type=int, default=12, help="distinct generated pages of the workload (default 12)")
    parser.add_argument(
        "--variants",
        type=lambda t: [parse_variant(v) for v in t.split(",")],
        default=[Variant("f32"), Variant("f16")],
        help="engine settings to time (default f32,f16; also f32-exhaustive, f16-exhaustive, and each with "
        "-graph: the models as captured CUDA graphs, GPU only)",
    )
    parser.add_argument("--det-batches", type=_ints, default=[1, 4, 8, 16], help="detector batch sizes to time")
    parser.add_argument("--processes", type=_ints, default=[1, 2, 3, 4, 6], help="process counts of the sharing part")
    parser.add_argument(
        "--threads",
        type=_ints,
        default=[2, 4],
        help="thread counts of one process sharing its sessions, also in the sharing part (default 2,4)",
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds per sharing round (default 6)")
    parser.add_argument("--shape-seconds", type=float, default=0.6, help="seconds per detector shape timed")
    parser.add_argument("--min-calls", type=int, default=3, help="fewest steady calls per shape timed (default 3)")
    parser.add_argument("--skip-sharing", action="store_true", help="time the shapes only")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="OCR setting on top of job_gpu.yaml's for the workload (dotted, e.g. text_recognition.batch_by_bucket="
        "false): replays another layout's shapes",
    )
    parser.add_argument(
        "--warmup-timeout",
        type=float,
        default=150.0,
        help="seconds the sharing workers may take to set up (default 150); past it the rounds are skipped",
    )
    parser.add_argument(
        "--setup-at-once",
        action="store_true",
        help="sharing workers set up all at once (engine.gpu_setup_turns: false) instead of in turns",
    )
    parser.add_argument("--json", default=None, help="write every figure here")
    args = parser.parse_args(argv)

    visible = gpu_check.list_gpus() if args.device == "gpu" else []
    if args.device == "gpu":
        import onnxruntime

        if not visible or "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            print("error: no NVIDIA GPU with ONNX Runtime's CUDA provider (--device cpu: smoke run)", file=sys.stderr)
            return 2
    started = time.perf_counter()
    job_det_batch, rec_call_pages = job_call_sizes()
    settings = {key.removeprefix("ocr."): value for key, value in map(gpu_check._parse_set, args.set)}
    workload = build_workload(args.pages, min(job_det_batch, max(args.det_batches)), rec_call_pages, settings)
    print(f"workload built in {time.perf_counter() - started:.1f} s", flush=True)
    variants: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    sharing: dict[str, Any] | None = None

    def save() -> None:
        """Every figure so far: a later part that overruns loses nothing."""
        if not args.json:
            return
        figures: dict[str, Any] = {
            "device": args.device,
            "gpus": [name for _, name in visible],
            "workload": {
                "settings": settings,
                "pages": workload.pages,
                "det_batch": workload.det_batch,
                "det_shape": workload.det_shape,
                "rec_calls_per_page": round(workload.rec_calls_per_page, 3),
                "rec_widths": workload.rec_widths(),
            },
            "variants": variants,
            "failed_variants": failed,
            "sharing": sharing,
            "seconds": round(time.perf_counter() - started, 1),
        }
        if variants:
            figures["projection"] = projection(variants, sharing)
        Path(args.json).write_text(json.dumps(figures, indent=2))

    for variant in args.variants:
        try:
            result = time_variant(args.device, variant, workload, args.det_batches, args.shape_seconds, args.min_calls)
        except Exception as exc:  # one variant failing (say f16 without its converter) leaves the others
            failed[variant.name] = f"{type(exc).__name__}: {exc}"
            print(f"{variant.name}: FAILED: {failed[variant.name]}", flush=True)
            continue
        cost, set_up = result["gpu_ms_per_page"], result["set_up_s"]
        print(
            f"{variant.name}: {cost:.2f} GPU ms a page (detection {result['det_ms_per_page']:.2f}, recognition "
            f"{result['rec_ms_per_page']:.2f}; set-up {set_up} s)",
            flush=True,
        )
        variants.append(result)
        save()
    if not variants:
        print("error: every variant failed", file=sys.stderr)
        return 1
    if not args.skip_sharing:
        best = min(variants, key=lambda v: v["gpu_ms_per_page"])
        variant = next(v for v in args.variants if v.name == best["variant"])
        sharing = measure_sharing(
            args.device,
            variant,
            workload,
            sharing_layouts(args.processes, [] if variant.cuda_graph else args.threads),
            args.seconds,
            [i for i, _ in visible[:1]],
            args.warmup_timeout,
            not args.setup_at_once,
        )
        save()
    print(report(workload, variants, sharing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
