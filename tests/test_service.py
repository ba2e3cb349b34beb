"""The HTTP service with a real HTTP client against Ray Serve on loopback."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image

from ocr_actors.config import load_config
from ocr_actors.service.config import ServiceConfig
from ocr_actors.service.fetch import check_url, host_allowed
from ocr_actors.service.protocol import ApiError, decode_base64
from ocr_actors.synth import render_page
from tests.conftest import page_cer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def service():
    import ray
    from ray import serve

    from ocr_actors.service.app import build_app

    ray.shutdown()
    ray.init(address="local", num_cpus=2, object_store_memory=512 << 20, include_dashboard=False)
    port = _free_port()
    overrides = {
        "port": port,
        "max_body_bytes": 8 << 20,
        "max_pdf_pages": 2,
        "batch_wait_timeout_s": 0.25,
        "body_timeout_s": 2,
    }
    config = load_config(ServiceConfig, None, overrides)  # requests sent together share a batch
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(config), name="ocr", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    yield url
    serve.shutdown()
    ray.shutdown()


def b64_png(image: np.ndarray) -> str:
    return base64.b64encode(cv2.imencode(".png", image)[1].tobytes()).decode()


def b64_pdf(pages: list[np.ndarray]) -> str:
    images = [Image.fromarray(cv2.cvtColor(p, cv2.COLOR_BGR2GRAY)).convert("P") for p in pages]
    buf = io.BytesIO()
    images[0].save(buf, "PDF", resolution=144, save_all=True, append_images=images[1:])
    return base64.b64encode(buf.getvalue()).decode()


def post(url: str, body: object, timeout: float = 120) -> httpx.Response:
    """POST ``body`` as JSON; NaN and infinities go as JavaScript writes them (``NaN``)."""
    content = json.dumps(body, allow_nan=True).encode()
    return httpx.post(f"{url}/ocr", content=content, headers={"content-type": "application/json"}, timeout=timeout)


def test_health(service):
    health = httpx.get(f"{service}/health", timeout=10).json()
    assert (health["errorCode"], health["errorMsg"]) == (0, "Healthy") and health["logId"]
    for method, path, status in (
        ("GET", "/ocr", 405),
        ("GET", "/nowhere", 404),
        ("GET", "/openapi.json", 404),
        ("POST", "/ocr/", 404),  # no redirect to /ocr (one built from the client's Host header)
        ("GET", "/health/", 404),
    ):
        answer = httpx.request(method, f"{service}{path}", headers={"host": "elsewhere.test"}, timeout=10)
        assert answer.status_code == status and answer.json()["errorCode"] == status and answer.json()["logId"]
        assert "location" not in answer.headers


def test_uploads_that_stall_get_408_and_free_their_request_slots(service):
    """As many clients as the replica takes requests at once (``max_ongoing_requests``, 16)
    send part of a body and wait: after ``body_timeout_s`` (2 s here) each gets a 408 in
    the envelope, and the service answers others again (it would wait for the clients to hang
    up without the timeout)."""
    host, port = service.removeprefix("http://").split(":")
    stalled = []
    for _ in range(16):
        sock = socket.create_connection((host, int(port)), timeout=30)
        sock.sendall(b"POST /ocr HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
        sock.sendall(b'{"file": "' + b"A" * 100)
        stalled.append(sock)
    started = time.monotonic()
    try:
        assert httpx.get(f"{service}/health", timeout=30).status_code == 200
        for sock in stalled:
            answer = sock.recv(65536).decode()
            while "\r\n\r\n" not in answer or not answer.rstrip().endswith("}"):
                more = sock.recv(65536).decode()
                if not more:
                    break
                answer += more
            assert answer.startswith("HTTP/1.1 408"), answer
            body = json.loads(answer.split("\r\n\r\n", 1)[1])
            assert body["errorCode"] == 408 and "stopped arriving for 2 s" in body["errorMsg"]
    finally:
        for sock in stalled:
            sock.close()
    assert time.monotonic() - started < 25
    # the limit is on silence, not on the whole upload: a body trickling in over 3.6 s passes
    page = render_page(seed=1050, lines_per_column=2)
    body = json.dumps({"file": b64_png(page.image), "visualize": False}).encode()

    def trickle():
        step = len(body) // 6 + 1
        for start in range(0, len(body), step):
            time.sleep(0.6)
            yield body[start : start + step]

    answer = httpx.post(f"{service}/ocr", content=trickle(), timeout=60)
    assert answer.status_code == 200, answer.text
    texts = answer.json()["result"]["ocrResults"][0]["prunedResult"]["rec_texts"]
    assert texts == [line.text for line in page.lines]


def test_image_request_returns_the_reference_envelope(service):
    page = render_page(seed=1000, lines_per_column=5)
    response = post(service, {"file": b64_png(page.image), "fileType": 1, "visualize": True, "returnWordBox": False})
    assert response.status_code == 200
    body = response.json()
    assert body["errorCode"] == 0 and body["errorMsg"] == "Success" and body["logId"]
    assert body["result"]["dataInfo"] == {"type": "image", "width": 1240, "height": 1754}
    (only,) = body["result"]["ocrResults"]
    pruned = only["prunedResult"]
    assert "rec_boxes" in pruned and "doc_preprocessor_res" in pruned and pruned["page_index"] is None
    assert "input_path" not in response.text  # removed at every level, as the reference's prune_result
    assert page_cer(pruned["rec_texts"], [line.text for line in page.lines]) < 0.02
    jpeg = cv2.imdecode(np.frombuffer(base64.b64decode(only["ocrImage"]), np.uint8), cv2.IMREAD_COLOR)
    assert jpeg.shape == (1754, 2480, 3)
    given = cv2.imdecode(np.frombuffer(base64.b64decode(only["inputImage"]), np.uint8), cv2.IMREAD_COLOR)
    assert given.shape == (1754, 1240, 3) and "docPreprocessingImage" not in only  # no preprocessing ran


def test_a_multi_frame_tiff_gets_one_result_per_frame_with_its_index(service):
    pages = [render_page(seed=1010 + i, lines_per_column=4) for i in range(2)]
    frames = [Image.fromarray(cv2.cvtColor(p.image, cv2.COLOR_BGR2GRAY)) for p in pages]
    buf = io.BytesIO()
    frames[0].save(buf, "TIFF", save_all=True, append_images=frames[1:], compression="tiff_deflate")
    response = post(service, {"file": base64.b64encode(buf.getvalue()).decode(), "visualize": False})
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["dataInfo"] == {
        "type": "image",
        "width": 1240,
        "height": 1754,
        "numPages": 2,
        "pages": [{"width": 1240, "height": 1754}] * 2,
    }
    pruned = [r["prunedResult"] for r in result["ocrResults"]]
    assert [p["page_index"] for p in pruned] == [0, 1]
    for page, answer in zip(pages, pruned, strict=True):
        assert page_cer(answer["rec_texts"], [line.text for line in page.lines]) < 0.02


def test_a_heic_phone_photo_is_read_upright(service):
    """A HEIC upload (an iPhone's photo format, turned by its own rotation) reads like any image."""
    from pathlib import Path

    heic = (Path(__file__).parent / "data" / "phone_photo.heic").read_bytes()
    response = post(service, {"file": base64.b64encode(heic).decode(), "fileType": 1, "visualize": False})
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["dataInfo"] == {"type": "image", "width": 960, "height": 320}
    assert result["ocrResults"][0]["prunedResult"]["rec_texts"] == ["Invoice 2024-117", "Total due 482.50"]


def test_pdf_pages_are_limited_and_every_switch_is_honoured(service):
    # Half-height pages keep the uncompressed PDF under the service's 8 MiB body limit.
    pages = [render_page(seed=1010 + i, lines_per_column=3, height=900) for i in range(3)]
    turned = render_page(seed=1010, lines_per_column=3, height=900, rotation=180).image
    body = {
        "file": b64_pdf([turned, pages[1].image, pages[2].image]),
        "useDocOrientationClassify": True,
        "useDocUnwarping": False,
        "useTextlineOrientation": True,
        "textDetLimitSideLen": 1024,
        "textDetLimitType": "max",
        "textDetThresh": 0.25,
        "textDetBoxThresh": 0.5,
        "textDetUnclipRatio": 1.5,
        "textRecScoreThresh": 0.3,
        "inferenceParams": {"maxLongSide": 1200},
    }
    response = post(service, body)
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["dataInfo"]["type"] == "pdf" and result["dataInfo"]["numPages"] == 2  # max_pdf_pages
    assert max(result["dataInfo"]["pages"][0].values()) <= 1200
    first = result["ocrResults"][0]["prunedResult"]
    assert first["doc_preprocessor_res"]["angle"] == 180
    assert first["text_det_params"] == {
        "limit_side_len": 1024,
        "limit_type": "max",
        "thresh": 0.25,
        "max_side_limit": 4000,
        "box_thresh": 0.5,
        "unclip_ratio": 1.5,
    }
    assert first["text_rec_score_thresh"] == 0.3 and first["model_settings"]["use_textline_orientation"] is True
    assert page_cer(first["rec_texts"], [line.text for line in pages[0].lines]) < 0.03
    assert [r["prunedResult"]["page_index"] for r in result["ocrResults"]] == [0, 1]
    # visualize left out: on, as in the reference; the page turned upright is sent too
    images = result["ocrResults"][0]
    assert {"ocrImage", "inputImage", "docPreprocessingImage"} <= set(images)
    upright = cv2.imdecode(np.frombuffer(base64.b64decode(images["docPreprocessingImage"]), np.uint8), 1)
    assert upright.shape[:2] == tuple(reversed(list(result["dataInfo"]["pages"][0].values())))
    quiet = post(service, {**body, "visualize": False}).json()["result"]["ocrResults"]
    assert [set(r) for r in quiet] == [{"prunedResult"}, {"prunedResult"}]  # null images left out


def test_unwarping_switch(service):
    page = render_page(seed=1020, lines_per_column=3)
    response = post(service, {"file": b64_png(page.image), "useDocUnwarping": True})
    assert response.status_code == 200
    assert response.json()["result"]["ocrResults"][0]["prunedResult"]["model_settings"]["use_doc_preprocessor"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"file": "%%% not base64 %%%"}, 422, "base64"),
        ({"file": base64.b64encode(b"just some text").decode()}, 422, "not an image or PDF"),
        ({"file": base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()}, 422, "cannot"),
        (
            {"file": b64_png(np.full((40, 40, 3), 255, np.uint8)), "fileType": 0},
            422,
            "does not match the content (an image)",
        ),
        ({"file": b64_png(np.full((40, 40, 3), 255, np.uint8)), "textDetThresh": "high"}, 422, "number"),
        ({"file": b64_png(np.full((40, 40, 3), 255, np.uint8)), "textDetThresh": 3.0}, 422, "textDetThresh must lie"),
        ({"file": b64_png(np.full((40, 40, 3), 255, np.uint8)), "textDetUnclipRatio": float("nan")}, 422, "finite"),
        ({"file": b64_png(np.full((40, 40, 3), 255, np.uint8)), "textRecScoreThresh": float("inf")}, 422, "finite"),
        ({"file": b64_png(np.full((40, 40, 3), 255, np.uint8)), "textDetThresh": 10**400}, 422, "out of range"),
        ({"file": b64_png(np.full((40, 40, 3), 255, np.uint8)), "textDetLimitSideLen": 10**400}, 422, "finite number"),
        ({"file": b64_png(np.full((40, 40, 3), 255, np.uint8)), "textDetLimitSideLen": 0.5}, 422, "integer"),
        ({"file": b64_png(np.full((40, 40, 3), 255, np.uint8)), "fileType": True}, 422, "fileType must be 0"),
        ({"file": b64_png(np.full((40, 40, 3), 255, np.uint8)), "returnWordBox": True}, 422, "not supported"),
        ({"file": b64_png(np.full((40, 40, 3), 255, np.uint8)), "bogus": 1}, 422, "unknown field"),
        ({"fileType": 1}, 422, "file is required"),
        ({"file": "http://127.0.0.1/x.png"}, 403, "URL inputs are disabled"),
        ({"file": "file:///etc/passwd"}, 403, "URL inputs are disabled"),
    ],
)
def test_bad_requests_get_4xx_with_a_clear_message(service, body, status, message):
    response = post(service, body)
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["errorCode"] == status and message in payload["errorMsg"]
    assert "Traceback" not in response.text and "result" not in payload


def test_not_json_and_oversize_bodies(service):
    response = httpx.post(f"{service}/ocr", content=b"{not json", timeout=30)
    assert response.status_code == 400 and response.json()["errorCode"] == 400
    huge = base64.b64encode(b"\x89PNG" + b"\0" * (9 << 20)).decode()
    response = post(service, {"file": huge})
    assert response.status_code == 413 and "limit" in response.json()["errorMsg"]

    def endless():  # chunked, no declared length: refused once past the limit
        yield b'{"file": "'
        for _ in range(3 << 10):  # 192 MiB in 64 KiB chunks
            yield b"A" * (1 << 16)

    response = httpx.post(f"{service}/ocr", content=endless(), timeout=120)
    assert response.status_code == 413 and "request body above the limit" in response.json()["errorMsg"]


def test_concurrent_requests_are_all_answered_correctly(service):
    pages = [render_page(seed=1030 + i, lines_per_column=3) for i in range(4)]
    answers: dict[int, httpx.Response] = {}

    def call(i: int) -> None:
        answers[i] = post(service, {"file": b64_png(pages[i].image)})

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    for i, page in enumerate(pages):
        texts = answers[i].json()["result"]["ocrResults"][0]["prunedResult"]["rec_texts"]
        assert page_cer(texts, [line.text for line in page.lines]) < 0.02


def test_a_request_gets_the_same_answer_alone_and_among_others(service):
    """Gathered requests run one by one (``batch_across_requests`` off): texts and scores of
    a page are exactly those it gets alone, whatever else is in flight."""
    pages = [render_page(seed=1040 + i, lines_per_column=4, height=900).image for i in range(3)]
    bodies = [{"file": b64_png(p), "visualize": False} for p in pages]
    alone = [post(service, b).json()["result"] for b in bodies]
    answers: dict[int, dict] = {}

    def call(i: int) -> None:
        answers[i] = post(service, bodies[i % 3]).json()["result"]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for i in range(6):
        got, expected = answers[i]["ocrResults"][0]["prunedResult"], alone[i % 3]["ocrResults"][0]["prunedResult"]
        assert (got["rec_texts"], got["rec_scores"]) == (expected["rec_texts"], expected["rec_scores"])


def test_url_checks_refuse_loopback_private_and_unlisted_hosts():
    assert host_allowed("img.example.com", (".example.com",)) and not host_allowed("example.org", ("example.com",))
    for url, message in (
        ("ftp://example.com/a.png", "only http and https"),
        ("http://user:pw@example.com/a.png", "no credentials"),
        ("http://evil.test/a.png", "allow-list"),
        ("http://localhost/a.png", "non-public"),
        ("http://127.0.0.1:8080/a.png", "non-public"),
        ("http://10.0.0.8/a.png", "non-public"),
        ("http://169.254.169.254/latest/meta-data", "non-public"),
    ):
        allow = ("example.com", "localhost", "127.0.0.1", "10.0.0.8", "169.254.169.254")
        with pytest.raises(ApiError, match=message) as info:
            check_url(url, allow)
        assert info.value.status == 403


def test_a_url_that_cannot_be_parsed_is_a_422_not_a_500():
    for url in ("http://[::1/x.png", "http://a]b/x.png", "http://user:secret@[::1/x?token=t"):
        with pytest.raises(ApiError, match="the URL is not valid") as info:
            check_url(url, ("example.com",))
        assert info.value.status == 422 and "secret" not in info.value.message


def test_base64_variants_decode():
    raw = bytes(range(256))
    standard = base64.b64encode(raw).decode()
    assert decode_base64(standard) == raw
    assert decode_base64(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == raw
    assert decode_base64("data:image/png;base64," + standard) == raw


def test_annotated_images_wider_than_jpeg_allows_are_scaled_to_fit_and_coordinates_never_wrap():
    """JPEG holds at most 65,535 px a side: a wider annotated image (two pages side by side)
    is scaled down to fit instead of failing the request with a 500; and pixel coordinates
    past int16 come as int32, never wrapped round to negative values."""
    from ocr_actors.result import pixel_coordinates
    from ocr_actors.service.protocol import jpeg_base64

    wide = np.full((10, 70_000, 3), 255, np.uint8)
    decoded = cv2.imdecode(np.frombuffer(base64.b64decode(jpeg_base64(wide)), np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (9, 65_500, 3)
    small = pixel_coordinates(np.array([[0, 5], [32_767, -3]]))
    assert small.dtype == np.int16 and small.tolist() == [[0, 5], [32_767, -3]]
    big = pixel_coordinates(np.array([[35_000.0, 12.0]]))
    assert big.dtype == np.int32 and big.tolist() == [[35_000, 12]]


def test_a_request_that_fails_in_the_engine_fails_alone_in_its_batch(service, tmp_path):
    """Requests sent together share a ``serve.batch`` call (the app waits 0.25 s for
    companions); one whose OCR raises (unwarping, whose model file here is not a model: it
    loads on first use and fails) gets its 500 while the other gets its texts: it used to fail
    the whole batch. A second app of the same Serve instance, with that broken model."""
    from ray import serve

    from ocr_actors.service.app import build_app

    broken = tmp_path / "uvdoc.onnx"
    broken.write_bytes(b"not an ONNX model")
    overrides = {"batch_wait_timeout_s": 0.25, "ocr.doc_preprocessor.unwarping_model": str(broken)}
    serve.run(build_app(load_config(ServiceConfig, None, overrides)), name="broken", route_prefix="/broken")
    try:
        page = render_page(seed=1060, lines_per_column=3)
        bodies = [
            {"file": b64_png(page.image), "useDocUnwarping": True, "visualize": False},
            {"file": b64_png(page.image), "visualize": False},
        ]
        answers: list = [None, None]

        def send(k: int) -> None:
            answers[k] = post(f"{service}/broken", bodies[k])

        threads = [threading.Thread(target=send, args=(k,)) for k in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        failed, good = answers
        assert failed.status_code == 500 and failed.json()["errorMsg"] == "internal error"
        assert good.status_code == 200, good.text
        texts = good.json()["result"]["ocrResults"][0]["prunedResult"]["rec_texts"]
        assert page_cer(texts, page.text.splitlines()) < 0.02
    finally:
        serve.delete("broken")


def blank_pdf(pages: int, side_pt: int) -> bytes:
    """A PDF of ``pages`` blank square pages of ``side_pt`` points, written by hand: a few
    hundred bytes whatever the page size."""
    kids = " ".join(f"{3 + k} 0 R" for k in range(pages))
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>"]
    objects += [f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {side_pt} {side_pt}] >>"] * pages
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj {body} endobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer << /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def test_a_small_pdf_of_huge_pages_is_refused_by_the_request_pixel_budget():
    """A PDF of a few hundred bytes can describe pages of 9000 x 9000 px: the pages a request
    decodes may hold ``max_request_pixels`` together (413 above), each page too."""
    from ocr_actors.service.protocol import parse_request

    data = blank_pdf(2, 4500)  # pages of 4500 pt: 9000 x 9000 px at the service's 144 dpi
    body = {"file": base64.b64encode(data).decode()}
    assert len(data) < 1000
    config = load_config(ServiceConfig, None, {"max_request_pixels": 100_000_000})
    with pytest.raises(ApiError, match=r"its first 2 pages hold 162000000 pixels, above 100000000") as info:
        parse_request(body, config)
    assert info.value.status == 413
    one_page = load_config(ServiceConfig, None, {"max_request_pixels": 50_000_000})
    with pytest.raises(ApiError, match=r"above the limit of 50000000") as info:
        parse_request(body, one_page)
    assert info.value.status == 413
    roomy = load_config(ServiceConfig, None, {"max_request_pixels": 200_000_000})
    assert [p.shape[:2] for p in parse_request(body, roomy).pages] == [(9000, 9000), (9000, 9000)]


def test_bodies_python_cannot_parse_as_json_are_400s(service):
    """Nesting deeper than Python's recursion limit, and an integer of over 4300 digits: not
    JSON this service takes (400), never a 500 with a traceback in the log."""
    for content in (b"[" * 100_000 + b"]" * 100_000, b'{"file": ' + b"9" * 5000 + b"}"):
        response = httpx.post(f"{service}/ocr", content=content, timeout=30)
        assert response.status_code == 400 and response.json()["errorMsg"] == "the request body is not valid JSON"
