"""The batch job: Ray Data pipeline wiring and the driver loop (``run_job``)."""

from ocr_actors.pipeline.job import JobSummary, run_job

__all__ = ["JobSummary", "run_job"]
