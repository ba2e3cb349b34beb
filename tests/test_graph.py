"""The CTC choice fused into an ONNX graph decodes exactly like numpy on the full probabilities."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from ocr_actors.config import EngineConfig
from ocr_actors.postprocess import ctc_collapse, ctc_greedy_decode
from ocr_actors.runtime.engines import create_session
from ocr_actors.runtime.graph import ctc_class_count, fuse_ctc_argmax
from ocr_actors.runtime.models import fused_ctc_file

CHARS = ["blank", "a", "b", "c", " "]


def softmax_model(classes: int | str, opset: int = 11, dtype: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """A stand-in recogniser: ``(N, T, C)`` logits in, their softmax out (opset 11, like PP-OCR's)."""
    x = helper.make_tensor_value_info("x", dtype, ["N", "T", classes])
    y = helper.make_tensor_value_info("probs", dtype, ["N", "T", classes])
    graph = helper.make_graph([helper.make_node("Softmax", ["x"], ["probs"], axis=2)], "rec", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 6
    return model


def _logits(rng: np.random.Generator, n: int, t: int) -> np.ndarray:
    logits = rng.normal(0, 2, (n, t, len(CHARS))).astype(np.float32)
    logits[:, ::3, 0] += 4  # blanks between characters, as real CTC output has
    logits[0, 5, [1, 4]] = 9.0  # a tie between "a" and the space
    return logits


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("space_bias", [1.0, 3.0, 4.0])
def test_fused_choice_equals_numpy_decoding(tmp_path, engine, space_bias):
    model_file = tmp_path / "rec.onnx"
    onnx.save(softmax_model(len(CHARS)), model_file)
    fused_file = tmp_path / "fused.onnx"
    fused_model = fuse_ctc_argmax(onnx.load(model_file), space_bias)
    onnx.checker.check_model(fused_model, full_check=True)
    onnx.save(fused_model, fused_file)
    plain = create_session(model_file, engine, threads=1)
    fused = create_session(fused_file, engine, threads=1)

    logits = _logits(np.random.default_rng(3), 16, 40)
    probs = plain.run(logits)
    indices, scores = fused.run_all(logits)
    assert indices.shape == scores.shape == (16, 40, 1)
    assert indices.dtype == np.int64
    expected = ctc_greedy_decode(probs, CHARS, space_bias)
    got = ctc_collapse(indices[:, :, 0], scores[:, :, 0], CHARS)
    assert got == expected  # texts and scores, bit for bit
    assert any(" " in text for text, _ in got)
    if space_bias > 1:  # the bias changed some choices, and the fused graph followed it
        assert expected != ctc_greedy_decode(probs, CHARS, 1.0)


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (softmax_model("C"), "static C"),
        (softmax_model(len(CHARS), dtype=TensorProto.FLOAT16), "float32"),
        (softmax_model(len(CHARS), opset=10), "below 11"),
    ],
)
def test_models_that_cannot_be_fused_decode_on_the_host(tmp_path, monkeypatch, model, reason):
    monkeypatch.setenv("OCR_BATCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match=reason):
        fuse_ctc_argmax(model)
    model_file = tmp_path / "rec.onnx"
    onnx.save(model, model_file)
    assert fused_ctc_file(model_file, 4.0) is None


def test_class_count_needs_a_static_last_dimension():
    assert ctc_class_count(softmax_model("C")) is None
    assert ctc_class_count(softmax_model(len(CHARS))) == len(CHARS)


def test_fused_file_is_cached_by_content_and_bias(tmp_path, monkeypatch):
    monkeypatch.setenv("OCR_BATCH_CACHE", str(tmp_path / "cache"))
    model_file = tmp_path / "rec.onnx"
    onnx.save(softmax_model(len(CHARS)), model_file)
    first, classes = fused_ctc_file(model_file, 4.0)
    assert classes == len(CHARS)
    assert fused_ctc_file(model_file, 4.0) == (first, classes)
    other, _ = fused_ctc_file(model_file, 2.0)
    assert other != first
    assert [o.name for o in onnx.load(first).graph.output] == ["ctc_indices", "ctc_scores"]
    assert not list(first.parent.glob("*.tmp"))


def test_engine_config_reaches_the_fused_session(tmp_path, monkeypatch):
    """The recogniser on the shipped model opens the fused graph with the configured engine."""
    from ocr_actors.config import TextRecognitionConfig
    from ocr_actors.runtime.runners import TextRecognizer

    monkeypatch.setenv("OCR_BATCH_CACHE", str(tmp_path / "cache"))
    recognizer = TextRecognizer(TextRecognitionConfig(), EngineConfig(threads=1))
    assert recognizer.fused_decode
    assert list((tmp_path / "cache" / "fused").glob("*.onnx"))


def test_half_precision_copy_keeps_float32_edges_reads_alike_and_is_cached(tmp_path, monkeypatch):
    """``engine.precision: f16``: the arithmetic in float16, what callers feed and read float32."""
    from ocr_actors.runtime.models import half_precision_file

    monkeypatch.setenv("OCR_BATCH_CACHE", str(tmp_path / "cache"))
    model_file = tmp_path / "rec.onnx"
    onnx.save(softmax_model(len(CHARS)), model_file)
    half = half_precision_file(model_file)
    assert half_precision_file(model_file) == half and half.parent == tmp_path / "cache" / "f16"
    converted = onnx.load(half)
    assert converted.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert converted.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert [n.op_type for n in converted.graph.node].count("Cast") == 2  # in and out of float16
    softmax = next(n for n in converted.graph.node if n.op_type == "Softmax")
    assert softmax.input[0] != "x"  # it reads the cast, not the float32 input
    logits = _logits(np.random.default_rng(5), 4, 30)
    full = create_session(model_file, "onnxruntime", threads=1).run(logits)
    reduced = create_session(half, "onnxruntime", threads=1).run(logits)
    assert reduced.dtype == np.float32
    # float16 keeps about 3 decimals (ONNX Runtime on CPU runs ops it has no float16 kernel
    # for in float32 between casts, so here only the weights' rounding shows)
    np.testing.assert_allclose(reduced, full, atol=2e-3)
    assert not list(half.parent.glob("*.tmp"))


def test_half_precision_refuses_what_it_cannot_convert(tmp_path, monkeypatch):
    from ocr_actors.runtime.models import ModelNotFoundError, half_precision_file

    monkeypatch.setenv("OCR_BATCH_CACHE", str(tmp_path / "cache"))
    garbage = tmp_path / "det.onnx"
    garbage.write_bytes(b"\x00\x01 this is not a protobuf \xff" * 10)
    with pytest.raises(ModelNotFoundError, match="not an ONNX model"):
        half_precision_file(garbage)
