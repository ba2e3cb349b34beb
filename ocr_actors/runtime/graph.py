"""ONNX graph edits applied once when a model is opened. Pure functions over ``onnx.ModelProto``.

The CTC recogniser outputs ``(N, T, C)`` float32 probabilities: with the PP-OCRv6 tiny
dictionary (C = 6906) a batch of 64 crops 640 px wide is 141 MB, all of which must travel
from the GPU to the host and be scanned by numpy only to keep one class per step.
:func:`fuse_ctc_argmax` moves that reduction into the graph, so the model returns
``(N, T, 1)`` class indices and their probabilities instead (a few kB). ONNX Runtime and
OpenVINO run the fused copy; Paddle models decode on the host.

On a GPU the input's normalisation moves into the graph too (:func:`fuse_pixel_input`): the
host hands over the pixels (uint16), not float32 planes it computed.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ocr_actors.preprocess import PIXEL_PAD

CTC_INDICES = "ctc_indices"
CTC_SCORES = "ctc_scores"


def ctc_class_count(model: onnx.ModelProto) -> int | None:
    """``C`` of a recogniser whose first output is ``(N, T, C)`` with a static ``C``, else None."""
    output = model.graph.output[0]
    dims = output.type.tensor_type.shape.dim
    if len(dims) != 3 or not dims[2].HasField("dim_value") or dims[2].dim_value <= 0:
        return None
    return int(dims[2].dim_value)


def default_opset(model: onnx.ModelProto) -> int:
    """The model's version of the default ONNX operator set (0 when it imports none)."""
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def fuse_ctc_argmax(model: onnx.ModelProto, space_bias: float = 1.0) -> onnx.ModelProto:
    """A copy of a CTC recogniser that returns the best class per step instead of all classes.

    The new outputs are ``ctc_indices`` ``(N, T, 1)`` int64 and ``ctc_scores`` ``(N, T, 1)``
    float32: the class each step keeps and its probability, gathered from the model's own
    output (so bit-identical to what numpy reads there). With ``space_bias`` the last class
    (the space PP-OCR appends to its dictionary) is multiplied by that factor for the choice
    only, exactly as :func:`ocr_actors.postprocess.ctc_greedy_decode` does: ties go to the
    lower index, as numpy's ``argmax`` gives them.

    Uses Mul, TopK and GatherElements, whose signatures are the same in every opset from 11 on.

    Raises:
        ValueError: the first output is not ``(N, T, C)`` float32 with a static ``C``, or
            the model's opset is below 11.
    """
    classes = ctc_class_count(model)
    output = model.graph.output[0]
    if classes is None or output.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ValueError(f"output {output.name!r} is not (N, T, C) float32 probabilities with a static C")
    if default_opset(model) < 11:
        raise ValueError(f"opset {default_opset(model)} is below 11 (TopK takes k as an input from 10, ties from 11)")
    fused = onnx.ModelProto()
    fused.CopyFrom(model)
    graph = fused.graph
    k_name, bias_name = "ctc_fuse_k", "ctc_fuse_bias"
    graph.initializer.append(numpy_helper.from_array(np.array([1], dtype=np.int64), k_name))
    source = output.name
    chosen_from = source
    if space_bias != 1.0:
        bias = np.ones(classes, dtype=np.float32)
        bias[-1] = space_bias
        graph.initializer.append(numpy_helper.from_array(bias, bias_name))
        graph.node.append(helper.make_node("Mul", [source, bias_name], ["ctc_fuse_biased"]))
        chosen_from = "ctc_fuse_biased"
    graph.node.append(helper.make_node("TopK", [chosen_from, k_name], ["ctc_fuse_best", CTC_INDICES], axis=-1))
    graph.node.append(helper.make_node("GatherElements", [source, CTC_INDICES], [CTC_SCORES], axis=2))
    dims = output.type.tensor_type.shape.dim
    shape = [d.dim_param or d.dim_value or None for d in dims[:2]] + [1]
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info(CTC_INDICES, TensorProto.INT64, shape),
            helper.make_tensor_value_info(CTC_SCORES, TensorProto.FLOAT, shape),
        ]
    )
    return fused


PIXELS = "pixels"
"""Input name of a model whose normalisation was moved into its graph (:func:`fuse_pixel_input`)."""


def fuse_pixel_input(model: onnx.ModelProto, scale: np.ndarray, shift: np.ndarray) -> onnx.ModelProto:
    """A copy of a model with a ``(N, 3, H, W)`` float32 image input that takes the page's
    pixels instead and normalises them in the graph, on the model's device.

    The new first input, :data:`PIXELS`, is ``(N, H, W, C)`` uint16: the uint8 pixels of a
    ``C`` = 3 (channels as the model was trained on, BGR for PP-OCR) or ``C`` = 1 (grey, used for
    all three channels) batch, with :data:`PIXEL_PAD` where a host-side batch pads with zeros.
    The graph computes ``where(p < PIXEL_PAD, p * scale[c] - shift[c], 0)`` in float32 into the
    old input: the very operations, in the same order, that the host's normalisation does, so
    the model sees bit-identical values (on the CPU; a GPU's float32 arithmetic is IEEE too).
    The host then only resizes and copies pixels (half the bytes of float32 planes, a sixth
    for grey: one channel), and the GPU does the arithmetic.

    Args:
        scale, shift: ``(3,)`` float32, per channel of the model's input.

    Raises:
        ValueError: the first input is not ``(N, 3, H, W)`` float32, or the opset is below 9
            (``Where``).
    """
    model_input = model.graph.input[0]
    tensor = model_input.type.tensor_type
    dims = tensor.shape.dim
    if tensor.elem_type != TensorProto.FLOAT or len(dims) != 4 or dims[1].dim_value not in (0, 3):
        raise ValueError(f"input {model_input.name!r} is not (N, 3, H, W) float32")
    if default_opset(model) < 9:
        raise ValueError(f"opset {default_opset(model)} is below 9 (Where)")
    names = {v.name for v in [*model.graph.input, *model.graph.initializer]}
    names.update(out for node in model.graph.node for out in node.output)
    if any(name == PIXELS or name.startswith(f"{PIXELS}_") for name in names):
        raise ValueError(f"the model already has a tensor named {PIXELS!r} or {PIXELS + '_*'!r}")
    fused = onnx.ModelProto()
    fused.CopyFrom(model)
    graph = fused.graph
    image = graph.input[0].name
    del graph.input[0]
    graph.input.insert(0, helper.make_tensor_value_info(PIXELS, TensorProto.UINT16, ["N", "H", "W", "C"]))
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.asarray(scale, np.float32).reshape(1, 3, 1, 1), "pixels_scale"),
            numpy_helper.from_array(np.asarray(shift, np.float32).reshape(1, 3, 1, 1), "pixels_shift"),
            numpy_helper.from_array(np.array(PIXEL_PAD, np.float32), "pixels_pad"),
            numpy_helper.from_array(np.array(0.0, np.float32), "pixels_zero"),
        ]
    )
    nodes = [
        helper.make_node("Transpose", [PIXELS], ["pixels_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Cast", ["pixels_nchw"], ["pixels_float"], to=TensorProto.FLOAT),
        helper.make_node("Less", ["pixels_float", "pixels_pad"], ["pixels_inside"]),
        helper.make_node("Mul", ["pixels_float", "pixels_scale"], ["pixels_scaled"]),  # C = 1: to 3 channels
        helper.make_node("Sub", ["pixels_scaled", "pixels_shift"], ["pixels_normalised"]),
        helper.make_node("Where", ["pixels_inside", "pixels_normalised", "pixels_zero"], [image]),
    ]
    for position, node in enumerate(nodes):
        graph.node.insert(position, node)
    return fused
