"""Shared fixtures: real pipelines on shipped weights, built once per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ocr_actors import OCRPipeline, create_pipeline

# gcsfs >= 2026 asks a gRPC control plane for each bucket's layout, which the GCS emulator does
# not serve; the plain JSON-API filesystem is what the tests exercise. (Also keeps gRPC client
# threads out of the test process, which starts Ray clusters.)
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


@pytest.fixture(scope="session")
def pipeline() -> OCRPipeline:
    """The default pipeline (default model set, ONNX Runtime, CPU)."""
    return create_pipeline("OCR", engine__threads=2)


@pytest.fixture(scope="module")
def ray_per_module() -> Iterator[None]:
    """run_job starts Ray in-process when none is running; stop it after the module if so."""
    import ray

    started_here = not ray.is_initialized()
    yield
    if started_here and ray.is_initialized():
        ray.shutdown()


def exact_line_ratio(predicted: list[str], truth: list[str]) -> float:
    """Share of truth lines found verbatim, in the same position."""
    if not truth:
        return 1.0
    return sum(p == t for p, t in zip(predicted, truth, strict=False)) / len(truth)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between two strings."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def page_cer(predicted: list[str], truth: list[str]) -> float:
    """Character error rate of the page text (lines joined with newlines)."""
    reference = "\n".join(truth)
    return edit_distance("\n".join(predicted), reference) / max(len(reference), 1)


def part_row(uri: str, page: int | None, count: int | None, error_type: str | None = None) -> dict[str, object]:
    """A minimal output row (the key columns and a status) for writing part files by hand:
    ``page`` None is a file-level row; ``error_type`` makes it an error row."""
    from datetime import UTC, datetime

    from ocr_actors.io.parquet import doc_id_for

    return {
        "source_uri": uri,
        "doc_id": doc_id_for(uri),
        "page_index": page,
        "page_count": count,
        "status": "error" if error_type or page is None else "ok",
        "error_type": error_type,
        "det_model": "m",
        "rec_model": "m",
        "job_id": "j",
        "processed_at": datetime.now(UTC),
    }
