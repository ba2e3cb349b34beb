"""Unit tests for ocr_actors.geometry (pure numpy / OpenCV, no models)."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from ocr_actors.geometry import (
    crop_quad,
    find_column_gutters,
    integer_axis_aligned_box,
    order_quad,
    quad_to_box,
    quads_to_boxes,
    reading_order,
    rotate_image,
    unrotate_points,
)

RED = (0, 0, 255)  # BGR
BLUE = (255, 0, 0)


def rect_quad(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Axis-aligned quad TL, TR, BR, BL."""
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float32)


def boxes_of(quads: list[np.ndarray]) -> np.ndarray:
    q = np.asarray(quads, dtype=np.float32)
    return np.stack([q[:, :, 0].min(1), q[:, :, 1].min(1), q[:, :, 0].max(1), q[:, :, 1].max(1)], axis=1)


# --------------------------------------------------------------------------- quads


@pytest.mark.parametrize("perm", list(itertools.permutations(range(4))))
def test_order_quad_axis_aligned_any_permutation(perm: tuple[int, ...]) -> None:
    expected = rect_quad(10, 20, 110, 60)
    out = order_quad(expected[list(perm)])
    assert out.dtype == np.float32
    assert out.shape == (4, 2)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("perm", list(itertools.permutations(range(4))))
def test_order_quad_rotated_rectangle_any_permutation(perm: tuple[int, ...]) -> None:
    # A 200x40 rectangle rotated by 20 degrees (rising to the right in image coordinates).
    angle = np.deg2rad(-20)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], dtype=np.float32)
    expected = (rect_quad(0, 0, 200, 40) @ rot.T + np.float32([100, 200])).astype(np.float32)
    out = order_quad(expected[list(perm)])
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_order_quad_accepts_flat_list() -> None:
    out = order_quad([5, 9, 1, 1, 1, 9, 5, 1])  # BR, TL, BL, TR as a flat list
    np.testing.assert_array_equal(out, [[1, 1], [5, 1], [5, 9], [1, 9]])


def test_quad_to_box_floors_mins_and_ceils_maxes() -> None:
    quad = np.array([[10.2, 20.7], [110.5, 19.9], [110.1, 60.01], [9.99, 60.0]], dtype=np.float32)
    box = quad_to_box(quad)
    assert box.dtype == np.int32
    assert box.tolist() == [9, 19, 111, 61]


def test_quad_to_box_integer_quad_is_exact() -> None:
    assert quad_to_box(rect_quad(3, 4, 30, 40)).tolist() == [3, 4, 30, 40]


def test_quads_to_boxes_shapes() -> None:
    empty = quads_to_boxes(np.zeros((0, 4, 2), dtype=np.float32))
    assert empty.shape == (0, 4)
    assert empty.dtype == np.int32
    boxes = quads_to_boxes(np.stack([rect_quad(0, 0, 10, 5), rect_quad(20, 30, 40, 35)]))
    assert boxes.tolist() == [[0, 0, 10, 5], [20, 30, 40, 35]]


# --------------------------------------------------------------------------- crops


def test_crop_quad_axis_aligned_size() -> None:
    image = np.zeros((200, 300, 3), dtype=np.uint8)
    crop = crop_quad(image, rect_quad(10, 20, 110, 60))
    assert crop.shape == (40, 100, 3)
    assert crop.dtype == np.uint8


def test_crop_quad_content_of_coloured_rectangle() -> None:
    image = np.full((100, 200, 3), 255, dtype=np.uint8)
    image[30:60, 50:150] = RED
    crop = crop_quad(image, rect_quad(50, 30, 150, 60))
    assert crop.shape == (30, 100, 3)
    # Every pixel of the crop is the rectangle's colour, nothing of the white page.
    assert np.abs(crop.astype(int) - np.array(RED)).max() <= 2


def test_crop_quad_takes_the_right_region() -> None:
    # Left half of the quad is red, right half blue: the crop must keep that layout.
    image = np.full((100, 200, 3), 255, dtype=np.uint8)
    image[20:50, 40:90] = RED
    image[20:50, 90:140] = BLUE
    crop = crop_quad(image, rect_quad(40, 20, 140, 50))
    assert crop.shape == (30, 100, 3)
    assert np.abs(crop[:, 2:48].astype(int) - np.array(RED)).max() <= 2
    assert np.abs(crop[:, 52:98].astype(int) - np.array(BLUE)).max() <= 2


def test_crop_quad_tall_quad_is_turned_so_it_reads_left_to_right() -> None:
    # A tall (vertical) text line: top half red, bottom half blue.
    image = np.full((300, 200, 3), 255, dtype=np.uint8)
    image[50:100, 80:100] = RED
    image[100:150, 80:100] = BLUE
    crop = crop_quad(image, rect_quad(80, 50, 100, 150))
    assert crop.shape == (20, 100, 3)
    assert crop.shape[1] > crop.shape[0]
    # Rotated counter-clockwise: what was at the top is now on the left.
    assert np.abs(crop[:, 2:48].astype(int) - np.array(RED)).max() <= 2
    assert np.abs(crop[:, 52:98].astype(int) - np.array(BLUE)).max() <= 2


def test_crop_quad_not_tall_enough_is_not_turned() -> None:
    image = np.zeros((300, 300, 3), dtype=np.uint8)
    crop = crop_quad(image, rect_quad(0, 0, 40, 59))  # 59 < 1.5 * 40
    assert crop.shape == (59, 40, 3)


def test_crop_quad_degenerate_quad_gives_at_least_one_pixel() -> None:
    image = np.zeros((50, 50, 3), dtype=np.uint8)
    crop = crop_quad(image, rect_quad(10, 10, 10.4, 10.4))
    assert crop.shape[0] >= 1 and crop.shape[1] >= 1


# --------------------------------------------------------------------------- rotation


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_rotate_image_and_unrotate_points_round_trip(angle: int) -> None:
    height, width = 40, 70  # not square, so a swapped H/W would show
    image = np.zeros((height, width), dtype=np.uint8)
    marker_x, marker_y = 9, 31
    image[marker_y, marker_x] = 255
    rotated = rotate_image(image, angle)
    assert rotated.shape == ((width, height) if angle in (90, 270) else (height, width))
    ys, xs = np.nonzero(rotated)
    assert len(xs) == 1
    # Pixel centres are continuous coordinates (x + 0.5, y + 0.5).
    back = unrotate_points(np.array([[xs[0] + 0.5, ys[0] + 0.5]], dtype=np.float32), angle, rotated.shape[:2])
    np.testing.assert_allclose(back, [[marker_x + 0.5, marker_y + 0.5]], atol=1e-5)


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_unrotate_points_maps_rotated_page_corners_to_original_corners(angle: int) -> None:
    height, width = 40, 70
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:10, :10] = 255  # top-left block of the original
    rotated = rotate_image(image, angle)
    ys, xs = np.nonzero(rotated[:, :, 0])
    block = np.array(
        [[xs.min(), ys.min()], [xs.max() + 1, ys.min()], [xs.max() + 1, ys.max() + 1], [xs.min(), ys.max() + 1]],
        dtype=np.float32,
    )
    back = unrotate_points(block, angle, rotated.shape[:2])
    assert back.shape == (4, 2)
    np.testing.assert_allclose(np.sort(back[:, 0]), [0, 0, 10, 10], atol=1e-5)
    np.testing.assert_allclose(np.sort(back[:, 1]), [0, 0, 10, 10], atol=1e-5)


def test_rotate_image_90_is_counter_clockwise() -> None:
    image = np.zeros((2, 3), dtype=np.uint8)
    image[0, 2] = 1  # top-right corner
    rotated = rotate_image(image, 90)
    assert rotated.shape == (3, 2)
    assert rotated[0, 0] == 1  # counter-clockwise: top-right goes to top-left


def test_rotate_image_zero_and_invalid() -> None:
    image = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(rotate_image(image, 0), image)
    np.testing.assert_array_equal(rotate_image(image, 360), image)
    with pytest.raises(ValueError, match="multiple of 90"):
        rotate_image(image, 45)
    with pytest.raises(ValueError, match="multiple of 90"):
        unrotate_points(np.zeros((1, 2), dtype=np.float32), 45, (2, 3))


def test_unrotate_points_zero_is_a_copy() -> None:
    pts = np.array([[1.0, 2.0]], dtype=np.float32)
    out = unrotate_points(pts, 0, (10, 10))
    np.testing.assert_array_equal(out, pts)
    out[0, 0] = 99
    assert pts[0, 0] == 1.0


# --------------------------------------------------------------------------- reading order


def shuffled(quads: list[np.ndarray], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle quads; returns (shuffled quads, perm) where shuffled[k] = quads[perm[k]]."""
    perm = np.random.default_rng(seed).permutation(len(quads))
    return np.asarray(quads, dtype=np.float32)[perm], perm


def read(quads: list[np.ndarray], seed: int = 0) -> list[int]:
    """Reading order expressed as indices into the *unshuffled* list."""
    shuffled_quads, perm = shuffled(quads, seed)
    order = reading_order(shuffled_quads)
    assert order.dtype == np.int64
    assert sorted(order.tolist()) == list(range(len(quads)))
    return [int(perm[i]) for i in order]


def test_reading_order_empty() -> None:
    out = reading_order(np.zeros((0, 4, 2), dtype=np.float32))
    assert out.shape == (0,)
    assert out.dtype == np.int64


def test_reading_order_single_column_rows() -> None:
    quads = [rect_quad(100, 50 + 40 * i, 100 + 300 + 20 * (i % 3), 80 + 40 * i) for i in range(8)]
    for seed in range(3):
        assert read(quads, seed) == list(range(8))


def test_reading_order_row_with_two_boxes_left_to_right() -> None:
    quads = [
        rect_quad(50, 10, 300, 40),  # row 0, left
        rect_quad(400, 12, 700, 42),  # row 0, right
        rect_quad(50, 60, 300, 90),  # row 1, left
        rect_quad(400, 60, 700, 90),  # row 1, right
    ]
    for seed in range(4):
        assert read(quads, seed) == [0, 1, 2, 3]


def two_column_page(title: bool, footer: bool, lines: int = 6) -> tuple[list[np.ndarray], list[int]]:
    """A two-column page; returns the quads and their expected reading order."""
    quads: list[np.ndarray] = []
    title_idx: list[int] = []
    if title:
        title_idx = [len(quads)]
        quads.append(rect_quad(100, 20, 900, 60))
    left = []
    right = []
    for i in range(lines):
        y = 100 + 40 * i
        # Interleave left and right in the list so list order is not reading order.
        left.append(len(quads))
        quads.append(rect_quad(100, y, 480 - 15 * (i == lines - 1), y + 28))
        right.append(len(quads))
        quads.append(rect_quad(520, y + 2, 900 - 40 * (i == lines - 1), y + 30))
    footer_idx: list[int] = []
    if footer:
        footer_idx = [len(quads)]
        quads.append(rect_quad(100, 100 + 40 * lines + 30, 900, 100 + 40 * lines + 60))
    return quads, title_idx + left + right + footer_idx


def test_two_columns_have_one_gutter() -> None:
    quads, _ = two_column_page(title=True, footer=True)
    gutters = find_column_gutters(boxes_of(quads))
    assert len(gutters) == 1
    start, end = gutters[0]
    assert 480 <= start < end <= 520


def test_reading_order_two_columns_with_title() -> None:
    quads, expected = two_column_page(title=True, footer=False)
    for seed in range(3):
        assert read(quads, seed) == expected


def test_reading_order_two_columns_with_footer() -> None:
    quads, expected = two_column_page(title=False, footer=True)
    assert expected[-1] == len(quads) - 1
    for seed in range(3):
        assert read(quads, seed) == expected


def test_reading_order_two_columns_with_title_and_footer() -> None:
    quads, expected = two_column_page(title=True, footer=True)
    for seed in range(3):
        assert read(quads, seed) == expected


def test_reading_order_two_columns_without_spanning_lines() -> None:
    quads, expected = two_column_page(title=False, footer=False)
    assert read(quads) == expected


def table_quads(widths: list[list[int]]) -> list[np.ndarray]:
    """Rows of a 3-column table whose columns start at x = 100, 400, 700 (row-major list)."""
    quads = []
    for r, row in enumerate(widths):
        for c, w in enumerate(row):
            x0 = 100 + 300 * c
            quads.append(rect_quad(x0, 100 + 40 * r, x0 + w, 125 + 40 * r))
    return quads


TABLE_WIDTHS = {
    # Cells such as "12.50", "2024-01-03": about the same width down each column.
    "uniform": [[60, 60, 60]] * 5,
    # Word-like cells of mixed length (header wider than the values).
    "mixed": [[80, 40, 30], [50, 60, 35], [30, 45, 50], [70, 40, 30], [40, 90, 45]],
    # Very ragged cells: most are under half of the column's widest.
    "ragged": [[90, 90, 90], [20, 30, 25], [35, 20, 30], [25, 40, 20], [30, 25, 35]],
}


@pytest.mark.parametrize("kind", sorted(TABLE_WIDTHS))
def test_table_of_short_cells_has_no_column_gutters(kind: str) -> None:
    quads = table_quads(TABLE_WIDTHS[kind])
    assert find_column_gutters(boxes_of(quads)) == []


@pytest.mark.parametrize("kind", sorted(TABLE_WIDTHS))
def test_reading_order_table_of_short_cells_reads_row_by_row(kind: str) -> None:
    quads = table_quads(TABLE_WIDTHS[kind])
    for seed in range(3):
        assert read(quads, seed) == list(range(len(quads)))


@pytest.mark.parametrize("offsets", [[0, 4, 8, 12], [12, 8, 4, 0], [0, 10, 3, 7]])
def test_reading_order_slightly_skewed_row_keeps_left_to_right(offsets: list[int]) -> None:
    # Four segments of one row whose vertical positions wander by up to 12 px (height 30),
    # then a second, straight row below.
    quads = [rect_quad(100 + 200 * i, 100 + dy, 250 + 200 * i, 130 + dy) for i, dy in enumerate(offsets)]
    quads += [rect_quad(100 + 200 * i, 170, 250 + 200 * i, 200) for i in range(4)]
    for seed in range(3):
        assert read(quads, seed) == list(range(8))


@pytest.mark.parametrize("step", [6, -6])
def test_reading_order_gently_sloping_line_keeps_left_to_right(step: int) -> None:
    # One text line split into four segments 200 px apart, sloping by 6 px per segment
    # (about 1.7 degrees); neighbouring segments overlap vertically by 80%.
    quads = [rect_quad(100 + 200 * i, 120 + step * i, 250 + 200 * i, 150 + step * i) for i in range(4)]
    quads += [rect_quad(100, 220, 850, 250)]  # the next line, well below
    for seed in range(3):
        assert read(quads, seed) == [0, 1, 2, 3, 4]


def _warped(image: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """The perspective warp crop_quad does for general quads."""
    q = quad.astype(np.float32)
    w = int(max(np.linalg.norm(q[0] - q[1]), np.linalg.norm(q[2] - q[3])))
    h = int(max(np.linalg.norm(q[0] - q[3]), np.linalg.norm(q[1] - q[2])))
    target = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(q, target)
    return cv2.warpPerspective(image, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)


@pytest.mark.parametrize("quad", [rect_quad(10, 20, 110, 60), rect_quad(0, 0, 200, 30), rect_quad(150, 120, 200, 150)])
def test_upright_integer_boxes_are_sliced_with_the_warps_pixels(quad: np.ndarray) -> None:
    image = np.random.default_rng(2).integers(0, 256, (150, 200, 3), dtype=np.uint8)
    assert integer_axis_aligned_box(quad.astype(np.float32), 200, 150) is not None
    np.testing.assert_array_equal(crop_quad(image, quad), _warped(image, quad))


def test_only_upright_integer_boxes_inside_the_image_take_the_slice() -> None:
    assert integer_axis_aligned_box(rect_quad(10, 20, 110, 60).astype(np.float32), 200, 150) == (10, 20, 110, 60)
    skewed = np.array([[10, 20], [110, 22], [110, 62], [10, 60]], dtype=np.float32)
    fractional = rect_quad(10, 20, 110, 60).astype(np.float32) + 0.5
    outside = rect_quad(150, 120, 201, 150).astype(np.float32)
    for quad in (skewed, fractional, outside):
        assert integer_axis_aligned_box(quad, 200, 150) is None


def test_crop_quad_warps_from_the_quads_neighbourhood_with_the_pages_pixels():
    """Cropping samples a window round the quad: the crops match a warp of the whole page (at
    most 1 grey level, float rounding of the shifted matrix), quads that reach past the page
    edge included, and a page of 32767 px or more on a side (which OpenCV's warp refuses as a
    source) crops as well."""
    from ocr_actors.geometry import TALL_CROP_RATIO

    rng = np.random.default_rng(0)
    page = cv2.GaussianBlur(rng.integers(0, 255, (400, 600, 3), dtype=np.uint8), (5, 5), 0)
    for _ in range(60):
        centre = (rng.uniform(-10, 610), rng.uniform(-10, 410))
        quad = cv2.boxPoints((centre, (rng.uniform(5, 200), rng.uniform(5, 40)), rng.uniform(-15, 15)))
        quad = np.roll(quad, -int(np.argmin(quad.sum(1))), 0).astype(np.float32)
        width = int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3])))
        height = int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2])))
        width, height = max(width, 1), max(height, 1)
        target = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
        whole = cv2.warpPerspective(
            page,
            cv2.getPerspectiveTransform(quad, target),
            (width, height),
            flags=cv2.INTER_CUBIC,
            borderMode=cv2.BORDER_REPLICATE,
        )
        if whole.shape[0] >= TALL_CROP_RATIO * whole.shape[1]:
            whole = np.rot90(whole)
        crop = crop_quad(page, quad)
        assert crop.shape == whole.shape
        assert np.abs(crop.astype(int) - whole.astype(int)).max() <= 1
    wide = np.full((60, 40_000, 3), 255, np.uint8)
    wide[20:40, 35_010:35_990] = 0
    skewed = np.array([[35_000.5, 15], [36_000.2, 17], [36_000.2, 45], [35_000.5, 43]], np.float32)
    line = crop_quad(wide, skewed)
    assert line.shape == (28, 999, 3) and line[5:20, 20:980].max() == 0 and line[:, :5].min() == 255


def test_a_crop_of_32767_px_or_more_is_cut_at_the_scale_opencv_takes():
    """OpenCV warps no output (and no source) of 32767 px or more on a side: a longer skewed
    line is cropped at the scale that fits, aspect kept, its content where it belongs; shorter
    crops keep their full size (above)."""
    from ocr_actors.geometry import OPENCV_MAX_SIDE

    page = np.full((200, 41_000, 3), 255, np.uint8)
    page[40:70, 20_000:30_000] = 0  # a dark run from a quarter to half of the way along the line
    quad = np.array([[10.5, 20], [40_010.5, 30], [40_010.5, 90], [10.5, 80]], np.float32)
    crop = crop_quad(page, quad)
    scale = OPENCV_MAX_SIDE / 40_008  # the longest side: the window round the quad (3 px before, 4 after)
    assert crop.shape == (int(60 * scale), int(40_000 * scale), 3)
    columns = crop[crop.shape[0] // 2].max(axis=1)  # the middle row: dark exactly where the run is
    dark = np.flatnonzero(columns < 128)
    assert abs(dark[0] - 19_990 * scale) <= 3 and abs(dark[-1] - 29_990 * scale) <= 3
    assert len(dark) == dark[-1] - dark[0] + 1 and columns[:1000].min() == 255
    grey = crop_quad(page[:, :, 1:2], quad)
    assert grey.shape == (*crop.shape[:2], 1)
    tall = np.ascontiguousarray(np.rot90(page, -1))  # the same line standing: turned to read across
    standing = np.array([[120, 10.5], [180, 10.5], [170, 40_010.5], [110, 40_010.5]], np.float32)
    assert crop_quad(tall, standing).shape[1] > 30_000


def test_unwarp_maps_put_the_grids_corners_on_the_pages_corner_pixels():
    """UVDoc applies its grid with ``align_corners=True``: an identity grid maps each pixel to
    itself (half-pixel-centre upsampling moved pixels by up to 15 px on a 1000 px page), and a
    grid shifted by a known amount moves every pixel by that amount."""
    from ocr_actors.geometry import unwarp_maps

    height, width = 1400, 1000
    gx, gy = np.meshgrid(np.linspace(-1, 1, 31), np.linspace(-1, 1, 45))
    identity = np.stack([gx, gy]).astype(np.float32)
    map_x, map_y = unwarp_maps(identity, width, height)
    assert map_x.shape == map_y.shape == (height, width) and map_x.dtype == np.float32
    assert np.abs(map_x - np.arange(width)[None, :]).max() < 0.01
    assert np.abs(map_y - np.arange(height)[:, None]).max() < 0.01
    shifted = identity + np.array([2 * 9.0 / (width - 1), 0.0], np.float32)[:, None, None]  # 9 px to the right
    map_x, _ = unwarp_maps(shifted, width, height)
    assert np.abs(map_x - (np.arange(width)[None, :] + 9.0)).max() < 0.01


def test_remap_windowed_gives_one_remaps_pixels_in_tiles_of_any_size():
    """A page remapped in tiles (each from the window its map points into) is pixel for pixel
    the page remapped in one call: smooth maps reaching past every edge, a map that scatters
    each tile over the whole page (its tiles are halved until their windows fit), grey pages."""
    from ocr_actors.geometry import remap_windowed

    rng = np.random.default_rng(3)
    page = rng.integers(0, 256, (150, 250, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:140, 0:260].astype(np.float32)
    smooth = ((xx * 0.97 + 10 * np.sin(yy / 30) - 5).astype(np.float32), (yy * 1.05 + 8 * np.cos(xx / 40) - 6))
    scattered = (((xx * 37) % 250 + 0.3).astype(np.float32), yy.astype(np.float32))
    for map_x, map_y in (smooth, scattered):
        map_y = map_y.astype(np.float32)
        for image in (page, page[:, :, 1]):
            whole = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            for side in (7, 64, 1000):
                np.testing.assert_array_equal(remap_windowed(image, map_x, map_y, max_side=side), whole)
    with pytest.raises(ValueError, match="not finite"):
        remap_windowed(page, np.full((40, 40), np.nan, np.float32), map_y[:40, :40], max_side=16)
    with pytest.raises(ValueError, match="at least 4"):
        remap_windowed(page, map_x[:40, :40], map_y[:40, :40], max_side=3)
