"""scripts/bench_job.py's CPU accounting by kind of process."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import bench_job  # noqa: E402


@pytest.mark.parametrize(
    ("title", "comm", "kind"),
    [
        ("ray::MapWorker(MapBatches(DetectText))", "ray::MapWorker", "DetectText actors"),
        ("ray::MapBatches(write_parquet)", "ray::MapBatches", "task workers (write; load, crop when tasks)"),
        ("ray::IDLE", "ray::IDLE", "task workers (write; load, crop when tasks)"),
        ("", "ray::IDLE", "task workers (write; load, crop when tasks)"),
        ("ray::_StatsActor", "ray::_StatsActor", "_StatsActor"),
        ("ray::MapWorker(", "ray::MapWorker(", "actors (title cut short)"),
        ("/usr/bin/raylet --node_ip_address=127.0.0.1", "raylet", "raylet"),
    ],
)
def test_processes_group_by_what_they_run(title, comm, kind):
    assert bench_job.process_kind(title, comm) == kind


def test_process_sampler_counts_a_busy_child_under_its_command_name():
    busy = "import time\nt = time.process_time() + 0.6\nwhile time.process_time() < t: pass\ntime.sleep(0.5)"
    with bench_job.ProcessCpuSampler(interval_s=0.1) as sampler:
        child = subprocess.Popen([sys.executable, "-c", busy])
        child.wait(timeout=30)
        time.sleep(0.15)
    kinds = sampler.by_kind()
    name = Path(sys.executable).name[:15]  # /proc/PID/comm keeps 15 characters
    assert 0.4 <= kinds.get(name, 0.0) <= 1.0, kinds
