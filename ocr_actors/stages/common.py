"""Shared helpers of the stage adapters: column checks, ragged columns, error marking."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np

Batch = dict[str, np.ndarray]
PageInput = TypeVar("PageInput")
PageResult = TypeVar("PageResult")

OK = "ok"
ERROR = "error"


class MissingColumnError(KeyError):
    """A stage got a batch without a column it needs (a wiring bug, not bad input)."""


def require(batch: Batch, stage: str, *columns: str) -> int:
    """Check that ``columns`` exist; returns the batch's row count."""
    missing = [c for c in columns if c not in batch]
    if missing:
        raise MissingColumnError(f"stage {stage!r} needs columns {missing}; got {sorted(batch)}")
    return len(batch[columns[0]])


def ragged(items: Sequence[Any]) -> np.ndarray:
    """An object array holding arrays (or lists) of different shapes, one per row."""
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


def concat_batches(batches: Sequence[Batch]) -> Batch:
    """The rows of ``batches`` (same columns) in order, as one batch; object columns (ragged
    arrays) stay object arrays of the same items."""
    if not batches:
        raise ValueError("concat_batches needs at least one batch")
    out: Batch = {}
    for column in batches[0]:
        parts = [np.asarray(b[column]) for b in batches]
        if any(part.dtype == object for part in parts):
            out[column] = ragged([item for part in parts for item in part])
        else:
            out[column] = np.concatenate(parts)
    return out


def ok_rows(batch: Batch) -> list[int]:
    """Indices of rows still in play (not already failed)."""
    return [i for i, s in enumerate(batch["status"]) if s == OK]


def mark_failed(batch: Batch, index: int, error_type: str, message: str) -> None:
    """Turn row ``index`` into an error row in place (status columns must be writable)."""
    batch["status"][index] = ERROR
    batch["error_type"][index] = error_type
    batch["error_message"][index] = message[:2000]


def run_isolating_pages(
    batch: Batch,
    pages: Sequence[PageInput],
    run: Callable[[list[PageInput]], Sequence[PageResult]],
    what: str,
) -> list[PageResult | None]:
    """``run`` maps a list of pages' inputs to one result per page. All live pages of the batch
    (status ok) go in one call; if it raises, each page goes alone, so one page a model cannot
    handle fails only itself: it becomes an ``ocr_failed`` row (``<what> failed: <exception>``;
    status columns must be writable). Returns one result per row, ``None`` for error rows."""
    live = ok_rows(batch)
    results: list[PageResult | None] = [None] * len(pages)
    try:
        together = list(run([pages[i] for i in live]))
    except Exception:  # retry one page at a time to isolate the bad one
        for i in live:
            try:
                (results[i],) = run([pages[i]])
            except Exception as exc:
                mark_failed(batch, i, "ocr_failed", f"{what} failed: {exc!r}")
        return results
    if len(together) != len(live):
        raise RuntimeError(f"{what} returned {len(together)} results for {len(live)} pages")
    for i, result in zip(live, together, strict=True):
        results[i] = result
    return results


def writable_status(batch: Batch) -> Batch:
    """Copy the status columns as object arrays so :func:`mark_failed` can write them."""
    out = dict(batch)
    for column in ("status", "error_type", "error_message"):
        out[column] = np.asarray(batch[column], dtype=object).copy()
    return out


@contextmanager
def timed(batch: Batch, stage: str) -> Iterator[None]:
    """Add ``t_<stage>`` (wall seconds spent on the batch) and ``c_<stage>`` (CPU seconds of
    this process meanwhile, every thread: an engine's thread pool counts), each split evenly
    over the batch's rows. Wall time grows when processes contend for cores; CPU time does not
    (but calls running at once in one actor, ``concurrent_calls``, each count all of it)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    yield
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    rows = len(batch["status"])
    batch[f"t_{stage}"] = np.full(rows, wall / max(rows, 1), dtype=np.float64)
    batch[f"c_{stage}"] = np.full(rows, cpu / max(rows, 1), dtype=np.float64)


def pack_crops(crops: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Flatten ``(h, w, C)`` uint8 crops (BGR, or grey with C = 1) into
    ``(pixels (sum h*w*C,) uint8, shapes (N, 3) int32 rows h, w, C)``."""
    shapes = np.array([c.shape for c in crops], dtype=np.int32).reshape(-1, 3)
    pixels = np.concatenate([c.reshape(-1) for c in crops]) if crops else np.zeros(0, np.uint8)
    return pixels.astype(np.uint8, copy=False), shapes


def unpack_crops(pixels: np.ndarray, shapes: np.ndarray) -> list[np.ndarray]:
    """Inverse of :func:`pack_crops`."""
    crops = []
    offset = 0
    for h, w, c in np.asarray(shapes, dtype=np.int64).reshape(-1, 3):
        size = int(h * w * c)
        crops.append(np.asarray(pixels[offset : offset + size], dtype=np.uint8).reshape(int(h), int(w), int(c)))
        offset += size
    return crops


def warmup_message(
    model: str, timings: list[tuple[tuple[int, int, int, int], float]], waited_s: float, thread: str = ""
) -> str:
    """One line on a model's start-up runs (``warmup``): shapes, total and slowest seconds,
    and the wait for other processes' set-up on the same GPU; ``thread`` names a call thread
    warming up after the actor started. ``scripts/gpu_check.py`` reads these lines back from
    the Ray workers' logs: keep the ``<model> warm-up (pid N`` head and the ``ready at <UTC
    ISO time>Z`` tail (the last one tells when every actor was warm)."""
    total = sum(seconds for _, seconds in timings)
    shape, slowest = max(timings, key=lambda item: item[1])
    where = f"pid {os.getpid()}" + (f", thread {thread}" if thread else "")
    return (
        f"{model} warm-up ({where}): {len(timings)} shapes in {total:.1f} s, "
        f"slowest {slowest:.2f} s at {'x'.join(map(str, shape))}; waited {waited_s:.1f} s for the GPU; "
        f"ready at {datetime.now(UTC).replace(tzinfo=None).isoformat(timespec='milliseconds')}Z"
    )


def say_warmup(
    model: str, warmed: tuple[list[tuple[tuple[int, int, int, int], float]], float], thread: str = ""
) -> None:
    """Print :func:`warmup_message` to stderr for ``warmed`` = ``(timings, waited s)`` (a
    runner's start-up warm-up, or its ``warm_this_thread()`` result with the call ``thread``),
    if there was one."""
    timings, waited_s = warmed
    if timings:
        print(warmup_message(model, timings, waited_s, thread), file=sys.stderr, flush=True)
