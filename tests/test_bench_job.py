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


@pytest.mark.parametrize(
    ("flags", "layout"),
    [
        (  # the CPU defaults with the models normalising their pixel inputs, as weighed on the CPU,
            # on bilevel CCITT G4 TIFF pages
            ["--normalize-in-model", "--encoding", "tiff-g4"],
            "CPU defaults (one page a call; model inputs as pixels, normalised in the models)",
        ),
        (["--gpu-layout"], "job_gpu.yaml's layout (16 pages a model actor call; model inputs as pixels, normalised"),
        (  # and the pages as one-page scanned PDFs, rasterised as the job does
            ["--gpu-layout", "--normalize-on-host", "--encoding", "pdf"],
            "(16 pages a model actor call; model inputs normalised on the host)",
        ),
    ],
)
def test_host_costs_bench_times_every_step_and_the_actor_work_in_threads(flags, layout):
    """scripts/bench_host_costs.py on three pages, with the CPU defaults' calls and with
    job_gpu.yaml's (16-page actor calls, detector canvases, 32-row recognition batches by width
    bucket; the models' inputs as pixels, as on a GPU, or normalised on the host): every host
    step timed, the models as the reference, and the model actor's own work replayed in one
    thread and in two."""
    import re

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "scripts/bench_host_costs.py", "--pages", "3", "--threads", "2", *flags],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert layout in out
    encoding = flags[flags.index("--encoding") + 1] if "--encoding" in flags else "png"
    steps = (
        f"decode ({encoding} -> grey)",
        "det pre-process",
        "det post-process (DB)",
        "crop lines",
        "rec pre-process",
    )
    for step in (*steps, "CTC decode"):
        assert re.search(rf"^{re.escape(step)}\s+\d+\.\d+\s+\d+\.\d%$", out, re.M), (step, out)
    assert re.search(r"^\[model\] recognition\s+\d+\.\d+\s*$", out, re.M)
    lines = re.search(r"3 text-heavy pages, (\d+) lines per page", out)
    assert lines and int(lines.group(1)) >= 20, out  # the pages were read: the lines were found
    replay = re.search(r"1 thread: ([\d.]+) pages/s .*; 2 threads: ([\d.]+) pages/s, x([\d.]+)", out)
    assert replay and float(replay.group(1)) > 0 and float(replay.group(2)) > 0, out
    assert float(replay.group(3)) == pytest.approx(float(replay.group(2)) / float(replay.group(1)), abs=0.01)
