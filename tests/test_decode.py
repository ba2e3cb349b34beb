"""Unit tests for ocr_actors.io.decode: images of every kind and PDFs made in the test."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
import pytest
from PIL import Image

from ocr_actors.io.decode import (
    CorruptInputError,
    EmptyInputError,
    EncryptedInputError,
    InputError,
    TooLargeInputError,
    TruncatedInputError,
    UnsupportedInputError,
    collapse_grey,
    decode_document,
    decode_image,
    pdf_page_count,
    rasterize_pdf,
    sniff_kind,
)

BIG = 10**8  # a pixel limit no test image reaches


def encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def rgb_test_image() -> Image.Image:
    """40x30 RGB: left half red, right half blue, top-left 4x4 green."""
    arr = np.zeros((30, 40, 3), dtype=np.uint8)
    arr[:, :20] = (255, 0, 0)
    arr[:, 20:] = (0, 0, 255)
    arr[:4, :4] = (0, 255, 0)
    return Image.fromarray(arr, "RGB")


def expected_bgr() -> np.ndarray:
    return np.asarray(rgb_test_image())[:, :, ::-1]


def decode_all(data: bytes, max_pixels: int = BIG) -> list:
    return list(decode_image(data, max_pixels))


def make_pdf(sizes: list[tuple[float, float]]) -> bytes:
    pdf = pdfium.PdfDocument.new()
    for width, height in sizes:
        pdf.new_page(width, height)
    buf = io.BytesIO()
    pdf.save(buf)
    pdf.close()
    return buf.getvalue()


def pdf_with_rects(pages: list[tuple[float, float, tuple[float, float, float, float], tuple[int, int, int]]]) -> bytes:
    """A PDF whose pages (width, height in points) each hold one filled rectangle (x, y, w, h
    from the bottom-left corner, as PDF counts) of an RGB colour."""
    pdf = pdfium.PdfDocument.new()
    for width, height, (x, y, w, h), (r, g, b) in pages:
        page = pdf.new_page(width, height)
        rect = pdfium_c.FPDFPageObj_CreateNewRect(x, y, w, h)
        pdfium_c.FPDFPageObj_SetFillColor(rect, r, g, b, 255)
        pdfium_c.FPDFPath_SetDrawMode(rect, pdfium_c.FPDF_FILLMODE_ALTERNATE, 0)
        pdfium_c.FPDFPage_InsertObject(page, rect)
        page.gen_content()
    buf = io.BytesIO()
    pdf.save(buf)
    pdf.close()
    return buf.getvalue()


# --------------------------------------------------------------------------- sniffing


def test_sniff_kind() -> None:
    assert sniff_kind(encode(rgb_test_image(), "PNG")) == "image"
    assert sniff_kind(encode(rgb_test_image(), "JPEG")) == "image"
    assert sniff_kind(encode(rgb_test_image(), "TIFF")) == "image"
    assert sniff_kind(encode(rgb_test_image(), "BMP")) == "image"
    assert sniff_kind(encode(rgb_test_image(), "GIF")) == "image"
    assert sniff_kind(encode(rgb_test_image(), "WEBP")) == "image"
    assert sniff_kind(make_pdf([(100, 100)])) == "pdf"
    assert sniff_kind(b"\n\r  %PDF-1.7\n...") == "pdf"  # leading whitespace tolerated


def test_sniff_kind_empty() -> None:
    with pytest.raises(EmptyInputError, match="empty"):
        sniff_kind(b"")


@pytest.mark.parametrize("data", [b"hello, this is plain text\n", b"<html><body>x</body></html>", b"\x00\x01\x02"])
def test_sniff_kind_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedInputError, match="not an image or PDF") as info:
        sniff_kind(data)
    assert info.value.error_type == "unsupported_type"


def test_error_types_are_input_errors_with_stable_codes() -> None:
    assert EmptyInputError("x").error_type == "empty"
    assert CorruptInputError("x").error_type == "corrupt"
    assert TruncatedInputError("x").error_type == "truncated"
    assert TooLargeInputError("x").error_type == "too_large"
    for cls in (EmptyInputError, CorruptInputError, TruncatedInputError, TooLargeInputError, UnsupportedInputError):
        assert issubclass(cls, InputError)


# --------------------------------------------------------------------------- images


def test_decode_rgb_png() -> None:
    pages = decode_all(encode(rgb_test_image(), "PNG"))
    assert len(pages) == 1
    page = pages[0]
    assert page.page_index == 0 and page.page_count == 1
    assert page.image.dtype == np.uint8
    assert page.image.shape == (30, 40, 3)
    assert page.image.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(page.image, expected_bgr())
    assert page.image[0, 0].tolist() == [0, 255, 0]
    assert page.image[10, 10].tolist() == [0, 0, 255]  # red in BGR
    assert page.image[10, 30].tolist() == [255, 0, 0]  # blue in BGR


def test_decode_png_dpi() -> None:
    page = decode_all(encode(rgb_test_image(), "PNG", dpi=(300, 300)))[0]
    assert page.dpi == pytest.approx(300, abs=0.1)
    assert decode_all(encode(rgb_test_image(), "PNG"))[0].dpi is None


def test_decode_greyscale() -> None:
    arr = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    page = decode_all(encode(Image.fromarray(arr, "L"), "PNG"))[0]
    assert page.image.shape == (2, 2, 3)
    np.testing.assert_array_equal(page.image, np.repeat(arr[:, :, None], 3, axis=2))


def test_decode_rgba_transparent_becomes_white() -> None:
    arr = np.zeros((10, 20, 4), dtype=np.uint8)
    arr[:, :10] = (255, 0, 0, 255)  # opaque red
    arr[:, 10:] = (0, 0, 0, 0)  # fully transparent black
    arr[0, 0] = (255, 0, 0, 128)  # half-transparent red
    page = decode_all(encode(Image.fromarray(arr, "RGBA"), "PNG"))[0]
    assert page.image.shape == (10, 20, 3)
    assert page.image[5, 5].tolist() == [0, 0, 255]
    assert (page.image[:, 10:] == 255).all()
    b, g, r = page.image[0, 0].tolist()
    assert r == 255 and abs(g - 127) <= 1 and abs(b - 127) <= 1


def test_decode_greyscale_with_alpha() -> None:
    arr = np.zeros((4, 4, 2), dtype=np.uint8)
    arr[:2] = (0, 255)  # opaque black
    arr[2:] = (0, 0)  # transparent
    page = decode_all(encode(Image.fromarray(arr, "LA"), "PNG"))[0]
    assert (page.image[:2] == 0).all()
    assert (page.image[2:] == 255).all()


def test_decode_palette() -> None:
    img = Image.new("P", (6, 4))
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    img.paste(1, (0, 0, 3, 4))  # green left
    img.paste(2, (3, 0, 6, 4))  # blue right
    data = encode(img, "PNG")
    assert Image.open(io.BytesIO(data)).mode == "P"
    page = decode_all(data)[0]
    assert page.image.shape == (4, 6, 3)
    assert page.image[0, 0].tolist() == [0, 255, 0]
    assert page.image[0, 5].tolist() == [255, 0, 0]


def test_decode_palette_with_transparency_becomes_white() -> None:
    img = Image.new("P", (4, 2))
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    img.paste(1, (0, 0, 2, 2))  # red left; right stays index 0 (black, transparent)
    data = encode(img, "PNG", transparency=0)
    page = decode_all(data)[0]
    assert page.image[0, 0].tolist() == [0, 0, 255]
    assert (page.image[:, 2:] == 255).all()


def test_decode_16_bit_greyscale_scaled_to_uint8() -> None:
    arr = np.array([[0, 65535], [32896, 257 * 50]], dtype=np.uint16)
    data = encode(Image.fromarray(arr), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    page = decode_all(data)[0]
    assert page.image.dtype == np.uint8
    assert page.image.shape == (2, 2, 3)
    assert page.image[:, :, 0].tolist() == [[0, 255], [128, 50]]
    assert (page.image[:, :, 0] == page.image[:, :, 2]).all()


def test_decode_jpeg_exif_orientation_6_is_applied() -> None:
    # Stored 60 wide x 30 high; left half red, right half blue. Orientation 6 means
    # "rotate 90 degrees clockwise to display": the left half ends up on top.
    arr = np.zeros((30, 60, 3), dtype=np.uint8)
    arr[:, :30] = (255, 0, 0)
    arr[:, 30:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(arr, "RGB"), "JPEG", exif=exif, quality=95)
    page = decode_all(data)[0]
    assert page.image.shape == (60, 30, 3)
    top = page.image[5:25, 5:25].astype(int)
    bottom = page.image[35:55, 5:25].astype(int)
    assert np.abs(top - [0, 0, 255]).max() <= 20  # red (BGR)
    assert np.abs(bottom - [255, 0, 0]).max() <= 20  # blue (BGR)


def test_decode_jpeg_without_exif() -> None:
    page = decode_all(encode(rgb_test_image(), "JPEG", quality=95))[0]
    assert page.image.shape == (30, 40, 3)
    assert np.abs(page.image[10, 10].astype(int) - [0, 0, 255]).max() <= 20


def test_decode_multipage_tiff() -> None:
    first = Image.new("RGB", (30, 20), (255, 0, 0))
    second = Image.new("RGB", (15, 25), (0, 0, 255))
    data = encode(first, "TIFF", save_all=True, append_images=[second])
    pages = decode_all(data)
    assert len(pages) == 2
    assert [p.page_index for p in pages] == [0, 1]
    assert [p.page_count for p in pages] == [2, 2]
    assert pages[0].image.shape == (20, 30, 3)
    assert pages[1].image.shape == (25, 15, 3)
    assert (pages[0].image == [0, 0, 255]).all()
    assert (pages[1].image == [255, 0, 0]).all()


def test_decode_animated_gif_is_one_page() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    pages = decode_all(data)
    assert len(pages) == 1
    assert pages[0].page_count == 1
    assert pages[0].image[0, 0].tolist() == [0, 0, 255]


@pytest.mark.parametrize(("fmt", "kwargs"), [("BMP", {}), ("WEBP", {"lossless": True}), ("TIFF", {})])
def test_decode_other_formats(fmt: str, kwargs: dict) -> None:
    pages = decode_all(encode(rgb_test_image(), fmt, **kwargs))
    assert len(pages) == 1
    np.testing.assert_array_equal(pages[0].image, expected_bgr())


def test_decode_truncated_png() -> None:
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 256, (200, 200, 3), dtype=np.uint8), "RGB")
    data = encode(noisy, "PNG")
    with pytest.raises(TruncatedInputError) as info:
        decode_all(data[: len(data) // 2])
    assert info.value.error_type == "truncated"
    assert "image data is truncated" in str(info.value)


def test_decode_png_signature_with_garbage() -> None:
    with pytest.raises(CorruptInputError) as info:
        decode_all(b"\x89PNG\r\n\x1a\n" + b"this is not a png" * 10)
    assert info.value.error_type == "corrupt"
    assert "image" in str(info.value)


def test_decode_png_with_corrupt_compressed_data() -> None:
    data = encode(Image.fromarray(np.random.default_rng(1).integers(0, 256, (50, 50), np.uint8), "L"), "PNG")
    start = data.index(b"IDAT")
    length = struct.unpack(">I", data[start - 4 : start])[0]
    payload = bytearray(data[start + 4 : start + 4 + length])
    payload[8:100] = bytes(range(92))  # garbage inside the zlib stream
    crc = struct.pack(">I", zlib.crc32(b"IDAT" + bytes(payload)) & 0xFFFFFFFF)  # valid chunk CRC
    bad = data[: start + 4] + bytes(payload) + crc + data[start + 8 + length :]
    with pytest.raises(CorruptInputError, match="cannot decode image"):
        decode_all(bad)


def test_decode_pixel_limit() -> None:
    data = encode(Image.new("RGB", (100, 50)), "PNG")
    with pytest.raises(TooLargeInputError) as info:
        decode_all(data, max_pixels=4999)
    assert "100x50 = 5000 pixels, above the limit of 4999" in str(info.value)
    assert len(decode_all(data, max_pixels=5000)) == 1


def test_a_decompression_bomb_header_names_our_limit() -> None:
    """A PNG header claiming 20000 x 20000 pixels: Pillow refuses it while opening (above
    twice its limit); the message gives the configured limit, not Pillow's."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 20_000, 20_000, 8, 0, 0, 0, 0))
    bomb = b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    with pytest.raises(TooLargeInputError, match=r"^image of 400000000 pixels is above the limit of 180000000 pixels$"):
        decode_all(bomb, max_pixels=180_000_000)


def test_decode_honours_max_pixels_above_pillows_own_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow refuses images above its global MAX_IMAGE_PIXELS (about 89 Mpx by default),
    # below the engine's default max_pixels of 180 Mpx. Scaled down here: Pillow's limit
    # 1000 px, the caller's limit 10_000 px, an image of 1600 px must decode.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    data = encode(Image.new("RGB", (40, 40), (255, 255, 255)), "PNG")
    pages = decode_all(data, max_pixels=10_000)
    assert pages[0].image.shape == (40, 40, 3)


def test_decode_image_rejects_non_image_bytes() -> None:
    with pytest.raises(CorruptInputError, match="cannot identify the image data"):
        decode_all(b"GIF8 but not really a gif at all")


# --------------------------------------------------------------------------- PDFs


def test_rasterize_pdf_a4_at_72_dpi() -> None:
    pages = list(rasterize_pdf(make_pdf([(595, 842)]), dpi=72, max_pixels=BIG))
    assert len(pages) == 1
    page = pages[0]
    assert page.image.shape == (842, 595, 3)
    assert page.image.dtype == np.uint8
    assert page.dpi == 72.0
    assert page.page_index == 0 and page.page_count == 1
    assert (page.image == 255).all()  # a blank page renders white


def test_rasterize_pdf_scales_with_dpi() -> None:
    page = next(rasterize_pdf(make_pdf([(300, 200)]), dpi=144, max_pixels=BIG))
    assert page.image.shape == (400, 600, 3)
    assert page.dpi == 144.0


def test_rasterize_pdf_colours_are_bgr() -> None:
    data = pdf_with_rects([(200, 100, (0, 50, 100, 50), (255, 0, 0))])  # PDF origin is bottom-left
    image = next(rasterize_pdf(data, dpi=72, max_pixels=BIG)).image
    assert image.shape == (100, 200, 3)
    assert (image[5:45, 5:95] == [0, 0, 255]).all()  # red, top-left quarter
    assert (image[55:95, 105:195] == 255).all()


def test_rasterize_pdf_pages_and_page_limit() -> None:
    data = make_pdf([(100, 200), (300, 100), (50, 50)])
    assert pdf_page_count(data) == 3
    pages = list(rasterize_pdf(data, 72, BIG))
    assert [p.image.shape[:2] for p in pages] == [(200, 100), (100, 300), (50, 50)]
    assert [(p.page_index, p.page_count) for p in pages] == [(0, 3), (1, 3), (2, 3)]
    limited = list(rasterize_pdf(data, 72, BIG, page_limit=2))
    assert [(p.page_index, p.page_count) for p in limited] == [(0, 2), (1, 2)]
    picked = list(rasterize_pdf(data, 72, BIG, page_indices=[2, 0, 7]))
    assert [p.page_index for p in picked] == [2, 0]
    with pytest.raises(EmptyInputError, match=r"none of the pages asked for \(2\) is in this PDF's first 2 pages"):
        list(rasterize_pdf(data, 72, BIG, page_limit=2, page_indices=[2]))
    with pytest.raises(EmptyInputError, match=r"none of the pages asked for \(5, 9\) is in this \d+-page PDF"):
        list(decode_document(data, page_indices=[9, 5]))
    png = cv2.imencode(".png", np.full((20, 30, 3), 255, np.uint8))[1].tobytes()
    assert [p.page_index for p in decode_document(png, page_indices=[0])] == [0]
    with pytest.raises(EmptyInputError, match=r"none of the pages asked for \(3\) is in this image"):
        list(decode_document(png, page_indices=[3]))


def test_rasterize_pdf_pixel_limit() -> None:
    data = make_pdf([(595, 842)])
    with pytest.raises(TooLargeInputError, match="above the limit of 100000"):
        list(rasterize_pdf(data, 72, max_pixels=100_000))


def test_threads_rasterising_pdfs_never_call_pdfium_at_once(monkeypatch) -> None:
    """PDFium is not thread-safe, even across documents: threads decoding PDFs at once (the
    service's request threads; model actors loading pages with ``concurrent_calls``) take
    turns inside it, and every page comes out as a lone thread renders it."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    inside = {"now": 0, "most": 0, "calls": 0}
    guard = threading.Lock()

    def counted(original):  # type: ignore[no-untyped-def]
        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            with guard:
                inside["now"] += 1
                inside["calls"] += 1
                inside["most"] = max(inside["most"], inside["now"])
            try:
                threading.Event().wait(0.002)  # widen the window another thread could enter
                return original(*args, **kwargs)
            finally:
                with guard:
                    inside["now"] -= 1

        return call

    documents = [
        pdf_with_rects([(120 + 10 * k, 80 + 10 * j, (5 * j, 5 * k, 40, 20), (40 * k, 80 * j, 0)) for j in range(3)])
        for k in range(6)
    ]
    alone = [[p.image for p in rasterize_pdf(d, 72, BIG)] for d in documents]

    for name in ("render", "get_size", "close"):
        monkeypatch.setattr(pdfium.PdfPage, name, counted(getattr(pdfium.PdfPage, name)))
    monkeypatch.setattr(pdfium.PdfDocument, "__len__", counted(pdfium.PdfDocument.__len__))
    monkeypatch.setattr(pdfium.PdfDocument, "get_page", counted(pdfium.PdfDocument.get_page))

    def rasterise(index: int) -> list[np.ndarray]:
        data = documents[index % len(documents)]
        assert pdf_page_count(data) == 3
        return [p.image for p in rasterize_pdf(data, 72, BIG)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(rasterise, range(48)))
    assert inside["calls"] > 48 * 3 and inside["most"] == 1
    for index, pages in enumerate(results):
        expected = alone[index % len(documents)]
        assert len(pages) == 3 and all(np.array_equal(a, b) for a, b in zip(pages, expected, strict=True))


def test_empty_pdf_has_no_pages() -> None:
    data = make_pdf([])
    with pytest.raises(EmptyInputError, match="no pages") as info:
        list(rasterize_pdf(data, 72, BIG))
    assert info.value.error_type == "empty"


def test_truncated_pdf() -> None:
    data = make_pdf([(595, 842), (595, 842)])
    with pytest.raises(InputError) as info:
        list(rasterize_pdf(data[: len(data) // 2], 72, BIG))
    assert isinstance(info.value, TruncatedInputError)
    assert "cannot open the PDF" in str(info.value)
    with pytest.raises(TruncatedInputError):
        pdf_page_count(data[: len(data) // 2])


def hand_built_pdf(objects: list[bytes], trailer_extra: bytes = b"") -> bytes:
    """A minimal PDF with a correct xref table from numbered object bodies."""
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        trailer_extra,
        xref,
    )
    return out


PAGE_TREE = [
    b"<< /Type /Catalog /Pages 2 0 R >>",
    b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] >>",
]


def test_hand_built_pdf_renders() -> None:
    page = next(rasterize_pdf(hand_built_pdf(PAGE_TREE), 72, BIG))
    assert page.image.shape == (100, 200, 3)


def test_encrypted_pdf() -> None:
    # Standard security handler (RC4, revision 2) whose user password is not empty: the
    # /U entry does not match the empty password, so the PDF cannot be opened without one.
    encrypt = b"<< /Filter /Standard /V 1 /R 2 /O <" + b"11" * 32 + b"> /U <" + b"22" * 32 + b"> /P -4 >>"
    file_id = b"<00112233445566778899aabbccddeeff>"
    data = hand_built_pdf([*PAGE_TREE, encrypt], b"/Encrypt 4 0 R /ID [" + file_id + file_id + b"] ")
    with pytest.raises(EncryptedInputError, match="encrypted") as info:
        list(rasterize_pdf(data, 72, BIG))
    assert info.value.error_type == "encrypted"
    with pytest.raises(EncryptedInputError):
        pdf_page_count(data)


def test_hand_built_zero_page_pdf_is_empty() -> None:
    data = hand_built_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"])
    with pytest.raises(EmptyInputError, match="no pages"):
        list(rasterize_pdf(data, 72, BIG))


def test_corrupt_pdf_with_eof_marker() -> None:
    data = b"%PDF-1.7\n" + b"garbage " * 50 + b"\n%%EOF\n"
    with pytest.raises(CorruptInputError, match="cannot open the PDF"):
        list(rasterize_pdf(data, 72, BIG))


def test_decode_document_dispatches() -> None:
    pdf_pages = list(decode_document(make_pdf([(100, 50)]), pdf_dpi=72))
    assert pdf_pages[0].image.shape == (50, 100, 3)
    assert pdf_pages[0].dpi == 72.0
    img_pages = list(decode_document(encode(rgb_test_image(), "PNG")))
    np.testing.assert_array_equal(img_pages[0].image, expected_bgr())
    with pytest.raises(EmptyInputError):
        list(decode_document(b""))
    with pytest.raises(UnsupportedInputError):
        list(decode_document(b"just text"))
    limited = list(decode_document(make_pdf([(10, 10)] * 3), pdf_dpi=72, pdf_page_limit=1))
    assert len(limited) == 1 and limited[0].page_count == 1


def _pillow_bgr(data: bytes) -> np.ndarray:
    """The careful (Pillow) path's pixels, for comparison with the OpenCV fast path."""
    from ocr_actors.io.decode import _to_bgr

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return _to_bgr(img)


def _scan_like(mode: str) -> Image.Image:
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)
    pixels[100:120, 20:180] = (10, 40, 200)
    img = Image.fromarray(pixels, "RGB")
    return img.convert("L") if mode == "L" else img


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_plain_png_fast_path_gives_the_pillow_pixels(mode: str) -> None:
    data = encode(_scan_like(mode), "PNG")
    (page,) = decode_all(data)
    assert page.image.shape == (300, 200, 3)
    np.testing.assert_array_equal(page.image, _pillow_bgr(data))
    if mode == "RGB":
        assert tuple(page.image[110, 100]) == (200, 40, 10)  # BGR


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_plain_jpeg_fast_path_matches_pillow(mode: str) -> None:
    data = encode(_scan_like(mode), "JPEG", quality=92)
    (page,) = decode_all(data)
    assert page.image.shape == (300, 200, 3)
    assert np.abs(page.image.astype(int) - _pillow_bgr(data).astype(int)).max() <= 1


def test_decode_truncated_jpeg() -> None:
    data = encode(_scan_like("RGB"), "JPEG", quality=92)
    with pytest.raises(TruncatedInputError):
        decode_all(data[: len(data) * 2 // 3])


XMP_TURNED = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_xmp_orientation_is_applied_like_exif(fmt: str) -> None:
    """Orientation stated only in XMP turns the page too (the OpenCV fast path must not skip it)."""
    from PIL import PngImagePlugin

    img = Image.fromarray(np.zeros((60, 40, 3), np.uint8))
    if fmt == "JPEG":
        data = encode(img, "JPEG", xmp=XMP_TURNED.encode())
    else:
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", XMP_TURNED)
        data = encode(img, "PNG", pnginfo=info)
    (page,) = decode_all(data)
    assert page.image.shape == (40, 60, 3)


# --------------------------------------------------------------------------- grey pages (keep_grey)


def test_collapse_grey_keeps_one_channel_only_when_all_three_are_equal() -> None:
    grey = np.random.default_rng(3).integers(0, 256, (30, 40), dtype=np.uint8)
    bgr = np.repeat(grey[:, :, None], 3, axis=2)
    collapsed = collapse_grey(bgr)
    assert collapsed.shape == (30, 40, 1) and np.array_equal(collapsed[:, :, 0], grey)
    tinted = bgr.copy()
    tinted[29, 39, 2] ^= 1  # one channel of one pixel differs: colour, kept whole
    assert collapse_grey(tinted) is tinted
    assert collapse_grey(collapsed) is collapsed


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF"])
def test_keep_grey_gives_grey_files_one_channel(fmt: str) -> None:
    data = encode(_scan_like("L"), fmt)
    (bgr_page,) = decode_all(data)
    (grey_page,) = list(decode_image(data, BIG, keep_grey=True))
    assert grey_page.image.shape == (300, 200, 1) and grey_page.image.dtype == np.uint8
    np.testing.assert_array_equal(np.repeat(grey_page.image, 3, axis=2), bgr_page.image)


def test_keep_grey_collapses_grey_content_stored_as_colour_and_keeps_colour() -> None:
    grey_as_rgb = encode(_scan_like("L").convert("RGB"), "PNG")
    (page,) = list(decode_document(grey_as_rgb, keep_grey=True))
    assert page.image.shape == (300, 200, 1)
    np.testing.assert_array_equal(page.image[:, :, 0], np.asarray(_scan_like("L")))
    (colour,) = list(decode_document(encode(_scan_like("RGB"), "PNG"), keep_grey=True))
    assert colour.image.shape == (300, 200, 3) and tuple(colour.image[110, 100]) == (200, 40, 10)
    # 16-bit grey goes through Pillow; grey too
    arr16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    data16 = encode(Image.fromarray(arr16), "PNG")
    (page16,) = list(decode_image(data16, BIG, keep_grey=True))
    assert page16.image.shape == (8, 8, 1)
    np.testing.assert_array_equal(np.repeat(page16.image, 3, axis=2), decode_all(data16)[0].image)


def test_keep_grey_pdf_pages() -> None:
    blank = next(rasterize_pdf(make_pdf([(300, 200)]), dpi=72, max_pixels=BIG, keep_grey=True)).image
    assert blank.shape == (200, 300, 1) and (blank == 255).all()


def test_a_bad_frame_of_a_multi_page_tiff_fails_that_page_only() -> None:
    frames = [Image.new("L", (200, 100), shade) for shade in (50, 100, 150)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "TIFF", save_all=True, append_images=frames[1:], dpi=(300, 300))
    data = buffer.getvalue()
    with Image.open(io.BytesIO(data)) as whole:
        whole.seek(1)
        frame_1_end = whole.tile[0].offset + 200 * 100  # raw pixels; frame 2's directory entry follows
    cut = data[:-100]  # inside the last frame's pixels
    cut_directory = data[: frame_1_end + 10]  # inside the third frame's directory entry
    for damaged, error, message in (
        (cut, TruncatedInputError, "frame 2: "),
        (
            cut_directory,
            CorruptInputError,
            "frame 2: cannot read its directory entry (the file is cut short or corrupt)",
        ),
    ):  # the frames before the damage still come; the rest is one failed page
        pages = list(decode_document(damaged, yield_page_failures=True))
        assert [(type(p).__name__, p.page_index, p.page_count) for p in pages] == [
            ("Page", 0, 3),
            ("Page", 1, 3),
            ("PageFailure", 2, 3),
        ]
        assert [int(p.image[0, 0, 0]) for p in pages[:2]] == [50, 100]
        assert [p.dpi for p in pages[:2]] == [300.0, 300.0]  # read before a frame walk moves off frame 0
        assert isinstance(pages[2].error, error) and str(pages[2].error).startswith(message)
    assert [p.page_index for p in decode_document(cut, yield_page_failures=True, page_indices=[2])] == [2]
    with pytest.raises(TruncatedInputError, match="frame 2"):  # not asked for per-page failures: raised
        list(decode_document(cut))
    with pytest.raises(CorruptInputError, match="frame directory"):
        list(decode_document(cut_directory))


def test_a_frame_with_corrupt_compressed_data_says_so() -> None:
    """Pillow's codecs report only "decoder error -2" for a deflate stream that is garbage; the
    failure says what that means, and the other frames still come."""
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 255, (100, 200), dtype=np.uint8)) for _ in range(3)]
    data = bytearray(encode(frames[0], "TIFF", save_all=True, append_images=frames[1:], compression="tiff_deflate"))
    assert struct.unpack("<I", data[4:8])[0] > 400  # Pillow writes frame 0's pixels before its directory
    data[10:400] = b"\xff" * 390  # inside frame 0's deflate stream
    pages = list(decode_document(bytes(data), yield_page_failures=True))
    assert [(p.page_index, hasattr(p, "image")) for p in pages] == [(0, False), (1, True), (2, True)]
    assert isinstance(pages[0].error, CorruptInputError)
    assert (
        str(pages[0].error)
        == "frame 0: cannot decode image: its compressed image data is corrupt (Pillow: decoder error -2)"
    )


def test_a_png_too_short_for_its_header_is_truncated_not_a_blank_page() -> None:
    """231 bytes claiming 13000 x 13000 pixels, with an end marker: OpenCV would fill the
    missing rows with blank pixels (500 MB); the compressed size cannot hold them."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 13_000, 13_000, 8, 2, 0, 0, 0))
    short = b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\x00" * 5000)) + chunk(b"IEND", b"")
    with pytest.raises(TruncatedInputError, match=r"\d+ bytes of compressed data cannot hold 13000x13000 pixels"):
        decode_all(short, max_pixels=200_000_000)
    with pytest.raises(TooLargeInputError):  # the pixel limit is checked first, before any PNG check
        decode_all(short)
    blank = cv2.imencode(".png", np.full((2000, 2000, 3), 255, np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9])[1]
    assert len(blank) * 500 < 2000 * 2000 * 3  # compressed hundreds of times, yet complete: decodes
    assert decode_all(blank.tobytes())[0].image.shape == (2000, 2000, 3)
    # a complete zlib stream of 1000 rows under a header of 12000, within deflate's ratio: the
    # decoders would fill 11000 rows in silently; counting the inflated bytes finds it out
    pixels = np.full((1000, 3000), 128, np.uint8)
    pixels[:, :60] = np.random.default_rng(0).integers(0, 256, (1000, 60))  # compresses 30-50 times
    rows = zlib.compress(b"".join(b"\x00" + row.tobytes() for row in pixels))
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 3000, 12_000, 8, 0, 0, 0, 0))
    few_rows = b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    assert 3001 * 12_000 / 1100 < len(rows) < 3001 * 12_000 / 128  # not caught by the size alone
    with pytest.raises(TruncatedInputError, match=r"holds 3001000 of the 36012000 bytes of 3000x12000 pixels"):
        decode_all(few_rows)
    whole = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 3000, 1000, 8, 0, 0, 0, 0))
    whole += chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    assert (decode_all(whole)[0].image[:, :, 0] == pixels).all()  # the same rows under their own header
    # the same through Pillow's path (a grey PNG with alpha): found out too
    rows_la = zlib.compress(
        b"".join(b"\x00" + np.dstack([row, np.full(3000, 255, np.uint8)]).tobytes() for row in pixels)
    )
    header_la = chunk(b"IHDR", struct.pack(">IIBBBBB", 3000, 12_000, 8, 4, 0, 0, 0))
    few_la = b"\x89PNG\r\n\x1a\n" + header_la + chunk(b"IDAT", rows_la) + chunk(b"IEND", b"")
    with pytest.raises(TruncatedInputError, match=r"holds 6001000 of the 72012000 bytes"):
        decode_all(few_la)


def test_only_pngs_ending_in_a_blank_row_are_inflated_twice(monkeypatch) -> None:
    """The row count is checked only where the decoders' fill shows (a last row of zeros) and
    the data is compressed over 32 times: a blank white page, compressed hundreds of times,
    is decoded once; a near-empty page with a black last row is checked, and passes."""
    from ocr_actors.io import decode

    calls: list[int] = []
    real = decode._inflated_size
    monkeypatch.setattr(decode, "_inflated_size", lambda *a: calls.append(1) or real(*a))
    white = np.full((3000, 2000), 255, np.uint8)
    assert decode_all(cv2.imencode(".png", white)[1].tobytes())[0].image.shape == (3000, 2000, 3)
    assert calls == []
    white[-1] = 0
    assert decode_all(cv2.imencode(".png", white)[1].tobytes())[0].image.shape == (3000, 2000, 3)
    assert calls == [1]


def test_header_errors_pillow_raises_as_value_errors_are_corrupt_and_media_files_are_unsupported():
    """Pillow's own parsers raise ValueError (a PNG whose IHDR chunk is cut short, a PPM with a
    bad size token): a corrupt file, like any other. Video and audio containers (MP4 and
    QuickTime ``ftyp``, WAV and AVI ``RIFF``) and texts that start like a BMP or PNM magic
    number are not images at all, while WebP (``RIFF…WEBP``), BMP and PNM files still decode."""
    good = cv2.imencode(".png", np.full((8, 8, 3), 200, np.uint8))[1].tobytes()
    bad_ihdr = good[:8] + b"\x00\x00\x00\x05IHDR" + good[16:21] + b"\x00" * 4 + good[33:]  # 5 of its 13 bytes
    for data, fragment in [(bad_ihdr, "Truncated IHDR chunk"), (b"P6\n4E 4\n255\n" + b"\x00" * 48, "int")]:
        with pytest.raises(CorruptInputError, match=f"cannot read image header: .*{fragment}"):
            list(decode_document(data))
    media = {
        "mp4": b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + b"\x00" * 200,
        "mov": b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  " + b"\x00" * 200,
        "wav": b"RIFF\x24\x08\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x02\x00" + b"\x00" * 200,
        "avi": b"RIFF\x24\x08\x00\x00AVI LIST" + b"\x00" * 200,
    }
    media["text starting BM"] = b"BMW quarterly report\n" * 10
    media["text starting P1"] = b"P1 meeting notes\n" * 10
    for data in media.values():
        with pytest.raises(UnsupportedInputError, match="unrecognised file signature"):
            list(decode_document(data))
    for suffix, channels in ((".bmp", 3), (".pgm", 1), (".ppm", 3)):  # the real headers still decode
        real = cv2.imencode(suffix, np.full((8, 8, channels), 200, np.uint8))[1].tobytes()
        assert next(decode_document(real)).image.shape[:2] == (8, 8)
    webp = cv2.imencode(".webp", np.full((8, 8, 3), 200, np.uint8))[1].tobytes()
    assert webp[8:12] == b"WEBP" and next(decode_document(webp)).image.shape == (8, 8, 3)


# --------------------------------------------------------------------------- found by a probe of bad inputs


def hand_made_pdf(objects: list[bytes]) -> bytes:
    """A PDF of these numbered objects (1 is the catalog), with a correct cross-reference table."""
    out, offsets = b"%PDF-1.7\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    return out + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)


def test_a_pdf_page_pdfium_cannot_load_fails_that_page_alone() -> None:
    """A page tree whose third entry loops back into itself: the PDF opens and counts 3 pages,
    then PDFium cannot load that page. It is that page's failure (a typed error, not PDFium's
    own), and the pages before it still come."""
    data = hand_made_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R 3 0 R 4 0 R] /Count 3 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 144 72] >>",
            b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",  # its own kid
        ]
    )
    assert pdf_page_count(data) == 3
    pages = list(decode_document(data, pdf_dpi=72, yield_page_failures=True))
    assert [(p.page_index, p.image.shape) for p in pages[:2]] == [(0, (72, 144, 3)), (1, (72, 144, 3))]
    assert pages[2].page_index == 2 and pages[2].page_count == 3
    assert isinstance(pages[2].error, CorruptInputError) and str(pages[2].error).startswith("cannot load page 2")
    with pytest.raises(CorruptInputError, match="cannot load page 2"):
        list(decode_document(data, page_indices=[2]))


def test_bigtiff_bare_jpeg2000_codestreams_and_pdfs_after_stray_bytes_are_read() -> None:
    """Files Pillow or PDFium read that the signature check once refused as "not an image or
    PDF": BigTIFF, a bare JPEG 2000 codestream (.j2k), and a PDF with bytes before its header
    (PDF readers look for it in the first 1 KB). A text that mentions %PDF later is still no PDF."""
    expected = expected_bgr()
    big_tiff = encode(rgb_test_image(), "TIFF", big_tiff=True)
    assert big_tiff[:4] == b"II+\x00"
    assert (decode_all(big_tiff)[0].image == expected).all()
    codestream = encode(rgb_test_image(), "JPEG2000", no_jp2=True, irreversible=False)
    assert codestream[:4] == b"\xff\x4f\xff\x51"
    assert (decode_all(codestream)[0].image == expected).all()  # lossless
    pdf = b"X-Mailer: scanner 2.1\r\nContent-Type: application/pdf\r\n\r\n" + make_pdf([(144, 72)])
    assert sniff_kind(pdf) == "pdf"
    assert [p.image.shape for p in decode_document(pdf, pdf_dpi=72)] == [(72, 144, 3)]
    with pytest.raises(UnsupportedInputError, match="unrecognised file signature"):
        sniff_kind(b" " * 2000 + b"%PDF-1.7")  # past the first 1 KB


def test_a_tiff_without_resolution_tags_states_no_dpi() -> None:
    """Pillow reports a TIFF without XResolution as 1 dpi; the file states none, so None (a
    null ``dpi`` in the output), while a stated 300 dpi is kept."""
    grey = Image.new("L", (64, 32), 255)
    assert next(decode_document(encode(grey, "TIFF"))).dpi is None
    assert next(decode_document(encode(grey, "TIFF", dpi=(300, 300)))).dpi == 300.0


def test_bilevel_scans_decode_straight_to_grey() -> None:
    """A 1-bit image (CCITT G4 TIFF, 1-bit PNG) becomes 0/255 grey without passing through RGB:
    the decoder's numpy and Python allocations stay near two bytes a pixel with ``keep_grey``
    (through RGB they were over six), and the BGR page is the same pixels."""
    import tracemalloc

    bits = np.zeros((1200, 1600), dtype=bool)
    bits[100:300, 200:1400] = True
    bilevel = Image.fromarray(bits).convert("1")
    for data in (encode(bilevel, "TIFF", compression="group4"), encode(bilevel, "PNG")):
        tracemalloc.start()
        page = next(decode_document(data, keep_grey=True))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert page.image.shape == (1200, 1600, 1)
        assert (page.image[:, :, 0] == np.where(bits, 255, 0)).all()
        assert peak < 4 * bits.size, peak
        bgr = next(decode_document(data)).image
        assert bgr.shape == (1200, 1600, 3) and (bgr == page.image).all()


def test_a_heic_without_pi_heif_installed_names_the_package(monkeypatch) -> None:
    """Where pi-heif is missing (it is a dependency, but a trimmed image may lack it), a HEIC is
    an unsupported input that names the package to install, not a "corrupt" one."""
    from pathlib import Path

    import ocr_actors.io.decode as decode

    data = (Path(__file__).parent / "data" / "phone_photo.heic").read_bytes()
    monkeypatch.setattr(decode, "heif_opener_registered", lambda: False)
    with pytest.raises(UnsupportedInputError, match="needs the pi-heif package"):
        decode_all(data)


def test_an_interlaced_png_decodes_and_one_whose_passes_run_short_is_truncated() -> None:
    """Adam7 PNGs: a whole one gives its pixels; one whose complete zlib stream stops before
    the last passes (the row count check does not cover interlaced files) is refused as
    truncated, not filled in: OpenCV gives no image and Pillow raises."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    width, height = 400, 600
    pixels = np.full((height, width), 255, np.uint8)
    pixels[:, :8] = np.random.default_rng(1).integers(0, 256, (height, 8))
    adam7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
    raw = b"".join(b"\x00" + row.tobytes() for x0, y0, dx, dy in adam7 for row in pixels[y0::dy, x0::dx])
    header = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 1))

    def interlaced(data: bytes) -> bytes:
        return header + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b"")

    assert (decode_all(interlaced(raw))[0].image[:, :, 0] == pixels).all()
    for kept in (len(raw) // 2, len(raw) - 5000):
        with pytest.raises(TruncatedInputError):
            decode_all(interlaced(raw[:kept]))
