"""Decoding bytes into page images: images of every common kind and PDFs.

Pages are BGR ``(H, W, 3)`` uint8 arrays. Failures raise :class:`InputError`
subclasses whose ``error_type`` is a short stable code (for error rows).
"""

from __future__ import annotations

import functools
import io
import re
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np


class InputError(ValueError):
    """An input that cannot be turned into pages. ``error_type`` is a stable code."""

    error_type = "input_error"


class EmptyInputError(InputError):
    error_type = "empty"


class CorruptInputError(InputError):
    error_type = "corrupt"


class TruncatedInputError(InputError):
    error_type = "truncated"


class UnsupportedInputError(InputError):
    error_type = "unsupported_type"


class EncryptedInputError(InputError):
    error_type = "encrypted"


class TooLargeInputError(InputError):
    error_type = "too_large"


class InputNotFoundError(InputError):
    error_type = "not_found"


class ReadFailedError(InputError):
    """The object exists (or may) but reading it failed: an I/O or network error, a symlink
    loop, a connection refused. Often transient."""

    error_type = "read_failed"


@dataclass(frozen=True)
class Page:
    """One decoded page.

    Attributes:
        image: BGR ``(H, W, 3)`` uint8, or grey ``(H, W, 1)`` uint8 when decoded with
            ``keep_grey`` and the page is grey.
        page_index: 0-based index in its document.
        page_count: pages in the document (after any page limit).
        dpi: rasterisation DPI for PDFs, the file's DPI for images if stated, else None.
    """

    image: np.ndarray
    page_index: int
    page_count: int
    dpi: float | None = None


PDF_MAGIC = b"%PDF"

IMAGE_SIGNATURES = (
    b"\x89PNG",
    b"\xff\xd8\xff",  # JPEG
    b"II*\x00",  # TIFF, little- and big-endian
    b"MM\x00*",
    b"II+\x00",  # BigTIFF
    b"MM\x00+",
    b"GIF8",
    b"\x00\x00\x00\x0cjP",  # JPEG 2000 (.jp2)
    b"\xff\x4f\xff\x51",  # a bare JPEG 2000 codestream (.j2k, .j2c)
)


HEVC_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")
"""ISO base media brands of HEIF still images (phone photos: ``.heic``); pi-heif decodes them."""
HEIF_BRANDS = (*HEVC_BRANDS, b"avif", b"avis")
"""ISO base media brands of still images (HEIF, AVIF); other ``ftyp`` files are video or audio."""


def is_heif(data: bytes) -> bool:
    """True for a HEIF (HEVC-coded) still image by its ``ftyp`` box; AVIF is Pillow's own."""
    return data[4:8] == b"ftyp" and data[8:12] in HEVC_BRANDS


@functools.cache
def heif_opener_registered() -> bool:
    """Registers pi-heif's HEIF decoder with Pillow, once a process; False when pi-heif is not
    installed. libheif applies the file's own rotation and mirroring (``irot``/``imir``) and
    pi-heif then reports EXIF orientation 1, so pages come upright once, not twice."""
    try:
        import pi_heif
    except ImportError:
        return False
    pi_heif.register_heif_opener()
    return True


BMP_HEADER_SIZES = tuple(size.to_bytes(4, "little") for size in (12, 16, 40, 52, 56, 64, 108, 124))
"""The sizes a BMP's info header (right after its 14-byte file header) may have."""

PNM_HEADER = re.compile(rb"P[1-6]\s+(#|\d)")
"""The start of a PBM/PGM/PPM file: its magic number, white space, a width or a comment."""


def sniff_kind(data: bytes) -> str:
    """ "pdf" or "image" from the leading bytes; raises for empty or unknown content."""
    if not data:
        raise EmptyInputError("the input is empty (0 bytes)")
    head = data[:1024]
    if head.lstrip().startswith(PDF_MAGIC):
        return "pdf"
    if any(data.startswith(sig) for sig in IMAGE_SIGNATURES):
        return "image"
    if data.startswith(b"BM") and data[14:18] in BMP_HEADER_SIZES:  # not a text that starts "BM…"
        return "image"
    if PNM_HEADER.match(data[:16]):  # P1-P6, white space, then a size or a comment: not "P1 notes"
        return "image"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":  # not a WAV or AVI, which are RIFF too
        return "image"
    if data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS:  # HEIF/AVIF, not MP4 or QuickTime: Pillow decides
        return "image"
    if PDF_MAGIC in head:  # bytes before the header (a mail or HTTP header left in): PDF readers allow 1 KB
        return "pdf"
    raise UnsupportedInputError("not an image or PDF (unrecognised file signature)")


def collapse_grey(image: np.ndarray) -> np.ndarray:
    """A BGR ``(H, W, 3)`` page whose three channels are equal as grey ``(H, W, 1)``; any other
    image as is. Lossless: the models get the same values from either (see
    :mod:`ocr_actors.preprocess`), and a grey page is a third of the bytes to move between
    processes and to pre-process. Costs one pass over the page."""
    if image.ndim != 3 or image.shape[2] != 3:
        return image
    blue, green, red = cv2.split(image)
    if cv2.norm(blue, green, cv2.NORM_INF) == 0 and cv2.norm(green, red, cv2.NORM_INF) == 0:
        return green[:, :, None]
    return image


def _grey_or_bgr(grey: np.ndarray, keep_grey: bool) -> np.ndarray:
    """An ``(H, W)`` uint8 grey image as ``(H, W, 1)`` with ``keep_grey``, else as BGR."""
    return grey[:, :, None] if keep_grey else np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


def _to_bgr(img: object, keep_grey: bool = False) -> np.ndarray:
    """Convert a Pillow image of any mode (grey, palette, alpha, 16-bit, CMYK) to BGR uint8
    (grey modes to ``(H, W, 1)`` with ``keep_grey``)."""
    from PIL import Image

    assert isinstance(img, Image.Image)
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        top = float(arr.max()) if arr.size else 0.0
        if mode.startswith("I;16") or 255 < top <= 65535:
            arr = arr / 257.0  # the 16-bit range onto 0-255
        elif top > 65535:
            arr = arr * (255.0 / top)
        grey = np.clip(np.round(arr), 0, 255).astype(np.uint8)
        return _grey_or_bgr(grey, keep_grey)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        top = float(arr.max()) if arr.size else 1.0
        grey = np.clip(arr * (255.0 / (top if top > 1.0 else 1.0)), 0, 255).astype(np.uint8)
        return _grey_or_bgr(grey, keep_grey)
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode == "1":  # bilevel (CCITT G4 scans): straight to grey, not through RGB (4x the memory)
        img = img.convert("L")
        mode = "L"
    if mode == "L":
        grey = np.asarray(img, dtype=np.uint8)
        return np.array(grey[:, :, None]) if keep_grey else cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba).convert("RGB")
    elif mode != "RGB":
        img = img.convert("RGB")
    return cv2.cvtColor(np.asarray(img, dtype=np.uint8), cv2.COLOR_RGB2BGR)


ZLIB_MAX_RATIO = 1100
"""Above deflate's best compression (about 1032:1): compressed data this many times smaller
than the pixels it claims cannot hold them."""
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


PNG_CHECK_RATIO = 32
"""A decoded PNG whose last row is all zero (what the decoders fill missing rows with) and
whose data is compressed more than this many times is inflated once more, without keeping
the output, to count its rows (:func:`png_row_shortfall`): a page of text compresses 11-13
times, so only near-empty pages with a black bottom row pay for it (about 2 ms a MB of
pixels)."""


def _png_layout(data: bytes) -> tuple[int, int, int, int, list[tuple[int, int]]] | None:
    """``(width, height, bytes the rows need, interlaced, IDAT spans)`` of a plain PNG, or None."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR" or len(data) < 33:
        return None
    width, height, depth, colour, _, _, interlaced = struct.unpack(">IIBBBBB", data[16:29])
    row_bytes = 1 + (width * PNG_CHANNELS.get(colour, 1) * depth + 7) // 8
    chunks, offset = [], 8
    while offset + 8 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        if data[offset + 4 : offset + 8] == b"IDAT":
            chunks.append((offset + 8, min(offset + 8 + length, len(data))))
        offset += 12 + length
    return width, height, height * row_bytes, interlaced, chunks


def png_data_shortfall(data: bytes) -> str | None:
    """Why a PNG's compressed image data (its IDAT chunks) is too short for the size its
    header states, by its size alone (under deflate's best ratio), or None. A short file with
    a huge header and an end marker would otherwise decode to hundreds of MB of blank pixels
    (OpenCV and Pillow fill in what is missing). No inflating: cheap before decoding."""
    layout = _png_layout(data)
    if layout is None:
        return None
    width, height, needed, _, chunks = layout
    compressed = sum(end - start for start, end in chunks)
    if compressed * ZLIB_MAX_RATIO < needed:
        return f"{compressed} bytes of compressed data cannot hold {width}x{height} pixels"
    return None


def png_row_shortfall(data: bytes) -> str | None:
    """Why a PNG's complete zlib stream holds fewer bytes than its rows need, or None: the
    stream is inflated once (1 MiB at a time, nothing kept) when compressed more than
    :data:`PNG_CHECK_RATIO` times; for a decoded page whose last row is blank (the decoders
    fill missing rows with zeros and say nothing). Interlaced images need no check: OpenCV gives
    none and Pillow raises "truncated" when their passes run short (tested)."""
    layout = _png_layout(data)
    if layout is None:
        return None
    width, height, needed, interlaced, chunks = layout
    if interlaced or sum(end - start for start, end in chunks) * PNG_CHECK_RATIO >= needed:
        return None
    held = _inflated_size(data, chunks, needed)
    if held is not None and held < needed:
        return f"its compressed data holds {held} of the {needed} bytes of {width}x{height} pixels"
    return None


def _last_row_blank(img: Any) -> bool:
    """Whether the last row of a loaded Pillow image holds only zeros in every band."""
    extrema = img.crop((0, img.height - 1, img.width, img.height)).getextrema()
    highs = [band[1] for band in extrema] if isinstance(extrema[0], tuple) else [extrema[1]]
    return all(high == 0 for high in highs)


def _inflated_size(data: bytes, chunks: list[tuple[int, int]], enough: int) -> int | None:
    """Bytes the zlib stream in ``data[start:end]`` for ``chunks`` inflates to, counted 1 MiB
    at a time and no further than ``enough``; None when the stream is corrupt (the decoder
    then says so itself)."""
    inflater, total = zlib.decompressobj(), 0
    try:
        for start, end in chunks:
            pending = memoryview(data)[start:end]
            while pending and not inflater.eof:
                total += len(inflater.decompress(pending, 1 << 20))
                if total >= enough:
                    return total
                pending = memoryview(inflater.unconsumed_tail)
            if inflater.eof:
                break
    except zlib.error:
        return None
    return total


def _plain_complete_file(img: Any, data: bytes, frames: int) -> bool:
    """True for a single-frame RGB or grey PNG/JPEG, complete, with no orientation to apply:
    the files OpenCV decodes to the pixels the Pillow path gives, 2-4x faster. Anything else
    (alpha, palette, CMYK, EXIF or XMP orientation, a missing end marker) takes the Pillow
    path, which knows how to convert it or which error to raise."""
    if img.mode not in ("RGB", "L") or frames != 1:
        return False
    if img.format == "PNG":
        # Orientation can hide in an eXIf chunk, an ImageMagick "Raw profile" text chunk or XMP.
        metadata = (b"eXIf", b"Raw profile type", b"tiff:Orientation")
        return data[-8:-4] == b"IEND" and not any(marker in data for marker in metadata)
    if img.format == "JPEG":
        return img.getexif().get(0x0112, 1) == 1 and b"\xff\xd9" in data[-32:]  # getexif reads XMP too
    return False


def _opencv_decode(data: bytes, width: int, height: int, grey: bool = False) -> np.ndarray | None:
    """BGR pixels from OpenCV (``(H, W, 1)`` grey ones with ``grey``), or None when it cannot
    give the whole image."""
    flags = (cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if pixels is None or pixels.shape[:2] != (height, width):
        return None
    return pixels[:, :, None] if grey else pixels


def decode_image(
    data: bytes, max_pixels: int, keep_grey: bool = False, yield_page_failures: bool = False
) -> Iterator[Page | PageFailure]:
    """Decode an image file; multi-frame TIFFs yield one page per frame.

    EXIF orientation is applied. With ``keep_grey``, grey pages (grey files, and colour ones
    whose channels are all equal: :func:`collapse_grey`) come as ``(H, W, 1)``. Raises
    :class:`InputError` subclasses; with ``yield_page_failures``, a frame of a multi-frame
    file that cannot be decoded is yielded as a :class:`PageFailure` instead and the other
    frames still come.
    """
    from PIL import Image, ImageFile, UnidentifiedImageError

    ImageFile.LOAD_TRUNCATED_IMAGES = False
    if is_heif(data) and not heif_opener_registered():
        raise UnsupportedInputError("HEIF/HEIC image: decoding it needs the pi-heif package (pip install pi-heif)")
    # Our own ``max_pixels`` check below is the guard; Pillow's global one must not be stricter.
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        claimed = re.search(r"\((\d+) pixels\)", str(exc))  # Pillow states the header's size
        size = f"{claimed.group(1)} pixels" if claimed else "its size"
        raise TooLargeInputError(f"image of {size} is above the limit of {max_pixels} pixels") from exc
    except UnidentifiedImageError as exc:
        raise CorruptInputError("cannot identify the image data (corrupt or unsupported image)") from exc
    except (OSError, ValueError, SyntaxError, TypeError, IndexError, struct.error) as exc:
        # Pillow's own parsers raise these for a bad header (a truncated PNG IHDR chunk, a bad
        # PPM token, a TIFF of impossible dimensions)
        raise CorruptInputError(f"cannot read image header: {exc}") from exc
    with img:
        width, height = img.size
        if width * height > max_pixels:
            raise TooLargeInputError(
                f"image is {width}x{height} = {width * height} pixels, above the limit of {max_pixels}"
            )
        if width == 0 or height == 0:
            raise CorruptInputError(f"image has an empty side: {width}x{height}")
        if img.format == "PNG" and (shortfall := png_data_shortfall(data)):
            raise TruncatedInputError(f"image data is truncated: {shortfall}")
        dpi = stated_dpi(img)  # before a frame walk moves off the first frame
        cut_directory: InputError | None = None  # frames past the last readable directory entry
        try:  # a multi-frame file walks its frame directory here
            frames = getattr(img, "n_frames", 1)
        except (OSError, EOFError, ValueError, TypeError, SyntaxError) as exc:
            frames = _readable_frames(img) if yield_page_failures else 0
            if not frames:
                raise CorruptInputError(f"cannot read the image's frame directory: {exc!r}") from exc
            cut_directory = CorruptInputError(
                f"frame {frames}: cannot read its directory entry (the file is cut short or corrupt): {exc!r}"
            )
        if _plain_complete_file(img, data, frames):
            pixels = _opencv_decode(data, width, height, grey=keep_grey and img.mode == "L")
            if pixels is not None:
                if img.format == "PNG" and not pixels[-1].any() and (shortfall := png_row_shortfall(data)):
                    raise TruncatedInputError(f"image data is truncated: {shortfall}")
                yield Page(collapse_grey(pixels) if keep_grey else pixels, 0, 1, dpi)
                return
        is_animation = img.format in ("GIF", "WEBP", "PNG") and frames > 1
        frames_read = 1 if is_animation else frames
        count = frames_read + (cut_directory is not None)  # the unreadable rest counts as one failed page
        for index in range(frames_read):
            try:
                pixels = _decode_frame(img, index, max_pixels, keep_grey)
            except InputError as exc:
                if count == 1:
                    raise
                failure = type(exc)(f"frame {index}: {exc}")
                if not yield_page_failures:
                    raise failure from exc
                yield PageFailure(index, count, failure)  # a bad frame of a multi-page TIFF: that page fails
                continue
            if img.format == "PNG" and _last_row_blank(img) and (shortfall := png_row_shortfall(data)):
                raise TruncatedInputError(f"image data is truncated: {shortfall}")  # img: as stored, unrotated
            yield Page(pixels, index, count, dpi)
        if cut_directory is not None:
            yield PageFailure(frames_read, count, cut_directory)


MAX_FRAMES = 100_000
"""Frames counted one by one in a file whose frame directory cannot be read as a whole."""


def _readable_frames(img: Any) -> int:
    """How many frames of an open multi-frame image can be reached by seeking from the first:
    those before a directory entry that is cut short or corrupt (0 when none can)."""
    count = 0
    while count < MAX_FRAMES:
        try:
            img.seek(count)
        except Exception:  # Pillow's parsers raise many types for a bad entry
            break
        count += 1
    return count


def stated_dpi(img: Any) -> float | None:
    """The horizontal DPI an open Pillow image's file states, or None. A TIFF without
    resolution tags states none (Pillow reports its default of 1 then)."""
    if img.format == "TIFF" and 282 not in getattr(img, "tag_v2", {}):  # XResolution
        return None
    dpi_info = img.info.get("dpi")
    return float(dpi_info[0]) if dpi_info and dpi_info[0] and dpi_info[0] > 0 else None


def _decode_frame(img: Any, index: int, max_pixels: int, keep_grey: bool) -> np.ndarray:
    """Frame ``index`` of an open Pillow image as BGR (or grey ``(H, W, 1)``) uint8; EXIF
    orientation applied to the first frame. Raises :class:`InputError` subclasses."""
    from PIL import ImageOps

    try:
        img.seek(index)
        if img.size[0] * img.size[1] > max_pixels:
            raise TooLargeInputError(f"frame {index} exceeds the pixel limit of {max_pixels}")
        img.load()
        upright = ImageOps.exif_transpose(img) if index == 0 else img
        bgr = _to_bgr(upright, keep_grey)
        return collapse_grey(bgr) if keep_grey else bgr
    except (OSError, EOFError) as exc:
        message = str(exc)
        if isinstance(exc, EOFError) or "truncated" in message.lower() or "end of file" in message.lower():
            raise TruncatedInputError(f"image data is truncated: {message}") from exc
        if re.fullmatch(r"decoder error -?\d+", message):  # Pillow's codecs say no more than this
            message = f"its compressed image data is corrupt (Pillow: {message})"
        raise CorruptInputError(f"cannot decode image: {message}") from exc
    except (ValueError, SyntaxError, TypeError) as exc:
        raise CorruptInputError(f"cannot decode image: {exc}") from exc


PDFIUM_LOCK = threading.RLock()
"""Held around every PDFium call of this process. PDFium is not thread-safe, not even across
documents (pypdfium2's documentation: concurrent calls crash or corrupt the process), and
threads do decode here: the service parses requests in a thread pool, and model actors that
load their own pages (``resources.load_in_actors``) may run calls at once
(``concurrent_calls``). Only PDFium's work (and copying a rendered page out of its buffer)
is serialised; no lock is held while a page is yielded."""


def pdf_page_count(data: bytes) -> int:
    """Number of pages of a PDF (raises :class:`InputError` for bad PDFs)."""
    with _open_pdf(data) as pdf, PDFIUM_LOCK:
        return len(pdf)


_ZERO_PAGES = re.compile(rb"/Type\s*/Pages\b[^>]*?/Count\s+0\b|/Count\s+0\b[^>]*?/Type\s*/Pages\b")
"""PDFium refuses to open page-less PDFs; this recognises their page tree."""


class _open_pdf:
    """Context manager around ``pypdfium2.PdfDocument`` mapping failures to InputError."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pdf: object | None = None

    def __enter__(self):  # type: ignore[no-untyped-def]
        import pypdfium2 as pdfium

        try:
            with PDFIUM_LOCK:
                self._pdf = pdfium.PdfDocument(self._data)
        except pdfium.PdfiumError as exc:
            message = str(exc)
            # PDFium's last-error code can be stale, so confirm from the bytes themselves.
            if b"/Encrypt" in self._data and ("password" in message.lower() or "security" in message.lower()):
                raise EncryptedInputError("the PDF is encrypted (password required)") from exc
            if _ZERO_PAGES.search(self._data):
                raise EmptyInputError("the PDF has no pages") from exc
            if not self._data.rstrip().endswith(b"%%EOF") and len(self._data) < 1 << 30:
                raise TruncatedInputError(f"cannot open the PDF (truncated?): {message}") from exc
            raise CorruptInputError(f"cannot open the PDF: {message}") from exc
        return self._pdf

    def __exit__(self, *exc: object) -> None:
        if self._pdf is not None:
            with PDFIUM_LOCK:
                self._pdf.close()  # type: ignore[attr-defined]


@dataclass(frozen=True)
class PageFailure:
    """A page of a readable document that could not be decoded (yielded, not raised,
    when the caller asks for per-page failures)."""

    page_index: int
    page_count: int
    error: InputError


def rasterize_pdf(
    data: bytes,
    dpi: float,
    max_pixels: int,
    page_limit: int = 0,
    page_indices: list[int] | None = None,
    yield_page_failures: bool = False,
    keep_grey: bool = False,
) -> Iterator[Page | PageFailure]:
    """Render PDF pages with pypdfium2 at ``dpi``; yields pages one at a time.

    Args:
        page_limit: at most this many pages (0 = all).
        page_indices: only these 0-based pages (after the limit).
        yield_page_failures: a page that fails (e.g. above the pixel limit) is yielded as a
            :class:`PageFailure` and the next page follows; otherwise the error is raised.
        keep_grey: pages that render grey come as ``(H, W, 1)`` (:func:`collapse_grey`).
    """
    with _open_pdf(data) as pdf:
        with PDFIUM_LOCK:
            total = len(pdf)
        if total == 0:
            raise EmptyInputError("the PDF has no pages")
        count = min(total, page_limit) if page_limit > 0 else total
        wanted = range(count) if page_indices is None else [i for i in page_indices if 0 <= i < count]
        if not wanted:
            within = f"{count}-page PDF" if count == total else f"PDF's first {count} pages (pdf_page_limit)"
            raise EmptyInputError(f"none of the pages asked for ({_page_list(page_indices)}) is in this {within}")
        for index in wanted:
            try:
                image = _render_page(pdf, index, dpi, max_pixels)
            except InputError as exc:
                if not yield_page_failures:
                    raise
                yield PageFailure(index, count, exc)
                continue
            yield Page(collapse_grey(image) if keep_grey else image, index, count, float(dpi))


def _render_page(pdf: Any, index: int, dpi: float, max_pixels: int) -> np.ndarray:
    """One PDF page as BGR uint8 (the bitmap is copied before PDFium frees it; PDFium's part
    runs under :data:`PDFIUM_LOCK`)."""
    import pypdfium2 as pdfium

    with PDFIUM_LOCK:
        try:  # a page tree with a broken or looping entry opens, then fails page by page
            page = pdf[index]
        except pdfium.PdfiumError as exc:
            raise CorruptInputError(f"cannot load page {index}: {exc}") from exc
        try:
            width_pt, height_pt = page.get_size()
            pixels = (width_pt * dpi / 72) * (height_pt * dpi / 72)
            if pixels > max_pixels:
                raise TooLargeInputError(
                    f"page {index} would render to {int(pixels)} pixels at {dpi} dpi, above the limit of {max_pixels}"
                )
            try:
                bitmap = page.render(scale=dpi / 72, may_draw_forms=True)
            except pdfium.PdfiumError as exc:
                raise CorruptInputError(f"cannot render page {index}: {exc}") from exc
            try:
                return _pdfium_to_bgr(bitmap.to_numpy(), bitmap.mode)
            finally:
                bitmap.close()
        finally:
            page.close()


def _pdfium_to_bgr(array: np.ndarray, mode: str) -> np.ndarray:
    """Copy a PDFium bitmap view into a BGR uint8 array."""
    if array.ndim == 2:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2BGR)
    if mode in ("RGBA", "RGBX", "RGBx"):
        return cv2.cvtColor(array, cv2.COLOR_RGBA2BGR)
    if mode == "RGB":
        return cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    if array.shape[2] == 4:  # BGRA, BGRX
        return cv2.cvtColor(array, cv2.COLOR_BGRA2BGR)
    return np.array(array, order="C", copy=True)  # BGR


def decode_document(
    data: bytes,
    *,
    pdf_dpi: float = 144,
    max_pixels: int = 180_000_000,
    pdf_page_limit: int = 0,
    page_indices: list[int] | None = None,
    yield_page_failures: bool = False,
    keep_grey: bool = False,
) -> Iterator[Page | PageFailure]:
    """Decode a file's bytes into pages, lazily (PDFs page by page).

    Args:
        page_indices: only these 0-based pages (PDF pages, TIFF frames).
        yield_page_failures: see :func:`rasterize_pdf`.
        keep_grey: grey pages come as ``(H, W, 1)`` instead of BGR (:func:`collapse_grey`).

    Raises:
        InputError: the file as a whole cannot be read.
    """
    kind = sniff_kind(data)
    if kind == "pdf":
        yield from rasterize_pdf(
            data, pdf_dpi, max_pixels, pdf_page_limit, page_indices, yield_page_failures, keep_grey
        )
        return
    wanted = None if page_indices is None else set(page_indices)
    yielded = 0
    for page in decode_image(data, max_pixels, keep_grey, yield_page_failures):
        if wanted is None or page.page_index in wanted:
            yielded += 1
            yield page
    if page_indices is not None and not yielded:
        raise EmptyInputError(f"none of the pages asked for ({_page_list(page_indices)}) is in this image")


def _page_list(page_indices: list[int] | None) -> str:
    """``0, 3, 7`` (0-based; at most five, then how many more)."""
    pages = sorted(page_indices or [])
    more = f" and {len(pages) - 5} more" if len(pages) > 5 else ""
    return ", ".join(map(str, pages[:5])) + more
