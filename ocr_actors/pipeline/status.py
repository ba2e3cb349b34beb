"""``ocr-batch status``: what an output holds and who is writing it, read without Ray and
without taking anything (no lease, no writes): rows by status and error type, part files
(and how many a compaction would merge), the runs' summaries, the lease holder, and
compactions an interrupted run left."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from ocr_actors.io.compact import PartFile, list_journals, plan_groups
from ocr_actors.io.lease import OutputLease
from ocr_actors.io.parquet import JOBS_DIR, list_parts

SUMMARY_FIELDS = ("job_id", "status", "mode", "rows_written", "pages_ok", "error_rows", "wall_seconds", "message")
"""The fields of each run's ``summary.json`` that the status lists."""


@dataclass
class OutputStatus:
    """An output at one moment.

    Attributes:
        output: the URI, as given.
        part_files: committed part files; ``mergeable_files``: those a compaction with
            ``rows_per_file`` would merge (``ocr-batch compact``).
        rows, sources, pages_ok, error_rows, errors_by_type: what the part files hold
            (``sources``: distinct ``source_uri``).
        pages_by_models: ok pages by the models that read them (``"<det_model> + <rec_model>"``,
            the rows' own columns): more than one entry when runs used other models.
        runs: the latest runs' summaries (:data:`SUMMARY_FIELDS`), newest first.
        lease: the lease holder (``job_id``, ``host``, ``pid``, ``renewed_s_ago``,
            ``ttl_s``), or None when no run holds the output.
        pending_compactions: journals of compactions an interrupted run left.
    """

    output: str
    part_files: int = 0
    mergeable_files: int = 0
    rows: int = 0
    sources: int = 0
    pages_ok: int = 0
    error_rows: int = 0
    errors_by_type: dict[str, int] = field(default_factory=dict)
    pages_by_models: dict[str, int] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    lease: dict[str, Any] | None = None
    pending_compactions: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def output_status(
    output: str, storage_options: Mapping[str, Any], rows_per_file: int, runs: int = 5, now: float | None = None
) -> OutputStatus:
    """Read ``output``'s status (see the module doc); ``runs``: how many runs' summaries.
    Raises FileNotFoundError when the output does not exist."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(output, **dict(storage_options))
    base = root.rstrip("/")
    if not fs.exists(base):
        raise FileNotFoundError(f"no output at {output}")
    status = OutputStatus(output=output)
    parts = []
    errors: Counter[str] = Counter()
    models: Counter[str] = Counter()
    sources: set[str] = set()
    for path in list_parts(output, storage_options):  # each part file read once
        with fs.open(path, "rb") as fh:
            table = pq.read_table(fh, columns=["source_uri", "status", "error_type", "det_model", "rec_model"])
        parts.append(PartFile(path, table.num_rows))
        sources.update(table["source_uri"].unique().to_pylist())
        ok = pc.equal(table["status"], "ok")
        for row in table.filter(ok).group_by(["det_model", "rec_model"]).aggregate([([], "count_all")]).to_pylist():
            models[f"{row['det_model']} + {row['rec_model']}"] += row["count_all"]
        failed = table.filter(pc.invert(ok)).group_by("error_type").aggregate([([], "count_all")])
        for row in failed.to_pylist():
            errors[row["error_type"] or "unknown"] += row["count_all"]
        status.rows += table.num_rows
    status.pages_ok = sum(models.values())
    status.part_files = len(parts)
    status.mergeable_files = sum(len(g) for g in plan_groups(parts, rows_per_file))
    status.sources = len(sources)
    status.error_rows = sum(errors.values())
    status.errors_by_type = dict(errors.most_common())
    status.pages_by_models = dict(models.most_common())
    status.runs = latest_runs(fs, f"{base}/{JOBS_DIR}", runs)
    status.lease = lease_holder(output, storage_options, time.time() if now is None else now)
    status.pending_compactions = len(list_journals(fs, root))
    return status


def run_names(fs: Any, jobs_folder: str) -> list[str]:
    """The runs' folder names under ``<output>/_jobs/``, oldest first (job ids start with their
    UTC start time); ``_lease``, ``_compact`` and ``_settings.json`` left out."""
    if not fs.exists(jobs_folder):
        return []
    listed = (str(p).rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(jobs_folder, detail=False))
    return sorted(name for name in listed if not name.startswith("_"))


def latest_runs(fs: Any, jobs_folder: str, count: int) -> list[dict[str, Any]]:
    """The ``count`` newest runs' summaries under ``<output>/_jobs/`` (job ids start with
    their UTC start time, so the newest sort last); runs without a summary are left out."""
    runs = []
    for name in reversed(run_names(fs, jobs_folder)):
        try:
            with fs.open(f"{jobs_folder}/{name}/summary.json", "rb") as fh:
                summary = json.loads(fh.read())
        except (FileNotFoundError, ValueError):
            continue
        runs.append({key: summary.get(key) for key in SUMMARY_FIELDS})
        if len(runs) == count:
            break
    return runs


RESULT_SETTINGS_FILE = "_settings.json"
"""Under ``<output>/_jobs/``: ``{"job_id", "ocr"}`` of the newest run that wrote rows, its OCR
config redacted as ``config.yaml`` holds it; each run writes it once its first part file is in."""


def newest_run_settings(fs: Any, jobs_folder: str, look_back: int = 50) -> tuple[str, dict[str, Any]] | None:
    """``(job_id, OCR config)`` of the newest run under ``<output>/_jobs/`` that wrote rows:
    :data:`RESULT_SETTINGS_FILE`, or for an output written before that file existed, the
    newest of the last ``look_back`` runs by name whose ``summary.json`` says ``rows_written``
    > 0 and whose ``config.yaml`` reads. None when there is none."""
    try:
        with fs.open(f"{jobs_folder}/{RESULT_SETTINGS_FILE}", "rb") as fh:
            recorded = json.loads(fh.read())
        if isinstance(recorded, dict) and isinstance(recorded.get("ocr"), dict):
            return str(recorded.get("job_id")), recorded["ocr"]
    except (FileNotFoundError, ValueError):
        pass
    for name in reversed(run_names(fs, jobs_folder)[-look_back:]):
        try:
            with fs.open(f"{jobs_folder}/{name}/summary.json", "rb") as fh:
                summary = json.loads(fh.read())
            if not isinstance(summary, dict) or not summary.get("rows_written"):
                continue
            with fs.open(f"{jobs_folder}/{name}/config.yaml", "rb") as fh:
                saved = yaml.safe_load(fh)
        except (FileNotFoundError, ValueError, yaml.YAMLError):
            continue
        if isinstance(saved, dict) and isinstance(saved.get("ocr"), dict):
            return name, saved["ocr"]
    return None


def lease_holder(output: str, storage_options: Mapping[str, Any], now: float) -> dict[str, Any] | None:
    """Who holds ``output``'s lease now (read only), or None when it is free (or its record
    cannot be read: a run treats that as abandoned)."""
    lease = OutputLease(output, "status", storage_options)
    numbers = lease.entries()
    record = lease.read(numbers[-1]) if numbers else None
    if record is None or record.released or not record.token:
        return None
    return {
        "job_id": record.job_id,
        "host": record.host,
        "pid": record.pid,
        "renewed_s_ago": round(max(now - record.renewed_at, 0.0), 1),
        "ttl_s": record.ttl_s,
    }


def describe_status(status: OutputStatus) -> list[str]:
    """Human lines for :class:`OutputStatus`."""
    errors = ", ".join(f"{n} {kind}" for kind, n in status.errors_by_type.items()) or "none"
    lines = [
        f"{status.output}: {status.rows} rows from {status.sources} sources in {status.part_files} part files; "
        f"{status.pages_ok} pages ok, {status.error_rows} error rows ({errors})"
    ]
    if status.pages_by_models:
        read = "; ".join(f"{n} by {models}" for models, n in status.pages_by_models.items())
        lines.append(f"pages read by models: {read}")
    if status.mergeable_files:
        lines.append(f"{status.mergeable_files} small part files could be merged: ocr-batch compact --output ...")
    if status.pending_compactions:
        lines.append(f"{status.pending_compactions} compactions an interrupted run left: the next run finishes them")
    if status.lease:
        holder = status.lease
        lines.append(
            f"in use by job {holder['job_id']} (host {holder['host']}, pid {holder['pid']}, lease renewed "
            f"{holder['renewed_s_ago']:.0f} s ago, abandoned after {holder['ttl_s']:.0f} s without renewal)"
        )
    else:
        lines.append("no run holds the output")
    for run in status.runs:
        lines.append(
            f"run {run['job_id']}: {run['status']} ({run['mode']}), {run['rows_written']} rows written, "
            f"{run['error_rows']} errors, {run['wall_seconds']} s" + (f"; {run['message']}" if run["message"] else "")
        )
    return lines
