"""What a run has to do: sources minus what the output already holds (resume/incremental).

Planning streams: the listing arrives in chunks and each chunk becomes an Arrow table of
work items (the job spools them to work files, :mod:`ocr_actors.io.workfiles`); the planner
keeps two digest sets (16 bytes per listed URI and per finished document).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ocr_actors.io.parquet import DoneIndex
from ocr_actors.io.sources import IMAGE_SUFFIXES
from ocr_actors.io.uriset import UriSet, first_occurrences, uri_digests
from ocr_actors.io.workfiles import WORK_SCHEMA
from ocr_actors.redaction import redact_uri


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One source to load: ``todo_pages`` is a JSON list of page indices, "" for all."""

    source_uri: str
    todo_pages: str


@dataclass
class PlanCounts:
    """What planning decided, over all chunks so far.

    Attributes:
        sources_total: distinct sources listed.
        sources_skipped: complete in the output (or present, in incremental mode), or failed.
        sources_partial: partly written documents whose missing pages are to do.
        items: sources to load (partial ones included).
        duplicates: listed URIs dropped as repeats of earlier ones.
    """

    sources_total: int = 0
    sources_skipped: int = 0
    sources_partial: int = 0
    items: int = 0
    duplicates: int = 0


@dataclass(frozen=True)
class Plan:
    """Work for this run and what was skipped (the whole plan at once; small jobs and tests)."""

    items: list[WorkItem]
    sources_total: int
    sources_skipped: int
    sources_partial: int


class Planner:
    """Decides, chunk by chunk, per source: skip (complete, or present in incremental mode,
    or failed as a file), finish its missing pages (resume of a partly written document),
    or do it whole. Repeats of a URI listed earlier, in any chunk, are dropped.

    Args:
        done: what the output holds.
        mode: ``resume``, ``incremental`` or ``overwrite`` (an empty ``done``).
        wanted_pages: the configured PDF page ranges (``source.pdf_pages``), or None for
            all; the load stage applies them to PDFs, so here they only decide whether a
            partly written PDF is complete.
    """

    def __init__(self, done: DoneIndex, mode: str, wanted_pages: list[int] | None) -> None:
        self.done = done
        self.mode = mode
        self.wanted = None if wanted_pages is None else set(wanted_pages)
        self.seen = UriSet()
        self.counts = PlanCounts()
        self.retried: set[str] = set()
        """Sources planned again because the output holds error rows of theirs to retry."""

    def plan_chunk(self, uris: Sequence[str]) -> pa.Table:
        """Work items (:data:`WORK_SCHEMA`) for one chunk of listed URIs, in listing order.
        A URI is known by the form the output holds, credentials removed (:func:`redact_uri`):
        two signed URLs of one object are one source."""
        keys = [redact_uri(u) for u in uris]
        digests = uri_digests(keys)
        fresh = first_occurrences(digests) & ~self.seen.contains_digests(digests)
        self.seen.add_digests(digests[fresh])
        in_complete = self.done.complete.contains_digests(digests)
        done = self.done
        if done.pages or done.failed_files:  # partly written or failed documents: decided one by one
            special = np.fromiter((k in done.pages or k in done.failed_files for k in keys), bool, len(uris))
        else:
            special = np.zeros(len(uris), dtype=bool)
        chosen = fresh & ~in_complete & ~special  # never seen in the output: the whole document
        pages = np.full(len(uris), "", dtype=object)
        partial = 0
        for k in np.flatnonzero(fresh & special):
            todo = self._todo(keys[k], bool(in_complete[k]))
            if todo is not None:
                chosen[k] = True
                pages[k] = todo
                partial += todo != ""
        counts = self.counts
        counts.duplicates += len(uris) - int(fresh.sum())
        counts.sources_total += int(fresh.sum())
        counts.sources_skipped += int(fresh.sum() - chosen.sum())
        counts.sources_partial += partial
        counts.items += int(chosen.sum())
        rows = np.flatnonzero(chosen).tolist()  # Python ints index the URI list
        if done.retry:
            self.retried.update(keys[k] for k in rows if keys[k] in done.retry)
        return pa.table({"source_uri": [uris[k] for k in rows], "todo_pages": pages[rows].tolist()}, schema=WORK_SCHEMA)

    def _todo(self, uri: str, in_complete: bool) -> str | None:
        """None to skip; "" for the whole document; a JSON list of its missing pages."""
        done = self.done
        if self.mode == "incremental" and done.holds(uri, in_complete):
            retry = sorted(p for p in done.retry.get(uri, ()) if p is not None)  # its pages' errors that may pass
            return json.dumps(retry) if retry else None
        if uri in done.failed_files:
            return None
        missing = done.missing_pages(uri, in_complete)
        if missing is None:
            return ""
        if self.wanted is not None and may_be_pdf(uri):
            missing = [p for p in missing if p in self.wanted]
        return json.dumps(missing) if missing else None


def may_be_pdf(uri: str) -> bool:
    """Whether ``source.pdf_pages`` applies to a multi-page document the output holds part of:
    the load stage applies it to PDFs by their content, so here every name but a multi-frame
    image's (``.tif``, ``.gif``, …) counts, a signed URL by its path (its query cut off), a
    key with no suffix included."""
    path = uri.split("?", 1)[0] if uri.lower().startswith(("http://", "https://")) else uri
    return not path.lower().endswith(IMAGE_SUFFIXES)


def plan_chunks(
    chunks: Iterable[Sequence[str]], done: DoneIndex, mode: str, wanted_pages: list[int] | None
) -> tuple[pa.Table, PlanCounts]:
    """Plan a streamed listing: all work items as one table (its chunks kept as they came)."""
    planner = Planner(done, mode, wanted_pages)
    tables = [planner.plan_chunk(chunk) for chunk in chunks]
    items = pa.concat_tables(tables) if tables else WORK_SCHEMA.empty_table()
    return items, planner.counts


def plan_work(sources: list[str], done: DoneIndex, mode: str, wanted_pages: list[int] | None) -> Plan:
    """Plan a listing held in memory (see :class:`Planner`)."""
    table, counts = plan_chunks([sources], done, mode, wanted_pages)
    items = [WorkItem(u, p) for u, p in zip(*(table.column(c).to_pylist() for c in WORK_SCHEMA.names), strict=True)]
    return Plan(items, counts.sources_total, counts.sources_skipped, counts.sources_partial)
