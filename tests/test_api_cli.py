"""Python API and CLI surfaces: input kinds, result keys, files written, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from ocr_actors import InputError, create_pipeline
from ocr_actors.config import ConfigError
from ocr_actors.io.decode import (
    CorruptInputError,
    EmptyInputError,
    InputNotFoundError,
    TooLargeInputError,
    TruncatedInputError,
    UnsupportedInputError,
)
from ocr_actors.synth import render_page

REFERENCE_KEYS = {
    "input_path",
    "page_index",
    "model_settings",
    "doc_preprocessor_res",
    "dt_polys",
    "text_det_params",
    "text_type",
    "textline_orientation_angles",
    "text_rec_score_thresh",
    "rec_texts",
    "rec_scores",
    "rec_polys",
    "rec_boxes",
}


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    pages = [render_page(seed=200 + i, lines_per_column=4) for i in range(2)]
    cv2.imwrite(str(folder / "a.png"), pages[0].image)
    (folder / "sub").mkdir()
    cv2.imwrite(str(folder / "sub" / "b.jpg"), pages[1].image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    (folder / "notes.txt").write_text("not a document")
    return folder, pages


def test_result_has_the_reference_keys_and_types(pipeline, sample_dir):
    folder, pages = sample_dir
    result = next(pipeline.predict(str(folder / "a.png")))
    assert set(result) == REFERENCE_KEYS
    assert result["input_path"] == str(folder / "a.png")
    assert result["page_index"] is None
    assert result["text_type"] == "general"
    assert result["rec_texts"] == [line.text for line in pages[0].lines]
    assert result["dt_polys"].shape == (4, 4, 2)
    assert result["rec_boxes"].dtype == np.int16
    assert result["text_det_params"] == {
        "limit_side_len": 960,
        "limit_type": "max",
        "thresh": 0.2,
        "max_side_limit": 4000,
        "box_thresh": 0.4,
        "unclip_ratio": 1.4,
    }
    assert result["doc_preprocessor_res"]["angle"] == -1
    as_json = result.json["res"]
    assert as_json["rec_texts"] == result["rec_texts"]
    assert isinstance(as_json["rec_polys"][0][0][0], int)
    json.dumps(result.json)


def test_inputs_folder_list_glob_and_array(pipeline, sample_dir):
    folder, pages = sample_dir
    from_folder = list(pipeline.predict(str(folder)))
    assert [r["input_path"] for r in from_folder] == [str(folder / "a.png"), str(folder / "sub" / "b.jpg")]
    from_list = list(pipeline.predict([str(folder / "sub" / "b.jpg"), pages[0].image]))
    assert [r["input_path"] for r in from_list] == [str(folder / "sub" / "b.jpg"), None]
    assert from_list[1]["rec_texts"] == from_folder[0]["rec_texts"]
    from_glob = list(pipeline.predict(str(folder / "*.png")))
    assert [r["input_path"] for r in from_glob] == [str(folder / "a.png")]
    assert from_folder[1]["rec_texts"] == [line.text for line in pages[1].lines]


def test_a_files_bytes_are_an_input_and_other_types_are_refused_by_name(pipeline, sample_dir):
    """Bytes (from a database or a queue) read like the file they hold: an image's page has no
    ``page_index``, a PDF's pages do, whatever the name. Other types are refused by name, not
    walked as a list (``bytes`` once gave "input not found: 0")."""
    folder, pages = sample_dir
    png = (folder / "a.png").read_bytes()
    (from_bytes,) = pipeline.predict(png)
    assert from_bytes["input_path"] is None and from_bytes["page_index"] is None
    assert from_bytes["rec_texts"] == [line.text for line in pages[0].lines]
    pdf_pages = list(pipeline.predict([bytearray(_one_page_pdf(pages[0].image))]))
    assert [r["page_index"] for r in pdf_pages] == [0]
    assert pdf_pages[0]["rec_texts"] == from_bytes["rec_texts"]
    with pytest.raises(UnsupportedInputError, match="got int"):
        next(pipeline.predict([str(folder / "a.png"), 7]))
    with pytest.raises(EmptyInputError):
        next(pipeline.predict(b""))
    small = create_pipeline("OCR", input__max_bytes=len(png) - 1)  # bytes are held to the file size limit too
    with pytest.raises(TooLargeInputError, match=f"{len(png)} bytes"):
        next(small.predict(png))


def _one_page_pdf(image: np.ndarray) -> bytes:
    """A PDF whose one page is ``image`` (BGR uint8), at 72 dpi."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image[:, :, ::-1]).save(out, "PDF", resolution=72.0)
    return out.getvalue()


def test_per_call_switches_do_not_change_the_pipeline(pipeline, sample_dir):
    _, pages = sample_dir
    strict = next(pipeline.predict(pages[0].image, text_rec_score_thresh=1.01, text_det_box_thresh=0.5))
    assert strict["rec_texts"] == []
    assert len(strict["dt_polys"]) == 4
    assert strict["text_det_params"]["box_thresh"] == 0.5
    small = next(pipeline.predict(pages[0].image, text_det_limit_side_len=640, text_det_limit_type="max"))
    assert small["text_det_params"]["limit_side_len"] == 640
    again = next(pipeline.predict(pages[0].image))
    assert again["text_rec_score_thresh"] == 0.0
    assert again["text_det_params"]["box_thresh"] == 0.4
    assert again["rec_texts"] == [line.text for line in pages[0].lines]
    with pytest.raises(ValueError, match="text_det_thresh"):
        next(pipeline.predict(pages[0].image, text_det_thresh=1.5))
    with pytest.raises(ValueError, match="limit_type"):
        next(pipeline.predict(pages[0].image, text_det_limit_type="middle"))


def test_save_to_json_and_img(pipeline, sample_dir, tmp_path):
    folder, pages = sample_dir
    result = next(pipeline.predict(str(folder / "a.png")))
    json_path = result.save_to_json(tmp_path)
    assert json_path.name == "a_res.json"
    saved = json.loads(json_path.read_text())  # the result itself, as the reference saves it
    assert saved["rec_texts"] == result["rec_texts"] and saved["input_path"] == str(folder / "a.png")
    assert saved == result.json["res"]
    images = result.save_to_img(tmp_path)
    assert [p.name for p in images] == ["a_ocr_res_img.png"]
    annotated = cv2.imread(str(images[0]))
    h, w = pages[0].image.shape[:2]
    assert annotated.shape == (h, 2 * w, 3)
    jpeg = tmp_path / "scan.JPG"  # an image input's annotated images keep its suffix, as the reference's do
    jpeg.write_bytes(cv2.imencode(".jpg", pages[0].image)[1].tobytes())
    assert [p.name for p in next(pipeline.predict(str(jpeg))).save_to_img(tmp_path)] == ["scan_ocr_res_img.JPG"]
    assert cv2.imread(str(tmp_path / "scan_ocr_res_img.JPG")).shape == (h, 2 * w, 3)
    # Left half is the page with tinted text boxes; right half renders the texts on white.
    assert annotated[:, w:].mean() > 240
    with open(tmp_path / "printed.txt", "w") as fh:
        result.print(file=fh)
    assert "rec_texts" in (tmp_path / "printed.txt").read_text()


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"", EmptyInputError),
        (b"hello, this is plain text", UnsupportedInputError),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, CorruptInputError),
        (b"%PDF-1.4\n1 0 obj\n<<", (TruncatedInputError, CorruptInputError)),
    ],
)
def test_bad_files_raise_clear_errors(pipeline, tmp_path, content, error):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(error) as info:
        next(pipeline.predict(str(path)))
    assert str(path) in str(info.value)
    assert isinstance(info.value, InputError)


def test_api_parameters_are_checked_like_the_services(pipeline):
    """A fractional side length (the service refuses it) is not truncated to 0 px; a number
    too large for a float is a ValueError, not an OverflowError."""
    page = np.full((40, 40, 3), 255, np.uint8)
    with pytest.raises(ValueError, match=r"text_det_limit_side_len must be a whole number of pixels, got 0\.5"):
        next(pipeline.predict(page, text_det_limit_side_len=0.5))
    with pytest.raises(
        ValueError, match=r"text_det_thresh must be a finite number, got 100000000000\.\.\. \(401 digits\)"
    ):
        next(pipeline.predict(page, text_det_thresh=10**400))
    assert next(pipeline.predict(page, text_det_limit_side_len=64.0))["text_det_params"]["limit_side_len"] == 64


def test_a_grey_array_with_a_channel_axis_reads_like_a_plain_grey_one(pipeline):
    """``(H, W, 1)``, the shape ``decode_document(keep_grey=True)`` gives, is a grey page like
    ``(H, W)``: the same lines and texts."""
    grey = cv2.cvtColor(render_page(seed=301, lines_per_column=2).image, cv2.COLOR_BGR2GRAY)
    flat, with_axis = next(pipeline.predict(grey)), next(pipeline.predict(grey[:, :, None]))
    assert len(flat["rec_texts"]) >= 2
    assert with_axis["rec_texts"] == flat["rec_texts"]
    assert np.array_equal(with_axis["rec_polys"], flat["rec_polys"])


def test_truncated_png_and_huge_image(pipeline, tmp_path):
    page = render_page(seed=300, lines_per_column=2)
    _, encoded = cv2.imencode(".png", page.image)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(encoded.tobytes()[: len(encoded) // 2])
    with pytest.raises((TruncatedInputError, CorruptInputError), match=r"truncated|decode"):
        next(pipeline.predict(str(truncated)))
    guarded = create_pipeline("OCR", engine__threads=2, input__max_pixels=1_000_000)
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), np.full((1200, 1000, 3), 255, np.uint8))
    with pytest.raises(TooLargeInputError, match="pixel"):
        next(guarded.predict(str(big)))
    with pytest.raises(InputNotFoundError):
        next(guarded.predict(str(tmp_path / "missing.png")))
    with pytest.raises(InputError, match="uint8") as wrong_dtype:
        next(guarded.predict(np.zeros((10, 10, 3), np.float32)))
    with pytest.raises(InputError, match="empty") as empty:
        next(guarded.predict(np.zeros((0, 0, 3), np.uint8)))
    with pytest.raises(InputError, match="got shape") as wrong_shape:
        next(guarded.predict(np.zeros((10, 10, 2), np.uint8)))
    assert [e.value.error_type for e in (wrong_dtype, empty, wrong_shape)] == [
        "unsupported_type",
        "empty",
        "unsupported_type",
    ]


def test_cli_predict_reports_a_bad_file_and_still_saves_the_others(tmp_path):
    folder = tmp_path / "mix"
    folder.mkdir()
    good = (Path(__file__).resolve().parent.parent / "examples" / "two_column_page.png").read_bytes()
    (folder / "a.png").write_bytes(good)
    (folder / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"garbage" * 10)
    (folder / "c.png").write_bytes(good)
    proc = _cli("predict", "--input", str(folder), "--save_path", str(tmp_path / "o"), "--no_print")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "b.jpg" in errors[0]
    summary = json.loads(proc.stderr.strip().splitlines()[-1])
    assert summary["pages"] == 2 and summary["failed_inputs"] == [str(folder / "b.jpg")]
    for name in ("a", "c"):
        saved = json.loads((tmp_path / "o" / f"{name}_res.json").read_text())
        assert "Digital Archive Annual Report" in saved["rec_texts"]
    (tmp_path / "nothing.png").mkdir()  # a folder named like an image, with nothing inside
    proc = _cli("predict", "--input", str(tmp_path / "nothing.png"))
    assert proc.returncode == 2 and proc.stderr.strip().endswith(
        f"error: no images or PDFs found in {tmp_path}/nothing.png"
    )


def test_redaction_removes_url_credentials_and_signed_url_secrets():
    from ocr_actors.redaction import redact_text

    cases = {
        "https://user:pw@host/x.png": "https://***@host/x.png",
        "s3://AKIA:SECRET@bucket/a": "s3://***@bucket/a",
        'Invalid bucket name "AKIA:SECRET@bucket"': 'Invalid bucket name "***@bucket"',
        "https://b.example/a.png?X-Amz-Algorithm=A&X-Amz-Credential=AK%2F1&X-Amz-Signature=ab&X-Amz-Security-Token=t": (
            "https://b.example/a.png?X-Amz-Algorithm=A&X-Amz-Credential=***&X-Amz-Signature=***"
            "&X-Amz-Security-Token=***"
        ),
        "https://h/a.png?sig=zz&sv=2020&token=1#f": "https://h/a.png?sig=***&sv=2020&token=***#f",
        "gs://b/a=b.png": "gs://b/a=b.png",  # no secret: unchanged
        "mail me@x.org at 10:30, http://h:8080/a@b.png": "mail me@x.org at 10:30, http://h:8080/a@b.png",
    }
    for text, expected in cases.items():
        assert redact_text(text) == expected
        assert redact_text(expected) == expected


def test_source_uris_lose_only_their_credentials_and_names_with_colons_and_at_signs_stay_apart():
    """A source URI is redacted by its structure (the authority's user information, a signed
    http(s) URL's secret query values): a local path or an object key holding ``:``, ``@``,
    ``?`` or ``=`` is kept whole, so two different files never share a key."""
    from ocr_actors.redaction import redact_uri
    from ocr_actors.stages.load import redact_message

    cases = {
        "https://user:pw@host/x.png": "https://***@host/x.png",
        "s3://AKIA:SECRET@bucket/a": "s3://***@bucket/a",
        "simplecache::s3://AKIA:SECRET@bucket/a": "simplecache::s3://***@bucket/a",
        "https://h/a.png?X-Amz-Credential=AK&X-Amz-Signature=ab&X-Amz-Expires=60": (
            "https://h/a.png?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Expires=60"
        ),
        "/scans/2024-05-01T10:30_alice@corp.com.png": "/scans/2024-05-01T10:30_alice@corp.com.png",
        "s3://b/2024-05-01T11:45_bob@corp.com.png": "s3://b/2024-05-01T11:45_bob@corp.com.png",
        "s3://b/a?token=1.png": "s3://b/a?token=1.png",  # a key, not a query
        "file:///x/a:b@c.png": "file:///x/a:b@c.png",
    }
    for uri, expected in cases.items():
        assert redact_uri(uri) == expected
        assert redact_uri(expected) == expected
    local = "/scans/2024-05-01T10:30_alice@corp.com.png"
    assert redact_message(f"cannot decode {local}: bad", local, local) == f"cannot decode {local}: bad"
    signed = "https://h/a.png?X-Amz-Signature=SECRET"
    assert (
        redact_message(f"404 for {signed}", signed, redact_uri(signed)) == "404 for https://h/a.png?X-Amz-Signature=***"
    )
    assert redact_message("from https://u:SECRET@h/x", local, local) == "from https://***@h/x"


def test_config_errors_are_clear():
    with pytest.raises(ConfigError, match=r"text_detection\.tresh"):
        create_pipeline("OCR", text_detection__tresh=0.3)
    with pytest.raises(ValueError, match="OCR"):
        create_pipeline("layout")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocr_actors.cli", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_cli_predict_writes_json_and_images(sample_dir, tmp_path):
    folder, pages = sample_dir
    out = tmp_path / "out"
    proc = _cli(
        "predict",
        "--input",
        str(folder),
        "--save_path",
        str(out),
        "--device",
        "cpu",
        "--use_doc_orientation_classify",
        "True",
        "--text_rec_score_thresh",
        "0.5",
        "engine.threads=2",
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "a_ocr_res_img.png",
        "a_preprocessed_img.png",
        "a_res.json",
        "b_ocr_res_img.jpg",  # b.jpg: its images keep its suffix
        "b_preprocessed_img.jpg",
        "b_res.json",
    ]
    saved = json.loads((out / "b_res.json").read_text())
    assert saved["rec_texts"] == [line.text for line in pages[1].lines]
    assert saved["text_rec_score_thresh"] == 0.5
    assert saved["doc_preprocessor_res"]["angle"] == 0
    assert '"rec_texts"' in proc.stdout


def test_cli_a_bad_switch_value_or_save_path_fails_the_command_once(sample_dir, tmp_path):
    """A switch value out of range, or a ``--save_path`` that cannot be a folder, is one error
    and exit status 2 before any file is read, not an error per file (which would hide the
    files' own errors)."""
    folder, _ = sample_dir
    proc = _cli("predict", "--input", str(folder), "--text_det_thresh", "1.5", "--no_print", "engine.threads=2")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and errors == ["error: text_det_thresh must lie in [0, 1], got 1.5"], proc.stderr
    assert "failed_inputs" not in proc.stderr
    taken = tmp_path / "a_file"
    taken.write_text("x")
    proc = _cli("predict", "--input", str(folder), "--save_path", str(taken), "--no_print")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and f"--save_path {taken}: cannot make that folder" in errors[0]


def test_cli_bad_input_exits_2_with_a_message(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + b"garbage" * 10)
    proc = _cli("predict", "--input", str(bad), "--save_path", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "broken.jpg" in proc.stderr and "error:" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _cli("predict", "--input", str(bad), "text_detection.nope=1")
    assert proc.returncode == 2 and "unknown config key" in proc.stderr
    good = str(Path(__file__).resolve().parent.parent / "examples" / "two_column_page.png")
    proc = _cli("predict", "--input", good, "engine.engine=openvino", "engine.device=gpu")  # an engine it cannot run
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "error: the OpenVINO engine runs on device 'cpu' only here"


def test_cli_run_dry_run_says_what_a_run_would_do_and_writes_nothing(tmp_path):
    """``ocr-batch run --dry-run`` on the bundled examples: both sources to do, nothing written
    (the output folder is not even made), and Ray never imported."""
    examples = Path(__file__).resolve().parent.parent / "examples"
    out = tmp_path / "out"
    proc = _cli("run", "--dry-run", "--input", str(examples), "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-1000:]
    plan = json.loads(proc.stdout)
    assert (plan["sources_total"], plan["sources_skipped"], plan["sources_processed"]) == (2, 0, 2)
    assert plan["sources_left_out"] == 2 and plan["left_out_by_reason"] == {"not an image or PDF: .txt": 2}
    assert "dry run (resume): 2 sources; 0 already done, 0 partly done, 2 to process" in proc.stderr
    assert not out.exists()
    probe = "import sys; from ocr_actors import cli; cli.main(sys.argv[1:]); print('ray' in sys.modules)"
    check = subprocess.run(
        [sys.executable, "-c", probe, "run", "--dry-run", "--quiet", "--input", str(examples), "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert check.stdout.strip().splitlines()[-1] == "False"  # planning alone never loads Ray


def test_cli_run_takes_an_ocr_config_with_ocr_config_and_says_so_when_given_as_config(tmp_path):
    """``--ocr-config`` lays an OCR YAML (as ``predict --config`` takes) over the job's ``ocr:``
    section: its model names are checked like the job's own; the same file as ``--config``
    is refused with a hint to use ``--ocr-config``."""
    examples = Path(__file__).resolve().parent.parent / "examples"
    accurate = Path(__file__).resolve().parent.parent / "jobs" / "configs" / "ocr_accurate.yaml"
    common = ("run", "--dry-run", "--quiet", "--input", str(examples), "--output", str(tmp_path / "out"))
    assert _cli(*common, "--ocr-config", str(accurate)).returncode == 0
    missing = tmp_path / "ocr_missing.yaml"
    missing.write_text("text_recognition:\n  model: no_such_rec_model\n", encoding="utf-8")
    proc = _cli(*common, "--ocr-config", str(missing))
    assert proc.returncode == 2 and "no_such_rec_model" in proc.stderr.splitlines()[-1]
    proc = _cli(*common, "--config", str(accurate))
    assert proc.returncode == 2 and "give an OCR config file with --ocr-config" in proc.stderr.splitlines()[-1]


def test_cli_an_output_that_is_a_file_is_a_usage_error_for_every_command(tmp_path):
    """``--output`` naming an existing file: one ``error:`` line and exit 2 from ``run`` (before
    Ray starts or anything is written), ``run --dry-run``, ``status`` and ``compact``; no traceback."""
    examples = Path(__file__).resolve().parent.parent / "examples"
    taken = tmp_path / "results"
    taken.write_text("not a folder")
    for command in (
        ("run", "--quiet", "--input", str(examples)),
        ("run", "--dry-run", "--quiet", "--input", str(examples)),
        ("status", "--quiet"),
        ("compact", "--quiet"),
    ):
        proc = _cli(*command, "--output", str(taken))
        assert proc.returncode == 2, (command, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert (
            proc.stderr.strip().splitlines()[-1]
            == f"error: the output {taken} is a file: give a folder or prefix (it may not exist yet)"
        )
    assert taken.read_text() == "not a folder" and sorted(tmp_path.iterdir()) == [taken]


def test_cli_predict_never_lets_one_result_overwrite_another(tmp_path):
    """Same file name in two folders, and a PDF's page 0 against an image named ``x_0``: each
    page keeps its own JSON and image (the later one named ``-2``); a ``--save_path`` folder
    with a dot in its name holds both kinds of file."""
    examples = Path(__file__).resolve().parent.parent / "examples"
    folder = tmp_path / "in"
    for sub in ("a", "b"):
        (folder / sub).mkdir(parents=True)
        (folder / sub / "page.png").write_bytes((examples / "two_column_page.png").read_bytes())
    pdf = next(examples.glob("*.pdf"))
    (folder / "b" / f"{pdf.stem}.pdf").write_bytes(pdf.read_bytes())
    (folder / "b" / f"{pdf.stem}_0.png").write_bytes((examples / "two_column_page.png").read_bytes())
    out = tmp_path / "results.v2"
    proc = _cli("predict", "--input", str(folder), "--save_path", str(out), "--no_print", "engine.threads=2")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stderr.strip().splitlines()[-1])
    saved = {p.name: json.loads(p.read_text()) for p in out.glob("*_res.json")}
    assert len(saved) == summary["pages"] == 5  # two images named page, a two-page PDF, its _0 look-alike
    assert {"page_res.json", "page-2_res.json", f"{pdf.stem}_0_res.json", f"{pdf.stem}_0-2_res.json"} <= set(saved)
    assert sorted(r["input_path"] for r in saved.values() if r["input_path"].endswith("page.png")) == [
        str(folder / "a" / "page.png"),
        str(folder / "b" / "page.png"),
    ]
    assert len(list(out.glob("*_ocr_res_img.png"))) == 5 and not list(tmp_path.glob("*.png"))


def test_annotated_images_fit_the_text_to_its_box_even_for_a_tall_vertical_line():
    """The text is drawn at a size that fits its box: a vertical line 5,900 px tall gets its
    characters one under another at the box's width (a font of 0.8 x its height, 4,700 px,
    made Pillow refuse a glyph mask of 800 M pixels), a long text in a short box shrinks."""
    from ocr_actors.result import draw_ocr, text_size

    page = np.full((6250, 1200, 3), 255, np.uint8)
    tall = np.array([[[500, 200], [640, 200], [640, 6059], [500, 6059]]], np.float32)
    wide = np.array([[[10, 10], [110, 10], [110, 60], [10, 60]]], np.float32)
    both = draw_ocr(
        page, np.concatenate([tall, wide]), ["東京都千代田区丸の内一丁目" * 3, "a long line of text in a small box"]
    )
    assert both.shape == (6250, 2400, 3)
    right = both[:, 1200:]
    inked = np.flatnonzero((right < 128).any(axis=2).any(axis=1))
    assert inked.min() >= 10 and inked.max() < 6250  # drawn down the column, within the page
    assert (right[:, 1200 - 1] == 255).all()
    assert (right[10:61, 10:120] < 128).any() and not (right[10:61, 125:] < 128).any()  # the long text kept to its box
    assert text_size(4687) == 256 and text_size(1) == 6


def test_cli_serve_answers_and_stops_cleanly_on_sigterm(tmp_path):
    """``ocr-batch serve --port P`` answers ``/health`` and ``POST /ocr`` on loopback; SIGTERM
    (Kubernetes, systemd) shuts Serve and Ray down and exits 0, with no native stack dump, and
    the port is closed after."""
    import base64
    import signal
    import socket
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocr_actors.cli", "serve", "--port", str(port), "max_body_bytes=8388608"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        example = Path(__file__).resolve().parent.parent / "examples" / "two_column_page.png"
        body = {"file": base64.b64encode(example.read_bytes()).decode(), "visualize": False}
        answer = httpx.post(f"{url}/ocr", json=body, timeout=120)
        assert answer.status_code == 200, answer.text
        texts = answer.json()["result"]["ocrResults"][0]["prunedResult"]["rec_texts"]
        assert "Digital Archive Annual Report" in texts
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr[-2000:]
    assert "SIGTERM received" not in stderr
    with socket.socket() as check, pytest.raises(OSError):
        check.settimeout(2)
        check.connect(("127.0.0.1", port))
