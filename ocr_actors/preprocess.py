"""Pure pre-processing for the PP-OCR models (numpy / OpenCV only).

Images are BGR ``(H, W, 3)`` uint8 or grey ``(H, W, 1)`` / ``(H, W)`` uint8 (the batch job
moves grey pages with one channel: :func:`~ocr_actors.io.decode.collapse_grey`); a grey
image gives the models exactly what its BGR copy would. Model inputs are float32
``(N, 3, H, W)`` (NCHW), or, for models that normalise in their graph (on GPUs), the pixels
themselves: ``(N, H, W, C)`` uint16 with :data:`PIXEL_PAD` as padding (the batch builders'
``pixels=True``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

DET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
DET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
DET_SCALE = (1.0 / (255.0 * DET_STD)).astype(np.float32)
"""Per-channel factor of the detector's normalisation: ``x * DET_SCALE - DET_SHIFT``, x in 0-255."""
DET_SHIFT = (DET_MEAN / DET_STD).astype(np.float32)
REC_SCALE = np.full(3, 2.0 / 255.0, dtype=np.float32)
"""Per-channel factor of the recogniser's normalisation to [-1, 1]: ``x * REC_SCALE - REC_SHIFT``."""
REC_SHIFT = np.ones(3, dtype=np.float32)
PIXEL_PAD = 256
"""Padding in a pixel batch: above every uint8 value, the model's graph turns it into 0.0
(:func:`ocr_actors.runtime.graph.fuse_pixel_input`), as float batches pad after normalising."""


def det_resize_shape(
    height: int,
    width: int,
    limit_side_len: int,
    limit_type: str,
    max_side_limit: int = 4000,
) -> tuple[int, int]:
    """Target ``(H, W)`` of the detection input, as PP-OCR's ``DetResizeForTest``.

    ``limit_type="max"`` shrinks so the long side is at most ``limit_side_len``;
    ``"min"`` enlarges so the short side is at least ``limit_side_len``;
    ``"resize_long"`` scales the long side to exactly ``limit_side_len``. Each side is
    truncated to whole pixels, the long side capped at ``max_side_limit``, then each side
    rounded (half to even) to a multiple of 32, at least 32: a 2000 x 1101 page at max/960
    gives 960 x 512 (528.48 px -> 528 -> 16.5 -> 16 blocks), as in the reference.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image has an empty side: {height}x{width}")
    if limit_type == "max":
        ratio = limit_side_len / max(height, width) if max(height, width) > limit_side_len else 1.0
    elif limit_type == "min":
        ratio = limit_side_len / min(height, width) if min(height, width) < limit_side_len else 1.0
    elif limit_type == "resize_long":
        ratio = limit_side_len / max(height, width)
    else:
        raise ValueError(f"limit_type must be 'max', 'min' or 'resize_long', got {limit_type!r}")
    new_h, new_w = int(height * ratio), int(width * ratio)  # truncated first, as the reference does
    if max(new_h, new_w) > max_side_limit:
        cap = max_side_limit / max(new_h, new_w)
        new_h, new_w = int(new_h * cap), int(new_w * cap)
    return max(int(round(new_h / 32) * 32), 32), max(int(round(new_w / 32) * 32), 32)


def bgr_planes(image: np.ndarray) -> list[np.ndarray]:
    """The B, G and R planes ``(H, W)`` of a BGR image; a grey image's one plane three times."""
    if image.ndim == 2:
        return [image] * 3
    if image.shape[2] == 1:
        return [image[:, :, 0]] * 3
    return list(cv2.split(image))


def as_bgr(image: np.ndarray) -> np.ndarray:
    """A BGR ``(H, W, 3)`` image as is; a grey ``(H, W)`` or ``(H, W, 1)`` one as BGR."""
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)


def normalize_det(image: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Scale to [0, 1], subtract the ImageNet mean, divide by std; HWC uint8 -> CHW float32,
    written into ``out`` (a ``(3, H, W)`` float32 array or view) when given.

    The statistics are applied to the BGR channels as given, as the PP-OCR detectors
    were trained (a grey image: its plane as each of B, G and R).
    """
    if out is None:
        out = np.empty((3, *image.shape[:2]), dtype=np.float32)
    for channel, plane in enumerate(bgr_planes(image)):  # plane by plane: 4-5x faster than HWC float math
        out[channel] = plane
        out[channel] *= DET_SCALE[channel]
        out[channel] -= DET_SHIFT[channel]
    return out


def prepare_det_input(
    image: np.ndarray, limit_side_len: int, limit_type: str, max_side_limit: int = 4000
) -> np.ndarray:
    """Resize and normalise one page for detection; returns ``(1, 3, H32, W32)`` float32."""
    h, w = image.shape[:2]
    new_h, new_w = det_resize_shape(h, w, limit_side_len, limit_type, max_side_limit)
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return normalize_det(resized)[None]


def batch_array(shape: tuple[int, ...], buffer: np.ndarray | None = None, dtype: type = np.float32) -> np.ndarray:
    """A ``dtype`` (float32) array of ``shape`` for a model batch: a view of the first elements of
    ``buffer`` (a caller's array of that dtype, reused from call to call) when given, else new
    memory; its values are whatever was there (the caller writes every element)."""
    if buffer is None:
        return np.empty(shape, dtype=dtype)
    size = math.prod(shape)
    if buffer.dtype != dtype or buffer.size < size:
        raise ValueError(
            f"the buffer holds {buffer.size} {buffer.dtype} values, the batch needs {size} {np.dtype(dtype).name}"
        )
    return buffer.reshape(-1)[:size].reshape(shape)


def batch_channels(images: Sequence[np.ndarray]) -> int:
    """1 when every image is grey (``(H, W)`` or ``(H, W, 1)``), else 3."""
    return 1 if all(im.ndim == 2 or im.shape[2] == 1 for im in images) else 3


def prepare_det_batch(
    images: Sequence[np.ndarray],
    canvas: tuple[int, int],
    limit_side_len: int,
    limit_type: str,
    max_side_limit: int = 4000,
    buffer: np.ndarray | None = None,
    pixels: bool = False,
) -> np.ndarray:
    """Pages resized and normalised (as :func:`prepare_det_input`) straight into one
    ``(N, 3, H, W)`` float32 batch on the ``canvas`` ``(H, W)``, zero-padded right and bottom;
    the same values as :func:`prepare_det_input`'s output of each page, zero-padded.

    With ``pixels``, the resized pages' pixels instead, as one ``(N, H, W, C)`` uint16 batch with
    :data:`PIXEL_PAD` right and bottom; ``C`` = 1 when every page is grey (a grey page in a
    colour batch fills all three channels). A model whose graph normalises
    (:func:`ocr_actors.runtime.graph.fuse_pixel_input` with :data:`DET_SCALE`, :data:`DET_SHIFT`)
    sees exactly the float batch's values.

    ``buffer``: an array of the batch's dtype with at least as many elements, whose memory the
    batch uses (:func:`batch_array`; a caller's, reused from call to call: a fresh float batch
    of 16 pages is 136 MB whose pages the system must map and zero every call); a new array
    without it.
    """
    height, width = canvas
    if pixels:
        batch = batch_array((len(images), height, width, batch_channels(images)), buffer, np.uint16)
    else:
        batch = batch_array((len(images), 3, height, width), buffer)
    for slot, image in zip(batch, images, strict=True):
        h, w = det_resize_shape(image.shape[0], image.shape[1], limit_side_len, limit_type, max_side_limit)
        if h > height or w > width:
            raise ValueError(f"canvas {canvas} does not hold a page resized to {(h, w)}")
        resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        if pixels:
            slot[:h, :w] = resized.reshape(h, w, -1)  # cv2.resize drops a 1-channel axis
            slot[h:] = PIXEL_PAD
            slot[:h, w:] = PIXEL_PAD
        else:
            normalize_det(resized, slot[:, :h, :w])
            slot[:, h:, :] = 0
            slot[:, :h, w:] = 0
    return batch


# --------------------------------------------------------------------------- recognition


REC_REFERENCE_WIDTH = 320
"""The recognisers' nominal input width (``rec_image_shape`` 3 x 48 x 320): PaddleX rounds a
crop's resized width up within it and down beyond it (:func:`rec_resized_width`)."""


def rec_resized_width(
    crop_h: int, crop_w: int, height: int = 48, max_width: int = 3200, width_scale: float = 1.0
) -> int:
    """Width a crop gets when resized to ``height`` keeping its aspect ratio (times
    ``width_scale``), capped at ``max_width``; rounded up.

    With ``width_scale`` 1, the reference's geometry, rounded as PaddleX's
    ``OCRReisizeNormImg`` does instead: down for a crop wider than :data:`REC_REFERENCE_WIDTH`
    at this height (its canvas is ``int(height * ratio)`` wide then), so each crop's scores
    are the reference's. Narrowed crops (``width_scale`` < 1) are ours alone and keep their
    last column (measured: down cost 2 exact lines in 240 at 0.8).
    """
    ratio = width_scale * crop_w / max(crop_h, 1)
    scaled = height * ratio
    reference_floor = width_scale == 1.0 and ratio > REC_REFERENCE_WIDTH / height
    width = math.floor(scaled) if reference_floor else math.ceil(scaled)
    return int(min(max(width, 1), max_width))


def rec_batch_width(
    widest: int, min_width: int = 320, width_multiple: int = 1, width_buckets: Sequence[int] = ()
) -> int:
    """Width a recognition batch is padded to, in pixels of the ``height``-high input.

    ``max(min_width, widest)``, then up to the smallest of ``width_buckets`` that holds it,
    else up to a multiple of ``width_multiple``.
    """
    width = max(min_width, widest)
    for bucket in width_buckets:
        if bucket >= width:
            return int(bucket)
    return -(-width // width_multiple) * width_multiple


def prepare_rec_batch(
    crops: Sequence[np.ndarray],
    height: int = 48,
    min_width: int = 320,
    max_width: int = 3200,
    width_scale: float = 1.0,
    width_multiple: int = 1,
    width_buckets: Sequence[int] = (),
    rows: int = 0,
    buffer: np.ndarray | None = None,
    pixels: bool = False,
) -> np.ndarray:
    """Resize crops to ``height`` keeping aspect ratio, normalise to [-1, 1], right-pad.

    The batch is padded to the widest resized crop, but to at least ``min_width``
    (the reference pads to 320; a smaller value avoids work on short lines), then up to
    a bucket or a multiple of ``width_multiple`` (:func:`rec_batch_width`: on GPUs fewer
    distinct shapes mean fewer kernel set-ups). ``width_scale`` < 1 narrows every crop
    horizontally (fewer CTC steps, less compute). ``rows`` > ``len(crops)`` appends blank
    rows (zeros), for a constant batch dimension. ``buffer``: an array of the batch's dtype
    with at least as many elements, whose memory it uses (:func:`batch_array`).

    With ``pixels``, the resized crops' pixels instead, unnormalised, with :data:`PIXEL_PAD`
    right of each crop and in blank rows: ``(max(N, rows), height, W, C)`` uint16, ``C`` = 1
    when every crop is grey. A model whose graph normalises
    (:func:`ocr_actors.runtime.graph.fuse_pixel_input` with :data:`REC_SCALE`,
    :data:`REC_SHIFT`) sees exactly the float batch's values.

    Returns:
        ``(max(len(crops), rows), 3, height, W)`` float32; row ``i < len(crops)`` is crop ``i``.
    """
    widths = [rec_resized_width(c.shape[0], c.shape[1], height, max_width, width_scale) for c in crops]
    batch_w = rec_batch_width(max(widths, default=0), min_width, width_multiple, width_buckets)
    channels = batch_channels(crops)
    if pixels:
        out = batch_array((max(len(crops), rows), height, batch_w, channels), buffer, np.uint16)
        out.fill(PIXEL_PAD)
        _resize_rec_rows(crops, widths, out)
        return out
    # resized pixels into one uint8 buffer, then one normalisation for the whole batch: few
    # numpy calls per crop (this runs in the recognition actor's loop, holding the GIL)
    resized = np.zeros((len(crops), height, batch_w, channels), dtype=np.uint8)
    _resize_rec_rows(crops, widths, resized)
    out = batch_array((max(len(crops), rows), 3, height, batch_w), buffer)
    filled = out[: len(crops)]
    # (N, C, H, W) uint8 scaled straight into the batch; grey: the same values in all three channels
    np.multiply(resized.transpose(0, 3, 1, 2), REC_SCALE[0], out=filled)
    filled -= REC_SHIFT[0]
    for i, w in enumerate(widths):
        out[i, :, :, w:] = 0.0  # padding stays zero, as the reference pads
    out[len(crops) :] = 0.0  # blank rows
    return out


def _resize_rec_rows(crops: Sequence[np.ndarray], widths: Sequence[int], out: np.ndarray) -> None:
    """Each crop resized to ``(H, widths[i])`` into row ``i`` of ``out`` ``(N, H, W, C)``,
    from its left edge (the rest of the row is left as it is)."""
    height = out.shape[1]
    for i, (crop, w) in enumerate(zip(crops, widths, strict=True)):
        resized = cv2.resize(crop, (w, height), interpolation=cv2.INTER_LINEAR)
        out[i, :, :w] = resized.reshape(height, w, -1)  # cv2.resize drops a 1-channel axis


@dataclass(frozen=True)
class Batch:
    """Indices into the caller's list of crops that form one model batch."""

    indices: tuple[int, ...]


def batches_by_aspect_ratio(
    shapes: Sequence[tuple[int, int]],
    batch_size: int,
    max_width_spread: float = 2.0,
    groups: Sequence[int] | None = None,
) -> list[Batch]:
    """Group crops of similar aspect ratio so each batch pads little.

    Crops are sorted by width/height; a batch closes when it holds ``batch_size``
    crops, or, without ``groups``, when the next crop is more than ``max_width_spread``
    times wider (in aspect ratio) than the batch's narrowest; with ``groups`` (one key per
    crop that never decreases as the aspect ratio grows, such as its width bucket), when
    the next crop's key differs from the batch's, and the spread is not used.

    Args:
        shapes: ``(h, w)`` of each crop.
        batch_size: most crops per batch.

    Returns:
        Batches whose indices refer to ``shapes``; every index appears exactly once.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if groups is not None and len(groups) != len(shapes):
        raise ValueError("groups must give one key per crop")
    ratios = [w / max(h, 1) for h, w in shapes]
    order = sorted(range(len(shapes)), key=lambda i: ratios[i])
    batches: list[Batch] = []
    current: list[int] = []
    for i in order:
        if current and (
            len(current) >= batch_size
            or (groups is not None and groups[i] != groups[current[0]])
            or (groups is None and ratios[i] > max_width_spread * max(ratios[current[0]], 1.0))
        ):
            batches.append(Batch(tuple(current)))
            current = []
        current.append(i)
    if current:
        batches.append(Batch(tuple(current)))
    return batches


# --------------------------------------------------------------------------- classifiers


def prepare_textline_cls_batch(crops: Sequence[np.ndarray], height: int = 48, width: int = 192) -> np.ndarray:
    """Text-line orientation input: resize to ``height`` (width capped), pad to ``width``.

    Returns:
        ``(N, 3, height, width)`` float32 normalised to [-1, 1].
    """
    out = np.zeros((len(crops), 3, height, width), dtype=np.float32)
    for i, crop in enumerate(crops):
        w = rec_resized_width(crop.shape[0], crop.shape[1], height, width)
        resized = cv2.resize(crop, (w, height), interpolation=cv2.INTER_LINEAR)
        for channel, plane in enumerate(bgr_planes(resized)):
            out[i, channel, :, :w] = plane.astype(np.float32) * (2.0 / 255.0) - 1.0
    return out


def prepare_stretched_cls_batch(crops: Sequence[np.ndarray], width: int, height: int) -> np.ndarray:
    """Input of PaddleX's PP-LCNet text-line classifiers (``ResizeImage: size [width, height]``
    then ImageNet ``NormalizeImage``, in RGB): each crop stretched to ``width x height``,
    aspect not kept, as PaddleX does.

    Args:
        crops: BGR ``(h, w, 3)`` or grey ``(h, w, 1)`` uint8 text-line crops.

    Returns:
        ``(N, 3, height, width)`` float32, channels R, G, B.
    """
    out = np.empty((len(crops), 3, height, width), dtype=np.float32)
    for i, crop in enumerate(crops):
        resized = cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR)
        normalize_det(np.ascontiguousarray(resized[:, :, ::-1]) if resized.ndim == 3 else resized, out[i])
    return out


ORIENTATION_RESIZE_LIMIT = 4096
"""Above this many pixels on the resized page's long side, the orientation input samples its
centre window directly instead of resizing the whole page first."""


def prepare_doc_orientation_input(image: np.ndarray, short_side: int = 256, crop: int = 224) -> np.ndarray:
    """Document orientation input: short side to 256, centre crop 224, ImageNet stats.

    Args:
        image: BGR ``(H, W, 3)`` uint8 page.

    Returns:
        ``(1, 3, 224, 224)`` float32 (RGB channel order, as the classifier was trained).
    """
    h, w = image.shape[:2]
    scale = short_side / min(h, w)
    new_w, new_h = max(round(w * scale), crop), max(round(h * scale), crop)
    top, left = (new_h - crop) // 2, (new_w - crop) // 2
    if max(new_w, new_h) <= ORIENTATION_RESIZE_LIMIT:
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        patch = resized[top : top + crop, left : left + crop]
    else:  # a thin strip would scale to a huge image (1 x 100000 px: 25600 x 256 x 100000): sample the window only
        sx, sy = new_w / w, new_h / h  # the resize's own mapping: source = (dst + 0.5) / s - 0.5
        x0 = max(int((left + 0.5) / sx - 0.5) - 2, 0)  # the source window (OpenCV warps < 32767 px sides)
        y0 = max(int((top + 0.5) / sy - 0.5) - 2, 0)
        x1 = min(int((left + crop + 0.5) / sx) + 3, w)
        y1 = min(int((top + crop + 0.5) / sy) + 3, h)
        inverse = np.array([[1 / sx, 0, (left + 0.5) / sx - 0.5 - x0], [0, 1 / sy, (top + 0.5) / sy - 0.5 - y0]])
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        window = image[y0:y1, x0:x1]
        patch = cv2.warpAffine(window, inverse, (crop, crop), flags=flags, borderMode=cv2.BORDER_REPLICATE)
        patch = patch.reshape(crop, crop, *image.shape[2:])
    return normalize_det(np.ascontiguousarray(patch[:, :, ::-1]))[None]
