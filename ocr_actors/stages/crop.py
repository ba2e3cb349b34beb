"""Crop stage (CPU task): page + quads -> packed line crops; the page image is dropped here."""

from __future__ import annotations

from ocr_actors.runtime.ocr import crop_lines
from ocr_actors.stages.common import Batch, mark_failed, pack_crops, ragged, require, timed, writable_status


def crop_text_lines(batch: Batch) -> Batch:
    """Adds ``crop_pixels`` (flat uint8) and ``crop_shapes`` ``(N, 3)`` (h, w, channels); removes ``image``
    but keeps the detector page's shape as ``upright_height``/``upright_width``."""
    require(batch, "crop", "image", "quads", "status")
    out = writable_status({k: v for k, v in batch.items() if k != "image"})
    pixels, shapes, heights, widths = [], [], [], []
    with timed(out, "crop"):
        for i, (image, quads) in enumerate(zip(batch["image"], batch["quads"], strict=True)):
            try:
                packed = pack_crops(crop_lines(image, quads))
            except Exception as exc:  # one page that cannot be cropped fails alone
                mark_failed(out, i, "ocr_failed", f"cropping failed: {exc!r}")
                packed = pack_crops([])
            pixels.append(packed[0])
            shapes.append(packed[1])
            heights.append(image.shape[0])
            widths.append(image.shape[1])
    out["crop_pixels"] = ragged(pixels)
    out["crop_shapes"] = ragged(shapes)
    out["upright_height"] = ragged(heights).astype("int64")
    out["upright_width"] = ragged(widths).astype("int64")
    return out
