"""Model runners: pre-process + engine session + post-process. No Ray here.

Each runner is built once (per process or actor) and is stateless per call: per-call
parameters are arguments, never stored on the runner.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from ocr_actors.config import EngineConfig, TextDetectionConfig, TextRecognitionConfig
from ocr_actors.geometry import remap_windowed, rotate_image, unwarp_maps
from ocr_actors.postprocess import (
    DBParams,
    ctc_characters,
    ctc_collapse,
    ctc_greedy_decode,
    db_boxes,
    filter_tiny_quads,
)
from ocr_actors.preprocess import (
    DET_SCALE,
    DET_SHIFT,
    REC_SCALE,
    REC_SHIFT,
    Batch,
    batches_by_aspect_ratio,
    det_resize_shape,
    prepare_det_batch,
    prepare_doc_orientation_input,
    prepare_rec_batch,
    prepare_stretched_cls_batch,
    prepare_textline_cls_batch,
    rec_batch_width,
    rec_resized_width,
)
from ocr_actors.redaction import redacting_logger
from ocr_actors.runtime.engines import InferenceSession, create_session, runs_on_one_thread
from ocr_actors.runtime.gpu_setup import GpuSetupLock
from ocr_actors.runtime.models import (
    ModelNotFoundError,
    ResolvedModel,
    fused_ctc_file,
    half_precision_file,
    pixel_input_file,
    resolve_model,
)

log = redacting_logger(__name__)


def open_model(name: str, engine: EngineConfig) -> tuple[ResolvedModel, InferenceSession]:
    """Resolve a model name/path/URI and open it with the configured engine."""
    resolved = resolve_model(name, engine.engine)
    return resolved, open_session(resolved.path_for(engine.engine), engine)


def engine_model_file(model_path: Path, engine: EngineConfig) -> Path:
    """The file the engine opens for ``model_path``: its f16 copy for ONNX Runtime with
    ``engine.precision: f16`` (:func:`~ocr_actors.runtime.models.half_precision_file`), else
    the path itself."""
    if engine.engine == "onnxruntime" and engine.precision == "f16" and model_path.is_file():
        return half_precision_file(model_path)
    return model_path


def open_session(model_path: Path, engine: EngineConfig, convert: bool = True) -> InferenceSession:
    """Open a model file or folder with the configured engine; ``convert=False`` when
    ``model_path`` already went through :func:`engine_model_file`."""
    return create_session(
        engine_model_file(model_path, engine) if convert else model_path,
        engine.engine,
        engine.device,
        engine.threads,
        engine.precision,
        engine.allow_spinning,
        engine.cudnn_conv_algo_search,
        engine.gpu_run_thread and engine.device.startswith("gpu"),
    )


@dataclass(frozen=True)
class DetParams:
    """Per-call detection parameters (the reference's ``text_det_*`` switches)."""

    limit_side_len: int
    limit_type: str
    max_side_limit: int
    db: DBParams

    def as_reference_dict(self) -> dict[str, object]:
        """The reference's ``text_det_params`` result key."""
        return {
            "limit_side_len": self.limit_side_len,
            "limit_type": self.limit_type,
            "thresh": self.db.thresh,
            "max_side_limit": self.max_side_limit,
            "box_thresh": self.db.box_thresh,
            "unclip_ratio": self.db.unclip_ratio,
        }


@dataclass(frozen=True)
class Detection:
    """Text quads of one image: ``quads`` (N, 4, 2) float32 and ``scores`` (N,) float32, image pixels."""

    quads: np.ndarray
    scores: np.ndarray


def det_params(config: TextDetectionConfig, model_defaults: dict[str, object]) -> DetParams:
    """Detection parameters: the config's values, else the model's own, else PP-OCR's."""
    merged: dict[str, object] = {"thresh": 0.3, "box_thresh": 0.6, "unclip_ratio": 1.5, "max_candidates": 1000}
    merged.update(model_defaults)
    configured = {
        "thresh": config.thresh,
        "box_thresh": config.box_thresh,
        "unclip_ratio": config.unclip_ratio,
        "max_candidates": config.max_candidates,
    }
    merged.update({k: v for k, v in configured.items() if v is not None})
    return DetParams(
        limit_side_len=config.limit_side_len,
        limit_type=config.limit_type,
        max_side_limit=config.max_side_limit,
        db=DBParams(
            thresh=float(merged["thresh"]),  # type: ignore[arg-type]
            box_thresh=float(merged["box_thresh"]),  # type: ignore[arg-type]
            unclip_ratio=float(merged["unclip_ratio"]),  # type: ignore[arg-type]
            max_candidates=int(merged["max_candidates"]),  # type: ignore[call-overload]
            min_size=config.min_size,
            use_dilation=config.use_dilation,
        ),
    )


def padded_shape(shape: tuple[int, int], multiple: int, canvases: Sequence[tuple[int, int]] = ()) -> tuple[int, int]:
    """The ``(H, W)`` a resized page of ``shape`` pads to: the smallest (in area; on a tie the
    first listed) of the ``canvases`` that hold it and of its sides rounded up to ``multiple``."""
    h, w = shape
    rounded = (-(-h // multiple) * multiple, -(-w // multiple) * multiple)
    fitting = [(int(c[0]), int(c[1])) for c in canvases if c[0] >= h and c[1] >= w]
    return min([*fitting, rounded], key=lambda c: c[0] * c[1])


def group_by_padded_shape(
    shapes: Sequence[tuple[int, int]], multiple: int, canvases: Sequence[tuple[int, int]] = ()
) -> dict[tuple[int, int], list[int]]:
    """Group ``(H, W)`` shapes by the shape each is padded to (:func:`padded_shape`).

    Returns ``{padded shape: indices}``; every index appears once.
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for i, shape in enumerate(shapes):
        groups.setdefault(padded_shape(shape, multiple, canvases), []).append(i)
    return groups


def power_of_two_runs(count: int, largest: int) -> list[int]:
    """Split ``count`` pages into runs of at most ``largest`` pages, each a power of two,
    largest first (13, 16 -> [8, 4, 1]; 37, 16 -> [16, 16, 4, 1]). ``largest`` 0: one run."""
    if largest <= 0 or count <= 0:
        return [count] if count > 0 else []
    top = 1 << (largest.bit_length() - 1)  # the largest power of two <= largest
    runs = []
    while count:
        size = top
        while size > count:
            size //= 2
        runs.append(size)
        count -= size
    return runs


class ThreadBuffers:
    """One input buffer per calling thread, grown as needed: a runner builds each
    model input in its thread's buffer, so that memory stays mapped from call to call (a
    fresh batch of 16 pages is 136 MB whose pages the system maps and zeroes every time: on
    the project's 2-vCPU machine ``bench_host_costs.py --gpu-layout`` replayed the model
    actor's own host work at 10.4 ms a page with fresh arrays, 7.8 with the buffers); a run is
    over before its thread builds the next input. A buffer is kept up to ``keep_bytes`` (256
    MB: 16 pages of 960 x 960, 32 lines 3200 px wide); a larger input (a service request of
    big pages read with ``limit_type: min``) gets memory of its own, freed after its run."""

    def __init__(self, keep_bytes: int = 256 << 20) -> None:
        self._local = threading.local()
        self.keep_bytes = keep_bytes

    def get(self, size: int, dtype: type = np.float32) -> np.ndarray:
        """The calling thread's buffer as ``size`` values of ``dtype`` (a new array, not kept,
        past ``keep_bytes``)."""
        nbytes = size * np.dtype(dtype).itemsize
        if nbytes > self.keep_bytes:
            return np.empty(size, dtype=dtype)
        buffer: np.ndarray | None = getattr(self._local, "array", None)
        if buffer is None or buffer.size < nbytes:
            buffer = self._local.array = np.empty(nbytes, dtype=np.uint8)
        return buffer[:nbytes].view(dtype)


def pixel_model_file(model_file: Path, scale: np.ndarray, shift: np.ndarray, engine: EngineConfig) -> Path | None:
    """The copy of ``model_file`` that takes pixels (:func:`pixel_input_file`) when the engine
    wants one (:attr:`EngineConfig.pixels_in`), else None: the host normalises. With
    ``normalize_in_model`` unset (the GPU default) a copy that cannot be made (a read-only model
    cache, a model without an image input) falls back to the host with a warning; set to true,
    its error stands."""
    if not engine.pixels_in:
        return None
    try:
        return pixel_input_file(model_file, scale, shift)
    except ModelNotFoundError as exc:
        if engine.normalize_in_model:
            raise
        log.warning("%s; the host normalises this model's inputs instead", exc)
        return None


def blank_input(shape: tuple[int, int, int, int], pixels_in: bool, channels: int = 3) -> np.ndarray:
    """A blank model input for the model-facing shape ``(N, 3, H, W)``: float32 zeros, or for a
    model that takes pixels (``engine.pixels_in``) ``(N, H, W, channels)`` uint16 zeros."""
    n, _, h, w = shape
    return np.zeros((n, h, w, channels), np.uint16) if pixels_in else np.zeros(shape, np.float32)


class TextDetector:
    """PP-OCR DB detector: resize/normalise -> session -> DB post-process."""

    def __init__(self, config: TextDetectionConfig, engine: EngineConfig) -> None:
        self.model_name = config.model
        self.config = config
        self._engine = engine
        self._warm_threads = {threading.get_ident()}
        self._buffers = ThreadBuffers()
        with GpuSetupLock(engine.device, engine.gpu_setup_turns) as lock:
            self._model = resolve_model(config.model, engine.engine)
            model_file = engine_model_file(self._model.path_for(engine.engine), engine)
            pixel_file = pixel_model_file(model_file, DET_SCALE, DET_SHIFT, engine)
            self.pixels_in = pixel_file is not None
            """The session takes ``(N, H, W, C)`` uint16 pixels, normalised in its graph."""
            self._session = open_session(pixel_file or model_file, engine, convert=False)
            self.default_params = det_params(config, self._model.det_defaults)
            self.warmup_timings = self.warm_up() if config.warmup else []
            """``(shape, seconds)`` of the start-up runs (``text_detection.warmup``)."""
        self.setup_wait_s = lock.waited_s
        """Seconds this process waited for other processes' set-up on the same GPU."""

    @property
    def session(self) -> InferenceSession:
        """The engine session (``(N, 3, H, W)`` float32 pages in, or with :attr:`pixels_in`
        ``(N, H, W, C)`` uint16 pixels; probability maps out)."""
        return self._session

    def input_buffer(self, pages: int, canvas: tuple[int, int]) -> np.ndarray:
        """The calling thread's input buffer for ``pages`` pages on ``canvas``
        (:func:`prepare_det_batch`, its pixels with :attr:`pixels_in`)."""
        return self._buffers.get(pages * 3 * canvas[0] * canvas[1], np.uint16 if self.pixels_in else np.float32)

    def prepare_batch(
        self, images: Sequence[np.ndarray], canvas: tuple[int, int], params: DetParams | None = None
    ) -> np.ndarray:
        """The session's input for these pages on ``canvas``, in the calling thread's buffer."""
        p = params or self.default_params
        limits = (p.limit_side_len, p.limit_type, p.max_side_limit)
        buffer = self.input_buffer(len(images), canvas)
        return prepare_det_batch(images, canvas, *limits, buffer=buffer, pixels=self.pixels_in)

    def detect(self, images: Sequence[np.ndarray], params: DetParams | None = None) -> list[Detection]:
        """Detect text lines on BGR ``(H, W, 3)`` (or grey ``(H, W, 1)``) uint8 images.

        Pages are grouped by the canvas each pads to (:func:`padded_shape`: a
        ``batch_canvases`` canvas, or the resized shape rounded up to ``batch_pad_multiple``):
        the pages of a group are zero-padded (after normalisation) to that shape, and each
        probability map is cut back to its own page before post-processing. With the
        default multiple of 32 only pages of identical resized shape share a call. A group
        runs in one call, or with ``batch_size`` in calls of powers of two up to it
        (:func:`power_of_two_runs`).
        """
        p = params or self.default_params
        shapes = [
            det_resize_shape(im.shape[0], im.shape[1], p.limit_side_len, p.limit_type, p.max_side_limit)
            for im in images
        ]
        results: list[Detection | None] = [None] * len(images)
        for canvas, members in self.runs(shapes):
            probs = self._session.run(self.prepare_batch([images[i] for i in members], canvas, p))
            for k, i in enumerate(members):
                own_h, own_w = shapes[i]
                quads, scores = db_boxes(probs[k, 0, :own_h, :own_w], images[i].shape[:2], p.db)
                keep = filter_tiny_quads(quads)
                results[i] = Detection(quads[keep], scores[keep])
        return [r for r in results if r is not None]

    def runs(self, shapes: Sequence[tuple[int, int]]) -> list[tuple[tuple[int, int], list[int]]]:
        """The detector runs :meth:`detect` makes for pages of these resized ``(h, w)`` shapes:
        ``(canvas, page indices)`` per run, in run order (no pixels needed)."""
        runs = []
        groups = group_by_padded_shape(shapes, self.config.batch_pad_multiple, self.config.batch_canvases)
        for canvas, group in groups.items():
            start = 0
            for size in power_of_two_runs(len(group), self.config.batch_size):
                runs.append((canvas, group[start : start + size]))
                start += size
        return runs

    def warmup_shapes(self) -> list[tuple[int, int, int, int]]:
        """The input shapes ``(N, 3, H, W)`` of the detector's runs when every page pads to
        one of the ``batch_canvases`` or one ``S`` x ``S`` canvas
        (:attr:`TextDetectionConfig.warmup_canvas`) and runs are powers of two up to
        ``batch_size``: canvas by canvas (the square last), smallest batch first; else ``[]``."""
        side = self.config.warmup_canvas
        if side is None or self.config.batch_size < 1:
            return []
        canvases = list(dict.fromkeys([*self.config.batch_canvases, (side, side)]))
        sizes = [1 << k for k in range(self.config.batch_size.bit_length())]
        return [(n, 3, h, w) for h, w in canvases for n in sizes]

    def warm_up(self) -> list[tuple[tuple[int, int, int, int], float]]:
        """Run one blank batch of every shape in :meth:`warmup_shapes`; returns each shape
        with the seconds its first run took (GPU kernel set-up included)."""
        timings = []
        for shape in self.warmup_shapes():
            started = time.perf_counter()
            # pixel inputs: a colour and a grey batch, two input shapes (the same convolutions)
            for channels in (3, 1) if self.pixels_in else (3,):
                self._session.run(blank_input(shape, self.pixels_in, channels))
            timings.append((shape, time.perf_counter() - started))
        return timings

    def warm_this_thread(self) -> tuple[list[tuple[tuple[int, int, int, int], float]], float]:
        """:meth:`warm_up` again on the calling thread, once per thread (``warmup``; the
        constructing thread is warm): ONNX Runtime's CUDA provider keeps cuDNN and cuBLAS
        handles per thread, so a thread that runs calls (``concurrent_calls``) may set up
        kernels of its own. Returns the timings and the wait for the GPU, ``([], 0)`` when
        already warm, warm-up is off or the session runs on the one model thread
        (``engine.gpu_run_thread``)."""
        return warm_thread_once(self, self.config.warmup, self._session, self._engine, self._warm_threads)


REC_HEIGHT = 48
"""Input height of PP-OCR recognisers (PP-OCRv3 on), pixels; a model folder's ``inference.yml``
may state another (:attr:`ResolvedModel.input_height`)."""


class TextRecognizer:
    """PP-OCR CTC recogniser: resize/pad by aspect ratio -> session -> greedy CTC.

    ONNX models run with the CTC choice fused into the graph (``fuse_decode``, see
    :mod:`ocr_actors.runtime.graph`): the same texts and scores (read from the model's own
    output), but the session returns one class per step instead of every class's probability.
    """

    def __init__(self, config: TextRecognitionConfig, engine: EngineConfig, fuse_decode: bool = True) -> None:
        self.model_name = config.model
        self.config = config
        self._engine = engine
        self._warm_threads = {threading.get_ident()}
        self._buffers = ThreadBuffers()
        with GpuSetupLock(engine.device, engine.gpu_setup_turns) as lock:
            self._model = resolve_model(config.model, engine.engine)
            self.height = self._model.input_height or REC_HEIGHT
            """The input height crops are resized to, pixels."""
            model_file = engine_model_file(self._model.path_for(engine.engine), engine)
            fused = None
            if fuse_decode and engine.engine != "paddle" and self._model.onnx_file is not None:
                # fused after any f16 conversion: the choice reads the model's float32 output
                fused = fused_ctc_file(model_file, config.space_bias)
            self.fused_decode = fused is not None
            session_file = fused[0] if fused else model_file
            pixel_file = pixel_model_file(session_file, REC_SCALE, REC_SHIFT, engine)
            self.pixels_in = pixel_file is not None
            """The session takes ``(N, height, W, C)`` uint16 pixels, normalised in its graph."""
            self._session = open_session(pixel_file or session_file, engine, convert=False)
            dictionary = self._model.dictionary
            if dictionary is None:
                metadata = self._session.metadata
                if "character" not in metadata:
                    raise ModelNotFoundError(
                        f"no dictionary found for recognition model {config.model!r}: "
                        "put inference.yml or a *dict*.txt beside it"
                    )
                dictionary = tuple(metadata["character"].splitlines())
            self.characters = ctc_characters(dictionary)
            if fused is not None and fused[1] != len(self.characters):
                raise ModelNotFoundError(
                    f"model has {fused[1]} classes but the dictionary gives {len(self.characters)}: "
                    "wrong dictionary for this recognition model"
                )
            self.warmup_timings = self.warm_up() if config.warmup else []
            """``(shape, seconds)`` of the start-up runs (``text_recognition.warmup``)."""
        self.setup_wait_s = lock.waited_s
        """Seconds this process waited for other processes' set-up on the same GPU."""

    @property
    def session(self) -> InferenceSession:
        """The engine session (``(N, 3, height, W)`` float32 in, or with :attr:`pixels_in` ``(N, height,
        W, C)`` uint16 pixels; with ``fused_decode`` the class index and score per step out)."""
        return self._session

    def batch_shapes(self, crop_sizes: Sequence[tuple[int, int]]) -> list[tuple[int, int, int, int]]:
        """The input shapes ``(N, 3, height, W)`` :meth:`recognize` sends to the session for
        crops of these ``(h, w)`` sizes, one per call, in call order (no pixels needed)."""
        cfg = self.config
        shapes = []
        for batch in self.batches(crop_sizes):
            widest = max(
                rec_resized_width(crop_sizes[i][0], crop_sizes[i][1], self.height, cfg.max_width, cfg.width_scale)
                for i in batch.indices
            )
            width = rec_batch_width(widest, cfg.min_width, cfg.width_multiple, cfg.width_buckets)
            rows = max(len(batch.indices), cfg.batch_size if cfg.pad_batch else 0)
            shapes.append((rows, 3, self.height, width))
        return shapes

    def batches(self, crop_sizes: Sequence[tuple[int, int]]) -> list[Batch]:
        """The batches :meth:`recognize` makes of crops of these ``(h, w)`` sizes: by aspect
        ratio, within ``max_width_spread``, or with ``batch_by_bucket`` within one width bucket."""
        cfg = self.config
        groups = None
        if cfg.batch_by_bucket:
            groups = [
                rec_batch_width(
                    rec_resized_width(h, w, self.height, cfg.max_width, cfg.width_scale),
                    cfg.min_width,
                    cfg.width_multiple,
                    cfg.width_buckets,
                )
                for h, w in crop_sizes
            ]
        return batches_by_aspect_ratio(crop_sizes, cfg.batch_size, cfg.max_width_spread, groups)

    def input_buffer(self) -> np.ndarray:
        """The calling thread's input buffer (:class:`ThreadBuffers`), large enough for the
        largest batch there can be: ``batch_size`` rows at the widest batch width."""
        cfg = self.config
        widest = rec_batch_width(
            max(cfg.max_width, cfg.min_width), cfg.min_width, cfg.width_multiple, cfg.width_buckets
        )
        return self._buffers.get(cfg.batch_size * 3 * self.height * widest, np.uint16 if self.pixels_in else np.float32)

    def prepare_batch(self, members: Sequence[np.ndarray]) -> np.ndarray:
        """The session's input for one batch of crops (:meth:`batches`), in the calling thread's
        buffer: :func:`prepare_rec_batch`, its pixels with :attr:`pixels_in`."""
        cfg = self.config
        return prepare_rec_batch(
            members,
            self.height,
            cfg.min_width,
            cfg.max_width,
            cfg.width_scale,
            cfg.width_multiple,
            cfg.width_buckets,
            cfg.batch_size if cfg.pad_batch else 0,
            buffer=self.input_buffer(),
            pixels=self.pixels_in,
        )

    def recognize(self, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        """Read BGR line crops; returns ``(text, score)`` in the order of ``crops``."""
        results: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        for batch in self.batches([c.shape[:2] for c in crops]):
            members = [crops[i] for i in batch.indices]
            decoded_batch = self._decode(self.prepare_batch(members))[: len(members)]
            for i, decoded in zip(batch.indices, decoded_batch, strict=True):
                results[i] = decoded
        return results

    def _decode(self, batch_input: np.ndarray) -> list[tuple[str, float]]:
        """A batch from :meth:`prepare_batch` -> ``(text, score)`` per row."""
        if self.fused_decode:
            indices, scores = self._session.run_all(batch_input)
            return ctc_collapse(indices[:, :, 0], scores[:, :, 0], self.characters)
        probs = self._session.run(batch_input)
        return ctc_greedy_decode(probs, self.characters, self.config.space_bias)

    def warmup_shapes(self) -> list[tuple[int, int, int, int]]:
        """The input shapes ``(N, 3, height, W)`` of the buckets a batch can land in, when the
        batch dimension is fixed (``pad_batch``); else ``[]``. Batches wider than the last
        bucket (when ``max_width`` exceeds it) are not covered."""
        cfg = self.config
        if not (cfg.width_buckets and cfg.pad_batch):
            return []
        narrowest = rec_batch_width(cfg.min_width, cfg.min_width, cfg.width_multiple, cfg.width_buckets)
        widest = rec_batch_width(cfg.max_width, cfg.min_width, cfg.width_multiple, cfg.width_buckets)
        return [(cfg.batch_size, 3, self.height, w) for w in cfg.width_buckets if narrowest <= w <= widest]

    def warm_up(self) -> list[tuple[tuple[int, int, int, int], float]]:
        """Run one blank batch of every shape in :meth:`warmup_shapes`; returns each shape
        with the seconds its first run took (GPU kernel set-up included)."""
        timings = []
        for shape in self.warmup_shapes():
            started = time.perf_counter()
            # pixel inputs: a colour and a grey batch, two input shapes (the same convolutions)
            for channels in (3, 1) if self.pixels_in else (3,):
                self._decode(blank_input(shape, self.pixels_in, channels))
            timings.append((shape, time.perf_counter() - started))
        return timings

    def warm_this_thread(self) -> tuple[list[tuple[tuple[int, int, int, int], float]], float]:
        """As :meth:`TextDetector.warm_this_thread`, for the recogniser's bucket shapes."""
        return warm_thread_once(self, self.config.warmup, self._session, self._engine, self._warm_threads)


class _WarmsUp(Protocol):
    def warm_up(self) -> list[tuple[tuple[int, int, int, int], float]]: ...


def warm_thread_once(
    runner: _WarmsUp, enabled: bool, session: InferenceSession, engine: EngineConfig, warm_threads: set[int]
) -> tuple[list[tuple[tuple[int, int, int, int], float]], float]:
    """``runner.warm_up()`` on the calling thread unless it is in ``warm_threads`` (then
    added), ``enabled`` is false or ``session`` runs every call on the process's one model
    thread (:func:`~ocr_actors.runtime.engines.runs_on_one_thread`: warm since start-up);
    under the GPU's set-up lock. Returns ``(timings, waited s)``."""
    thread = threading.get_ident()
    if not enabled or runs_on_one_thread(session) or thread in warm_threads:
        return [], 0.0
    with GpuSetupLock(engine.device, engine.gpu_setup_turns) as lock:
        timings = runner.warm_up()
    warm_threads.add(thread)
    return timings, lock.waited_s


class TextlineClassifier:
    """0/180 text-line classifier; turns crops it is confident are upside down."""

    def __init__(self, model: str, engine: EngineConfig, batch_size: int = 16, thresh: float = 0.9) -> None:
        self.model_name = model
        self._model, self._session = open_model(model, engine)
        self.angles = tuple(label_angle(label) for label in self._model.labels or ("0", "180"))
        self.batch_size = batch_size
        self.thresh = thresh

    def prepare(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """The model's input for these crops: PP-OCR's keep-aspect 192 x 48, or a PP-LCNet
        model's stretched size (:attr:`ResolvedModel.stretch_size`)."""
        if self._model.stretch_size is not None:
            return prepare_stretched_cls_batch(crops, *self._model.stretch_size)
        return prepare_textline_cls_batch(crops)

    def classify(self, crops: Sequence[np.ndarray]) -> list[tuple[int, float]]:
        """Returns ``(angle, score)`` per crop, angle 0 or 180."""
        out: list[tuple[int, float]] = []
        for start in range(0, len(crops), self.batch_size):
            probs = self._session.run(self.prepare(crops[start : start + self.batch_size]))
            for row in probs:
                label = int(row.argmax())
                out.append((self.angles[label], float(row[label])))
        return out


def label_angle(label: str) -> int:
    """Degrees a classifier's label names: ``"180"`` and PaddleX's ``"180_degree"`` both 180."""
    digits = re.match(r"\d+", label.strip())
    if digits is None:
        raise ValueError(f"classifier label {label!r} names no angle (expected e.g. '180' or '180_degree')")
    return int(digits.group())


class DocOrientationClassifier:
    """4-class page orientation: 0/90/180/270 is the clockwise turn the page content shows.

    As in the reference, turning the page counter-clockwise by that angle makes it upright.
    """

    def __init__(self, model: str, engine: EngineConfig) -> None:
        self.model_name = model
        self._model, self._session = open_model(model, engine)
        labels = self._model.labels
        if not labels:
            labels = tuple(self._session.metadata.get("character", "0\n90\n180\n270").splitlines())
        self.labels = labels
        self.angles = tuple(label_angle(label) for label in labels)

    def classify(self, image: np.ndarray) -> tuple[int, float]:
        """Clockwise turn (degrees) of the page content, and the class probability."""
        probs = self._session.run(prepare_doc_orientation_input(image))[0]
        label = int(probs.argmax())
        return self.angles[label], float(probs[label])

    @staticmethod
    def upright(image: np.ndarray, angle: int) -> np.ndarray:
        """Turn the page counter-clockwise by ``angle`` so its content is upright."""
        return rotate_image(image, angle)


class DocUnwarper:
    """UVDoc: predicts a coarse sampling grid, applied to the full-resolution page."""

    input_size = (488, 712)  # (W, H) the model expects

    def __init__(self, model: str, engine: EngineConfig) -> None:
        self.model_name = model
        self._model, self._session = open_model(model, engine)

    def unwarp(self, image: np.ndarray) -> np.ndarray:
        """Return the unwarped BGR page, same size as ``image``."""
        h, w = image.shape[:2]
        small = cv2.resize(image, self.input_size, interpolation=cv2.INTER_LINEAR)
        batch = (small[:, :, ::-1].astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        grid = self._session.run(np.ascontiguousarray(batch))[0]  # (2, gh, gw) in [-1, 1]
        map_x, map_y = unwarp_maps(grid, w, h)
        return remap_windowed(image, map_x, map_y)
