"""scripts/gpu_check.sh: its nvidia-smi parsing, its refusal without a GPU, and a CPU smoke run
of the whole check (job, engine, RapidOCR) on a few pages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_check  # noqa: E402


def test_nvidia_smi_lines_parse_and_summarise():
    lines = [
        "2026/11/27 12:00:00.100, 0, 87, 10240",
        "2026/11/27 12:00:00.100, 1, [N/A], 512",
        "timestamp, index, utilization.gpu [%], memory.used [MiB]",
        "",
        "2026/11/27 12:00:00.300, 0, 93, 12288",
        "not a time, 0, 50, 100",
    ]
    samples = [s for line in lines if (s := gpu_check.parse_smi_line(line, 1.0)) is not None]
    assert [(s.index, s.utilisation, s.memory_mb) for s in samples] == [
        (0, 87.0, 10240.0),
        (0, 93.0, 12288.0),
        (0, 50.0, 100.0),
    ]
    first = datetime(2026, 11, 27, 12, 0, 0, 100000).timestamp()  # nvidia-smi's own clock, local time
    assert samples[0].at == pytest.approx(first) and samples[1].at == pytest.approx(first + 0.2)
    assert samples[2].at == 1.0  # unreadable timestamp: when the line arrived
    assert gpu_check.summarise_samples(samples[:2], first, first + 1) == {
        "samples": 2,
        "utilisation_mean": 90.0,
        "memory_peak_mb": 12288.0,
    }
    assert gpu_check.summarise_samples(samples[:2], first + 0.1, first + 0.15)["samples"] == 0  # outside the window


def test_job_layout_scales_with_gpus_and_cpus():
    """One pool (job_gpu.yaml's models_in_one_actor): actors_per_gpu actors per GPU, each
    detecting and recognising; the split layout: as many of each."""
    one = gpu_check.job_overrides("gpu", 1, 3000, 16)  # the default: three actors per GPU, one pool
    assert one["resources.models_in_one_actor"] is True
    assert one["resources.detect.min_actors"] == one["resources.detect.max_actors"] == 3
    assert one["resources.detect.num_gpus"] == 0.33 and "resources.recognize.num_gpus" not in one
    assert 3 * one["resources.detect.num_cpus"] == pytest.approx(4)  # 12 of the 16 CPUs stay for the tasks
    assert one["output.rows_per_file"] == 150 and "ray.num_cpus" not in one  # Ray counts the CPUs
    fat = gpu_check.job_overrides("gpu", 1, 3000, 64, actors_per_gpu=2)  # never over 4 CPUs an actor
    assert fat["resources.detect.num_cpus"] == 4.0
    split = gpu_check.job_overrides("gpu", 2, 3000, 32, actors_per_gpu=2, one_pool=False)
    assert split["resources.models_in_one_actor"] is False
    assert split["resources.detect.min_actors"] == split["resources.recognize.max_actors"] == 4
    assert 2 * split["resources.detect.num_gpus"] + 2 * split["resources.recognize.num_gpus"] <= 1.0  # per GPU
    assert split["resources.detect.num_cpus"] == 1.0 and split["resources.recognize.threads"] == 1
    three = gpu_check.job_overrides("gpu", 1, 3000, 16, actors_per_gpu=3, one_pool=False)
    assert three["resources.detect.num_gpus"] == three["resources.recognize.num_gpus"] == 0.16
    eight = gpu_check.job_overrides("gpu", 8, 3000, 64, actors_per_gpu=2, one_pool=False)  # 32 actors, 64 CPUs
    assert eight["resources.detect.num_cpus"] == 0.5
    crowded = gpu_check.job_overrides("gpu", 1, 3000, 4, actors_per_gpu=4, one_pool=False)  # >= a quarter CPU
    assert crowded["resources.recognize.num_cpus"] == 0.25
    cpu = gpu_check.job_overrides("cpu", 0, 8, 2)
    assert "resources.detect.num_gpus" not in cpu and cpu["output.rows_per_file"] == 1


def test_the_layout_follows_job_gpu_yaml_unless_set():
    assert gpu_check.one_pool_layout([]) is True  # job_gpu.yaml
    assert gpu_check.one_pool_layout(["resources.models_in_one_actor=false"]) is False
    assert gpu_check.one_pool_layout(["resources.models_in_one_actor=false", "resources.models_in_one_actor=true"])


def test_actor_warmup_lines_come_from_the_newest_ray_session(tmp_path):
    """The actors print their warm-up lines to stderr, which embedded Ray keeps in its worker
    logs; the check reads them from the newest session started since the job began."""
    old = tmp_path / "session_2026-11-27_10-00-00_1_1" / "logs"
    new = tmp_path / "session_2026-11-28_05-09-37_2_2" / "logs"
    for logs in (old, new):
        logs.mkdir(parents=True)
    (old / "worker-a-01-1.err").write_text("recognizer warm-up (pid 1): 15 shapes in 9.0 s, slowest 1.00 s\n")
    (new / "worker-b-01-7.err").write_text(
        ":actor_name:MapWorker\n"
        "detector warm-up (pid 7): 5 shapes in 0.8 s, slowest 0.30 s at 16x3x960x960; waited 0.0 s for the GPU\n"
        "recognizer warm-up (pid 7): 15 shapes in 27.1 s, slowest 2.10 s at 32x3x48x3200; waited 0.0 s for the GPU\n"
    )
    (new / "worker-c-01-8.out").write_text(
        "(pid 8) recognizer warm-up (pid 8): 15 shapes in 3.0 s, slowest 0.40 s\n"
        "recognizer warm-up (pid 8, thread ThreadPoolExecutor-0_1): 15 shapes in 0.2 s, slowest 0.02 s\n"
    )
    (new / "raylet.out").write_text("recognizer warm-up (pid 9): not a worker log\n")
    os.utime(old.parent, (time.time() - 3600,) * 2)
    lines = gpu_check.actor_warmup_lines(tmp_path, since=time.time() - 60)
    assert lines == [
        "detector warm-up (pid 7): 5 shapes in 0.8 s, slowest 0.30 s at 16x3x960x960; waited 0.0 s for the GPU",
        "recognizer warm-up (pid 7): 15 shapes in 27.1 s, slowest 2.10 s at 32x3x48x3200; waited 0.0 s for the GPU",
        "recognizer warm-up (pid 8): 15 shapes in 3.0 s, slowest 0.40 s",
        "recognizer warm-up (pid 8, thread ThreadPoolExecutor-0_1): 15 shapes in 0.2 s, slowest 0.02 s",
    ]
    assert gpu_check.actor_warmup_lines(tmp_path, since=time.time() + 3600) == []  # no session since then


def test_single_process_engine_gets_the_job_gpu_shapes():
    from ocr_actors.config import OCRConfig, load_config

    overrides = gpu_check.gpu_ocr_overrides()
    config = load_config(OCRConfig, None, overrides)  # every key is a real setting
    assert config.engine.device == "gpu" and "engine.threads" not in overrides
    rec = config.text_recognition
    assert rec.pad_batch and rec.warmup and rec.width_buckets[-1] >= rec.max_width
    assert config.text_detection.batch_pad_multiple >= config.text_detection.limit_side_len


def test_a_job_worker_past_its_limit_is_stopped_with_its_whole_process_group(tmp_path):
    """The worker and a child it started in its group (as Ray's processes are) both end."""
    marker = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time; "
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
        f"open({str(marker)!r}, 'w').write(str(c.pid)); time.sleep(300)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    for _ in range(100):
        if marker.exists() and marker.read_text():
            break
        time.sleep(0.05)
    child = int(marker.read_text())
    gpu_check.stop_process_group(proc, grace_s=5)
    assert proc.poll() is not None
    for _ in range(100):  # the child is reaped by init; it must be gone or a zombie
        try:
            state = Path(f"/proc/{child}/stat").read_text().split(")")[-1].split()[0]
        except FileNotFoundError:
            break
        if state == "Z":
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"child {child} still running")


def test_rows_committed_counts_part_files_only(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    assert gpu_check.rows_committed(tmp_path / "missing") == 0
    pq.write_table(pa.table({"x": [1, 2, 3]}), tmp_path / "part-0.parquet")
    (tmp_path / "_tmp").mkdir()
    pq.write_table(pa.table({"x": [4, 5]}), tmp_path / "_tmp" / "part-1.parquet")  # in flight
    assert gpu_check.rows_committed(tmp_path) == 3


def test_a_timed_out_job_still_reports_what_it_did():
    run = {
        "name": "job",
        "ok": False,
        "error": "timed out after 180 s",
        "partial": {"rows_committed": 900, "seconds": 180.0, "pages_per_s": 5.0, "gpu": {"utilisation_mean": 12.5}},
    }
    text = gpu_check.report([run], 1, ["H100"])
    assert "failed: timed out after 180 s" in text
    assert "job before its time limit: 900 pages committed in 180 s (5.00 pages/s" in text
    assert "GPU utilisation 12%" in text or "GPU utilisation 13%" in text


def test_the_warm_rate_counts_from_the_last_actor_ready_and_the_part_file_times(tmp_path):
    """With set-ups in turns, the first part file comes while later actors still set up: the
    warm rate starts at the last warm-up line's ``ready at`` time and counts the part files
    written after it, from the first of those to the last."""
    from ocr_actors.stages.common import warmup_message

    line = warmup_message("detector", [((16, 3, 960, 960), 2.0)], 0.5, thread="T1")
    ready = gpu_check.last_ready_at([line])
    assert ready is not None and abs(ready - time.time()) < 5
    lines = [
        "recognizer warm-up (pid 7): 15 shapes in 3.0 s; ready at 2026-12-06T10:00:20.000Z",
        "detector warm-up (pid 8): 5 shapes in 1.0 s; ready at 2026-12-06T10:00:50.500Z",
        "recognizer warm-up (pid 9): 15 shapes in 0.2 s",  # an older line without a time
    ]
    start = datetime(2026, 12, 6, 10, 0, 0, tzinfo=UTC).timestamp()
    assert gpu_check.last_ready_at(lines) == start + 50.5
    assert gpu_check.last_ready_at(lines[2:]) is None

    for index, (at, rows) in enumerate([(30, 16), (45, 16), (52, 16), (60, 32), (70, 48)]):
        path = tmp_path / f"part-{index:02d}.parquet"
        pq.write_table(pa.table({"page_index": list(range(rows))}), path)
        os.utime(path, (start + at, start + at))
    (tmp_path / "_tmp").mkdir()
    pq.write_table(pa.table({"page_index": [1]}), tmp_path / "_tmp" / "part-zz.parquet")  # not committed
    timeline = gpu_check.part_file_timeline(tmp_path)
    assert [(round(at - start), rows) for at, rows in timeline] == [(30, 16), (45, 16), (52, 16), (60, 32), (70, 48)]
    # after 50.5 s: files at 52, 60, 70; the 80 pages of the last two over 18 s
    rate, pages, first, last = gpu_check.rate_after(timeline, start + 50.5)
    assert (pages, round(first - start), round(last - start)) == (80, 52, 70) and rate == pytest.approx(80 / 18)
    assert gpu_check.rate_after(timeline, start + 65) is None  # one file after it
    assert gpu_check.pages_per_interval(timeline, start, start + 75, 30.0) == [0, 48, 80]

    run = job_record(128, 1.7, 2.4, utilisation=40.0, busy_cores=6.0)
    run.update(
        {
            "pages_per_30s": [0, 48, 80],
            "warm_pages_per_s": 160.4,
            "warm_window": {"pages": 80, "seconds": 18.0, "after_ready_s": 1.5},
            "gpu_warm": {"utilisation_mean": 74.0, "memory_peak_mb": 9000},
            "host_cpu_warm": {"busy_cores": 9.5, "cores": 16},
        }
    )
    text = gpu_check.report([run], 1, ["H100"])
    assert "job pages committed per 30 s from its start: 0 48 80" in text
    assert "job once every actor was warm: 160.40 pages/s (80 pages in 18 s, from the first part file 2 s " in text
    assert "GPU utilisation 74%, host CPU cores 9.5/16" in text
    assert "160.4 pages/s per GPU at 74% -> met (once every actor was warm; " in text
    run.update(warm_pages_per_s=None, last_ready_at=start + 50.5)
    text = gpu_check.report([run], 1, ["H100"])
    assert "fewer than two part files after the last warm-up" in text
    assert "2.4 pages/s per GPU at 40% -> NOT met (from the first part file on; " in text


def test_the_job_gets_what_the_other_runs_leave_of_the_budget():
    """gpu_check.sh passes what is left of its 8 minutes: with the engine and reference runs
    skipped the job may use nearly all of it; --timeout still wins."""
    assert gpu_check.job_timeout(None, 440, [], 80, 150) == 170  # 440 - 80 - 150 - 40
    assert gpu_check.job_timeout(None, 440, ["engine", "reference"], 80, 150) == 400
    assert gpu_check.job_timeout(None, 440, ["reference"], 80, 150) == 320
    assert gpu_check.job_timeout(None, 200, [], 80, 150) == 60  # never below a minute
    assert gpu_check.job_timeout(300, 440, ["engine"], 80, 150) == 300
    assert gpu_check.job_timeout(None, None, [], 80, 150) == 240


def test_asking_for_a_gpu_without_one_is_a_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    assert gpu_check.main(["--device", "gpu"]) == 2
    assert "no NVIDIA GPU found" in capsys.readouterr().err


@pytest.mark.slow
def test_cpu_smoke_run_of_the_whole_check(tmp_path):
    result_file = tmp_path / "check.json"
    env = {**os.environ, "GPU_CHECK_INSTALL": "0"}
    args = ["--device", "cpu", "--pages", "10", "--unique", "3", "--engine-pages", "3", "--reference-pages", "1"]
    variant = "resources.load_in_actors=true ocr.page_batch_size=2"
    proc = subprocess.run(
        ["bash", "scripts/gpu_check.sh", *args, "--threads", "2", "--job-variant", variant, "--json", str(result_file)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    runs = {r["name"]: r for r in json.loads(result_file.read_text())["runs"]}
    varied = f"job [{variant}]"
    assert list(runs) == ["job", varied, "engine", "reference"]
    # the variant: the same job on the same pages with its settings on top, reported alike
    assert runs[varied]["ok"] and runs[varied]["pages"] == 10 and runs[varied]["error_rows"] == 0
    assert runs[varied]["accuracy"]["cer"] < 0.02, runs[varied]["accuracy"]
    assert runs[varied]["overrides"]["resources.load_in_actors"] is True
    assert runs[varied]["overrides"]["ocr.page_batch_size"] == 2
    assert runs["job"]["overrides"].get("ocr.page_batch_size") != 2
    assert f"{varied} host CPU per page, start-up included: " in proc.stdout
    assert f"{varied} once every actor was warm: " in proc.stdout
    assert runs["job"]["pages"] == 10 and runs["job"]["error_rows"] == 0
    assert runs["job"]["steady_pages_per_s"] > 0  # from the first part file on, or the whole run's
    if not runs["job"]["steady_measured"]:
        assert runs["job"]["steady_pages_per_s"] == runs["job"]["pages_per_s"]
        assert "job: every part file came at once" in proc.stdout
    assert sum(runs["job"]["pages_per_30s"]) == 10  # every committed part file is on the timeline
    assert "warm_pages_per_s" in runs["job"] and "job once every actor was warm: " in proc.stdout
    assert runs["engine"]["pages"] == 3 and runs["reference"]["pages"] == 3
    for name in ("job", "engine"):
        assert runs[name]["accuracy"]["cer"] < 0.02, runs[name]["accuracy"]
        assert runs[name]["gpu"]["utilisation_mean"] is None  # no GPU sampled
    assert "job host CPU per page, start-up included: " in proc.stdout
    host = runs["job"]["host_cpu"]  # the job keeps this machine's cores busy
    assert host["cores"] == len(os.sched_getaffinity(0)) and 0.2 < host["busy_cores"] <= host["cores"] + 0.5
    assert runs["reference"]["accuracy"]["line_cer"] < 0.05
    shapes = runs["engine"]["info"]["input_shapes"]
    assert shapes["det"]["shapes"] >= 1 and shapes["rec"]["shapes"] >= 1
    assert "engine input shapes (warm-up and timed loop): det " in proc.stdout
    assert "engine / RapidOCR on the same device and pages" in proc.stdout


def test_an_engine_past_its_time_limit_says_how_far_it_got(tmp_path):
    """An engine whose warm-up crawls (RapidOCR's new shapes on a GPU) used to report only
    'timed out': now the worker's progress lines say what it did before the limit."""
    import re

    import bench_engine
    import numpy as np

    assert bench_engine.describe_progress(None) == ""
    assert bench_engine.describe_progress(b"bench-progress loaded 3.26\n") == (
        "models loaded in 3.3 s; the warm-up pass did not finish"
    )
    images, _ = bench_engine.render_pages(gpu_check.upright_specs(2))
    pages_file = tmp_path / "pages.npz"
    np.savez(pages_file, **{f"page_{i}": im for i, im in enumerate(images)})
    spec = bench_engine.EngineSpec("ours", "ours", {"text_recognition.batch_size": 8})
    raw, error = bench_engine.run_engine(spec, pages_file, 2, 2, [False, False], False, repeat=500, timeout=12)
    assert raw is None
    pattern = (
        r"timed out after 12 s \(models loaded in [\d.]+ s; warm-up over 1 pages took [\d.]+ s; "
        r"(\d+) timed passes: (\d+) pages in [\d.]+ s, [\d.]+ pages/s\)"
    )
    match = re.fullmatch(pattern, error)
    assert match, error
    assert int(match.group(2)) == 2 * int(match.group(1)) >= 2


def test_bench_engine_ours_variants_take_list_values():
    import argparse

    import bench_engine

    spec = bench_engine.parse_ours(
        "gpu:text_recognition.width_buckets=[320, 640],text_recognition.pad_batch=true,page_batch_size=16"
    )
    assert spec.name == "ours/gpu"
    assert spec.options == {
        "text_recognition.width_buckets": [320, 640],
        "text_recognition.pad_batch": True,
        "page_batch_size": 16,
    }
    with pytest.raises(argparse.ArgumentTypeError, match=r"text_recognition\.width_buckets"):
        bench_engine.parse_ours("bad:text_recognition.width_buckets=[640,320]")


def test_host_cpu_reads_the_cgroup_counter_and_averages_busy_cores(tmp_path):
    v2, v1 = tmp_path / "cpu.stat", tmp_path / "cpuacct.usage"
    v2.write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    v1.write_text("7000000000\n")
    assert gpu_check.host_cpu_seconds([(str(v2), 1e-6), (str(v1), 1e-9)]) == pytest.approx(2.5)
    assert gpu_check.host_cpu_seconds([(str(tmp_path / "none"), 1e-6), (str(v1), 1e-9)]) == pytest.approx(7.0)
    fallback = gpu_check.host_cpu_seconds([(str(tmp_path / "none"), 1e-6)])  # /proc/stat over our CPUs
    assert fallback is not None and fallback > 0
    samples = [(100.0, 10.0), (101.0, 11.5), (102.0, 13.0), (103.0, 13.0)]
    assert gpu_check.busy_cores(samples, 100.0, 102.0) == pytest.approx(1.5)
    assert gpu_check.busy_cores(samples, 100.5, 101.5) == pytest.approx(1.5)  # the samples around it
    assert gpu_check.busy_cores(samples, 100.5, 103.0) == pytest.approx(1.0)
    assert gpu_check.busy_cores(samples, 102.5, 103.5) == pytest.approx(0.0)  # idle after 102
    assert gpu_check.busy_cores(samples, 104.0, 105.0) is None  # after the last sample: no rate
    assert gpu_check.busy_cores([], 100.0, 101.0) is None


def job_record(pages: int, rate: float, steady: float, utilisation: float, busy_cores: float) -> dict:
    """A finished job run as ``job_run`` records it (the figures ``report`` reads), one GPU, 16 cores."""
    return {
        "name": "job",
        "ok": True,
        "pages": pages,
        "pages_per_s": rate,
        "steady_pages_per_s": steady,
        "gpu": {"utilisation_mean": utilisation, "memory_peak_mb": 9000},
        "host_cpu": {"busy_cores": busy_cores, "cores": 16},
        "accuracy": {"cer": 0.001, "line_cer": 0.001},
    }


def test_a_host_bound_job_is_called_host_bound():
    run = job_record(3000, 80.0, 90.0, utilisation=41.0, busy_cores=15.6)
    run["cpu_seconds_per_stage"] = {"load": 90.0, "detect": 30.0, "crop": 15.0, "recognize": 45.0}
    run["seconds"] = 37.5
    run["host_cpu_run"] = {"busy_cores": 12.0, "cores": 16}
    text = gpu_check.report([run], 1, ["H100"])
    assert "15.6/16" in text
    assert "the host's CPUs were the limit (15.6 of 16 cores busy)" in text
    assert "(--set resources.load_in_actors=true: the model actors decode their own pages" in text
    assert "90.0 pages/s per GPU at 41% -> NOT met (from the first part file on; the whole run, " in text
    assert "start-up included: 80.0;" in text
    # 12 cores for 37.5 s over 3000 pages: 150 ms a page, 60 of it in the stages (180 s)
    assert "per page, start-up included: 150 ms (stages: load 30.0, detect 10.0, crop 5.0, recognize 15.0; " in text
    assert "outside them, Ray, start-up and the rest: 90)" in text
    run["host_cpu"] = {"busy_cores": 6.0, "cores": 16}
    assert "were the limit" not in gpu_check.report([run], 1, ["H100"])


@pytest.mark.parametrize(("cuda_major", "extra"), [("13", "gpu-cu13"), ("14", "gpu-cu13"), ("12", "gpu"), ("", "gpu")])
def test_gpu_check_installs_the_onnxruntime_build_of_the_drivers_cuda(cuda_major, extra):
    """gpu_check.sh picks the pyproject extra from nvidia-smi's "CUDA Version"; both extras exist."""
    import tomllib

    script = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.sh"
    function = subprocess.run(
        ["sed", "-n", "/^gpu_extra_for_cuda() {/,/^}/p", str(script)], capture_output=True, text=True, check=True
    ).stdout
    assert function.startswith("gpu_extra_for_cuda")
    chosen = subprocess.run(
        ["bash", "-c", f'{function}\ngpu_extra_for_cuda "$1"', "bash", cuda_major],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert chosen == extra
    extras = tomllib.loads((script.parent.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    pins = {"gpu": "onnxruntime-gpu[cuda,cudnn]>=1.26,<1.27", "gpu-cu13": "onnxruntime-gpu[cuda,cudnn]>=1.31,<1.32"}
    assert extras[extra] == [pins[extra]]


def test_a_cuda_session_that_falls_back_to_the_cpu_is_an_error_before_any_run(monkeypatch):
    """ONNX Runtime asked for CUDA that it cannot start (its libraries not found) only warns and
    runs on the CPU. Made real here: a CPU build told it has a CUDA provider. The session
    refuses to open, and the check's preflight says why, in seconds instead of a whole check
    of CPU figures."""
    import onnxruntime

    from ocr_actors.runtime.engines import EngineUnavailableError, create_session
    from ocr_actors.runtime.models import resolve_model

    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    model = resolve_model("PP-OCRv6_tiny_det").path_for("onnxruntime")
    with pytest.raises(EngineUnavailableError, match="could not start its CUDA provider"):
        create_session(model, "onnxruntime", device="gpu", threads=1)
    assert "could not start its CUDA provider" in gpu_check.cuda_session_problem()
    assert create_session(model, "onnxruntime", device="cpu", threads=1).providers == ["CPUExecutionProvider"]


def test_a_job_that_fell_back_to_the_cpu_is_reported_failed_not_measured(tmp_path):
    """The check's job run with the GPU layout on a machine whose Ray has no GPU: the job
    itself switches to the CPU (``gpu_fallback``) and succeeds, and the check reports it as
    failed, so no CPU figures are judged against the GPU target."""
    import argparse

    from ocr_actors.synth import render_page

    gpu_check.write_pages(tmp_path / "pages", [render_page(seed=1200, lines_per_column=2).image], 2)
    args = argparse.Namespace(device="gpu", set=[], actors_per_gpu=0, pages=2, timeout=240.0, gpu_ids=[])
    result = gpu_check.job_run(tmp_path, [], [], args, gpus=1)
    error = "ran on CPU: the job's Ray cluster had no GPU (gpu_fallback)"
    assert result == {"name": "job", "ok": False, "error": error}
    summary = json.loads((tmp_path / "job-summary.json").read_text())
    assert summary["gpu_fallback"] is True and summary["rows_written"] == 2


def test_job_variants_are_parsed_and_checked_before_any_run(capsys):
    variants = gpu_check.parse_job_variants(
        ["resources.load_in_actors=true 'ocr.text_recognition.width_buckets=[320, 640]'"]
    )
    assert variants == [["resources.load_in_actors=true", "ocr.text_recognition.width_buckets=[320, 640]"]]
    assert gpu_check.job_variant_name(variants[0]).startswith("job [resources.load_in_actors=true ")
    for bad, message in (("", "at least one KEY=VALUE"), ("resources.load_in_actors", "section.key=value")):
        with pytest.raises(SystemExit):
            gpu_check.main(["--device", "cpu", "--job-variant", bad])
        assert message in capsys.readouterr().err
