"""Typed configuration of the batch job (``ocr-batch run``): the OCR config plus sources,
output, per-stage resources and the Ray connection. Loaded like :class:`OCRConfig`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ocr_actors.config import ConfigError, OCRConfig, _check
from ocr_actors.redaction import redact_text, redact_uri, store_uri_has_credentials

PARQUET_COMPRESSIONS = ("zstd", "snappy", "gzip", "brotli", "lz4", "none")
"""The codecs ``output.compression`` takes (pyarrow's Parquet writer)."""


@dataclass(frozen=True)
class SourceConfig:
    """Where the documents come from.

    Attributes:
        uri: a folder or prefix (``s3://bucket/scans/``), a glob (``gs://b/**/*.pdf``), or a
            manifest file (``.txt``/``.lst``: one URI a line; ``.csv``/``.parquet``: the
            ``manifest_column`` column) listing millions of objects without listing a bucket.
        manifest_column: URI column of CSV/Parquet manifests.
        pdf_pages: optional page ranges read from every PDF, e.g. ``"0-9,20"`` (0-based).
        storage_options: fsspec options (``key``, ``secret``, ``endpoint_url``, ...). Never
            logged; the job's saved ``config.yaml`` shows ``***`` for every secret-looking key
            (other options, e.g. ``endpoint_url``, as given). The usual environment credentials
            work without them.
    """

    uri: str = ""
    manifest_column: str = "uri"
    pdf_pages: str = ""
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_uri_credentials(self.uri, "source.uri", "source.storage_options")


def check_uri_credentials(uri: str, key: str, options_key: str) -> None:
    """Refuse credentials written into an object-store URI (``s3://KEY:SECRET@bucket/…``):
    its storage library would not read them and would quote them in its errors. Raises
    :class:`ConfigError` naming the URI redacted."""
    if store_uri_has_credentials(uri):
        scheme = uri.partition("://")[0]
        raise ConfigError(
            f"{key}: credentials written into a {scheme}:// URI are not read by its storage library; give them "
            f"in {options_key} (key, secret) or the environment ({redact_uri(uri)})"
        )


ERROR_TYPES = (
    "corrupt",
    "truncated",
    "empty",
    "encrypted",
    "unsupported_type",
    "too_large",
    "not_found",
    "access_denied",
    "read_failed",
    "ocr_failed",
)
"""Every ``error_type`` a row can carry."""


@dataclass(frozen=True)
class OutputConfig:
    """The Parquet dataset written.

    Attributes:
        uri: output folder or prefix.
        mode: ``resume`` (default: skip pages already in the output, finish partial
            documents), ``incremental`` (skip every source already in the output: for
            scheduled backfills over a growing prefix), or ``overwrite``.
        rows_per_file: pages per Parquet file (one row group each).
        compact: after a successful run, merge the output's part files of fewer than half
            ``rows_per_file`` rows into files of up to ``rows_per_file`` (``ocr_actors.io.compact``;
            for scheduled incremental runs, each of which leaves a small file).
        compression: Parquet compression codec.
        storage_options: fsspec options for the output (default: the source's).
        lease_ttl_s: one run at a time per output: a run's lease on the output (under
            ``_jobs/_lease/``, renewed every quarter of this; at least 10) counts as abandoned
            after this many seconds without renewal.
        take_over_lease: take the output's lease even if another run seems to hold it (its
            driver is known to be gone).
        retry_errors: error types whose rows a rerun (resume or incremental) does again: it
            plans their sources (or pages) as not done and, once planned, removes those rows
            from the output before writing new ones. The default retries what may pass
            (network, permissions, a missing object, a model failure); add e.g. ``corrupt``
            after replacing files, or give ``[]`` to keep every error row as final.
    """

    uri: str = ""
    mode: str = "resume"
    rows_per_file: int = 500
    compact: bool = False
    compression: str = "zstd"
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    lease_ttl_s: float = 300.0
    take_over_lease: bool = False
    retry_errors: tuple[str, ...] = ("read_failed", "not_found", "access_denied", "ocr_failed")

    def __post_init__(self) -> None:
        check_uri_credentials(self.uri, "output.uri", "output.storage_options")
        _check(self.mode in ("resume", "incremental", "overwrite"), "output.mode", self.mode)
        _check(self.rows_per_file >= 1, "output.rows_per_file", self.rows_per_file)
        _check(self.lease_ttl_s >= 10, "output.lease_ttl_s", self.lease_ttl_s)
        _check(
            self.compression.lower() in PARQUET_COMPRESSIONS,
            f"output.compression (one of {', '.join(PARQUET_COMPRESSIONS)})",
            self.compression,
        )
        unknown = sorted(set(self.retry_errors) - set(ERROR_TYPES))
        _check(not unknown, f"output.retry_errors (known: {', '.join(ERROR_TYPES)})", unknown)


@dataclass(frozen=True)
class StageResources:
    """Resources of one stage.

    Attributes:
        batch_size: pages per call (recognition: pages whose crops are batched together).
        num_cpus / num_gpus: per task or actor; fractional GPUs share a device.
        min_actors / max_actors: actor pool bounds (model stages only).
        threads: engine threads per actor (model stages); 0 = ``ocr.engine.threads`` if
            set, else the CPU share rounded (at least 1).
        concurrent_calls: batches one actor runs at once, each in its own thread on the
            actor's one set of sessions (model stages; ONNX Runtime only, whose sessions take
            concurrent calls). On a GPU one actor then overlaps one batch's CPU work with
            another's GPU call in a single CUDA context, instead of several actors (processes,
            one context each) taking turns on the GPU. 1 (default): one batch at a time.
    """

    batch_size: int = 4
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    min_actors: int = 1
    max_actors: int = 1
    threads: int = 0
    concurrent_calls: int = 1

    def __post_init__(self) -> None:
        _check(self.batch_size >= 1, "resources.*.batch_size", self.batch_size)
        _check(1 <= self.min_actors <= self.max_actors, "resources.*.min_actors/max_actors", self.min_actors)
        _check(self.concurrent_calls >= 1, "resources.*.concurrent_calls", self.concurrent_calls)


@dataclass(frozen=True)
class ResourcesConfig:
    """Per-stage resources. CPU stages (write; load unless ``load_in_actors``; crop unless
    ``crop_in_detect``) run as tasks; model stages as actor pools. CPU shares are Ray's
    logical CPUs (scheduling tokens; engine threads are set separately). The defaults fit 2
    CPUs with every optional stage on: one single-threaded detection actor (0.5), two
    single-threaded recognition actors (0.6 each: recognition is most of the work), small
    classifier actors (0.05), and room for one CPU task (0.2) at a time, which measured
    faster than letting load/crop tasks crowd the model actors. A model actor's engine
    threads default to its CPU share rounded (at least 1)."""

    load: StageResources = field(default_factory=lambda: StageResources(batch_size=1, num_cpus=0.2))
    docprep: StageResources = field(default_factory=lambda: StageResources(batch_size=4, num_cpus=0.05))
    detect: StageResources = field(default_factory=lambda: StageResources(batch_size=4, num_cpus=0.5))
    crop: StageResources = field(default_factory=lambda: StageResources(batch_size=4, num_cpus=0.2))
    lineori: StageResources = field(default_factory=lambda: StageResources(batch_size=8, num_cpus=0.05))
    recognize: StageResources = field(
        default_factory=lambda: StageResources(batch_size=8, num_cpus=0.6, min_actors=2, max_actors=2)
    )
    write: StageResources = field(default_factory=lambda: StageResources(batch_size=1, num_cpus=0.2))
    """One task per part file of ``output.rows_per_file`` pages: only ``num_cpus`` applies."""
    crop_in_detect: bool = True
    """Crop the text lines inside the detection actors, from the pages they already hold,
    instead of in CPU tasks after them (``resources.crop`` then applies). Moving a decoded
    page between Ray processes costs more CPU than cropping it: Ray's part of the job took
    43-52 ms of CPU per 1240 x 1754 page with cropping here against 68-73 ms with crop tasks
    (``scripts/bench_transport.py``, 2 vCPUs), and cropping itself 1.5-2.2 ms
    (``scripts/bench_host_costs.py``); the crops are a fraction of the page's bytes."""
    load_in_actors: bool = True
    """Read and decode the sources inside the first model actor (document preprocessing when
    it is on, else detection) instead of in load tasks before it (``resources.load`` then
    does not apply; each call takes enough sources for one of the stage's batches). A decoded
    page then never moves between Ray processes before the model sees it: Ray's part of the
    job measured 30-34 ms of CPU per page this way against 63-80 ms with load tasks
    (``scripts/bench_transport.py``, 2 vCPUs), and the whole job's CPU outside its stages
    0.071 core-s per page against 0.147 (``scripts/bench_job.py``). But decoding and
    rasterising then run on the model actors' nodes and share their CPU, not on CPU-only
    nodes: ``job_gpu.yaml`` keeps load tasks (``false``), which ``cluster.yaml``'s CPU workers
    can take."""
    models_in_one_actor: bool = False
    """Detection (with cropping), text-line orientation and recognition run one after another
    in one actor pool, configured by ``resources.detect`` (``lineori`` and ``recognize`` then
    do not apply), instead of one pool each. On a GPU each actor is one process with one CUDA
    context and one set of kernel set-ups for both models, and ``concurrent_calls`` threads
    overlap one batch's CPU work with another's GPU runs; several pools mean several
    processes per GPU, each setting up its own kernels (``job_gpu.yaml``: true)."""
    sources_per_range: int = 1
    """The fewest sources in a work range, the unit a load task (or a loading actor's call)
    reads (:func:`~ocr_actors.io.workfiles.work_ranges`; at most 1000, and never across work
    files). Ranges grow past it on their own once a job has more than 1000 sources. 1: a small
    job gives every source its own task. Each task costs Ray tens of ms of CPU whatever it
    holds (``scripts/bench_transport.py``: 74 ms of Ray's work a page with a range a page, 9
    with ranges of 50), which a GPU node's fast pages feel: ``job_gpu.yaml`` asks for 16, one
    model actor call's pages."""

    def __post_init__(self) -> None:
        _check(1 <= self.sources_per_range <= 1000, "resources.sources_per_range (1 to 1000)", self.sources_per_range)


@dataclass(frozen=True)
class RayConfig:
    """How to reach Ray.

    Attributes:
        address: "" starts Ray in this process (embedded); "auto" or ``ray://host:port``
            joins a cluster. Under ``ray job submit`` the job joins its cluster either way.
        num_cpus: CPUs of the embedded Ray (0 = all).
        object_store_memory: bytes of the embedded Ray's object store.
        gpu_wait_s: a job that asks for GPUs on a joined cluster that has none asks the
            autoscaler for one and waits this long; then (and at once with embedded Ray,
            where none can appear) it runs on CPU (:func:`cpu_fallback`).
    """

    address: str = ""
    num_cpus: int = 0
    object_store_memory: int = 1 << 30
    gpu_wait_s: float = 600.0


JOB_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""A job id names ``<output>/_jobs/<job_id>/``: no separators, no ``..``."""


def is_plain_job_id(job_id: str) -> bool:
    """Whether ``job_id`` is safe as a folder name under ``_jobs/`` (see :data:`JOB_ID_PATTERN`)."""
    return bool(JOB_ID_PATTERN.fullmatch(job_id)) and ".." not in job_id


@dataclass(frozen=True)
class JobConfig:
    """The batch job.

    Attributes:
        max_error_rate: the job exits non-zero when error rows exceed this share of all rows
            (checked while running once ``min_rows_for_budget`` rows are in, and at the end).
        job_id: names the job's summary folder; generated when empty.
        progress_interval_s: seconds between progress lines.
        stall_timeout_s: the run stops (status "stalled", exit status 4) when no part file
            has been written for this long while work remains, instead of waiting forever:
            e.g. after a node loss, when a restarting actor waits for a GPU share that other
            actors hold while they wait for its outputs. Ray's work for the run is stopped
            first, so a rerun resumes without duplicates. 0 = wait forever.
    """

    ocr: OCRConfig = field(default_factory=OCRConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    max_error_rate: float = 0.2
    min_rows_for_budget: int = 200
    job_id: str = ""
    progress_interval_s: float = 10.0
    stall_timeout_s: float = 3600.0

    def __post_init__(self) -> None:
        _check(0.0 <= self.max_error_rate <= 1.0, "max_error_rate", self.max_error_rate)
        _check(self.progress_interval_s > 0, "progress_interval_s (seconds, above 0)", self.progress_interval_s)
        _check(
            self.resources.write.batch_size == 1,
            "resources.write.batch_size (a write task writes one part file: set output.rows_per_file)",
            self.resources.write.batch_size,
        )
        _check(self.stall_timeout_s >= 0.0, "stall_timeout_s", self.stall_timeout_s)
        res = self.resources
        threaded = [
            name for name in ("docprep", "detect", "lineori", "recognize") if getattr(res, name).concurrent_calls > 1
        ]
        if threaded and self.ocr.engine.engine != "onnxruntime":
            raise ConfigError(
                f"resources.{threaded[0]}.concurrent_calls > 1 needs engine onnxruntime: "
                f"{self.ocr.engine.engine} sessions take one call at a time"
            )
        if self.job_id and not is_plain_job_id(self.job_id):
            raise ConfigError(
                f"invalid job_id {self.job_id!r}: use letters, digits, '.', '_' and '-' (it names a folder)"
            )

    @property
    def output_storage_options(self) -> dict[str, Any]:
        """The output's fsspec options: its own, else the source's."""
        return dict(self.output.storage_options) or dict(self.source.storage_options)


def needs_gpus(config: JobConfig) -> bool:
    """True when any stage asks Ray for GPUs or the engine is set to a GPU."""
    res = config.resources
    stages = (res.load, res.docprep, res.detect, res.crop, res.lineori, res.recognize, res.write)
    return any(stage.num_gpus > 0 for stage in stages) or config.ocr.engine.device != "cpu"


def cpu_fallback(config: JobConfig, cluster_cpus: float = 2.0) -> JobConfig:
    """The same job for a cluster without GPUs: the engine on CPU, and the settings a GPU
    config tunes for GPUs (engine threads and precision, batch sizes, padding, every stage's resources)
    back at their CPU defaults, whose actor pools may grow with the cluster: up to one
    detection actor per 2 CPUs and one recognition actor per CPU (the defaults' ratio,
    sized for 2 CPUs). Models, thresholds, switches, source and output are kept."""
    defaults = JobConfig()
    ocr, cpu = config.ocr, defaults.ocr
    ocr = replace(
        ocr,
        engine=replace(ocr.engine, device="cpu", threads=cpu.engine.threads, precision=cpu.engine.precision),
        text_detection=replace(
            ocr.text_detection,
            batch_pad_multiple=cpu.text_detection.batch_pad_multiple,
            batch_canvases=cpu.text_detection.batch_canvases,
            batch_size=cpu.text_detection.batch_size,
            warmup=cpu.text_detection.warmup,
        ),
        text_recognition=replace(
            ocr.text_recognition,
            batch_size=cpu.text_recognition.batch_size,
            width_multiple=cpu.text_recognition.width_multiple,
            width_buckets=cpu.text_recognition.width_buckets,
            max_width_spread=cpu.text_recognition.max_width_spread,
            batch_by_bucket=cpu.text_recognition.batch_by_bucket,
            pad_batch=cpu.text_recognition.pad_batch,
            warmup=cpu.text_recognition.warmup,
        ),
        page_batch_size=cpu.page_batch_size,
    )
    res = defaults.resources
    detect_max = max(res.detect.max_actors, int(cluster_cpus // 2))
    recognize_max = max(res.recognize.max_actors, int(cluster_cpus))
    resources = replace(
        res,
        detect=replace(res.detect, max_actors=detect_max),
        recognize=replace(res.recognize, max_actors=recognize_max),
    )
    return replace(config, ocr=ocr, resources=resources)


def parse_page_ranges(text: str) -> list[int] | None:
    """``"0-4,9"`` -> ``[0, 1, 2, 3, 4, 9]``; empty -> None (every page)."""
    if not text.strip():
        return None
    pages: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise ConfigError(f"invalid page range {part!r} in {text!r}; use e.g. 0-4,9")
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else start
        if end < start:
            raise ConfigError(f"invalid page range {part!r}: end before start")
        pages.update(range(start, end + 1))
    return sorted(pages)


_SECRET_KEY = re.compile(r"(key|secret|token|password|passwd|credential|session|auth)", re.IGNORECASE)


def redact(value: Any) -> Any:
    """Copy of a config dict with secrets replaced by ``"***"`` (keys that look secret,
    credentials inside URLs and signed URLs' secret parameters)."""
    if isinstance(value, Mapping):
        return {
            k: ("***" if _SECRET_KEY.search(str(k)) and v not in (None, "") else redact(v)) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
