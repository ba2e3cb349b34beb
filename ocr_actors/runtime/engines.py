"""Inference engines behind one small interface: ``session.run(batch) -> array``.

Every engine takes one float32 NCHW input (ONNX Runtime: or the uint16 NHWC pixels of a model
that normalises in its graph) and returns the model's first output as a float32 numpy array.
Engines are imported lazily; a missing one raises :class:`EngineUnavailableError` naming the
package to install.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np

ENGINES = ("onnxruntime", "openvino", "paddle")


class EngineUnavailableError(ImportError):
    """The requested inference engine (or device) is not installed."""


class InferenceSession(Protocol):
    """A loaded model: one input, first output returned."""

    engine: str
    input_dtype: np.dtype
    metadata: dict[str, str]
    """Model metadata (ONNX ``metadata_props``), e.g. a recogniser's ``character`` list."""

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run a ``(N, C, H, W)`` batch; returns the model's first output."""
        ...

    def run_all(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run a batch; returns every output, in the model's order, with their own dtypes."""
        ...


def cuda_provider_options(device: str, conv_algo_search: str = "HEURISTIC") -> dict[str, str]:
    """ONNX Runtime CUDA provider options for ``"gpu"`` / ``"gpu:N"``."""
    return {
        "device_id": device.split(":", 1)[1] if ":" in device else "0",
        "cudnn_conv_algo_search": conv_algo_search,
    }


_MODEL_RUNS: ThreadPoolExecutor | None = None
_MODEL_RUNS_LOCK = threading.Lock()


def model_run_thread() -> ThreadPoolExecutor:
    """The process's one thread for the model runs of sessions opened with
    ``one_run_thread`` (created on first use, shared by every such session)."""
    global _MODEL_RUNS
    with _MODEL_RUNS_LOCK:
        if _MODEL_RUNS is None:
            _MODEL_RUNS = ThreadPoolExecutor(1, thread_name_prefix="model-runs")
        return _MODEL_RUNS


def runs_on_one_thread(session: object) -> bool:
    """Whether ``session`` hands every run to :func:`model_run_thread` (then the threads
    that call it never run the model themselves and need no warm-up of their own)."""
    return bool(getattr(session, "one_run_thread", False))


class OnnxRuntimeSession:
    """ONNX Runtime; CUDA when ``device`` starts with ``gpu`` and the provider exists.

    With ``one_run_thread`` every run goes through the process's one model thread
    (:func:`model_run_thread`) while the calling thread waits (without the GIL): ONNX Runtime's
    CUDA provider sets up a CUDA stream with its own cuDNN and cuBLAS handles (and their
    workspace) for each run going on at once, so runs from several call threads
    (``concurrent_calls``) would each set those up and warm up; through one thread there is one
    set, warmed once, and the call threads still overlap their CPU work with the model runs;
    but the runs of one process no longer overlap each other on the GPU.
    """

    engine = "onnxruntime"

    def __init__(
        self,
        model_file: Path,
        device: str = "cpu",
        threads: int = 0,
        allow_spinning: bool = True,
        cudnn_conv_algo_search: str = "HEURISTIC",
        one_run_thread: bool = False,
    ) -> None:
        self.one_run_thread = one_run_thread
        self.model_file = model_file
        """The ONNX file the session runs (after any f16 conversion or CTC fusion)."""
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EngineUnavailableError(
                "ONNX Runtime is not installed: pip install onnxruntime (or onnxruntime-gpu)"
            ) from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if not allow_spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers: list[str | tuple[str, dict[str, str]]] = ["CPUExecutionProvider"]
        if device.startswith("gpu"):
            preload = getattr(ort, "preload_dlls", None)  # CUDA/cuDNN from the nvidia-* wheels ([cuda,cudnn])
            if preload is not None:
                with contextlib.suppress(Exception):  # system CUDA libraries may serve instead
                    preload()
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise EngineUnavailableError(
                    "device 'gpu' asked for but ONNX Runtime has no CUDA provider: "
                    "pip install 'ocr-batch[gpu]' (onnxruntime-gpu)"
                )
            providers.insert(0, ("CUDAExecutionProvider", cuda_provider_options(device, cudnn_conv_algo_search)))
        self._session = ort.InferenceSession(str(model_file), options, providers=providers)
        self.providers: list[str] = list(self._session.get_providers())
        """The providers the session really runs on, best first."""
        if device.startswith("gpu") and self.providers[0] != "CUDAExecutionProvider":
            raise EngineUnavailableError(  # ONNX Runtime only warns, and runs every model on the CPU
                "device 'gpu' asked for but ONNX Runtime could not start its CUDA provider: CUDA or cuDNN "
                "libraries not found (install onnxruntime-gpu with its [cuda,cudnn] extras, or put their lib "
                "folders on LD_LIBRARY_PATH)"
            )
        model_input = self._session.get_inputs()[0]
        self._input_name = model_input.name
        # float32 images; float16 for a half-precision model without cast inputs; uint16 pixels
        # for a model that normalises in its graph (graph.fuse_pixel_input)
        input_dtypes = {"tensor(float16)": np.float16, "tensor(uint16)": np.uint16}
        self.input_dtype = np.dtype(input_dtypes.get(model_input.type, np.float32))
        self.metadata: dict[str, str] = dict(self._session.get_modelmeta().custom_metadata_map)
        self.first_runs: dict[tuple[int, ...], float] = {}
        """Seconds of the first run of each input shape seen (on GPUs mostly kernel set-up)."""

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.run_all(batch)[0], dtype=np.float32)

    def run_all(self, batch: np.ndarray) -> list[np.ndarray]:
        started = time.perf_counter()
        feeds = {self._input_name: batch.astype(self.input_dtype, copy=False)}
        if self.one_run_thread:
            outputs = list(model_run_thread().submit(self._session.run, None, feeds).result())
        else:
            outputs = list(self._session.run(None, feeds))
        self.first_runs.setdefault(tuple(batch.shape), time.perf_counter() - started)
        return outputs


class OpenVINOSession:
    """OpenVINO on CPU. f32 unless ``precision="bf16"`` (it would pick bf16 silently)."""

    engine = "openvino"

    def __init__(self, model_file: Path, device: str = "cpu", threads: int = 0, precision: str = "f32") -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise EngineUnavailableError("OpenVINO is not installed: pip install 'ocr-batch[openvino]'") from exc
        if device != "cpu":
            raise EngineUnavailableError("the OpenVINO engine runs on device 'cpu' only here")
        if precision not in ("f32", "bf16"):
            raise ValueError(f"OpenVINO precision must be 'f32' or 'bf16', got {precision!r}")
        core = ov.Core()
        config: dict[str, object] = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = threads
        model = core.read_model(str(model_file))
        rt_info = model.get_rt_info()
        has_framework = "framework" in rt_info.keys()  # noqa: SIM118 - RTMap has no __contains__
        framework = rt_info["framework"] if has_framework else {}
        keys = framework.keys() if isinstance(framework, dict) else []
        self.metadata = {str(k): model.get_rt_info(["framework", str(k)]).astype(str) for k in keys}
        self._compiled = core.compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()
        self.input_dtype = np.dtype(np.float32)

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.run_all(batch)[0], dtype=np.float32)

    def run_all(self, batch: np.ndarray) -> list[np.ndarray]:
        result = self._request.infer({0: batch.astype(np.float32, copy=False)})
        return [np.asarray(result[output]) for output in self._compiled.outputs]


class PaddleSession:
    """Paddle Inference (``paddlepaddle`` / ``paddlepaddle-gpu``) on a model folder.

    Legacy ``inference.pdmodel`` programs run on the old IR: the new IR with oneDNN
    crashes on the PP-OCRv4 detector.
    """

    engine = "paddle"

    def __init__(self, model_dir: Path, device: str = "cpu", threads: int = 0) -> None:
        try:
            from paddle import inference as paddle_inference
        except ImportError as exc:
            raise EngineUnavailableError(
                "Paddle Inference is not installed: pip install 'ocr-batch[paddle]' (paddlepaddle or paddlepaddle-gpu)"
            ) from exc
        legacy = model_dir / "inference.pdmodel"
        program = legacy if legacy.exists() else model_dir / "inference.json"
        config = paddle_inference.Config(str(program), str(model_dir / "inference.pdiparams"))
        if device.startswith("gpu"):
            import paddle

            if not paddle.device.is_compiled_with_cuda():  # it would run on the CPU, unannounced
                raise EngineUnavailableError(
                    f"engine.device {device} with engine paddle needs paddlepaddle-gpu; this paddlepaddle "
                    f"{paddle.__version__} is a CPU build"
                )
            device_id = int(device.split(":", 1)[1]) if ":" in device else 0
            config.enable_use_gpu(256, device_id)
        else:
            config.disable_gpu()
            config.enable_mkldnn()
            config.set_mkldnn_cache_capacity(10)
            config.set_cpu_math_library_num_threads(threads if threads > 0 else (os.cpu_count() or 1))
        if legacy.exists() and hasattr(config, "enable_new_ir"):
            config.enable_new_ir(False)
        config.enable_memory_optim()
        config.disable_glog_info()
        config.switch_ir_optim(True)
        self._predictor = paddle_inference.create_predictor(config)
        self._input = self._predictor.get_input_handle(self._predictor.get_input_names()[0])
        self._outputs = [self._predictor.get_output_handle(name) for name in self._predictor.get_output_names()]
        self.input_dtype = np.dtype(np.float32)
        self.metadata: dict[str, str] = {}

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.run_all(batch)[0], dtype=np.float32)

    def run_all(self, batch: np.ndarray) -> list[np.ndarray]:
        self._input.copy_from_cpu(np.ascontiguousarray(batch, dtype=np.float32))
        self._predictor.run()
        return [np.asarray(output.copy_to_cpu()) for output in self._outputs]


def create_session(
    model_path: Path,
    engine: str,
    device: str = "cpu",
    threads: int = 0,
    precision: str = "f32",
    allow_spinning: bool = True,
    cudnn_conv_algo_search: str = "HEURISTIC",
    one_run_thread: bool = False,
) -> InferenceSession:
    """Open a model with the named engine.

    Args:
        model_path: an ``.onnx`` file (onnxruntime, openvino) or a Paddle model folder.
        engine: one of :data:`ENGINES`.
        device: ``"cpu"``, ``"gpu"`` or ``"gpu:N"``.
        threads: intra-op threads; 0 lets the engine choose.
        precision: OpenVINO only: ``"f32"`` (default) or ``"bf16"`` (ONNX Runtime's ``f16`` is a
            converted model file: :func:`ocr_actors.runtime.runners.engine_model_file`).
        allow_spinning: ONNX Runtime only: let idle intra-op threads spin.
        cudnn_conv_algo_search: ONNX Runtime on GPU only: cuDNN kernel choice per shape.
        one_run_thread: ONNX Runtime only: every run on the process's one model thread
            (:class:`OnnxRuntimeSession`).
    """
    if engine == "onnxruntime":
        return OnnxRuntimeSession(model_path, device, threads, allow_spinning, cudnn_conv_algo_search, one_run_thread)
    if engine == "openvino":
        return OpenVINOSession(model_path, device, threads, precision)
    if engine == "paddle":
        return PaddleSession(model_path, device, threads)
    raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
