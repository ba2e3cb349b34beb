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


def identity_image_model(opset: int = 11) -> onnx.ModelProto:
    """A stand-in model that returns its ``(N, 3, H, W)`` float32 input as it got it."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", "W"])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "image", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 6
    return model


def test_pixel_batches_reach_the_model_as_the_hosts_float_batches(tmp_path, monkeypatch):
    """``engine.normalize_in_model``: the graph turns the pixel batches into the very float32
    values the host's normalisation makes (bit for bit, padding included), for the detector's
    and the recogniser's normalisations, grey, colour and mixed batches; the copy is cached."""
    import cv2

    from ocr_actors.preprocess import (
        DET_SCALE,
        DET_SHIFT,
        PIXEL_PAD,
        REC_SCALE,
        REC_SHIFT,
        prepare_det_batch,
        prepare_rec_batch,
    )
    from ocr_actors.runtime.models import pixel_input_file

    monkeypatch.setenv("OCR_BATCH_CACHE", str(tmp_path / "cache"))
    model_file = tmp_path / "image.onnx"
    onnx.save(identity_image_model(), model_file)
    det = create_session(pixel_input_file(model_file, DET_SCALE, DET_SHIFT), "onnxruntime", threads=1)
    rec = create_session(pixel_input_file(model_file, REC_SCALE, REC_SHIFT), "onnxruntime", threads=1)
    assert det.input_dtype == np.uint16 and pixel_input_file(model_file, DET_SCALE, DET_SHIFT).exists()
    assert len(list((tmp_path / "cache" / "pixels").glob("*.onnx"))) == 2  # one copy per normalisation
    rng = np.random.default_rng(3)
    colour = rng.integers(0, 256, (70, 50, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (64, 40, 1), dtype=np.uint8)
    for pages in ([grey, grey[:50]], [colour, grey], [colour]):
        pixels = prepare_det_batch(pages, (96, 64), 64, "max", pixels=True)
        assert pixels.dtype == np.uint16 and pixels.shape[3] == (1 if all(p.shape[2] == 1 for p in pages) else 3)
        assert (pixels[:, -1, -1] == PIXEL_PAD).all()  # the canvas past every page
        np.testing.assert_array_equal(det.run(pixels), prepare_det_batch(pages, (96, 64), 64, "max"))
    crops = [colour[:20], colour[:30, :10], cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)[:24, :, None]]
    for members in (crops, crops[2:]):
        args = (48, 32, 400, 1.0, 1, (64, 128, 256), 5)  # 5 rows: blank rows after the crops
        pixels = prepare_rec_batch(members, *args, pixels=True)
        assert pixels.shape[0] == 5 and (pixels[len(members) :] == PIXEL_PAD).all()
        np.testing.assert_array_equal(rec.run(pixels), prepare_rec_batch(members, *args))


def test_pixel_input_refuses_a_model_without_an_image_input(tmp_path, monkeypatch):
    from ocr_actors.preprocess import DET_SCALE, DET_SHIFT
    from ocr_actors.runtime.graph import fuse_pixel_input
    from ocr_actors.runtime.models import ModelNotFoundError, pixel_input_file

    monkeypatch.setenv("OCR_BATCH_CACHE", str(tmp_path / "cache"))
    model_file = tmp_path / "rec.onnx"
    onnx.save(softmax_model(len(CHARS)), model_file)
    with pytest.raises(ModelNotFoundError, match=r"normalisation into the model: input 'x' is not \(N, 3, H, W\)"):
        pixel_input_file(model_file, DET_SCALE, DET_SHIFT)
    with pytest.raises(ValueError, match="opset 8 is below 9"):
        fuse_pixel_input(identity_image_model(opset=8), DET_SCALE, DET_SHIFT)
    clash = identity_image_model()
    clash.graph.node[0].output[0] = clash.graph.output[0].name = "pixels_out"
    with pytest.raises(ValueError, match="already has a tensor named 'pixels'"):
        fuse_pixel_input(clash, DET_SCALE, DET_SHIFT)


def test_a_pixel_copy_that_cannot_be_made_falls_back_to_the_host_unless_asked_for(tmp_path, monkeypatch, caplog):
    """The GPU default (``normalize_in_model`` unset) never stops a model from opening: a
    read-only model cache means the host normalises, with a warning; asked for explicitly, the
    error stands."""
    from ocr_actors.preprocess import DET_SCALE, DET_SHIFT
    from ocr_actors.runtime.models import ModelNotFoundError
    from ocr_actors.runtime.runners import pixel_model_file

    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("OCR_BATCH_CACHE", str(tmp_path / "not-a-folder" / "cache"))
    model_file = tmp_path / "image.onnx"
    onnx.save(identity_image_model(), model_file)
    assert pixel_model_file(model_file, DET_SCALE, DET_SHIFT, EngineConfig()) is None  # CPU: not wanted
    with caplog.at_level("WARNING"):
        assert pixel_model_file(model_file, DET_SCALE, DET_SHIFT, EngineConfig(device="gpu")) is None
    assert "cannot write the pixel-input copy" in caplog.text and "the host normalises" in caplog.text
    with pytest.raises(ModelNotFoundError, match="cannot write the pixel-input copy"):
        pixel_model_file(model_file, DET_SCALE, DET_SHIFT, EngineConfig(device="gpu", normalize_in_model=True))


def test_normalize_in_model_is_on_for_onnxruntime_on_a_gpu_unless_set():
    from ocr_actors.config import ConfigError

    assert EngineConfig(device="gpu").pixels_in and EngineConfig(device="gpu:1").pixels_in
    assert not EngineConfig().pixels_in and not EngineConfig(device="gpu", normalize_in_model=False).pixels_in
    assert EngineConfig(normalize_in_model=True).pixels_in
    assert not EngineConfig(engine="paddle", device="gpu").pixels_in
    with pytest.raises(ConfigError, match=r"engine\.normalize_in_model is for engine onnxruntime, not 'openvino'"):
        EngineConfig(engine="openvino", normalize_in_model=True)
