"""ocr_actors.runtime.gpu_setup: model set-ups on one GPU take turns across processes."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ocr_actors.runtime.gpu_setup import CUDA_CACHE_BYTES, GpuSetupLock, lock_path, physical_gpu

ROOT = Path(__file__).resolve().parent.parent

HOLDER = """
import sys, time
from ocr_actors.runtime.gpu_setup import GpuSetupLock
with GpuSetupLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
print("released", flush=True)
"""


def test_the_lock_names_the_physical_gpu():
    assert physical_gpu("gpu") == "0" and physical_gpu("gpu:3") == "3"
    assert physical_gpu("gpu", "2,5") == "2" and physical_gpu("gpu:1", "2, 5") == "5"  # Ray's per-actor list
    assert physical_gpu("gpu:0", "GPU-9b45") == "GPU-9b45"
    assert lock_path("gpu", "4").name == f"ocr-batch-gpu-setup-{os.getuid()}-4.lock"
    assert lock_path("gpu", "GPU-9b/45").name.endswith("-GPU-9b_45.lock")  # never a path separator


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Lock files in this test's folder, for this process and the ones it starts."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("CUDA_CACHE_MAXSIZE", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return tmp_path


def hold_in_another_process(device: str, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, device, str(seconds)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_waits_for_the_first_set_up_on_the_same_gpu(private_tmp):
    holder = hold_in_another_process("gpu:0", 1.5)
    try:
        with GpuSetupLock("gpu:0") as lock:  # only once the holder has let go
            pass
        assert 0.8 < lock.waited_s < 10
        assert os.environ["CUDA_CACHE_MAXSIZE"] == str(CUDA_CACHE_BYTES)  # set for the driver's kernel cache
        with GpuSetupLock("gpu:1") as other:  # another GPU: no wait
            pass
        assert other.waited_s < 0.5
    finally:
        holder.wait(timeout=30)


def test_cpu_and_turns_off_never_wait(private_tmp):
    holder = hold_in_another_process("gpu", 3)
    try:
        started = time.perf_counter()
        with GpuSetupLock("cpu") as cpu, GpuSetupLock("gpu", turns=False) as at_once:
            pass
        assert time.perf_counter() - started < 1.0 and cpu.waited_s == at_once.waited_s == 0.0
        assert holder.poll() is None  # still holding
    finally:
        holder.wait(timeout=30)


def test_one_process_may_nest_its_set_ups(private_tmp):
    """A caller holds the lock around several models' set-ups (each model takes it too)."""
    with GpuSetupLock("gpu") as outer:
        with GpuSetupLock("gpu") as inner:
            assert inner.waited_s < 0.5
        with GpuSetupLock("gpu"):
            pass
        assert outer.waited_s < 0.5
    holder = hold_in_another_process("gpu", 0)  # released after the outer one ended: no leak
    assert holder.wait(timeout=30) == 0


def test_no_writable_temporary_folder_means_no_turns_not_a_failed_actor(private_tmp, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp / "missing"))
    with GpuSetupLock("gpu") as lock, GpuSetupLock("gpu"):
        pass
    assert lock.waited_s < 0.5


def test_nvidia_library_dirs_finds_the_wheels_lib_folders_wherever_python_sees_them(tmp_path, monkeypatch):
    """An onnxruntime-gpu unpacked apart from the nvidia-* wheels (an offline bundle on a host
    whose PyTorch brought them) finds them only on the loader's path: these are the folders
    ``gpu_check.sh`` puts there, from every place the ``nvidia`` namespace package spans."""
    import importlib

    from ocr_actors.runtime.gpu_setup import nvidia_library_dirs

    for root, package in ((tmp_path / "host", "cudnn"), (tmp_path / "host", "cublas"), (tmp_path / "bundle", "nccl")):
        (root / "nvidia" / package / "lib").mkdir(parents=True)
    (tmp_path / "host" / "nvidia" / "cudnn" / "include").mkdir()
    (tmp_path / "host" / "nvidia" / "notes.txt").write_text("not a package")
    for root in ("host", "bundle"):
        monkeypatch.syspath_prepend(str(tmp_path / root))
    sys.modules.pop("nvidia", None)
    importlib.invalidate_caches()
    assert nvidia_library_dirs() == sorted(
        str(tmp_path / root / "nvidia" / package / "lib")
        for root, package in (("host", "cudnn"), ("host", "cublas"), ("bundle", "nccl"))
    )
    sys.modules.pop("nvidia", None)
