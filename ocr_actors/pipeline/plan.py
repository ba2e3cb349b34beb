"""What a run has to do: sources minus what the output already holds (resume/incremental)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ocr_actors.io.parquet import DoneIndex


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One source to load: ``todo_pages`` is a JSON list of page indices, "" for all."""

    source_uri: str
    todo_pages: str


@dataclass(frozen=True)
class Plan:
    """Work for this run and what was skipped."""

    items: list[WorkItem]
    sources_total: int
    sources_skipped: int
    sources_partial: int


def plan_work(sources: list[str], done: DoneIndex, mode: str, wanted_pages: list[int] | None) -> Plan:
    """Decide per source: skip (complete, or present in incremental mode), finish its
    missing pages (resume of a partly written document), or do it whole.

    Args:
        wanted_pages: the configured PDF page ranges (``source.pdf_pages``), or None for
            all; the load stage applies them to PDFs, so here they only decide whether a
            partly written PDF is complete.
    """
    items: list[WorkItem] = []
    skipped = partial = 0
    wanted_set = None if wanted_pages is None else set(wanted_pages)
    for uri in sources:
        if mode == "incremental" and done.holds(uri):
            skipped += 1
            continue
        if uri in done.failed_files:
            skipped += 1
            continue
        missing = done.missing_pages(uri)
        if missing is not None:
            if wanted_set is not None and uri.lower().endswith(".pdf"):
                missing = [p for p in missing if p in wanted_set]
            if not missing:
                skipped += 1
                continue
            partial += 1
            items.append(WorkItem(uri, json.dumps(missing)))
            continue
        items.append(WorkItem(uri, ""))
    return Plan(items, len(sources), skipped, partial)
