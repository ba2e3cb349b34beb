"""The batch job's driver: plan the work, wire the Ray Data stages, stream summaries,
report progress, enforce the error budget, and write the summary next to the output.

The driver streams the listing through the planner into work files (read back by the load
tasks where they run) and holds two digest sets (16 bytes per listed URI and per
finished document) and one small summary row per written file; neither work items nor OCR
results pass through it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TextIO

import pyarrow as pa
import yaml

from ocr_actors.config import ConfigError, result_settings_changes, to_dict
from ocr_actors.io.compact import CompactionSummary, compact, finish_compactions, read_part_sizes
from ocr_actors.io.lease import LeaseLostError, LeaseRecord, OutputLease
from ocr_actors.io.listing import ListingReport, iter_sources, listing_form
from ocr_actors.io.parquet import (
    JOBS_DIR,
    DoneIndex,
    check_output_location,
    clean_tmp,
    count_job_rows,
    drop_retried_rows,
    list_parts,
    remove_parts,
    scan_done,
)
from ocr_actors.io.sources import storage_access
from ocr_actors.io.workfiles import UriSeal, WorkRange, WorkSpool, work_ranges
from ocr_actors.job_config import (
    JobConfig,
    StageResources,
    cpu_fallback,
    is_plain_job_id,
    needs_gpus,
    parse_page_ranges,
    redact,
)
from ocr_actors.pipeline.plan import Planner
from ocr_actors.pipeline.status import RESULT_SETTINGS_FILE, newest_run_settings
from ocr_actors.redaction import redact_text, redacting_logger
from ocr_actors.runtime.ocr import check_models, params_from_config
from ocr_actors.stages.write import STAGES

log = redacting_logger("ocr_batch.job")


class JobEnded(RuntimeError):
    """A run that ended without succeeding; ``summary`` is what it wrote (also in
    ``summary.json``)."""

    def __init__(self, message: str, summary: JobSummary | None = None) -> None:
        super().__init__(message)
        self.summary = summary


class ErrorBudgetExceeded(JobEnded):
    """Too many error rows: the job stopped (or finished) above ``max_error_rate``."""


class JobStalled(JobEnded):
    """No part file came for ``stall_timeout_s`` seconds: the run stopped Ray's work for it and
    wrote its summary; a rerun resumes."""


class Terminated(SystemExit):
    """SIGTERM asked the run to stop (``ray job stop``, Kubernetes, a scheduler's timeout)."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def stop_on_sigterm() -> None:
    """SIGTERM ends the run like Ctrl-C, through its ``finally`` blocks (the summary says
    ``interrupted``, the output's lease and the work files are given back), raising
    :class:`Terminated`. Main thread only; the embedded Ray's own handler, installed when it
    starts, is replaced by this one again."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)


def stall_guarded(
    items: Iterator[Any],
    stall_timeout_s: float,
    poll_s: float,
    on_wait: Callable[[float], None],
    on_leave: Callable[[], None] = lambda: None,
) -> Generator[Any, None, None]:
    """Yield ``items`` (pulled in a daemon thread) as they come. While none comes, call
    ``on_wait(seconds since the last one)`` every ``poll_s`` (it may raise to stop); raise
    :class:`JobStalled` once ``stall_timeout_s`` (> 0) pass without one. However it ends,
    ``on_leave`` runs (it should stop whatever produces ``items``, so the thread is free), then
    the thread is given up to 10 s to finish, closing ``items`` if it was left early."""
    import queue
    import threading

    box: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def hand_over(message: tuple[bool, Any]) -> bool:
        """Put ``message`` in the box unless the consumer has left; False when it has."""
        while not stop.is_set():
            try:
                box.put(message, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def pump() -> None:
        try:
            for item in items:
                if not hand_over((False, item)):
                    break
            else:
                hand_over((True, None))
        except BaseException as exc:  # handed to the consumer, raised there
            hand_over((True, exc))
        finally:
            close = getattr(items, "close", None)
            if stop.is_set() and close is not None:
                close()  # e.g. a Ray Data iterator: shuts its executor down

    thread = threading.Thread(target=pump, daemon=True, name="ocr-batch-results")
    thread.start()
    last = time.monotonic()
    try:
        while True:
            try:
                finished, value = box.get(timeout=poll_s)
            except queue.Empty:
                waited = time.monotonic() - last
                if stall_timeout_s > 0 and waited >= stall_timeout_s:
                    raise JobStalled(
                        f"stalled: no part file written for {waited:.0f} s (stall_timeout_s {stall_timeout_s:g}); "
                        "Ray's work for this run was stopped, and a rerun resumes it"
                    ) from None
                on_wait(waited)
                continue
            if finished:
                if value is not None:
                    raise value
                return
            last = time.monotonic()
            yield value
    finally:
        stop.set()
        on_leave()
        thread.join(timeout=10.0)


@dataclass
class JobSummary:
    """What a run did. ``seconds_per_stage`` sums each stage's wall time over its pages,
    ``cpu_seconds_per_stage`` the CPU time of the processes running it meanwhile (what the
    stage costs in cores, without the waits of contended cores; Ray's own work in between
    stages is in neither)."""

    job_id: str
    output: str
    mode: str
    sources_total: int = 0
    sources_skipped: int = 0
    sources_partial: int = 0
    sources_processed: int = 0
    duplicate_sources: int = 0
    """Listed URIs dropped as repeats of earlier ones (a manifest that names a file twice)."""
    sources_left_out: int = 0
    """Entries of listed folders that are not sources: not an image or PDF by suffix, links
    leading nowhere or to folders (``left_out_by_reason``)."""
    left_out_by_reason: dict[str, int] = field(default_factory=dict)
    rows_retried: int = 0
    """Error rows of earlier runs (types in ``output.retry_errors``) removed to be done again."""
    errors_again: int = 0
    """Retried error rows (the same source and page) that failed again: not counted against
    ``max_error_rate`` (the run that first wrote them counted them), so a rerun that only
    retries a missing object does not fail on it. Other rows of a retried source count."""
    compaction: dict[str, int] = field(default_factory=dict)
    """With ``output.compact``: what the compaction at the end did (:class:`CompactionSummary`)."""
    rows_written: int = 0
    pages_ok: int = 0
    error_rows: int = 0
    errors_by_type: dict[str, int] = field(default_factory=dict)
    lines: int = 0
    files_written: int = 0
    wall_seconds: float = 0.0
    first_output_seconds: float = 0.0
    """Seconds from the start to the first part file written, by the writing task's clock (Ray
    start-up, planning, model loads)."""
    pages_per_second: float = 0.0
    steady_pages_per_second: float = 0.0
    """Rows per second from the first part file written to the last (the files' own write
    times, not when the driver heard of them): the rate more pages would run at."""
    seconds_per_stage: dict[str, float] = field(default_factory=dict)
    cpu_seconds_per_stage: dict[str, float] = field(default_factory=dict)
    error_rate: float = 0.0
    gpu_fallback: bool = False
    """The job asked for GPUs, the cluster had none, and it ran on CPU instead."""
    settings_changed: dict[str, Any] = field(default_factory=dict)
    """When the output's newest earlier run that wrote rows read pages with other OCR settings
    (models, switches, thresholds: ``RESULT_SETTINGS``): ``since_job`` and ``changes``
    (``{key: [before, now]}``). Resume keeps those rows; only ``overwrite`` reads them again."""
    status: str = "running"
    """running, then succeeded, failed (error budget, lost lease) or stalled (``stall_timeout_s``)."""
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def budget_rate(self) -> float:
        """The error rate ``max_error_rate`` is held to: error rows over rows written, both
        without :attr:`errors_again`."""
        return (self.error_rows - self.errors_again) / max(self.rows_written - self.errors_again, 1)

    def budget_message(self, limit: float) -> str:
        again = f"; not counting {self.errors_again} retried rows that failed again" if self.errors_again else ""
        return f"error rate {self.budget_rate():.1%} above the budget of {limit:.1%}{again}"


IDLE_WORKER_KEEP_MS = 30_000
"""How long the embedded Ray keeps an idle task worker (Ray's default is 1 s)."""


def _ensure_ray(config: JobConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    ours = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is _terminate
    try:
        _start_ray(config)
    finally:
        if ours:  # ray.init installs a SIGTERM handler that exits with status 15 at once
            signal.signal(signal.SIGTERM, _terminate)


def _start_ray(config: JobConfig) -> None:
    import ray

    address = config.ray.address or os.environ.get("RAY_ADDRESS", "")
    if address:
        ray.init(address=address, log_to_driver=False)
        return
    ray.init(
        address="local",  # a new Ray in this process, never a cluster left running on this host
        num_cpus=config.ray.num_cpus or None,
        object_store_memory=config.ray.object_store_memory,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        # Ray ends a task worker idle for 1 s by default, so a stage whose tasks come seconds
        # apart (the write tasks, one per part file) started a new worker, seconds of imports,
        # for almost every task; keep idle workers a while instead.
        _system_config={"idle_worker_killing_time_threshold_ms": IDLE_WORKER_KEEP_MS},
    )


def wait_for_gpus(wait_s: float, say: Callable[[str], None]) -> bool:
    """True once the connected Ray cluster has a GPU. Without one, asks the autoscaler for
    one GPU and polls for up to ``wait_s`` seconds (0: answer at once). A cluster without an
    autoscaler, or a Ray Client connection that cannot ask, only polls."""
    import ray

    if ray.cluster_resources().get("GPU", 0) > 0:
        return True
    if wait_s <= 0:
        return False
    say(f"no GPU in the cluster yet: asking the autoscaler for one, waiting up to {wait_s:g} s")
    _request_gpu(True, say)
    deadline = time.monotonic() + wait_s
    try:
        while time.monotonic() < deadline:
            time.sleep(min(5.0, max(deadline - time.monotonic(), 0.0)))
            if ray.cluster_resources().get("GPU", 0) > 0:
                return True
        return False
    finally:
        _request_gpu(False, say)  # the job's own actors keep the GPU nodes they need


def _request_gpu(wanted: bool, say: Callable[[str], None]) -> None:
    """Ask the autoscaler for one GPU bundle, or withdraw the request (never fatal)."""
    try:
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=[{"GPU": 1}] if wanted else [])
    except Exception as exc:  # e.g. Ray Client (ray://) has no GCS connection to ask through
        if wanted:
            say(f"could not ask the autoscaler ({type(exc).__name__}); waiting anyway")


def model_pools(config: JobConfig) -> list[StageResources]:
    """The resources of the model actor pools the run starts."""
    res = config.resources
    ocr = config.ocr
    pools = [res.detect] if res.models_in_one_actor else [res.detect, res.recognize]
    if ocr.doc_preprocessor.use_doc_orientation_classify or ocr.doc_preprocessor.use_doc_unwarping:
        pools.append(res.docprep)
    if ocr.textline_orientation.use_textline_orientation and not res.models_in_one_actor:
        pools.append(res.lineori)
    return pools


def check_gpu_budget(config: JobConfig, cluster_gpus: float) -> None:
    """Refuse a layout whose model pools' smallest sizes ask for more GPUs than the cluster
    has (``min_actors`` x ``num_gpus``, summed): the actors past the GPUs would wait for a
    share forever, and the run with them, until ``stall_timeout_s``."""
    wanted = sum(stage.num_gpus * stage.min_actors for stage in model_pools(config))
    if wanted > cluster_gpus + 1e-9:
        raise ConfigError(
            f"the model actors ask for {wanted:g} GPUs at least (resources.<stage>.min_actors x num_gpus, summed) "
            f"but the cluster has {cluster_gpus:g}: lower min_actors or num_gpus"
        )


def check_cpu_budget(config: JobConfig, cluster_cpus: float) -> None:
    """Refuse a layout whose model actors leave no CPU for the load/crop/write tasks
    (Ray Data would wait forever)."""
    res = config.resources
    reserved = sum(stage.num_cpus * stage.min_actors for stage in model_pools(config))
    tasks = [res.write]
    if not res.load_in_actors:
        tasks.append(res.load)
    if not res.crop_in_detect and not res.models_in_one_actor:
        tasks.append(res.crop)
    task_need = max(stage.num_cpus for stage in tasks)
    if reserved + task_need > cluster_cpus + 1e-9:
        raise ConfigError(
            f"the model actors reserve {reserved:g} of the cluster's {cluster_cpus:g} CPUs, leaving less than the "
            f"{task_need:g} a load/crop/write task needs: lower resources.<stage>.num_cpus or min_actors"
        )


def _stage_threads(config: JobConfig, stage: StageResources) -> JobConfig:
    """A model actor's engine: threads as configured, else its CPU share (>= 1); no
    spinning threads, since several actors share the cores."""
    engine = config.ocr.engine
    threads = stage.threads or engine.threads or max(1, round(stage.num_cpus))
    engine = replace(engine, threads=threads, allow_spinning=False)
    return replace(config, ocr=replace(config.ocr, engine=engine))


def actor_pool(stage: StageResources):  # type: ignore[no-untyped-def]
    """The Ray Data actor pool of a model stage: ``min_actors``..``max_actors`` actors, each
    running ``concurrent_calls`` batches at once in threads."""
    from ray.data import ActorPoolStrategy

    if stage.concurrent_calls == 1:
        return ActorPoolStrategy(min_size=stage.min_actors, max_size=stage.max_actors)
    return ActorPoolStrategy(
        min_size=stage.min_actors,
        max_size=stage.max_actors,
        max_concurrent_calls_per_actor=stage.concurrent_calls,
        enable_true_multi_threading=True,
        # enough batches queued at each actor to keep its threads busy
        max_tasks_in_flight_per_actor=2 * stage.concurrent_calls,
    )


def ranges_per_call(work: list[WorkRange], page_batch_size: int) -> int:
    """Work ranges per call of a model actor that loads its own pages: enough sources for one
    page batch when ranges are small (a small job has one source a range), one range when
    they are large (a large one has up to a thousand); PDFs give more pages than sources."""
    largest = max((r.stop - r.start for r in work), default=1)
    return max(1, page_batch_size // max(largest, 1))


def build_dataset(  # type: ignore[no-untyped-def]
    config: JobConfig, work: list[WorkRange], job_id: str, seal: UriSeal | None = None
):
    """Wire the stages into a Ray Dataset that yields one summary row per written file.

    Args:
        work: ranges of the spooled work files (:func:`~ocr_actors.io.workfiles.work_ranges`);
            each loading actor or load task reads its ranges' work items where it runs.
        seal: the spool's :class:`~ocr_actors.io.workfiles.UriSeal` (its key opens the URIs
            with credentials the work files hold sealed).
    """
    import ray.data

    from ocr_actors.stages.chain import StageChain
    from ocr_actors.stages.crop import crop_text_lines
    from ocr_actors.stages.detect import DetectText
    from ocr_actors.stages.docprep import DocPreprocess
    from ocr_actors.stages.lineori import ClassifyTextlines
    from ocr_actors.stages.load import LoadThen, load_work
    from ocr_actors.stages.recognize import RecognizeText
    from ocr_actors.stages.write import write_parquet

    ocr = config.ocr
    res = config.resources
    source_options = dict(config.source.storage_options)
    output_options = config.output_storage_options

    load_kwargs = {
        "work_storage_options": output_options,
        "config": ocr.input,
        "storage_options": source_options,
        "pdf_pages": parse_page_ranges(config.source.pdf_pages),
        "work_seal": seal,
    }

    def actor_stage(ds, cls, stage: StageResources, *extra_args: object, loads: bool = False):  # type: ignore[no-untyped-def]
        """``cls`` as an actor pool; with ``loads`` its actors also load their pages
        (:class:`LoadThen`: work ranges in, :func:`ranges_per_call` of them a call)."""
        args = (_stage_threads(config, stage).ocr, *extra_args)
        if loads:
            cls, args = LoadThen, (cls, args, stage.batch_size, load_kwargs)
        return ds.map_batches(
            cls,
            fn_constructor_args=args,
            batch_size=ranges_per_call(work, stage.batch_size) if loads else stage.batch_size,
            batch_format="numpy",
            compute=actor_pool(stage),
            num_cpus=stage.num_cpus,
            num_gpus=stage.num_gpus or None,
        )

    # The ranges (path, start, stop: a few bytes each) are the input; each load task (or, with
    # load_in_actors, the first model actor) reads its range's work items itself.
    # min(ranges, 1000) blocks: a small job gets one source a task.
    ranges = pa.table(
        {
            "work_path": [r.path for r in work],
            "work_start": pa.array([r.start for r in work], pa.int64()),
            "work_stop": pa.array([r.stop for r in work], pa.int64()),
        }
    )
    blocks = max(1, min(len(work), 1000))
    bounds = [len(work) * k // blocks for k in range(blocks + 1)]
    ds: Any = ray.data.from_arrow([ranges.slice(a, b - a) for a, b in itertools.pairwise(bounds)])
    loads = res.load_in_actors  # the first model stage loads its own pages
    if not loads:
        ds = ds.map_batches(
            load_work,
            fn_kwargs=load_kwargs,
            batch_size=res.load.batch_size,
            batch_format="numpy",
            num_cpus=res.load.num_cpus,
        )
    if ocr.doc_preprocessor.use_doc_orientation_classify or ocr.doc_preprocessor.use_doc_unwarping:
        ds = actor_stage(ds, DocPreprocess, res.docprep, loads=loads)
        loads = False
    if res.models_in_one_actor:  # one pool: detect and crop, orientation, recognise
        chain: list[Any] = [(DetectText, (True,))]
        if ocr.textline_orientation.use_textline_orientation:
            chain.append((ClassifyTextlines, ()))
        chain.append((RecognizeText, ()))
        ds = actor_stage(ds, StageChain, res.detect, chain, loads=loads)
    else:
        ds = actor_stage(ds, DetectText, res.detect, res.crop_in_detect, loads=loads)
        if not res.crop_in_detect:
            ds = ds.map_batches(
                crop_text_lines, batch_size=res.crop.batch_size, batch_format="numpy", num_cpus=res.crop.num_cpus
            )
        if ocr.textline_orientation.use_textline_orientation:
            ds = actor_stage(ds, ClassifyTextlines, res.lineori)
        ds = actor_stage(ds, RecognizeText, res.recognize)
    params = params_from_config(ocr)
    ds = ds.map_batches(
        write_parquet,
        fn_kwargs={
            "output": config.output.uri,
            "storage_options": output_options,
            "compression": config.output.compression,
            "params": params,
            "det_model": ocr.text_detection.model,
            "rec_model": ocr.text_recognition.model,
            "job_id": job_id,
        },
        batch_size=config.output.rows_per_file,
        batch_format="numpy",
        num_cpus=res.write.num_cpus,
    )
    return ds


def _capture_executors(dataset: Any) -> list[Any]:
    """The Ray Data executors ``dataset`` will create (filled as it starts), so that a stalled
    run can shut its own down. Ray 2.60 creates one in ``Dataset._create_executor`` and records
    it only after the first output; without that method the list stays empty."""
    executors: list[Any] = []
    create = getattr(dataset, "_create_executor", None)
    if callable(create):

        def create_and_keep() -> Any:
            executor = create()
            executors.append(executor)
            return executor

        dataset._create_executor = create_and_keep
    return executors


@dataclass
class Progress:
    """The run's course as the part files tell it: sources finished (their last row written)
    out of those planned, and when the first and the latest file were written (seconds since
    the epoch, by the writing task's clock)."""

    planned: int
    sources_done: int = 0
    first_written_at: float = 0.0
    first_rows: int = 0
    last_written_at: float = 0.0

    def line(self, summary: JobSummary, now: float) -> str:
        """One progress line: sources done of planned, rows, files, rate and time left."""
        share = min(self.sources_done / self.planned, 1.0) if self.planned else 1.0
        text = (
            f"{self.sources_done}/{self.planned} sources ({share:.0%}); {summary.rows_written} rows "
            f"({summary.pages_ok} pages ok, {summary.error_rows} errors) in {summary.files_written} files"
        )
        since_first = now - self.first_written_at if self.first_written_at else 0.0
        if since_first > 0 and summary.rows_written > self.first_rows:
            text += f"; {(summary.rows_written - self.first_rows) / since_first:.2f} rows/s since the first file"
            if 0 < self.sources_done < self.planned:
                left = (self.planned - self.sources_done) * since_first / self.sources_done
                text += f", about {_duration(left)} left"
        return text


def _duration(seconds: float) -> str:
    """``42 s``, ``7 min``, ``3.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _count_file(
    batch: dict[str, Any],
    summary: JobSummary,
    errors: Counter[str],
    stage_seconds: dict[str, float],
    stage_cpu_seconds: dict[str, float],
    progress: Progress | None = None,
    part_rows: dict[str, int] | None = None,
    retried: set[tuple[str, int | None]] | None = None,
) -> None:
    """Add the write stage's summary rows (one per part file written) to the run's totals, and
    each file's rows to ``part_rows`` (file name -> rows) when given; error rows of the
    ``retried`` ``(source_uri, page_index)`` count as :attr:`JobSummary.errors_again`."""
    for k in range(len(batch["path"])):
        if part_rows is not None:
            part_rows[str(batch["path"][k]).rsplit("/", 1)[-1]] = int(batch["rows"][k])
        if progress is not None:
            written_at = float(batch["written_at"][k])
            if not progress.first_written_at or written_at < progress.first_written_at:
                progress.first_written_at = written_at
                progress.first_rows = int(batch["rows"][k])
            progress.last_written_at = max(progress.last_written_at, written_at)
            progress.sources_done += int(batch["sources_done"][k])
        summary.files_written += 1
        summary.rows_written += int(batch["rows"][k])
        summary.pages_ok += int(batch["ok_pages"][k])
        summary.error_rows += int(batch["error_rows"][k])
        if retried:
            summary.errors_again += sum((uri, page) in retried for uri, page in json.loads(batch["error_pages"][k]))
        summary.lines += int(batch["lines"][k])
        errors.update(json.loads(batch["errors_by_type"][k]))
        for stage in STAGES:
            stage_seconds[stage] += float(batch[f"t_{stage}"][k])
            stage_cpu_seconds[stage] += float(batch[f"c_{stage}"][k])


def _jobs_folder(config: JobConfig) -> tuple[Any, str]:
    """The output's filesystem and its ``_jobs/`` folder (no trailing slash)."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(config.output.uri, **config.output_storage_options)
    return fs, f"{root.rstrip('/')}/{JOBS_DIR}"


def _write_job_files(config: JobConfig, summary: JobSummary) -> None:
    fs, jobs = _jobs_folder(config)
    folder = f"{jobs}/{summary.job_id}"
    fs.makedirs(folder, exist_ok=True)
    with fs.open(f"{folder}/config.yaml", "w") as fh:
        yaml.safe_dump(redact(to_dict(config)), fh, sort_keys=False, allow_unicode=True)
    with fs.open(f"{folder}/summary.json", "w") as fh:
        json.dump(redact(summary.as_dict()), fh, indent=2)


def _reporting(chunks: Iterable[list[str]], say: Callable[[str], None], interval_s: float) -> Iterator[list[str]]:
    """Pass listing chunks through, saying how many URIs were listed every ``interval_s``."""
    listed = 0
    last = time.perf_counter()
    for chunk in chunks:
        listed += len(chunk)
        if time.perf_counter() - last >= interval_s:
            last = time.perf_counter()
            say(f"planning: {listed} URIs listed so far")
        yield chunk


def _process(
    config: JobConfig,
    work: list[WorkRange],
    job_id: str,
    summary: JobSummary,
    say: Callable[[str], None],
    started: float,
    check_lease: Callable[[], None] = lambda: None,
    part_rows: dict[str, int] | None = None,
    seal: UriSeal | None = None,
    retried: set[tuple[str, int | None]] | None = None,
) -> JobConfig:
    """Run the planned work through the stages, filling ``summary`` from the written files
    (and ``part_rows``, when given, with each file's name and rows; error rows of ``retried``
    sources as :attr:`JobSummary.errors_again`);
    ``check_lease`` runs after each written file (it raises once the run may no longer write).
    Returns the configuration that ran (the CPU fallback's, when the cluster had no GPU)."""
    _ensure_ray(config)
    import ray.data

    embedded = not (config.ray.address or os.environ.get("RAY_ADDRESS"))
    if needs_gpus(config) and not wait_for_gpus(0.0 if embedded else config.ray.gpu_wait_s, say):
        cluster_cpus = float(ray.cluster_resources().get("CPU", 0))
        config = cpu_fallback(config, cluster_cpus)
        summary.gpu_fallback = True
        say(
            "no GPU in the cluster: detection and recognition run on CPU, with the CPU default resources "
            f"scaled to its {cluster_cpus:g} CPUs"
        )
    if embedded:  # a joined cluster may grow (the autoscaler): only a local one is known in full
        check_cpu_budget(config, float(ray.cluster_resources().get("CPU", 0)))
        check_gpu_budget(config, float(ray.cluster_resources().get("GPU", 0)))
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    # Ray Data warns when a pool's min_actors exceeds its inputs (a job of a few files): the
    # pool then starts fewer actors, which is what a small job wants; not worth a warning.
    warnings.filterwarnings(
        "ignore", message="The minimum number of concurrent actors", category=UserWarning, module=r"ray\.data\."
    )
    context.execution_options.preserve_order = False
    dataset = build_dataset(config, work, job_id, seal)
    errors: Counter[str] = Counter()
    stage_seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)
    stage_cpu_seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)
    last_report = time.perf_counter()
    started_at = time.time() - (time.perf_counter() - started)  # the run's start, seconds since the epoch
    progress = Progress(planned=summary.sources_processed)

    def report(waited: float = 0.0) -> None:
        """A progress line every ``progress_interval_s``, whether files come or not."""
        nonlocal last_report
        if time.perf_counter() - last_report < config.progress_interval_s:
            return
        last_report = time.perf_counter()
        line = progress.line(summary, time.time())
        if waited >= config.progress_interval_s:
            what = "the first part file" if not summary.files_written else "a new part file"
            limit = f" (stall_timeout_s {config.stall_timeout_s:g})" if config.stall_timeout_s else ""
            line += f"; waiting {waited:.0f} s for {what}{limit}"
        say(line)

    def waiting(seconds: float) -> None:
        check_lease()
        report(seconds)

    executors = _capture_executors(dataset)

    def stop_executors() -> None:
        """Shut the run's Ray Data executor down (a no-op once it has finished): on a stall, a
        lost lease or a stop for the error budget, its tasks are cancelled and its actors killed,
        so nothing is written after this run gives the output back."""
        for executor in executors:
            executor.shutdown(force=True)

    batches = stall_guarded(
        iter(dataset.iter_batches(batch_size=None, batch_format="numpy")),
        config.stall_timeout_s,
        min(1.0, config.progress_interval_s),
        waiting,
        stop_executors,
    )
    settings_recorded = False
    try:
        for batch in batches:
            check_lease()
            _count_file(batch, summary, errors, stage_seconds, stage_cpu_seconds, progress, part_rows, retried)
            if summary.rows_written and not settings_recorded:  # the next run compares with these
                record_result_settings(config)
                settings_recorded = True
            summary.first_output_seconds = round(max(progress.first_written_at - started_at, 0.0), 3)
            report()
            counted = summary.rows_written - summary.errors_again
            if counted >= config.min_rows_for_budget and summary.budget_rate() > config.max_error_rate:
                summary.status = "failed"
                summary.message = summary.budget_message(config.max_error_rate) + "; stopped"
                break
    except JobStalled as exc:  # the executor is stopped (stop_executors) before the lease goes
        if not executors:  # no handle on it: ending the driver's Ray session ends its tasks and actors
            ray.shutdown()
        summary.status, summary.message = "stalled", str(exc)
        say(str(exc))
    finally:
        batches.close()
    say(progress.line(summary, time.time()))  # where the run ended
    summary.errors_by_type = dict(errors)
    steady_seconds = progress.last_written_at - progress.first_written_at  # first to last file written
    if summary.rows_written > progress.first_rows and steady_seconds > 0:
        summary.steady_pages_per_second = round((summary.rows_written - progress.first_rows) / steady_seconds, 3)
    summary.seconds_per_stage = {k: round(v, 3) for k, v in stage_seconds.items() if v > 0}
    summary.cpu_seconds_per_stage = {k: round(v, 3) for k, v in stage_cpu_seconds.items() if stage_seconds[k] > 0}
    return config


QUIETED_RAY_LOGGERS = ("ray.data", "ray._private.authentication")
"""Ray's Python loggers that ``--quiet`` sets to ERROR: Ray Data's plan and progress lines, and
the start-up warning that token authentication is on."""


@contextlib.contextmanager
def ray_data_quiet(quiet: bool) -> Iterator[None]:
    """With ``quiet``, the warnings and progress lines of :data:`QUIETED_RAY_LOGGERS` are left
    out while the block runs (set after Ray Data's import configures its loggers; restored
    after)."""
    if not quiet:
        yield
        return
    import ray.data  # noqa: F401 - its import sets its loggers' levels

    loggers = [logging.getLogger(name) for name in QUIETED_RAY_LOGGERS]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, previous, strict=True):
            logger.setLevel(level)


def _run_leased(
    config: JobConfig,
    job_id: str,
    summary: JobSummary,
    first_chunk: list[str],
    listing: Iterator[list[str]],
    report: ListingReport,
    say: Callable[[str], None],
    started: float,
    lease: OutputLease,
    quiet: bool = False,
    start: OutputAtStart | None = None,
) -> JobConfig:
    """Plan, process and summarise, holding the output's ``lease`` (checked between chunks and
    batches, and before anything is deleted); returns the config that ran. ``quiet``: no
    progress lines, Ray Data's own included; ``start`` is given the part files the driver knows
    of (:class:`OutputAtStart`)."""
    out_options = config.output_storage_options
    overwrite = config.output.mode == "overwrite"
    done = DoneIndex()
    with storage_access(f"on the output {config.output.uri}"):
        finished = finish_compactions(config.output.uri, out_options)
    if finished:
        say(f"finished {finished} compactions that an interrupted run left")
    if not overwrite:
        with storage_access(f"on the output {config.output.uri}"):
            clean_tmp(config.output.uri, out_options)
            done = scan_done(config.output.uri, out_options, config.output.retry_errors)
            summary.settings_changed = settings_changes_since_last_run(config)
        if summary.settings_changed:
            say(describe_settings_changes(summary.settings_changed))
    done_rows = done.rows
    with storage_access(f"on the output {config.output.uri}"):
        spool = WorkSpool(config.output.uri, job_id, out_options)
    try:
        planner = Planner(done, config.output.mode, parse_page_ranges(config.source.pdf_pages))
        with storage_access(f"writing the plan under {spool.folder}"):
            for chunk in _reporting(itertools.chain([first_chunk], listing), say, config.progress_interval_s):
                lease.check()
                spool.append(planner.plan_chunk(chunk))
        plan = planner.counts
        if plan.sources_total == 0:
            say(f"the listing of {config.source.uri} found no sources: check the input URI")
        summary.sources_left_out = report.total
        summary.left_out_by_reason = dict(report.skipped)
        if report.total:
            reasons = ", ".join(f"{n} {reason}" for reason, n in report.skipped.most_common())
            say(f"left out {report.total} entries of the listing ({reasons}); e.g. {'; '.join(report.examples)}")
        if planner.retried:
            lease.verify()
            with storage_access(f"on the output {config.output.uri}"):
                summary.rows_retried = drop_retried_rows(
                    config.output.uri, out_options, done, planner.retried, config.output.compression
                )
            say(
                f"retrying {len(planner.retried)} sources: removed their {summary.rows_retried} error rows of types "
                f"{', '.join(config.output.retry_errors)} from the output"
            )
        rewritten = {path.rsplit("/", 1)[-1] for path in done.retry_parts}  # files drop_retried_rows may change
        part_rows = {name: rows for name, rows in done.part_rows.items() if name not in rewritten}
        retried = {(uri, page) for uri in planner.retried for page in done.retry.get(uri, ())}  # the rows redone
        del done, planner
        if overwrite and plan.sources_total == 0:
            raise FileNotFoundError(
                f"the listing of {config.source.uri} found no sources: --mode overwrite would delete the output's "
                "part files and write nothing; check the input URI"
            )
        if overwrite:
            lease.verify()
            with storage_access(f"on the output {config.output.uri}"):
                removed = remove_parts(config.output.uri, out_options)
            say(f"overwrite: removed {removed} existing part files")
        summary.sources_total = plan.sources_total
        summary.sources_skipped = plan.sources_skipped
        summary.sources_partial = plan.sources_partial
        summary.sources_processed = plan.items
        summary.duplicate_sources = plan.duplicates
        repeats = f"; {plan.duplicates} repeated URIs in the listing ignored" if plan.duplicates else ""
        say(
            f"{plan.sources_total} sources; {plan.sources_skipped} already done, {plan.sources_partial} partly done, "
            f"{plan.items} to process ({done_rows} rows already in {config.output.uri}){repeats}"
        )
        if plan.items:
            if start is not None:  # the files the driver knows of: the output's, then each one it counts
                start.known_parts = part_rows
            with ray_data_quiet(quiet):
                config = _process(
                    config,
                    work_ranges(spool.files, min_items=config.resources.sources_per_range),
                    job_id,
                    summary,
                    say,
                    started,
                    lease.check,
                    part_rows,
                    spool.seal,
                    retried,
                )
            if start is not None:
                start.processed = True
    finally:
        try:
            spool.remove()
        except Exception as exc:  # never hide the run's own outcome behind a clean-up failure
            log.warning("could not remove the work files under %s: %s", spool.folder, type(exc).__name__)
    summary.wall_seconds = round(time.perf_counter() - started, 3)
    summary.pages_per_second = round(summary.rows_written / max(summary.wall_seconds, 1e-9), 3)
    summary.error_rate = round(summary.error_rows / max(summary.rows_written, 1), 4)
    if summary.status == "running":
        over = summary.rows_written > summary.errors_again and summary.budget_rate() > config.max_error_rate
        summary.status = "failed" if over else "succeeded"
        if over:
            summary.message = summary.budget_message(config.max_error_rate)
    if config.output.compact and summary.status == "succeeded":
        lease.verify()
        try:  # the run's rows are all in: a compaction that fails leaves them, and its journal
            compaction = compact(
                config.output.uri,
                out_options,
                config.output.rows_per_file,
                config.output.compression,
                lease.verify,
                known_rows=part_rows,
            )
        except LeaseLostError:
            raise
        except Exception as exc:
            say(
                f"compaction failed ({type(exc).__name__}: {exc}); every row is in the output, and the next run "
                "or `ocr-batch compact` finishes what it began"
            )
        else:
            summary.compaction = compaction.as_dict()
            say(describe_compaction(compaction))
    try:
        lease.verify()
    except LeaseLostError as exc:  # the summary (the run's own folder) says so; _tmp is not ours now
        summary.status, summary.message = "failed", str(exc)
        with storage_access(f"writing the job summary under {config.output.uri}"):
            _write_job_files(config, summary)
        raise
    with storage_access(f"writing the job summary under {config.output.uri}"):
        _write_job_files(config, summary)
        clean_tmp(config.output.uri, out_options)
    say(
        f"{summary.status}: {summary.rows_written} rows ({summary.pages_ok} pages ok, {summary.error_rows} errors "
        f"{summary.errors_by_type}) in {summary.wall_seconds:.1f} s, {summary.pages_per_second:.2f} rows/s; "
        f"summary in {config.output.uri.rstrip('/')}/{JOBS_DIR}/{job_id}/summary.json"
    )
    return config


def plan_only(config: JobConfig, progress: TextIO | None = sys.stderr) -> dict[str, Any]:
    """``ocr-batch run --dry-run``: list the sources and read what the output holds, then
    say what a run would do; no Ray, no lease, nothing written. Returns the plan's counts
    (the fields a run's summary gives them under), ``rows_in_output``, ``error_rows_to_retry``
    (rows of ``output.retry_errors`` types that the run would remove and do again) and
    ``part_files_to_remove`` (``--mode overwrite``: all of them, before writing)."""
    if not config.output.uri:
        raise ValueError("no output given: set output.uri (or --output)")
    check_models(config.ocr)
    with storage_access(f"on the output {config.output.uri}"):
        check_output_location(config.output.uri, config.output_storage_options)
    say = progress_printer("dry-run", progress)
    report = ListingReport(own_output=listing_form(config.output.uri))
    listing = iter_sources(
        config.source.uri, config.source.manifest_column, config.source.storage_options, report=report
    )
    done = DoneIndex()
    settings_changed: dict[str, Any] = {}
    overwrite = config.output.mode == "overwrite"
    with storage_access(f"on the output {config.output.uri}"):
        if overwrite:  # what it would remove: the part files and their rows, from their footers
            parts = read_part_sizes(config.output.uri, config.output_storage_options)
            parts_to_remove, rows_in_output = len(parts), sum(part.rows for part in parts)
        else:
            done = scan_done(config.output.uri, config.output_storage_options, config.output.retry_errors)
            parts_to_remove, rows_in_output = 0, done.rows
            settings_changed = settings_changes_since_last_run(config)
    if settings_changed:
        say(describe_settings_changes(settings_changed))
    planner = Planner(done, config.output.mode, parse_page_ranges(config.source.pdf_pages))
    for chunk in _reporting(listing, say, config.progress_interval_s):
        planner.plan_chunk(chunk)
    plan = planner.counts
    retried = sum(len(done.retry.get(uri, ())) for uri in planner.retried)
    result = {
        "mode": config.output.mode,
        "sources_total": plan.sources_total,
        "sources_skipped": plan.sources_skipped,
        "sources_partial": plan.sources_partial,
        "sources_processed": plan.items,
        "duplicate_sources": plan.duplicates,
        "sources_left_out": report.total,
        "left_out_by_reason": dict(report.skipped),
        "rows_in_output": rows_in_output,
        "error_rows_to_retry": retried,
        "part_files_to_remove": parts_to_remove,
        "settings_changed": settings_changed,
    }
    removal = (
        f"; overwrite would remove the output's {parts_to_remove} part files and their {rows_in_output} rows first"
        if overwrite
        else ""
    )
    say(
        f"dry run ({config.output.mode}): {plan.sources_total} sources; {plan.sources_skipped} already done, "
        f"{plan.sources_partial} partly done, {plan.items} to process ({retried} error rows to do again; "
        f"{rows_in_output} rows already in {config.output.uri}); {report.total} entries of the listing left out"
        f"{removal}"
    )
    return result


def settings_changes_since_last_run(config: JobConfig) -> dict[str, Any]:
    """``{"since_job": id, "changes": {key: [before, now]}}`` when the output's newest earlier
    run that wrote rows read with other OCR result settings than ``config.ocr``; ``{}``
    otherwise (no such run, the same settings, or earlier runs' files that cannot be read:
    this only informs, it never fails a run)."""
    try:
        found = newest_run_settings(*_jobs_folder(config))
        if found is None:
            return {}
        since_job, previous = found
        changes = result_settings_changes(previous, redact(to_dict(config.ocr)))
    except Exception as exc:
        log.warning("could not compare with the output's earlier runs' settings: %s", type(exc).__name__)
        return {}
    return {"since_job": since_job, "changes": changes} if changes else {}


def record_result_settings(config: JobConfig) -> None:
    """Write :data:`RESULT_SETTINGS_FILE`: this run has written rows, with these OCR settings
    (best effort: a failure is logged, the run goes on). Written beside it and moved into place,
    so a reader never meets a partial file (the temporary name starts with ``_``, so it is no run)."""
    temporary = None
    try:
        fs, jobs = _jobs_folder(config)
        temporary = f"{jobs}/{RESULT_SETTINGS_FILE}.{uuid.uuid4().hex}.tmp"
        with fs.open(temporary, "w") as fh:
            json.dump({"job_id": config.job_id, "ocr": redact(to_dict(config.ocr))}, fh)
        fs.mv(temporary, f"{jobs}/{RESULT_SETTINGS_FILE}")
    except Exception as exc:
        log.warning("could not record this run's OCR settings in the output: %s", type(exc).__name__)
        if temporary is not None:
            with contextlib.suppress(Exception):
                fs.rm(temporary)


def describe_settings_changes(settings_changed: dict[str, Any]) -> str:
    """One progress line: which settings changed since which run, and what that means."""
    changes = "; ".join(f"{key} {before} -> {now}" for key, (before, now) in settings_changed["changes"].items())
    return (
        f"the output holds rows read with other OCR settings (newest such run: {settings_changed['since_job']}): "
        f"{changes}. Those rows stay as they are (the det_model and rec_model columns tell them apart); only "
        "pages not yet in the output are read with these settings. To read every page again, use --mode "
        "overwrite or a new output"
    )


def progress_printer(job_id: str, progress: TextIO | None) -> Callable[[str], None]:
    """``say(message)``: one progress line ``[ocr-batch <job id> HH:MM:SS] message`` on
    ``progress`` (credentials redacted), or nothing when ``progress`` is None."""

    def say(message: str) -> None:
        if progress is not None:
            print(
                f"[ocr-batch {job_id} {datetime.now(UTC):%H:%M:%S}] {redact_text(message)}", file=progress, flush=True
            )

    return say


def describe_compaction(compaction: CompactionSummary) -> str:
    """One progress line on a compaction."""
    return (
        f"compaction: {compaction.files_merged} small part files ({compaction.rows_moved} rows) merged into "
        f"{compaction.files_written}; {compaction.files_after} part files now (were {compaction.files_before})"
    )


def compact_output(config: JobConfig, progress: TextIO | None = sys.stderr) -> CompactionSummary:
    """``ocr-batch compact``: take the output's lease (raises :class:`OutputBusyError` while a
    run holds it), merge its small part files (``output.rows_per_file``, ``compression``,
    ``storage_options`` from ``config``), give the lease back."""
    if not config.output.uri:
        raise ValueError("no output given: set output.uri (or --output)")
    job_id = f"compact-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    out_options = config.output_storage_options
    say = progress_printer(job_id, progress)
    with storage_access(f"on the output {config.output.uri}"):
        if not list_parts(config.output.uri, out_options):  # the lease would create the folder
            raise FileNotFoundError(f"no part files at {config.output.uri}: nothing to compact")
    lease = OutputLease(
        config.output.uri, job_id, out_options, config.output.lease_ttl_s, config.output.take_over_lease
    )
    with storage_access(f"taking the lease of the output {config.output.uri}"):
        abandoned = lease.acquire()
    try:
        if abandoned is not None:
            _clean_abandoned(config, abandoned, say)
        with storage_access(f"compacting the output {config.output.uri}"):
            clean_tmp(config.output.uri, out_options)
            compaction = compact(
                config.output.uri, out_options, config.output.rows_per_file, config.output.compression, lease.verify
            )
            clean_tmp(config.output.uri, out_options)
        if compaction.journals_finished:
            say(f"finished {compaction.journals_finished} compactions that an interrupted run left")
        say(describe_compaction(compaction))
        return compaction
    finally:
        lease.release()


def _clean_abandoned(config: JobConfig, abandoned: LeaseRecord, say: Callable[[str], None]) -> None:
    """Say whose lease was taken over and remove that run's work files (best effort)."""
    if abandoned.token:
        age = f"last renewed {max(time.time() - abandoned.renewed_at, 0):.0f} s ago"
        say(
            f"took over the output's lease from job {abandoned.job_id} (host {abandoned.host}, pid "
            f"{abandoned.pid}, {age}); removing its work files"
        )
    else:
        say("took over an unreadable lease of the output")
    if not abandoned.token or not is_plain_job_id(abandoned.job_id):
        return
    try:
        WorkSpool(config.output.uri, abandoned.job_id, config.output_storage_options).remove()
    except Exception as exc:  # leftovers are harmless: never fail this run over them
        log.warning("could not remove the work files of job %s: %s", abandoned.job_id, type(exc).__name__)


@dataclass
class OutputAtStart:
    """The part files a run's driver knows of once processing begins (None until then): the
    output's own at the start (less those rewritten for retries) and, as it goes, each file it
    has counted (file name -> rows); and whether processing ended (then its counts are whole,
    and a compaction that follows may hold a file twice for a moment)."""

    known_parts: dict[str, int] | None = None
    processed: bool = False


RECOUNT_TIMEOUT_S = 20.0
"""How long a stopped run may spend reading back what it wrote (a scheduler's kill grace
period is often 30 s); past it, the summary keeps the driver's counts."""


def _recount_written(config: JobConfig, summary: JobSummary, start: OutputAtStart) -> bool:
    """Add to ``summary`` the rows of this run in the part files its driver never heard of
    (:func:`count_job_rows` over the files not in ``start.known_parts``): a stopped run's write
    tasks may have committed them just before it stopped. True when there were any. Lines and
    stage times stay as counted."""
    if start.known_parts is None or start.processed:
        return False
    found = count_job_rows(
        config.output.uri, config.output_storage_options, summary.job_id, start.known_parts.keys(), RECOUNT_TIMEOUT_S
    )
    if not found.rows:
        return False
    summary.files_written += found.files
    summary.rows_written += found.rows
    summary.pages_ok += found.pages_ok
    summary.error_rows += found.error_rows
    summary.errors_by_type = dict(Counter(summary.errors_by_type) + Counter(found.errors_by_type))
    summary.error_rate = round(summary.error_rows / max(summary.rows_written, 1), 4)  # as a finished run's
    return True


def run_job(config: JobConfig, progress: TextIO | None = sys.stderr) -> JobSummary:
    """Run the batch job to completion.

    Raises:
        ErrorBudgetExceeded: error rows passed ``max_error_rate`` (the summary is written first).
        OutputBusyError: another run holds the output (nothing was read or written).
        LeaseLostError: another run took the output over midway; this run stopped.
        JobStalled: no part file came for ``stall_timeout_s``; the run stopped (the summary
            is written first; a rerun resumes).
    """
    if not config.output.uri:
        raise ValueError("no output given: set output.uri (or --output)")
    check_models(config.ocr)  # a misspelt model name fails here, not in an actor after Ray started
    job_id = config.job_id or f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    config = replace(config, job_id=job_id)
    summary = JobSummary(job_id=job_id, output=config.output.uri, mode=config.output.mode)
    started = time.perf_counter()
    out_options = config.output_storage_options

    say = progress_printer(job_id, progress)

    # The first chunk of the listing comes before the output is touched, so a missing input or
    # refused credentials fail first. Then the run takes the output's lease (one run at a time
    # per output), and the rest of the listing streams through the planner. Overwrite deletes
    # the old parts only once the whole listing has been read and planned.
    report = ListingReport(own_output=listing_form(config.output.uri))
    listing = iter_sources(
        config.source.uri, config.source.manifest_column, config.source.storage_options, report=report
    )
    first_chunk = next(listing, [])
    with storage_access(f"on the output {config.output.uri}"):
        check_output_location(config.output.uri, out_options)
    lease = OutputLease(
        config.output.uri, job_id, out_options, config.output.lease_ttl_s, config.output.take_over_lease
    )
    start = OutputAtStart()
    try:
        with storage_access(f"taking the lease of the output {config.output.uri}"):
            abandoned = lease.acquire()
        if abandoned is not None:
            _clean_abandoned(config, abandoned, say)
        quiet = progress is None
        config = _run_leased(config, job_id, summary, first_chunk, listing, report, say, started, lease, quiet, start)
    except (KeyboardInterrupt, Terminated) as exc:
        summary.status = "interrupted"
        summary.message = "stopped by SIGTERM" if isinstance(exc, Terminated) else "interrupted (SIGINT)"
        summary.wall_seconds = round(time.perf_counter() - started, 3)
        try:  # what was written so far, under the lease still held
            with storage_access(f"writing the job summary under {config.output.uri}"):
                _write_job_files(config, summary)
        except Exception as write_error:
            log.warning("could not write the summary of the interrupted run: %s", type(write_error).__name__)
        try:  # the driver hears of part files late: count what the output holds of this run, then say it
            if _recount_written(config, summary, start):
                with storage_access(f"writing the job summary under {config.output.uri}"):
                    _write_job_files(config, summary)
        except Exception as count_error:
            log.warning("could not count what the interrupted run wrote: %s", type(count_error).__name__)
        raise
    finally:
        try:
            lease.release()
        except Exception as exc:  # never hide the run's own outcome behind a clean-up failure
            log.warning("could not release the lease of %s: %s", config.output.uri, type(exc).__name__)
    if summary.status == "failed":
        raise ErrorBudgetExceeded(summary.message, summary)
    if summary.status == "stalled":
        raise JobStalled(summary.message, summary)
    return summary
