"""Pure geometry: quads, crops, rotations and reading order.

Conventions: a *quad* is a float32 array of shape ``(4, 2)`` holding ``(x, y)`` pixel
coordinates ordered top-left, top-right, bottom-right, bottom-left. A *box* is
``(x_min, y_min, x_max, y_max)``. Images are ``(H, W[, C])`` uint8 arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

TALL_CROP_RATIO = 1.5
"""A crop whose height is at least this multiple of its width is turned 90 degrees."""


def order_quad(points: np.ndarray) -> np.ndarray:
    """Order four points as top-left, top-right, bottom-right, bottom-left.

    Args:
        points: ``(4, 2)`` array of ``(x, y)`` in any order.

    Returns:
        ``(4, 2)`` float32 array, clockwise from the top-left corner.
    """
    # plain Python on four points: numpy's per-call overhead was most of the DB post-processing
    # time, in a loop that holds the GIL (stable sorts, as the reference's)
    pts = np.asarray(points, dtype=np.float32).reshape(4, 2).tolist()
    by_x = sorted(pts, key=lambda p: p[0])
    top_left, bottom_left = sorted(by_x[:2], key=lambda p: p[1])
    top_right, bottom_right = sorted(by_x[2:], key=lambda p: p[1])
    return np.array([top_left, top_right, bottom_right, bottom_left], dtype=np.float32)


def quad_to_box(quad: np.ndarray) -> np.ndarray:
    """Axis-aligned bounding box ``[x_min, y_min, x_max, y_max]`` (int32) of a quad."""
    q = np.asarray(quad, dtype=np.float32).reshape(-1, 2)
    return np.array(
        [np.floor(q[:, 0].min()), np.floor(q[:, 1].min()), np.ceil(q[:, 0].max()), np.ceil(q[:, 1].max())],
        dtype=np.int32,
    )


def quads_to_boxes(quads: np.ndarray) -> np.ndarray:
    """Bounding boxes ``(N, 4)`` int32 of quads ``(N, 4, 2)``."""
    if len(quads) == 0:
        return np.zeros((0, 4), dtype=np.int32)
    return np.stack([quad_to_box(q) for q in quads])


def integer_axis_aligned_box(quad: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` when a ``(4, 2)`` quad (top-left first, clockwise) is an upright
    rectangle with integer corners inside a ``width`` x ``height`` image, else None."""
    if not np.array_equal(quad, np.round(quad)):
        return None
    (x0, y0), (x1, y1b), (x2, y2), (x3, y3) = quad.astype(int).tolist()
    if not (x0 == x3 and x1 == x2 and y0 == y1b and y2 == y3):
        return None
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y3 <= height):
        return None
    return x0, y0, x1, y3


def crop_quad(image: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Perspective-crop a quad to an upright rectangle; tall crops are turned 90 degrees.

    Args:
        image: ``(H, W, C)`` uint8 page (BGR, or grey with C = 1).
        quad: ``(4, 2)`` quad in page pixels, ordered top-left first.

    Returns:
        ``(h, w, C)`` uint8 crop. When ``h >= 1.5 * w`` the crop is rotated 90 degrees
        counter-clockwise so vertical lines read left to right. A quad whose crop or
        neighbourhood reaches 32767 px on a side (OpenCV's warp takes none) is cropped at the
        scale that fits, aspect kept: recognition resizes every line to 48 px high anyway.
    """
    q = np.asarray(quad, dtype=np.float32)
    box = integer_axis_aligned_box(q, image.shape[1], image.shape[0])
    if box is not None:  # a pure integer shift: the warp would copy these very pixels
        x0, y0, x1, y1 = box
        crop = image[y0:y1, x0:x1].copy()
    else:
        width = int(max(np.linalg.norm(q[0] - q[1]), np.linalg.norm(q[2] - q[3])))
        height = int(max(np.linalg.norm(q[0] - q[3]), np.linalg.norm(q[1] - q[2])))
        width, height = max(width, 1), max(height, 1)
        target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
        # Warp from the quad's neighbourhood only (cubic sampling reads 2 px around a point):
        # the same pixels, and OpenCV refuses a source of 32767 px or more on a side.
        x0, y0 = max(int(np.floor(q[:, 0].min())) - 3, 0), max(int(np.floor(q[:, 1].min())) - 3, 0)
        x1 = min(int(np.ceil(q[:, 0].max())) + 4, image.shape[1])
        y1 = min(int(np.ceil(q[:, 1].max())) + 4, image.shape[0])
        if x1 <= x0 or y1 <= y0:  # a quad off the page: sample the border as before
            x0, y0, x1, y1 = 0, 0, image.shape[1], image.shape[0]
        local = q - np.array([x0, y0], dtype=np.float32)
        window = image[y0:y1, x0:x1]
        longest = max(width, height, x1 - x0, y1 - y0)
        if longest > OPENCV_MAX_SIDE:  # a line this long: warp a scaled-down window
            scale = OPENCV_MAX_SIDE / longest
            size = (max(round((x1 - x0) * scale), 1), max(round((y1 - y0) * scale), 1))
            window = cv2.resize(window, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], *image.shape[2:])
            local = local * np.array([size[0] / (x1 - x0), size[1] / (y1 - y0)], dtype=np.float32)
            width, height = max(int(width * scale), 1), max(int(height * scale), 1)
            target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
        matrix = cv2.getPerspectiveTransform(local, target)
        flags = cv2.INTER_CUBIC
        crop = cv2.warpPerspective(window, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=flags)
        crop = crop.reshape(height, width, *image.shape[2:])  # OpenCV drops a 1-channel axis
    if crop.shape[0] >= TALL_CROP_RATIO * crop.shape[1]:
        crop = np.ascontiguousarray(np.rot90(crop))
    return crop


def rotate_image(image: np.ndarray, angle: int) -> np.ndarray:
    """Rotate an image counter-clockwise by a multiple of 90 degrees.

    Args:
        image: ``(H, W[, C])`` array.
        angle: 0, 90, 180 or 270 (degrees, counter-clockwise).
    """
    codes = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}
    if angle % 360 == 0:
        return image
    if angle % 360 not in codes:
        raise ValueError(f"angle must be a multiple of 90, got {angle}")
    return cv2.rotate(image, codes[angle % 360])


def unrotate_points(points: np.ndarray, angle: int, rotated_shape: tuple[int, int]) -> np.ndarray:
    """Map points from an image rotated by ``angle`` back to the image before the rotation.

    Args:
        points: ``(..., 2)`` float array of ``(x, y)`` in the rotated image.
        angle: the counter-clockwise rotation that was applied (0, 90, 180, 270), as in
            :func:`rotate_image`.
        rotated_shape: ``(H, W)`` of the rotated image.

    Returns:
        Points of the same shape in the frame of the original image.
    """
    pts = np.asarray(points, dtype=np.float32)
    h, w = rotated_shape
    x, y = pts[..., 0], pts[..., 1]
    a = angle % 360
    if a == 0:
        return pts.copy()
    if a == 90:  # rotated counter-clockwise: original (x0, y0) -> (y0, W0 - x0); W0 = h
        out = np.stack([h - y, x], axis=-1)
    elif a == 180:
        out = np.stack([w - x, h - y], axis=-1)
    elif a == 270:  # rotated clockwise: original (x0, y0) -> (H0 - y0, x0); H0 = w
        out = np.stack([y, w - x], axis=-1)
    else:
        raise ValueError(f"angle must be a multiple of 90, got {angle}")
    return out.astype(np.float32)


# --------------------------------------------------------------------------- reading order


def _row_order(boxes: np.ndarray, indices: Sequence[int]) -> list[int]:
    """Order boxes as rows top to bottom, left to right within a row.

    A box joins the current row when its vertical centre is within half the smaller
    height of the row's mean centre, which tolerates slightly skewed lines.
    """
    idx = sorted(indices, key=lambda i: (boxes[i, 1] + boxes[i, 3]) / 2)
    rows: list[list[int]] = []
    row_centre = 0.0  # running mean of the row's centres, so sloping lines stay one row
    row_height = 0.0
    for i in idx:
        centre = float(boxes[i, 1] + boxes[i, 3]) / 2
        height = float(boxes[i, 3] - boxes[i, 1])
        if rows and abs(centre - row_centre) < 0.5 * min(height, row_height):
            rows[-1].append(i)
            row_centre += (centre - row_centre) / len(rows[-1])
        else:
            rows.append([i])
            row_centre, row_height = centre, height
    return [i for row in rows for i in sorted(row, key=lambda j: boxes[j, 0])]


MIN_PROSE_ASPECT = 5.0
"""Median width/height of the lines of a text column; table cells ("572", "$9.50") fall below."""


def find_column_gutters(boxes: np.ndarray, min_lines_per_column: int = 3) -> list[tuple[float, float]]:
    """Find vertical gutters that separate text columns.

    A gutter is an x-interval that no *column line* crosses, where column lines are the
    boxes narrower than 60% of the text extent (titles and footers spanning columns are
    ignored). A gutter is kept only when both neighbouring columns hold at least
    ``min_lines_per_column`` lines, most of those lines fill their column and their median
    width is at least :data:`MIN_PROSE_ASPECT` times their height (prose, not table
    cells), so tables keep row order.

    Args:
        boxes: ``(N, 4)`` float array of ``[x_min, y_min, x_max, y_max]``.

    Returns:
        Sorted list of ``(x_start, x_end)`` gutters, in the boxes' pixel frame.
    """
    if len(boxes) < 2 * min_lines_per_column:
        return []
    x0, x1 = float(boxes[:, 0].min()), float(boxes[:, 2].max())
    extent = x1 - x0
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    narrow = boxes[widths < 0.6 * extent]
    if len(narrow) < 2 * min_lines_per_column:
        return []
    min_gap = max(0.5 * float(np.median(heights)), 0.01 * extent)
    # Coverage of the x axis by narrow boxes, on a 1-px grid over the extent.
    size = int(np.ceil(extent)) + 1
    diff = np.zeros(size + 1, dtype=np.int32)
    starts = np.clip(np.floor(narrow[:, 0] - x0).astype(int), 0, size)
    ends = np.clip(np.ceil(narrow[:, 2] - x0).astype(int), 0, size)
    np.add.at(diff, starts, 1)
    np.add.at(diff, ends, -1)
    covered = np.cumsum(diff)[:size] > 0
    gaps: list[tuple[float, float]] = []
    run_start = None
    for pos, cov in enumerate(covered):
        if not cov and run_start is None:
            run_start = pos
        elif cov and run_start is not None:
            if pos - run_start >= min_gap and run_start > 0:
                gaps.append((x0 + run_start, x0 + pos))
            run_start = None
    if not gaps:
        return []
    # Validate every column between consecutive gutters.
    edges = [x0] + [g for gap in gaps for g in gap] + [x1]
    columns = [(edges[2 * k], edges[2 * k + 1]) for k in range(len(gaps) + 1)]
    for c_start, c_end in columns:
        centres = (narrow[:, 0] + narrow[:, 2]) / 2
        members = narrow[(centres >= c_start) & (centres <= c_end)]
        if len(members) < min_lines_per_column:
            return []
        widths_in_col = members[:, 2] - members[:, 0]
        col_width = members[:, 2].max() - members[:, 0].min()
        fill = widths_in_col >= 0.5 * col_width
        aspect = widths_in_col / np.maximum(members[:, 3] - members[:, 1], 1.0)
        # Prose lines fill their column and hold several words; table cells do not.
        if fill.mean() < 0.5 or float(np.median(aspect)) < MIN_PROSE_ASPECT:
            return []
    return gaps


def reading_order(quads: np.ndarray) -> np.ndarray:
    """Indices that put text-line quads in natural reading order.

    Single-column pages read in rows, top to bottom and left to right. Multi-column
    pages read each column top to bottom before the next one; lines that span the
    gutters (titles, footers, wide captions) split the page into sections read in turn.

    Args:
        quads: ``(N, 4, 2)`` float array of quads in page pixels.

    Returns:
        ``(N,)`` int64 permutation.
    """
    n = len(quads)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    q = np.asarray(quads, dtype=np.float32).reshape(n, 4, 2)
    boxes = np.stack([q[:, :, 0].min(1), q[:, :, 1].min(1), q[:, :, 0].max(1), q[:, :, 1].max(1)], axis=1)
    gutters = find_column_gutters(boxes)
    if not gutters:
        return np.asarray(_row_order(boxes, range(n)), dtype=np.int64)

    def crosses_gutter(i: int) -> bool:
        return any(boxes[i, 0] < g_end and boxes[i, 2] > g_start for g_start, g_end in gutters)

    spanning = sorted((i for i in range(n) if crosses_gutter(i)), key=lambda i: boxes[i, 1])
    span_set = set(spanning)
    column_edges = [g_start for g_start, _ in gutters]
    order: list[int] = []
    section_tops = [-np.inf] + [float((boxes[s, 1] + boxes[s, 3]) / 2) for s in spanning] + [np.inf]
    for k in range(len(section_tops) - 1):
        top, bottom = section_tops[k], section_tops[k + 1]
        members = [i for i in range(n) if i not in span_set and top <= (boxes[i, 1] + boxes[i, 3]) / 2 < bottom]
        by_column: dict[int, list[int]] = {}
        for i in members:
            centre = (boxes[i, 0] + boxes[i, 2]) / 2
            col = int(np.searchsorted(column_edges, centre))
            by_column.setdefault(col, []).append(i)
        for col in sorted(by_column):
            order.extend(_row_order(boxes, by_column[col]))
        if k < len(spanning):
            order.append(spanning[k])
    return np.asarray(order, dtype=np.int64)


def align_corners_weights(size_out: int, size_in: int) -> np.ndarray:
    """``(size_out, size_in)`` float32 linear-interpolation weights with ``align_corners``:
    output sample ``i`` sits at input position ``i * (size_in - 1) / (size_out - 1)``."""
    weights = np.zeros((size_out, size_in), dtype=np.float32)
    if size_in == 1:
        weights[:, 0] = 1.0
        return weights
    position = np.arange(size_out, dtype=np.float64) * ((size_in - 1) / max(size_out - 1, 1))
    left = np.minimum(np.floor(position).astype(np.int64), size_in - 2)
    fraction = (position - left).astype(np.float32)
    rows = np.arange(size_out)
    weights[rows, left] = 1.0 - fraction
    weights[rows, left + 1] = fraction
    return weights


def unwarp_maps(grid: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """UVDoc's coarse grid as ``cv2.remap`` maps over the full page, as UVDoc applies it
    (bilinear ``interpolate`` and ``grid_sample`` with ``align_corners=True``): the grid's
    corner points are the page's corner pixels, so an identity grid maps every pixel to itself.
    Upsampled exactly, as two small matrix products per coordinate (OpenCV's own bilinear
    resampling rounds weights to 1/32 and centres pixels differently).

    Args:
        grid: ``(2, gh, gw)`` float32, x then y, in [-1, 1] over the page.
        width, height: the page's size in pixels.

    Returns:
        ``map_x``, ``map_y``: ``(height, width)`` float32 source coordinates in page pixels.
    """
    grid_h, grid_w = grid.shape[1:]
    rows, columns = align_corners_weights(height, grid_h), align_corners_weights(width, grid_w)
    points = np.asarray(grid, dtype=np.float32)
    full_x = rows @ points[0] @ columns.T
    full_y = rows @ points[1] @ columns.T
    map_x = ((full_x + 1.0) * 0.5 * (width - 1)).astype(np.float32)
    map_y = ((full_y + 1.0) * 0.5 * (height - 1)).astype(np.float32)
    return map_x, map_y


OPENCV_MAX_SIDE = 32766
"""The longest side OpenCV's ``remap`` takes, for its source and its output alike (< SHRT_MAX)."""

REMAP_TILE = 4096
"""Output tile side of a windowed remap: its shifted maps and output stay near 200 MB."""


def remap_windowed(
    image: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, max_side: int = OPENCV_MAX_SIDE
) -> np.ndarray:
    """``cv2.remap`` (bilinear, replicated border) of a page of any size: the same pixels.

    OpenCV refuses a source or an output of 32767 px or more on a side. Such a page is
    remapped in output tiles of at most ``REMAP_TILE`` px, each from the window of the page its
    map points into (tiles halved until that window is at most ``max_side`` px a side); the
    maps are shifted by the window's integer corner, which float32 does exactly, so every
    output pixel is computed as in one call.

    Args:
        image: ``(H, W[, C])`` uint8 page.
        map_x, map_y: ``(h, w)`` float32 source coordinates in page pixels, finite.
        max_side: the longest side of one OpenCV call, at least 4 (smaller in tests).

    Returns:
        ``(h, w[, C])`` uint8, the page sampled at the maps.

    Raises:
        ValueError: a page remapped in windows whose map holds a coordinate that is not
            finite (one call takes such a map, as OpenCV does), or ``max_side`` below 4.
    """

    def remap(source: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        out = cv2.remap(source, xs, ys, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return out.reshape(*xs.shape, *image.shape[2:])  # OpenCV drops a 1-channel axis

    if max_side < 4:  # one output pixel reads a window of up to 4 px
        raise ValueError(f"max_side must be at least 4, got {max_side}")
    height, width = image.shape[:2]
    if max(height, width, *map_x.shape) <= max_side:
        return remap(image, map_x, map_y)
    out = np.empty((*map_x.shape, *image.shape[2:]), dtype=image.dtype)
    tile = min(max_side, REMAP_TILE)
    tiles = [
        (r, c, min(r + tile, map_x.shape[0]), min(c + tile, map_x.shape[1]))
        for r in range(0, map_x.shape[0], tile)
        for c in range(0, map_x.shape[1], tile)
    ]
    while tiles:
        r0, c0, r1, c1 = tiles.pop()
        xs, ys = map_x[r0:r1, c0:c1], map_y[r0:r1, c0:c1]
        low_x, high_x, low_y, high_y = float(xs.min()), float(xs.max()), float(ys.min()), float(ys.max())
        if not np.isfinite([low_x, high_x, low_y, high_y]).all():
            raise ValueError("the unwarping map holds coordinates that are not finite")
        # Bilinear sampling reads floor(x) and the next pixel; the fixed-point maps may round up.
        x0, y0 = min(max(int(np.floor(low_x)) - 1, 0), width - 1), min(max(int(np.floor(low_y)) - 1, 0), height - 1)
        x1, y1 = max(min(int(np.ceil(high_x)) + 2, width), x0 + 1), max(min(int(np.ceil(high_y)) + 2, height), y0 + 1)
        if max(x1 - x0, y1 - y0) > max_side:  # the tile points into too wide a window: halve it
            if r1 - r0 >= c1 - c0:
                middle = (r0 + r1) // 2
                tiles += [(r0, c0, middle, c1), (middle, c0, r1, c1)]
            else:
                middle = (c0 + c1) // 2
                tiles += [(r0, c0, r1, middle), (r0, middle, r1, c1)]
            continue
        out[r0:r1, c0:c1] = remap(image[y0:y1, x0:x1], xs - np.float32(x0), ys - np.float32(y0))
    return out
