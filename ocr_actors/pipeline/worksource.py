"""Ray Data source of the spooled work items: one read task per :class:`WorkRange`.

The driver builds the tasks from file names and row counts only; each task reads its rows
from storage where it runs, so no work item passes through the driver or its object store.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import pyarrow as pa
from ray.data import DataContext
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from ocr_actors.io.workfiles import WORK_SCHEMA, WorkRange, read_work_range

BYTES_PER_ITEM = 100
"""A rough in-memory size of one work item (a URI and its page list), for Ray's estimates."""


class WorkItemsDatasource(Datasource):
    """Work items read back from the job's work files, a range per read task."""

    def __init__(self, ranges: list[WorkRange], storage_options: Mapping[str, Any]) -> None:
        self._ranges = ranges
        self._storage_options = dict(storage_options)

    def estimate_inmemory_data_size(self) -> int | None:
        return BYTES_PER_ITEM * sum(r.stop - r.start for r in self._ranges)

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: DataContext | None = None
    ) -> list[ReadTask]:
        """One task per range, whatever ``parallelism`` Ray suggests: the ranges are sized
        for the work already (:func:`~ocr_actors.io.workfiles.work_ranges`)."""
        options = self._storage_options
        return [
            ReadTask(
                partial(_read, work, options),
                BlockMetadata(
                    num_rows=work.stop - work.start,
                    size_bytes=BYTES_PER_ITEM * (work.stop - work.start),
                    exec_stats=None,
                    input_files=None,
                ),
                schema=WORK_SCHEMA,
            )
            for work in self._ranges
        ]

    def get_name(self) -> str:
        return "WorkItems"


def _read(work: WorkRange, storage_options: dict[str, Any]) -> list[pa.Table]:
    return [read_work_range(work, storage_options)]
