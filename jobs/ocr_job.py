"""Entry point for ``ray job submit``: the same job as ``ocr-batch run``.

    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python -m jobs.ocr_job --input s3://bucket/scans/ --output s3://bucket/ocr/ \\
        --config jobs/configs/job_default.yaml

Under ``ray job submit`` the driver joins the job's cluster (``RAY_ADDRESS`` is set).
"""

from __future__ import annotations

import sys

from ocr_actors.cli import main


def run(argv: list[str] | None = None) -> int:
    """``ocr-batch run`` with the given arguments."""
    return main(["run", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(run())
