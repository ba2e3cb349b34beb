"""scripts/gpu_check.sh: its nvidia-smi parsing, its refusal without a GPU, and a CPU smoke run
of the whole check (job, engine, RapidOCR) on a few pages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_check  # noqa: E402


def test_nvidia_smi_lines_parse_and_summarise():
    from datetime import datetime

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
    two = gpu_check.job_overrides("gpu", 2, 3000, 32, actors_per_gpu=2)
    assert two["resources.detect.min_actors"] == two["resources.recognize.max_actors"] == 4
    assert 2 * two["resources.detect.num_gpus"] + 2 * two["resources.recognize.num_gpus"] <= 1.0  # per GPU
    assert two["resources.detect.num_cpus"] == 1.0 and two["resources.recognize.threads"] == 1
    assert two["output.rows_per_file"] == 150 and "ray.num_cpus" not in two  # Ray counts the CPUs
    one = gpu_check.job_overrides("gpu", 1, 3000, 16)  # the default: three of each per GPU
    assert one["resources.detect.max_actors"] == one["resources.recognize.min_actors"] == 3
    assert one["resources.detect.num_gpus"] == one["resources.recognize.num_gpus"] == 0.16
    assert 6 * one["resources.detect.num_cpus"] == pytest.approx(4)  # 12 of the 16 CPUs stay for the tasks
    eight = gpu_check.job_overrides("gpu", 8, 3000, 64, actors_per_gpu=2)  # 32 actors on 64 CPUs: 0.5 each
    assert eight["resources.detect.num_cpus"] == 0.5
    crowded = gpu_check.job_overrides("gpu", 1, 3000, 4, actors_per_gpu=4)  # never under a quarter CPU
    assert crowded["resources.recognize.num_cpus"] == 0.25
    cpu = gpu_check.job_overrides("cpu", 0, 8, 2)
    assert "resources.detect.num_gpus" not in cpu and cpu["output.rows_per_file"] == 1


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


def test_asking_for_a_gpu_without_one_is_a_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    assert gpu_check.main(["--device", "gpu"]) == 2
    assert "no NVIDIA GPU found" in capsys.readouterr().err


@pytest.mark.slow
def test_cpu_smoke_run_of_the_whole_check(tmp_path):
    result_file = tmp_path / "check.json"
    env = {**os.environ, "GPU_CHECK_INSTALL": "0"}
    args = ["--device", "cpu", "--pages", "10", "--unique", "3", "--engine-pages", "3", "--reference-pages", "1"]
    proc = subprocess.run(
        ["bash", "scripts/gpu_check.sh", *args, "--threads", "2", "--json", str(result_file)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    runs = {r["name"]: r for r in json.loads(result_file.read_text())["runs"]}
    assert set(runs) == {"job", "engine", "reference"}
    assert runs["job"]["pages"] == 10 and runs["job"]["error_rows"] == 0
    assert runs["job"]["steady_pages_per_s"] > 0  # from the first part file on, or the whole run's
    if not runs["job"]["steady_measured"]:
        assert runs["job"]["steady_pages_per_s"] == runs["job"]["pages_per_s"]
        assert "job: every part file came at once" in proc.stdout
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


def test_a_host_bound_job_is_called_host_bound():
    run = {
        "name": "job",
        "ok": True,
        "pages": 3000,
        "pages_per_s": 80.0,
        "steady_pages_per_s": 90.0,
        "gpu": {"utilisation_mean": 41.0, "memory_peak_mb": 9000},
        "host_cpu": {"busy_cores": 15.6, "cores": 16},
        "accuracy": {"cer": 0.001, "line_cer": 0.001},
    }
    run["cpu_seconds_per_stage"] = {"load": 90.0, "detect": 30.0, "crop": 15.0, "recognize": 45.0}
    run["seconds"] = 37.5
    run["host_cpu_run"] = {"busy_cores": 12.0, "cores": 16}
    text = gpu_check.report([run], 1, ["H100"])
    assert "15.6/16" in text
    assert "the host's CPUs were the limit (15.6 of 16 cores busy)" in text
    assert "--set resources.load_in_actors=true --set resources.detect.concurrent_calls=2" in text
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
