#!/usr/bin/env python
"""Speed, memory and accuracy of our OCR pipeline against RapidOCR, on generated pages.

The same seeded pages (``ocr_actors.synth.render_page``: several fonts and sizes, tables,
numbers, currency, some Chinese, two-column, skewed, noisy and rotated pages) go through
each engine in turn, each in its own subprocess, never two at a time:

* ``ours``: ``create_pipeline("OCR")`` with the default configuration and
  ``engine.threads = T``, plus any ``--ours NAME:key=value,...`` variants;
* ``rapidocr-ort`` / ``rapidocr-openvino``: ``rapidocr`` 3.x with its shipped PP-OCRv6
  small models on ONNX Runtime / OpenVINO, text-line classifier off;
* ``rapidocr_onnxruntime``: ``rapidocr_onnxruntime`` 1.4.4 (PP-OCRv4 mobile), text-line
  classifier off.

Each engine is loaded and warmed on the first page, then the whole page loop is timed
(wall clock). Peak RSS is the worker's own high-water mark (``VmHWM``). Accuracy is scored against the
rendered ground truth: detection Hmean at IoU 0.5 (polygon IoU, greedy one-to-one
matching), CER and WER of the page text (lines in the engine's reading order vs the
truth's), and an order-independent line CER (lines paired by IoU >= 0.1 first, unpaired
lines counting in full). The truth quads are tight to the ink while PP-OCR pads its boxes,
so short words (1-3 characters) often fall under IoU 0.5: compare det Hmean across
engines, not against 1.0.

Usage::

    . .venv/bin/activate
    python scripts/bench_engine.py                          # 12 pages, 2 threads
    python scripts/bench_engine.py --pages 3 --json /tmp/bench.json
    python scripts/bench_engine.py --ours tiny:text_recognition.model=PP-OCRv6_tiny_rec \
        --ours tiny2:text_detection.model=PP-OCRv6_tiny_det,text_recognition.model=PP-OCRv6_tiny_rec
    python scripts/bench_engine.py --ours ov:engine.engine=openvino --engines ours,ours/ov,rapidocr-openvino
    python scripts/bench_engine.py --orientation            # ours classifies rotated pages' orientation

Needs ``rapidocr==3.10.0`` with ``omegaconf``, ``colorlog``, ``tqdm``, ``six``,
``requests`` (the ``bench`` extra), ``rapidocr-onnxruntime==1.4.4``, ``openvino`` and
``shapely`` (optional: axis-aligned box IoU without it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np

IOU_THRESHOLD = 0.5
"""A detected line counts as found when its IoU with an unmatched truth line reaches this."""

LINE_MATCH_IOU = 0.1
"""Looser IoU for pairing lines in the order-independent CER: it compares texts, and the
truth quads are tight to the ink while PP-OCR boxes are padded (short words rarely reach 0.5)."""

RAPIDOCR_KINDS = ("rapidocr", "rapidocr_onnxruntime")
"""Engine kinds that can serve as the reference row (the fastest of them does)."""

BUSY_WARNING_CORES = 0.15
"""Warn when other processes used more than this many cores, on average, during an engine's run."""

THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


# ============================================================================ page set


@dataclass(frozen=True)
class PageSpec:
    """One generated page: its seed, descriptive tags and ``render_page`` arguments."""

    index: int
    seed: int
    tags: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def rotation(self) -> int:
        return int(self.kwargs.get("rotation", 0))


_ALL_KINDS = ("prose", "number", "currency", "chinese")

PAGE_VARIANTS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (("clean",), {}),
    (
        ("table", "numbers", "currency"),
        {"kinds": ("prose", "number", "currency"), "font_size": 24, "lines_per_column": 14, "table_rows": 8},
    ),
    (("two-column", "numbers"), {"columns": 2, "title": "Annual Report 2025", "kinds": ("prose", "number")}),
    (("chinese", "numbers", "currency"), {"kinds": _ALL_KINDS, "font_size": 30}),
    (("skew",), {"skew_degrees": 2.0, "kinds": ("prose", "number")}),
    (("noise", "currency"), {"noise": 8.0, "kinds": ("prose", "currency")}),
    (("rotated", "rot90"), {"rotation": 90}),
    (
        ("skew", "table", "currency"),
        {"skew_degrees": -2.0, "kinds": ("prose", "currency"), "lines_per_column": 16, "table_rows": 6},
    ),
    (("two-column", "noise", "chinese"), {"columns": 2, "noise": 8.0, "kinds": _ALL_KINDS}),
    (("rotated", "rot180"), {"rotation": 180, "kinds": ("prose", "number")}),
    (("small-font",), {"font_size": 20, "lines_per_column": 36}),
    (("rotated", "rot270"), {"rotation": 270, "kinds": ("prose", "currency")}),
)
"""The page mix, cycled; page ``i`` uses variant ``i % len(PAGE_VARIANTS)`` and seed ``seed + i``."""


def page_specs(count: int, seed: int = 0) -> list[PageSpec]:
    """The first ``count`` pages of the deterministic mix."""
    specs = []
    for i in range(count):
        tags, kwargs = PAGE_VARIANTS[i % len(PAGE_VARIANTS)]
        specs.append(PageSpec(i, seed + i, tags, dict(kwargs)))
    return specs


@dataclass(frozen=True)
class TruthPage:
    """Ground truth of one page: line texts and quads ``(4, 2)`` in reading order."""

    texts: list[str]
    quads: list[np.ndarray]


def render_pages(specs: Sequence[PageSpec]) -> tuple[list[np.ndarray], list[TruthPage]]:
    """Render the pages (BGR uint8) and their ground truth."""
    from ocr_actors.synth import render_page

    images, truths = [], []
    for spec in specs:
        page = render_page(seed=spec.seed, **spec.kwargs)
        images.append(page.image)
        truths.append(TruthPage([t.text for t in page.lines], [np.asarray(t.quad, np.float64) for t in page.lines]))
    return images, truths


# ============================================================================ metrics


def levenshtein(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Edit distance (insert, delete, substitute; cost 1 each) between two sequences.

    One numpy pass per symbol of the shorter sequence: the within-row insertion chain
    ``D[i][j] = min_k (T[k] + j - k)`` is a running minimum of ``T - arange``.
    """
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    if not short:
        return len(long)
    vocab: dict[Hashable, int] = {}
    long_ids = np.fromiter((vocab.setdefault(x, len(vocab)) for x in long), dtype=np.int64, count=len(long))
    short_ids = [vocab.get(x, -1) for x in short]
    offsets = np.arange(len(long) + 1, dtype=np.int64)
    prev: np.ndarray = offsets.copy()
    cur = np.empty_like(prev)
    for i, symbol in enumerate(short_ids, start=1):
        cur[0] = i
        np.minimum(prev[1:] + 1, prev[:-1] + (long_ids != symbol), out=cur[1:])
        prev = np.minimum.accumulate(cur - offsets) + offsets
    return int(prev[-1])


def normalise_text(lines: Iterable[str]) -> str:
    """Lines joined into one string with every whitespace run collapsed to one space."""
    return " ".join(" ".join(lines).split())


def char_errors(prediction: str, truth: str) -> tuple[int, int]:
    """``(edit distance in characters, truth length)``; CER is their ratio."""
    return levenshtein(prediction, truth), len(truth)


def word_errors(prediction: str, truth: str) -> tuple[int, int]:
    """``(edit distance in whitespace-separated words, truth word count)``; WER is their ratio."""
    truth_words = truth.split()
    return levenshtein(prediction.split(), truth_words), len(truth_words)


def _box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of the axis-aligned bounding boxes of quads ``a (N, 4, 2)`` and ``b (M, 4, 2)``."""
    a_min, a_max = a.min(axis=1), a.max(axis=1)
    b_min, b_max = b.min(axis=1), b.max(axis=1)
    low = np.maximum(a_min[:, None], b_min[None])
    high = np.minimum(a_max[:, None], b_max[None])
    inter = np.prod(np.clip(high - low, 0, None), axis=2)
    area_a = np.prod(a_max - a_min, axis=1)
    area_b = np.prod(b_max - b_min, axis=1)
    union = area_a[:, None] + area_b[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def iou_matrix(pred_quads: Sequence[np.ndarray], truth_quads: Sequence[np.ndarray]) -> np.ndarray:
    """``(N, M)`` IoU of predicted vs truth quads: polygon IoU with shapely, else box IoU."""
    if not len(pred_quads) or not len(truth_quads):
        return np.zeros((len(pred_quads), len(truth_quads)))
    a = np.asarray(pred_quads, dtype=np.float64).reshape(-1, 4, 2)
    b = np.asarray(truth_quads, dtype=np.float64).reshape(-1, 4, 2)
    try:
        import shapely
    except ImportError:
        return _box_iou_matrix(a, b)
    pa = shapely.make_valid(shapely.polygons(a))
    pb = shapely.make_valid(shapely.polygons(b))
    inter = shapely.area(shapely.intersection(pa[:, None], pb[None, :]))
    union = shapely.area(pa)[:, None] + shapely.area(pb)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def greedy_match(iou: np.ndarray, threshold: float = IOU_THRESHOLD) -> list[tuple[int, int]]:
    """One-to-one ``(pred, truth)`` pairs, highest IoU first, each at least ``threshold``."""
    candidates = np.argwhere(iou >= threshold)
    order = np.argsort(-iou[candidates[:, 0], candidates[:, 1]], kind="stable")
    used_pred: set[int] = set()
    used_truth: set[int] = set()
    pairs = []
    for p, t in candidates[order].tolist():
        if p not in used_pred and t not in used_truth:
            used_pred.add(p)
            used_truth.add(t)
            pairs.append((p, t))
    return pairs


def hmean(tp: int, n_pred: int, n_truth: int) -> tuple[float, float, float]:
    """``(precision, recall, F1)`` from matched, predicted and truth counts."""
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_truth if n_truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


@dataclass
class Counts:
    """Summable error counts; ratios are computed over the sum (micro-average)."""

    tp: int = 0
    n_pred: int = 0
    n_truth: int = 0
    char_err: int = 0
    chars: int = 0
    word_err: int = 0
    words: int = 0
    line_char_err: int = 0
    line_chars: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(**{k: v + getattr(other, k) for k, v in asdict(self).items()})

    def summary(self) -> dict[str, float]:
        precision, recall, f1 = hmean(self.tp, self.n_pred, self.n_truth)
        return {
            "det_precision": precision,
            "det_recall": recall,
            "det_hmean": f1,
            "cer": self.char_err / self.chars if self.chars else 0.0,
            "wer": self.word_err / self.words if self.words else 0.0,
            "line_cer": self.line_char_err / self.line_chars if self.line_chars else 0.0,
        }


@dataclass(frozen=True)
class Line:
    """One recognised line: quad ``(4, 2)`` in page pixels, text and score."""

    quad: np.ndarray
    text: str
    score: float


def score_page(lines: Sequence[Line], truth: TruthPage, iou_threshold: float = IOU_THRESHOLD) -> Counts:
    """Detection, page-text and line-text error counts of one page."""
    iou = iou_matrix([ln.quad for ln in lines], truth.quads)
    detected = greedy_match(iou, iou_threshold)
    page_pred = normalise_text(ln.text for ln in lines)
    page_truth = normalise_text(truth.texts)
    char_err, chars = char_errors(page_pred, page_truth)
    word_err, words = word_errors(page_pred, page_truth)
    # Order-independent: paired lines compare their texts, unpaired ones count in full.
    pred_texts = [normalise_text([ln.text]) for ln in lines]
    truth_texts = [normalise_text([text]) for text in truth.texts]
    pairs = greedy_match(iou, LINE_MATCH_IOU)
    line_err = sum(levenshtein(pred_texts[p], truth_texts[t]) for p, t in pairs)
    paired_pred, paired_truth = {p for p, _ in pairs}, {t for _, t in pairs}
    line_err += sum(len(text) for p, text in enumerate(pred_texts) if p not in paired_pred)
    line_err += sum(len(text) for t, text in enumerate(truth_texts) if t not in paired_truth)
    line_chars = sum(len(text) for text in truth_texts)
    return Counts(len(detected), len(lines), len(truth.texts), char_err, chars, word_err, words, line_err, line_chars)


# ============================================================================ engines (worker side)


@dataclass(frozen=True)
class EngineSpec:
    """What a worker runs.

    Attributes:
        name: the row label (also what ``--engines`` selects).
        kind: "ours", "rapidocr" or "rapidocr_onnxruntime".
        options: ours: dotted config overrides; rapidocr: ``{"engine": "onnxruntime" | "openvino"}``.
    """

    name: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)


class Engine(Protocol):
    """A loaded OCR engine as the worker drives it."""

    info: dict[str, Any]

    def ocr(self, pages: Sequence[np.ndarray], orientation: Sequence[bool]) -> list[list[Line]]:
        """OCR the pages in order; ``orientation[i]`` asks for page orientation classification."""
        ...


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _enum_value(value: Any) -> Any:
    return getattr(value, "value", value)


class OursEngine:
    """``ocr_actors.create_pipeline("OCR")``; all pages go to ``predict`` together, so its
    page batching (``page_batch_size``) applies as in production use."""

    def __init__(self, overrides: dict[str, Any], threads: int) -> None:
        import ocr_actors
        from ocr_actors.config import OCRConfig, load_config, to_dict

        config = load_config(OCRConfig, None, {"engine.threads": threads, **overrides})
        self.pipeline = ocr_actors.create_pipeline("OCR", config=config)
        cfg = to_dict(config)
        self.info = {
            "package": f"ocr-batch {_version('ocr-batch')}",
            "overrides": overrides,
            "engine": cfg["engine"],
            "det_model": cfg["text_detection"]["model"],
            "rec_model": cfg["text_recognition"]["model"],
            "page_batch_size": cfg["page_batch_size"],
            "rec_batch_size": cfg["text_recognition"]["batch_size"],
            "textline_orientation": cfg["textline_orientation"]["use_textline_orientation"],
            "onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu"),
            "openvino": _version("openvino"),
            # What the detector's session really runs on (ONNX Runtime falls back to CPU silently).
            "providers": getattr(getattr(self.pipeline.engine.detector, "_session", None), "providers", None),
        }

    def input_shapes(self) -> dict[str, dict[str, float]]:
        """Distinct input shapes each model's session has run, and the seconds their first
        runs took together (on a GPU mostly one-off kernel set-up); ONNX Runtime only."""
        report = {}
        for name, runner in (("det", self.pipeline.engine.detector), ("rec", self.pipeline.engine.recognizer)):
            first_runs = getattr(getattr(runner, "_session", None), "first_runs", None)
            if first_runs is not None:
                report[name] = {"shapes": len(first_runs), "first_run_s": round(sum(first_runs.values()), 2)}
        return report

    def ocr(self, pages: Sequence[np.ndarray], orientation: Sequence[bool]) -> list[list[Line]]:
        results: list[list[Line]] = []
        start = 0
        while start < len(pages):  # consecutive pages with the same switch go in one call
            end = start + 1
            while end < len(pages) and orientation[end] == orientation[start]:
                end += 1
            for res in self.pipeline.predict(list(pages[start:end]), use_doc_orientation_classify=orientation[start]):
                results.append(
                    [
                        Line(np.asarray(q, np.float64), str(t), float(s))
                        for q, t, s in zip(res["rec_polys"], res["rec_texts"], res["rec_scores"], strict=True)
                    ]
                )
            start = end
        return results


class RapidOCR3Engine:
    """``rapidocr`` 3.x with its shipped default models (PP-OCRv6 small), classifier off."""

    def __init__(self, engine: str, threads: int, device: str = "cpu") -> None:
        from rapidocr import EngineType, RapidOCR

        engine_type = {"onnxruntime": EngineType.ONNXRUNTIME, "openvino": EngineType.OPENVINO}[engine]
        params = {
            "Global.use_cls": False,
            "Global.log_level": "warning",
            "Det.engine_type": engine_type,
            "Cls.engine_type": engine_type,
            "Rec.engine_type": engine_type,
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.openvino.inference_num_threads": threads,
        }
        if device.startswith("gpu"):
            import onnxruntime

            if hasattr(onnxruntime, "preload_dlls"):  # the same CUDA libraries our engine loads
                onnxruntime.preload_dlls()
            params["EngineConfig.onnxruntime.use_cuda"] = True
            params["EngineConfig.onnxruntime.cuda_ep_cfg.device_id"] = int(device.partition(":")[2] or 0)
        self.ocr_engine = RapidOCR(params=params)
        self.engine = engine
        cfg = self.ocr_engine.cfg
        self.info = {
            "package": f"rapidocr {_version('rapidocr')}",
            "engine": engine,
            "engine_version": _version(engine),
            "det_model": f"{cfg.Det.ocr_version.value} {cfg.Det.model_type.value} ({_enum_value(cfg.Det.lang_type)})",
            "rec_model": f"{cfg.Rec.ocr_version.value} {cfg.Rec.model_type.value} ({_enum_value(cfg.Rec.lang_type)})",
            "use_cls": bool(cfg.Global.use_cls),
            "text_score": float(cfg.Global.text_score),
            "det_limit": f"{cfg.Det.limit_side_len}/{cfg.Det.limit_type}",
            "threads": threads,
            "device": device,
        }

    def _providers(self) -> list[str] | None:
        """The ONNX Runtime providers RapidOCR's detector session runs on (internals: informational)."""
        try:
            return list(self.ocr_engine.text_det.session.session.get_providers())
        except Exception:
            return None

    def after_warmup(self) -> None:
        """Record what the models run on: ONNX Runtime's providers (it falls back to CPU
        silently), OpenVINO's compiled precision (it may pick bf16 by itself)."""
        if self.engine != "openvino":
            self.info["providers"] = self._providers()
            return
        runners: dict[str, Any] = {"det": self.ocr_engine.text_det, "rec": self.ocr_engine.text_rec}
        for key, runner in runners.items():
            try:  # rapidocr internals: informational only, so never fatal
                compiled = runner.session.session.get_compiled_model()
                precision = compiled.get_property("INFERENCE_PRECISION_HINT")
                self.info[f"{key}_precision"] = precision.to_string() if hasattr(precision, "to_string") else precision
                self.info[f"{key}_threads"] = int(compiled.get_property("INFERENCE_NUM_THREADS"))
            except Exception as exc:
                self.info[f"{key}_precision"] = f"unknown ({type(exc).__name__})"

    def ocr(self, pages: Sequence[np.ndarray], orientation: Sequence[bool]) -> list[list[Line]]:
        results: list[list[Line]] = []
        for page in pages:
            out = self.ocr_engine(page)
            boxes, txts, scores = getattr(out, "boxes", None), getattr(out, "txts", None), getattr(out, "scores", None)
            if boxes is None or txts is None or scores is None:
                results.append([])
                continue
            results.append(
                [Line(np.asarray(b, np.float64), str(t), float(s)) for b, t, s in zip(boxes, txts, scores, strict=True)]
            )
        return results


class RapidOCRv1Engine:
    """``rapidocr_onnxruntime`` 1.4.x (PP-OCRv4 mobile), classifier off at call time."""

    def __init__(self, threads: int) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self.ocr_engine = RapidOCR(intra_op_num_threads=threads)
        self.info = {
            "package": f"rapidocr-onnxruntime {_version('rapidocr-onnxruntime')}",
            "engine": "onnxruntime",
            "engine_version": _version("onnxruntime"),
            "det_model": "ch_PP-OCRv4_det_infer",
            "rec_model": "ch_PP-OCRv4_rec_infer",
            "use_cls": False,
            "text_score": float(self.ocr_engine.text_score),
            "threads": threads,
        }

    def ocr(self, pages: Sequence[np.ndarray], orientation: Sequence[bool]) -> list[list[Line]]:
        results = []
        for page in pages:
            out, _elapse = self.ocr_engine(page, use_cls=False)
            results.append([Line(np.asarray(b, np.float64), str(t), float(s)) for b, t, s in (out or [])])
        return results


def build_engine(spec: EngineSpec, threads: int) -> Engine:
    if spec.kind == "ours":
        return OursEngine(spec.options, threads)
    if spec.kind == "rapidocr":
        return RapidOCR3Engine(spec.options["engine"], threads, spec.options.get("device", "cpu"))
    if spec.kind == "rapidocr_onnxruntime":
        return RapidOCRv1Engine(threads)
    raise ValueError(f"unknown engine kind {spec.kind!r}")


def max_rss_mb() -> float:
    """This process's peak resident set size in MiB.

    Linux: ``VmHWM``, which starts afresh at ``exec``; ``ru_maxrss`` would carry over the
    peak of the parent that forked this worker.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def run_worker_process(script: str, *args: str) -> dict[str, Any]:
    """Run ``python script --worker *args`` in a fresh process (so its peak RSS is its own)
    and return the JSON object it prints last."""
    proc = subprocess.run([sys.executable, script, "--worker", *args], capture_output=True, text=True, check=True)
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


PROGRESS = "bench-progress"
"""Head of the worker's progress lines on stderr (:func:`progress`, :func:`describe_progress`)."""


def progress(event: str) -> None:
    """One progress line on stderr: ``loaded <s>``, ``warmed <pages> <s>``, ``pass <n> <pages> <s>``."""
    print(f"{PROGRESS} {event}", file=sys.stderr, flush=True)


def describe_progress(stderr: str | bytes | None) -> str:
    """What a worker that ran out of time had done, from its progress lines (``""`` if none)."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr or ""
    events = [line.split()[1:] for line in text.splitlines() if line.startswith(PROGRESS + " ")]
    said = []
    for event in events:
        if event[0] == "loaded":
            said.append(f"models loaded in {float(event[1]):.1f} s")
        elif event[0] == "warmed":
            said.append(f"warm-up over {event[1]} pages took {float(event[2]):.1f} s")
    passes = [e for e in events if e[0] == "pass"]
    if passes:
        _, count, pages, seconds = passes[-1]
        rate = int(pages) / max(float(seconds), 1e-9)
        said.append(f"{count} timed passes: {pages} pages in {float(seconds):.1f} s, {rate:.2f} pages/s")
    elif any(e[0] == "warmed" for e in events):
        said.append("no timed pass finished")
    elif any(e[0] == "loaded" for e in events):
        said.append("the warm-up pass did not finish")
    return "; ".join(said)


def run_worker(request: dict[str, Any]) -> dict[str, Any]:
    """Load one engine, warm it on the first page, time the page loop."""
    import cv2

    threads = int(request["threads"])
    cv2.setNumThreads(threads)
    with np.load(request["pages_file"]) as archive:
        pages = [archive[f"page_{i}"] for i in range(int(request["count"]))]
    orientation = [bool(x) for x in request["orientation"]]
    base_rss = max_rss_mb()
    spec = EngineSpec(**request["spec"])

    t0 = time.perf_counter()
    engine = build_engine(spec, threads)
    load_s = time.perf_counter() - t0
    progress(f"loaded {load_s:.2f}")
    t0 = time.perf_counter()
    warm = max(1, min(len(pages), int(request.get("warmup_pages", 1))))
    # the first page loads lazy models (the orientation one too, if used); more pages (GPU runs)
    # also take every input shape of the timed loop through its one-off kernel set-up
    engine.ocr(pages[:warm], [any(orientation), *orientation[1:warm]])
    warmup_s = time.perf_counter() - t0
    progress(f"warmed {warm} {warmup_s:.2f}")
    if isinstance(engine, RapidOCR3Engine):
        engine.after_warmup()

    repeat = int(request.get("repeat", 1))  # more timed work on the same pages; the first pass is scored
    loop_started_at, t0 = time.time(), time.perf_counter()
    predictions: list[list[Line]] = []
    for done in range(1, repeat + 1):
        passed = engine.ocr(pages, orientation)
        if done == 1:
            predictions = passed
        progress(f"pass {done} {done * len(pages)} {time.perf_counter() - t0:.3f}")
    total_s = time.perf_counter() - t0
    if isinstance(engine, OursEngine):
        engine.info["input_shapes"] = engine.input_shapes()
    return {
        "repeat": repeat,
        "loop_started_at": loop_started_at,
        "loop_ended_at": time.time(),
        "info": engine.info,
        "load_s": load_s,
        "warmup_s": warmup_s,
        "total_s": total_s,
        "base_rss_mb": base_rss,
        "peak_rss_mb": max_rss_mb(),
        "predictions": [
            [{"quad": ln.quad.tolist(), "text": ln.text, "score": ln.score} for ln in page] for page in predictions
        ],
    }


def worker_main(request_json: str) -> int:
    """Worker entry: anything the libraries print goes to stderr; the JSON result to stdout."""
    sys.stdout.flush()
    result_fd = os.dup(1)
    os.dup2(2, 1)
    result = run_worker(json.loads(request_json))
    sys.stdout.flush()
    with os.fdopen(result_fd, "w", encoding="utf-8") as out:
        json.dump(result, out)
    return 0


# ============================================================================ orchestration (parent side)


@dataclass
class EngineResult:
    """One engine's run as the parent sees it."""

    spec: EngineSpec
    ok: bool
    error: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    load_s: float = 0.0
    warmup_s: float = 0.0
    total_s: float = 0.0
    base_rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    foreign_cpu: float | None = None
    pages_per_s: float = 0.0
    ms_per_page: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    by_tag: dict[str, dict[str, float]] = field(default_factory=dict)
    per_page: list[dict[str, Any]] = field(default_factory=list)


def split_top_level(text: str, separator: str = ",") -> list[str]:
    """Split at ``separator`` outside brackets: ``a=1,b=[1, 2]`` → ``["a=1", "b=[1, 2]"]``."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(char, 0)
        if char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def parse_ours(text: str) -> EngineSpec:
    """``NAME:key=value,key=value`` → an ``ours/NAME`` spec (values read as YAML; a list
    value keeps its commas: ``text_recognition.width_buckets=[320,640]``)."""
    from ocr_actors.config import ConfigError, OCRConfig, load_config, parse_override

    name, sep, body = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"--ours {text!r}: expected NAME:key=value[,key=value...]")
    try:
        overrides = dict(parse_override(item) for item in split_top_level(body) if item.strip())
        load_config(OCRConfig, None, overrides)  # fail now, not in the worker
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"--ours {text!r}: {exc}") from exc
    return EngineSpec(f"ours/{name.strip()}", "ours", overrides)


def default_specs(extra_ours: Sequence[EngineSpec]) -> list[EngineSpec]:
    return [
        EngineSpec("ours", "ours", {}),
        *extra_ours,
        EngineSpec("rapidocr-ort", "rapidocr", {"engine": "onnxruntime"}),
        EngineSpec("rapidocr-openvino", "rapidocr", {"engine": "openvino"}),
        EngineSpec("rapidocr_onnxruntime", "rapidocr_onnxruntime", {}),
    ]


def worker_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in THREAD_ENV_VARS:
        env[var] = str(threads)
    return env


def machine_busy_seconds() -> float | None:
    """CPU time all processes of the machine have used so far (Linux ``/proc/stat``), or None."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            values = [int(v) for v in fh.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    except (OSError, ValueError):
        return None
    return (sum(values) - values[3] - values[4] - values[7]) / os.sysconf("SC_CLK_TCK")  # not idle, iowait, steal


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_engine(
    spec: EngineSpec,
    pages_file: Path,
    count: int,
    threads: int,
    orientation: Sequence[bool],
    verbose: bool,
    repeat: int = 1,
    timeout: float | None = None,
    warmup_pages: int = 1,
) -> tuple[dict[str, Any] | None, str]:
    """Run one engine in a fresh interpreter; returns ``(result, error text)``.

    The result gets ``foreign_cpu``: the CPU other processes used while the worker ran, in
    cores (busy machine time minus the worker's own, over wall time); None off Linux.
    """
    request = {
        "spec": asdict(spec),
        "pages_file": str(pages_file),
        "count": count,
        "threads": threads,
        "orientation": list(orientation),
        "repeat": repeat,
        "warmup_pages": warmup_pages,
    }
    busy0, own0, t0 = machine_busy_seconds(), children_cpu_seconds(), time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(request)],
            env=worker_env(threads),
            stdout=subprocess.PIPE,
            stderr=None if verbose else subprocess.PIPE,
            text=True,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        done = describe_progress(exc.stderr)
        return None, f"timed out after {timeout:g} s" + (f" ({done})" if done else "")
    busy1, own1, wall = machine_busy_seconds(), children_cpu_seconds(), time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or "").strip().splitlines()[-15:])
        return None, f"worker exited with {proc.returncode}\n{tail}"
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        return None, f"worker output is not JSON ({exc}): {proc.stdout[-500:]!r}"
    foreign = None
    if busy0 is not None and busy1 is not None and wall > 0:
        foreign = max(0.0, (busy1 - busy0) - (own1 - own0)) / wall
    result["foreign_cpu"] = foreign
    return result, ""


def evaluate(
    spec: EngineSpec,
    raw: dict[str, Any],
    specs: Sequence[PageSpec],
    truths: Sequence[TruthPage],
    iou_threshold: float = IOU_THRESHOLD,
) -> EngineResult:
    """Score a worker's predictions against the truth."""
    predictions = [
        [Line(np.asarray(ln["quad"], np.float64), ln["text"], ln["score"]) for ln in page]
        for page in raw["predictions"]
    ]
    page_counts = [score_page(pred, truth, iou_threshold) for pred, truth in zip(predictions, truths, strict=True)]
    total = sum(page_counts, Counts())
    by_tag: dict[str, Counts] = {}
    for page_spec, counts in zip(specs, page_counts, strict=True):
        for tag in ("upright" if page_spec.rotation == 0 else "rotated", *page_spec.tags):
            by_tag[tag] = by_tag.get(tag, Counts()) + counts
    n = len(specs) * int(raw.get("repeat", 1))
    return EngineResult(
        spec=spec,
        ok=True,
        info=raw["info"],
        load_s=raw["load_s"],
        warmup_s=raw["warmup_s"],
        total_s=raw["total_s"],
        base_rss_mb=raw["base_rss_mb"],
        peak_rss_mb=raw["peak_rss_mb"],
        foreign_cpu=raw.get("foreign_cpu"),
        pages_per_s=n / raw["total_s"] if raw["total_s"] > 0 else 0.0,
        ms_per_page=1000 * raw["total_s"] / n,
        metrics=total.summary(),
        by_tag={tag: c.summary() for tag, c in by_tag.items()},
        per_page=[
            {"index": s.index, "tags": list(s.tags), "lines": len(p), **c.summary(), **asdict(c)}
            for s, p, c in zip(specs, predictions, page_counts, strict=True)
        ],
    )


def reference_of(results: Sequence[EngineResult]) -> EngineResult | None:
    """The fastest successful RapidOCR configuration."""
    rapid = [r for r in results if r.ok and r.spec.kind in RAPIDOCR_KINDS]
    return max(rapid, key=lambda r: r.pages_per_s) if rapid else None


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain text table; the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def summary_table(results: Sequence[EngineResult], ref: EngineResult | None) -> str:
    headers = [
        "engine", "pages/s", "ms/page", "setup s", "peak RSS MB", "det Hmean", "CER %", "WER %", "line CER %",
        "speed ×ref", "ΔCER pp", "ΔWER pp",
    ]  # fmt: skip
    rows = []
    for r in results:
        if not r.ok:
            rows.append([r.spec.name, "FAILED", *[""] * (len(headers) - 2)])
            continue
        m = r.metrics
        row = [
            r.spec.name,
            f"{r.pages_per_s:.3f}",
            f"{r.ms_per_page:.0f}",
            f"{r.load_s + r.warmup_s:.1f}",
            f"{r.peak_rss_mb:.0f}",
            f"{m['det_hmean']:.3f}",
            f"{100 * m['cer']:.2f}",
            f"{100 * m['wer']:.2f}",
            f"{100 * m['line_cer']:.2f}",
        ]
        if ref is not None:
            row += [
                f"{r.pages_per_s / ref.pages_per_s:.2f}",
                f"{100 * (m['cer'] - ref.metrics['cer']):+.2f}",
                f"{100 * (m['wer'] - ref.metrics['wer']):+.2f}",
            ]
        else:
            row += ["-", "-", "-"]
        rows.append(row)
    return format_table(headers, rows)


def tag_table(results: Sequence[EngineResult], specs: Sequence[PageSpec]) -> str:
    """CER % per page tag (each page counts under all its tags)."""
    tags: list[str] = []
    for s in specs:
        for tag in ("upright" if s.rotation == 0 else "rotated", *s.tags):
            if tag not in tags:
                tags.append(tag)
    rows = [[r.spec.name, *(f"{100 * r.by_tag[t]['cer']:.2f}" for t in tags)] for r in results if r.ok]
    return format_table(["CER % by page tag", *tags], rows)


def describe(r: EngineResult) -> str:
    info = r.info
    keys = ("package", "engine", "det_model", "rec_model", "use_cls", "text_score", "det_precision", "rec_precision")
    parts = [f"{k}={info[k]}" for k in keys if k in info and info[k] is not None]
    if r.spec.kind == "ours":
        engine_cfg = info.get("engine", {})
        parts[1:2] = [
            f"engine={engine_cfg.get('engine')}/{engine_cfg.get('precision')}/threads={engine_cfg.get('threads')}"
        ]
        parts.append(f"page_batch_size={info.get('page_batch_size')}")
        if info.get("overrides"):
            parts.append(f"overrides={info['overrides']}")
    return f"  {r.spec.name}: " + ", ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=12, help="pages to generate (default 12)")
    parser.add_argument("--threads", type=int, default=2, help="inference threads per engine (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first page (default 0)")
    parser.add_argument(
        "--ours",
        action="append",
        type=parse_ours,
        default=[],
        metavar="NAME:KEY=VALUE[,KEY=VALUE]",
        help="an extra configuration of ours, e.g. tiny:text_recognition.model=PP-OCRv6_tiny_rec (repeatable)",
    )
    parser.add_argument(
        "--orientation",
        nargs="?",
        const="rotated",
        default="off",
        choices=("off", "rotated", "all"),
        help="ours: use_doc_orientation_classify on rotated pages only (the bare flag), or on all pages",
    )
    parser.add_argument(
        "--iou", type=float, default=IOU_THRESHOLD, help=f"IoU for a detection match (default {IOU_THRESHOLD})"
    )
    parser.add_argument("--engines", help="comma-separated engine names to run (default: all)")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--save-pages", type=Path, metavar="DIR", help="also write the pages (PNG) and truth here")
    parser.add_argument("--verbose", action="store_true", help="show the workers' stderr")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        return worker_main(args.worker)
    if args.pages < 1 or args.threads < 1:
        parser.error("--pages and --threads must be at least 1")
    if args.threads > (os.cpu_count() or 1):
        print(
            f"warning: {args.threads} threads > {os.cpu_count()} CPUs; RapidOCR ignores such a setting", file=sys.stderr
        )

    engines = default_specs(args.ours)
    if args.engines:
        wanted = [name.strip() for name in args.engines.split(",") if name.strip()]
        unknown = sorted(set(wanted) - {e.name for e in engines})
        if unknown:
            parser.error(f"unknown engine(s) {', '.join(unknown)}; known: {', '.join(e.name for e in engines)}")
        engines = [e for e in engines if e.name in wanted]

    specs = page_specs(args.pages, args.seed)
    t0 = time.perf_counter()
    images, truths = render_pages(specs)
    print(
        f"{len(specs)} pages rendered in {time.perf_counter() - t0:.1f} s "
        f"({sum(len(t.texts) for t in truths)} truth lines); {args.threads} threads; "
        f"ours' page orientation: {args.orientation}",
        file=sys.stderr,
    )
    if args.save_pages:
        save_pages(args.save_pages, specs, images, truths)
    ours_orientation = [args.orientation == "all" or (args.orientation == "rotated" and s.rotation != 0) for s in specs]

    results: list[EngineResult] = []
    with tempfile.TemporaryDirectory(prefix="bench_engine_") as tmp:
        pages_file = Path(tmp) / "pages.npz"
        arrays: dict[str, Any] = {f"page_{i}": image for i, image in enumerate(images)}
        np.savez(pages_file, **arrays)
        del images
        for i, spec in enumerate(engines, start=1):
            orientation = ours_orientation if spec.kind == "ours" else [False] * len(specs)
            print(f"[{i}/{len(engines)}] {spec.name} ...", end="", file=sys.stderr, flush=True)
            raw, error = run_engine(spec, pages_file, len(specs), args.threads, orientation, args.verbose)
            if raw is None:
                print(f" FAILED\n{error}", file=sys.stderr)
                results.append(EngineResult(spec, ok=False, error=error))
                continue
            result = evaluate(spec, raw, specs, truths, args.iou)
            busy = f", other processes used {result.foreign_cpu:.2f} cores" if result.foreign_cpu else ""
            print(f" {result.total_s:.1f} s, {result.pages_per_s:.3f} pages/s{busy}", file=sys.stderr)
            results.append(result)

    ref = reference_of(results)
    print()
    print(summary_table(results, ref))
    print()
    print(tag_table(results, specs))
    print()
    print("Notes:")
    print(f"  {len(specs)} pages, {args.threads} threads per engine, one engine at a time in its own process.")
    print(f"  Reference for the ratios: {ref.spec.name if ref else 'none (no RapidOCR run succeeded)'}.")
    print(
        "  RapidOCR runs with its text-line classifier off (use_cls=False; its default is on) and its own "
        "defaults otherwise (e.g. lines scoring under text_score are dropped)."
    )
    print(f"  Ours: page orientation classification {args.orientation}; RapidOCR has no page orientation step.")
    print("  setup s = load + warm-up on page 1; CER/WER compare the lines in the engine's order with the truth's.")
    print(
        f"  det Hmean at IoU {args.iou}: truth boxes are tight to the ink, PP-OCR boxes are padded, so short words "
        "can miss; compare it across engines. line CER pairs lines at IoU >= 0.1, whatever their order."
    )
    base = [r.base_rss_mb for r in results if r.ok]
    if base:
        print(
            f"  Peak RSS includes the interpreter and the {len(specs)} pages held in memory "
            f"({min(base):.0f}-{max(base):.0f} MB before the engine was imported)."
        )
    disturbed = [r for r in results if r.ok and (r.foreign_cpu or 0.0) > BUSY_WARNING_CORES]
    if disturbed:
        worst = max(disturbed, key=lambda r: r.foreign_cpu or 0.0)
        print(
            f"  WARNING: other processes used CPU during {len(disturbed)} engine run(s) (up to {worst.foreign_cpu:.2f} "
            f"cores, {worst.spec.name}): timings are not reliable; rerun on an idle machine."
        )
    for r in results:
        print(describe(r) if r.ok else f"  {r.spec.name}: FAILED: {r.error.strip().splitlines()[-1]}")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "settings": {
                "pages": args.pages,
                "threads": args.threads,
                "seed": args.seed,
                "orientation": args.orientation,
                "iou_threshold": args.iou,
                "python": platform.python_version(),
                "machine": platform.machine(),
                "processor": platform.processor(),
                "cpu_count": os.cpu_count(),
            },
            "reference": ref.spec.name if ref else None,
            "pages": [asdict(s) for s in specs],
            "engines": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
        print(f"\nresults written to {args.json}")
    return 0 if all(r.ok for r in results) else 1


def save_pages(
    folder: Path, specs: Sequence[PageSpec], images: Sequence[np.ndarray], truths: Sequence[TruthPage]
) -> None:
    """Write ``page_NN.png`` and ``truth.json`` (texts, quads, tags) for inspection."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for spec, image, truth in zip(specs, images, truths, strict=True):
        cv2.imwrite(str(folder / f"page_{spec.index:02d}.png"), image)
        records.append(
            {
                **asdict(spec),
                "lines": [{"text": t, "quad": q.tolist()} for t, q in zip(truth.texts, truth.quads, strict=True)],
            }
        )
    (folder / "truth.json").write_text(json.dumps(records, indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
