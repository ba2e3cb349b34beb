"""One model set-up at a time per GPU on a machine.

On a GPU, a session's first run of each input shape sets up its kernels (cuDNN picks and
builds them: seconds per recogniser shape with ONNX Runtime 1.31 / cuDNN 9). Measured on an
H200 (``scripts/gpu_stage_costs.py``, 2026-11-28): one process set up the job's detector
and recogniser shapes in 24 s, while four processes setting up the same shapes at once had
not finished after 200 s, and a job whose six model actors warmed up together committed its
first pages after two minutes. So the processes that share a GPU take turns: each holds an
exclusive file lock (one per GPU and user, in the temporary folder) while it opens its
sessions and runs its warm-up shapes (``gpu_stage_costs.py`` times both ways; turns are the bet until a GPU run
says otherwise). No Ray here; on CPU nothing is locked.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

CUDA_CACHE_BYTES = 4 << 30
"""``CUDA_CACHE_MAXSIZE`` set for GPU sessions unless already set: the driver's cache of
kernels compiled at run time then holds up to its maximum, 4 GiB (the default is smaller), so
a second process on the node may find kernels compiled by the first (unmeasured so far)."""


def nvidia_library_dirs() -> list[str]:
    """The ``lib`` folders of the ``nvidia-*`` wheels (CUDA runtime, cuBLAS, cuDNN, …) this
    Python can import, wherever they are installed. ONNX Runtime's CUDA build looks for them
    beside its own package and then on the loader's path: an onnxruntime-gpu unpacked apart
    from them (an offline bundle on a host whose PyTorch brought them) would otherwise open
    its sessions on the CPU, with only a warning. ``scripts/gpu_check.sh`` puts these on
    ``LD_LIBRARY_PATH`` before anything starts, so Ray's workers inherit them."""
    import glob
    import importlib.util

    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return []
    found = {lib for root in spec.submodule_search_locations for lib in glob.glob(os.path.join(root, "*", "lib"))}
    return sorted(lib for lib in found if os.path.isdir(lib))


def physical_gpu(device: str, visible: str | None = None) -> str:
    """The GPU a ``"gpu"`` / ``"gpu:N"`` device means on this machine: entry N of
    ``CUDA_VISIBLE_DEVICES`` (``visible``; Ray sets it per actor) when set, else N."""
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    entries = [e.strip() for e in (visible or "").split(",") if e.strip()]
    return entries[index] if index < len(entries) else str(index)


def lock_path(device: str, visible: str | None = None) -> Path:
    """The lock file of ``device``'s GPU for this user."""
    gpu = "".join(c if c.isalnum() or c in "-_" else "_" for c in physical_gpu(device, visible))
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"ocr-batch-gpu-setup-{uid}-{gpu}.lock"


_HELD: dict[Path, tuple[int, int]] = {}
"""Lock files this process holds: path -> (descriptor, nesting depth)."""
_IN_PROCESS = threading.RLock()
"""One set-up at a time within the process too; the thread holding it may nest."""


class GpuSetupLock:
    """``with GpuSetupLock(device):`` holds this machine's set-up lock of ``device``'s GPU
    (a no-op for ``"cpu"``, or with ``turns`` false: ``engine.gpu_setup_turns``); ``waited_s``
    is how long it waited for other processes. Nesting in one thread is allowed (a caller may
    hold it around several models' set-ups); other threads of the process wait."""

    def __init__(self, device: str, turns: bool = True) -> None:
        self.device = device
        self.turns = turns
        self.waited_s = 0.0
        self._path: Path | None = None

    def __enter__(self) -> GpuSetupLock:
        if not self.device.startswith("gpu"):
            return self
        os.environ.setdefault("CUDA_CACHE_MAXSIZE", str(CUDA_CACHE_BYTES))
        if not self.turns:
            return self
        import fcntl

        started = time.perf_counter()
        _IN_PROCESS.acquire()
        path = lock_path(self.device, os.environ.get("CUDA_VISIBLE_DEVICES"))
        fd, depth = _HELD.get(path, (-1, 0))
        if depth == 0:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:  # no writable temporary folder: set up without turns rather than fail
                fd = -1
            try:
                if fd >= 0:
                    fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                _IN_PROCESS.release()
                raise
        _HELD[path] = (fd, depth + 1)
        self._path = path
        self.waited_s = time.perf_counter() - started
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._path is None:
            return
        fd, depth = _HELD.pop(self._path)
        if depth > 1:
            _HELD[self._path] = (fd, depth - 1)
        elif fd >= 0:
            os.close(fd)  # closing the descriptor releases the lock
        self._path = None
        _IN_PROCESS.release()
