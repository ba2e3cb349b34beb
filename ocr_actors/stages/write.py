"""Write stage (CPU task): assembled rows -> one atomic Parquet file; returns a summary row."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ocr_actors.io.parquet import write_part
from ocr_actors.runtime.ocr import PredictParams
from ocr_actors.stages.assemble import assemble_rows
from ocr_actors.stages.common import ERROR, Batch

STAGES = ("load", "docprep", "detect", "crop", "lineori", "recognize")


def write_parquet(
    batch: Batch,
    *,
    output: str,
    storage_options: Mapping[str, Any],
    compression: str,
    params: PredictParams,
    det_model: str,
    rec_model: str,
    job_id: str,
) -> Batch:
    """``map_batches`` UDF (task): assembles a batch (``output.rows_per_file`` pages) and
    writes it as one Parquet file.

    Returns one summary row per file: path, rows, ok pages, error rows, errors by type
    (JSON), the ``[source_uri, page_index]`` of the error rows (JSON), lines,
    sources whose last row is in the file, the time it was written (seconds since the epoch),
    and wall and CPU seconds spent per stage (``t_<stage>``, ``c_<stage>``: sums over the
    rows), so the driver never holds OCR results.
    """
    rows = assemble_rows(batch, params, det_model, rec_model, job_id, datetime.now(UTC))
    path = write_part(rows, output, storage_options, compression)
    errors = Counter(r["error_type"] for r in rows if r["status"] == ERROR)
    summary: Batch = {
        "path": np.array([path], dtype=object),
        "rows": np.array([len(rows)]),
        "ok_pages": np.array([sum(r["status"] != ERROR for r in rows)]),
        "error_rows": np.array([sum(errors.values())]),
        "errors_by_type": np.array([json.dumps(dict(errors))], dtype=object),
        "error_pages": np.array(
            [json.dumps([[r["source_uri"], r["page_index"]] for r in rows if r["status"] == ERROR])], dtype=object
        ),
        "lines": np.array([sum(len(r["lines"] or ()) for r in rows)]),
        "sources_done": np.array([int(np.sum(batch["source_done"])) if "source_done" in batch else 0]),
        "written_at": np.array([time.time()]),
    }
    for stage in STAGES:
        for column in (f"t_{stage}", f"c_{stage}"):
            summary[column] = np.array([float(np.sum(batch[column])) if column in batch else 0.0])
    return summary
