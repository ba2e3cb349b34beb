"""Unit tests for ocr_actors.preprocess (pure numpy / OpenCV, no models)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ocr_actors.preprocess import (
    DET_MEAN,
    DET_STD,
    Batch,
    as_bgr,
    batches_by_aspect_ratio,
    det_resize_shape,
    normalize_det,
    prepare_det_batch,
    prepare_det_input,
    prepare_doc_orientation_input,
    prepare_rec_batch,
    prepare_textline_cls_batch,
    rec_batch_width,
    rec_resized_width,
)

# --------------------------------------------------------------------------- detection resize


@pytest.mark.parametrize(
    ("height", "width", "limit", "limit_type", "expected"),
    [
        # max: shrink so the long side is at most the limit
        (1000, 2000, 960, "max", (480, 960)),
        (2000, 1000, 960, "max", (960, 480)),
        # max: a small image is not enlarged, only rounded to multiples of 32
        (500, 600, 960, "max", (512, 608)),
        # min: enlarge so the short side is at least the limit
        (100, 200, 736, "min", (736, 1472)),
        # min: a large image is not shrunk
        (800, 1000, 736, "min", (800, 992)),
        # resize_long: the long side becomes exactly the limit (up or down)
        (100, 200, 960, "resize_long", (480, 960)),
        (3000, 1500, 960, "resize_long", (960, 480)),
    ],
)
def test_det_resize_shape_limit_types(
    height: int, width: int, limit: int, limit_type: str, expected: tuple[int, int]
) -> None:
    assert det_resize_shape(height, width, limit, limit_type) == expected


def test_det_resize_shape_truncates_before_rounding_as_the_reference() -> None:
    """PaddleX's ``DetResizeForTest`` truncates each scaled side to whole pixels before
    rounding to a multiple of 32 (half to even): 2000 x 1101 at max/960 scales the short side
    to 528.48 px, 528 = 16.5 blocks, 16 blocks = 512 px (rounding 528.48 / 32 = 16.515 gave 544)."""
    assert det_resize_shape(1101, 2000, 960, "max") == (512, 960)
    assert det_resize_shape(2000, 1101, 960, "max") == (960, 512)
    assert det_resize_shape(84, 1000, 960, "max") == (64, 960)


def test_det_resize_shape_caps_long_side_at_max_side_limit() -> None:
    # resize_long to 9000 would give 3000x9000; the cap scales the long side to 4000
    # (short side 1333.3 -> 1344 as a multiple of 32).
    assert det_resize_shape(100, 300, 9000, "resize_long", max_side_limit=4000) == (1344, 4000)
    assert det_resize_shape(100, 300, 9000, "resize_long", max_side_limit=10_000) == (3008, 8992)
    # min on a very elongated image: short side 32 -> 960 makes the long side 30000.
    h, w = det_resize_shape(32, 1000, 960, "min", max_side_limit=4000)
    assert w == 4000
    assert h == 128


@pytest.mark.parametrize("limit_type", ["max", "min", "resize_long"])
@pytest.mark.parametrize(("height", "width"), [(17, 999), (333, 777), (1234, 567), (50, 50), (4100, 3000)])
def test_det_resize_shape_multiples_of_32(limit_type: str, height: int, width: int) -> None:
    h, w = det_resize_shape(height, width, 960, limit_type)
    assert h % 32 == 0 and w % 32 == 0
    assert h >= 32 and w >= 32


def test_det_resize_shape_minimum_32() -> None:
    # A 10 px high strip shrunk by 0.96 would round to 0 rows; the minimum is 32.
    assert det_resize_shape(10, 1000, 960, "max") == (32, 960)
    assert det_resize_shape(1, 1, 960, "max") == (32, 32)


def test_det_resize_shape_invalid_limit_type() -> None:
    with pytest.raises(ValueError, match="limit_type must be 'max', 'min' or 'resize_long', got 'long'"):
        det_resize_shape(100, 100, 960, "long")


def test_det_resize_shape_empty_side() -> None:
    with pytest.raises(ValueError, match="empty side"):
        det_resize_shape(0, 100, 960, "max")


def test_normalize_det_values() -> None:
    image = np.zeros((2, 3, 3), dtype=np.uint8)
    image[0, 0] = (255, 255, 255)
    image[1, 2] = (0, 128, 255)
    out = normalize_det(image)
    assert out.shape == (3, 2, 3)
    assert out.dtype == np.float32
    assert out.flags["C_CONTIGUOUS"]
    black = -DET_MEAN / DET_STD
    white = (1.0 - DET_MEAN) / DET_STD
    np.testing.assert_allclose(out[:, 0, 1], black, rtol=1e-5)
    np.testing.assert_allclose(out[:, 0, 0], white, rtol=1e-5)
    # Channels are taken in the order given (BGR image -> statistics by position).
    expected = (np.array([0, 128, 255], dtype=np.float32) / 255.0 - DET_MEAN) / DET_STD
    np.testing.assert_allclose(out[:, 1, 2], expected, rtol=1e-5)


def test_prepare_det_input_shape() -> None:
    image = np.full((1000, 2000, 3), 255, dtype=np.uint8)
    out = prepare_det_input(image, 960, "max")
    assert out.shape == (1, 3, 480, 960)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, :, 10, 10], (1.0 - DET_MEAN) / DET_STD, rtol=1e-5)


def test_prepare_det_batch_is_each_pages_input_zero_padded_on_the_canvas_in_a_reused_buffer() -> None:
    rng = np.random.default_rng(5)
    portrait = rng.integers(0, 255, (1754, 1240, 3), dtype=np.uint8)  # resizes to 960 x 672
    grey = rng.integers(0, 255, (700, 500, 1), dtype=np.uint8)  # kept: 704 x 512
    pages = [portrait, grey]
    buffer = np.full(4 * 3 * 960 * 736, np.nan, dtype=np.float32)  # stale values from a bigger call
    batch = prepare_det_batch(pages, (960, 736), 960, "max", buffer=buffer)
    assert batch.shape == (2, 3, 960, 736) and batch.dtype == np.float32
    assert np.shares_memory(batch, buffer)  # built in the caller's buffer, not in new memory
    for slot, page in zip(batch, pages, strict=True):
        alone = prepare_det_input(page, 960, "max")[0]
        h, w = alone.shape[1:]
        np.testing.assert_array_equal(slot[:, :h, :w], alone)
        assert not slot[:, h:, :].any() and not slot[:, :h, w:].any()  # zero padding, no stale value
    np.testing.assert_array_equal(prepare_det_batch(pages, (960, 736), 960, "max"), batch)  # no buffer: new memory
    with pytest.raises(ValueError, match="does not hold a page resized to"):
        prepare_det_batch(pages, (704, 736), 960, "max")
    with pytest.raises(ValueError, match="the batch needs"):
        prepare_det_batch(pages, (960, 736), 960, "max", buffer=np.empty(10, np.float32))


# --------------------------------------------------------------------------- recognition


def test_rec_resized_width() -> None:
    assert rec_resized_width(32, 64) == 96
    assert rec_resized_width(48, 10) == 10
    assert rec_resized_width(10, 1) == 5  # ceil(4.8)
    assert rec_resized_width(10, 10_000, max_width=3200) == 3200
    assert rec_resized_width(0, 5) == 240  # height guarded against 0
    # PaddleX's rounding at width_scale 1: up within the reference width of 320 at height 48,
    # down beyond it; narrowed crops always up
    assert rec_resized_width(31, 206) == 319  # ceil(318.97)
    assert rec_resized_width(31, 413) == 639  # floor(639.48), not 640
    assert rec_resized_width(7, 300) == 2057  # floor(2057.1)
    assert rec_resized_width(3, 20) == 320  # exactly 320: no rounding either way
    assert rec_resized_width(32, 64, width_scale=0.8) == 77  # ceil(76.8)
    assert rec_resized_width(31, 517, width_scale=0.8) == 641  # ceil(640.4) past 320 too


def test_prepare_rec_batch_shape_and_padding() -> None:
    crops = [
        np.full((32, 64, 3), 255, dtype=np.uint8),  # -> 48 x 96
        np.zeros((24, 480, 3), dtype=np.uint8),  # -> 48 x 960 (widest)
    ]
    out = prepare_rec_batch(crops, min_width=320)
    assert out.shape == (2, 3, 48, 960)
    assert out.dtype == np.float32
    # Crop 0: white -> 1.0 over its 96 columns, zero padding on the right.
    np.testing.assert_allclose(out[0, :, :, :96], 1.0)
    assert (out[0, :, :, 96:] == 0).all()
    # Crop 1: black -> -1.0 over the full width.
    np.testing.assert_allclose(out[1], -1.0)


def test_prepare_rec_batch_min_width() -> None:
    crops = [np.full((48, 48, 3), 100, dtype=np.uint8), np.full((48, 96, 3), 200, dtype=np.uint8)]
    out = prepare_rec_batch(crops, min_width=320)
    assert out.shape == (2, 3, 48, 320)
    np.testing.assert_allclose(out[0, :, :, :48], 100 * 2.0 / 255.0 - 1.0, rtol=1e-6)
    assert (out[0, :, :, 48:] == 0).all()
    np.testing.assert_allclose(out[1, :, :, :96], 200 * 2.0 / 255.0 - 1.0, rtol=1e-6)
    assert (out[1, :, :, 96:] == 0).all()
    # A smaller min_width only pads to the widest crop.
    assert prepare_rec_batch(crops, min_width=16).shape == (2, 3, 48, 96)
    # width_multiple rounds the padded width up, and only pads.
    padded = prepare_rec_batch(crops, min_width=16, width_multiple=64)
    assert padded.shape == (2, 3, 48, 128)
    np.testing.assert_array_equal(padded[:, :, :, :96], prepare_rec_batch(crops, min_width=16))
    assert (padded[:, :, :, 96:] == 0).all()
    assert prepare_rec_batch(crops, min_width=320, width_multiple=64).shape == (2, 3, 48, 320)


def test_prepare_rec_batch_value_range_and_height() -> None:
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(20, 100), (60, 30), (48, 500)]]
    out = prepare_rec_batch(crops, height=48, min_width=320, max_width=3200)
    assert out.shape == (3, 3, 48, 500)
    assert out.min() >= -1.0 and out.max() <= 1.0
    assert out.min() < -0.9 and out.max() > 0.9


def test_prepare_rec_batch_max_width_cap() -> None:
    crops = [np.zeros((10, 2000, 3), dtype=np.uint8)]  # 48 * 200 = 9600 before the cap
    assert prepare_rec_batch(crops, max_width=1000).shape == (1, 3, 48, 1000)


def _check_batches(shapes: list[tuple[int, int]], batch_size: int, spread: float) -> list[Batch]:
    batches = batches_by_aspect_ratio(shapes, batch_size, spread)
    flat = [i for b in batches for i in b.indices]
    assert sorted(flat) == list(range(len(shapes)))  # every index exactly once
    assert all(1 <= len(b.indices) <= batch_size for b in batches)
    ratios = [w / max(h, 1) for h, w in shapes]
    ordered = [ratios[i] for i in flat]
    assert ordered == sorted(ordered)  # sorted by aspect ratio across batches
    for b in batches:
        narrowest = ratios[b.indices[0]]
        assert max(ratios[i] for i in b.indices) <= spread * max(narrowest, 1.0)
    return batches


def test_batches_by_aspect_ratio_random_properties() -> None:
    rng = np.random.default_rng(1)
    shapes = [(int(h), int(w)) for h, w in zip(rng.integers(10, 60, 57), rng.integers(5, 2000, 57), strict=True)]
    for batch_size in (1, 3, 8, 100):
        _check_batches(shapes, batch_size, 2.0)


def test_batches_by_aspect_ratio_spread_rule() -> None:
    # Aspect ratios 1, 1.5, 2, 3, 5, 10 given out of order.
    shapes = [(10, 50), (10, 10), (10, 100), (10, 20), (10, 15), (10, 30)]
    batches = _check_batches(shapes, batch_size=8, spread=2.0)
    assert [b.indices for b in batches] == [(1, 4, 3), (5, 0), (2,)]


def test_batches_by_aspect_ratio_batch_size_closes_batches() -> None:
    shapes = [(10, 10 + i) for i in range(7)]  # all within the spread
    batches = _check_batches(shapes, batch_size=3, spread=2.0)
    assert [b.indices for b in batches] == [(0, 1, 2), (3, 4, 5), (6,)]


def test_batches_by_aspect_ratio_empty_and_invalid() -> None:
    assert batches_by_aspect_ratio([], 4) == []
    with pytest.raises(ValueError, match="batch_size"):
        batches_by_aspect_ratio([(10, 10)], 0)
    with pytest.raises(ValueError, match="one key per crop"):
        batches_by_aspect_ratio([(10, 10), (10, 20)], 4, groups=[320])


def test_batches_by_group_hold_one_group_each_and_ignore_the_spread() -> None:
    """Width buckets as groups: a batch never spans two buckets, fills up to batch_size
    within one, however far the aspect ratios inside it spread."""
    # aspect ratios 1, 1.5, 2, 3, 5, 10, 12 given out of order; buckets by ratio
    shapes = [(10, 50), (10, 10), (10, 100), (10, 20), (10, 15), (10, 30), (10, 120)]
    groups = [320 if w / h <= 6 else 640 for h, w in shapes]
    batches = batches_by_aspect_ratio(shapes, 8, max_width_spread=1.0, groups=groups)
    assert [b.indices for b in batches] == [(1, 4, 3, 5, 0), (2, 6)]
    batches = batches_by_aspect_ratio(shapes, 2, max_width_spread=1.0, groups=groups)
    assert [b.indices for b in batches] == [(1, 4), (3, 5), (0,), (2, 6)]
    rng = np.random.default_rng(2)
    many = [(int(h), int(w)) for h, w in zip(rng.integers(10, 60, 300), rng.integers(5, 2000, 300), strict=True)]
    keys = [int(w / h // 4) for h, w in many]  # non-decreasing with the aspect ratio
    batches = batches_by_aspect_ratio(many, 16, groups=keys)
    assert sorted(i for b in batches for i in b.indices) == list(range(300))
    assert all(len({keys[i] for i in b.indices}) == 1 and len(b.indices) <= 16 for b in batches)
    # as few batches as the groups allow: only a group's last batch may be short
    per_group = {k: keys.count(k) for k in set(keys)}
    assert len(batches) == sum(-(-n // 16) for n in per_group.values())


# --------------------------------------------------------------------------- classifiers


def test_prepare_textline_cls_batch_shape() -> None:
    crops = [np.full((30, 60, 3), 255, dtype=np.uint8), np.zeros((20, 2000, 3), dtype=np.uint8)]
    out = prepare_textline_cls_batch(crops)
    assert out.shape == (2, 3, 48, 192)
    assert out.dtype == np.float32
    # 30x60 -> 48x96, then zero padding.
    np.testing.assert_allclose(out[0, :, :, :96], 1.0)
    assert (out[0, :, :, 96:] == 0).all()
    # A very wide crop is squeezed to the full 192 columns.
    np.testing.assert_allclose(out[1], -1.0)


def test_prepare_doc_orientation_input_shape_and_rgb_order() -> None:
    image = np.zeros((600, 400, 3), dtype=np.uint8)
    image[:, :] = (255, 0, 0)  # pure blue in BGR
    out = prepare_doc_orientation_input(image)
    assert out.shape == (1, 3, 224, 224)
    assert out.dtype == np.float32
    # Channel 0 is red (0), channel 2 is blue (255), with the ImageNet statistics.
    np.testing.assert_allclose(out[0, 0], -DET_MEAN[0] / DET_STD[0], rtol=1e-5)
    np.testing.assert_allclose(out[0, 1], -DET_MEAN[1] / DET_STD[1], rtol=1e-5)
    np.testing.assert_allclose(out[0, 2], (1.0 - DET_MEAN[2]) / DET_STD[2], rtol=1e-5)


@pytest.mark.parametrize(("h", "w"), [(100, 3000), (3000, 100), (224, 224), (50, 60)])
def test_prepare_doc_orientation_input_any_page_shape(h: int, w: int) -> None:
    out = prepare_doc_orientation_input(np.zeros((h, w, 3), dtype=np.uint8))
    assert out.shape == (1, 3, 224, 224)


def test_prepare_doc_orientation_input_centre_crop() -> None:
    # 256x512 page: left quarter white, the rest black. The centre 224 columns
    # start at x=144, so they are all black.
    image = np.zeros((256, 512, 3), dtype=np.uint8)
    image[:, :128] = 255
    out = prepare_doc_orientation_input(image)
    np.testing.assert_allclose(out[0, 0], -DET_MEAN[0] / DET_STD[0], rtol=1e-5)


@pytest.mark.parametrize(
    ("widest", "expected"),
    [(10, 320), (320, 320), (321, 480), (700, 960), (960, 960), (961, 1024), (1500, 1536)],
)
def test_rec_batch_width_takes_the_smallest_bucket_that_holds_the_batch(widest: int, expected: int) -> None:
    # past the last bucket the width falls back to a multiple of width_multiple
    assert rec_batch_width(widest, 320, 64, (320, 480, 960)) == expected


def test_rec_batch_width_without_buckets() -> None:
    assert rec_batch_width(100, 320) == 320
    assert rec_batch_width(333, 320) == 333
    assert rec_batch_width(333, 16, 64) == 384


def test_prepare_rec_batch_buckets_and_blank_rows() -> None:
    rng = np.random.default_rng(3)
    crops = [rng.integers(0, 255, (32, w, 3), dtype=np.uint8) for w in (200, 300)]
    plain = prepare_rec_batch(crops, min_width=16)
    padded = prepare_rec_batch(crops, min_width=16, width_buckets=(320, 640, 1280), rows=8)
    assert padded.shape == (8, 3, 48, 640)
    # the crops' rows are the plain batch, right-padded; the added rows are blank
    np.testing.assert_array_equal(padded[:2, :, :, : plain.shape[3]], plain)
    assert not padded[:2, :, :, plain.shape[3] :].any() and not padded[2:].any()
    # rows below the crop count never drop crops
    assert prepare_rec_batch(crops, min_width=16, rows=1).shape[0] == 2


def test_grey_pages_and_crops_give_the_models_what_their_bgr_copies_give() -> None:
    """The batch job moves grey pages as ``(H, W, 1)``: detection input, crops, recognition
    and text-line classifier inputs must equal those of the same page in BGR, bit for bit."""
    import cv2

    from ocr_actors.runtime.ocr import crop_lines

    rng = np.random.default_rng(11)
    grey = cv2.GaussianBlur(rng.integers(0, 256, (301, 517), dtype=np.uint8), (5, 5), 0)[:, :, None]
    bgr = np.repeat(grey, 3, axis=2)
    assert np.array_equal(as_bgr(grey), bgr) and as_bgr(bgr) is bgr
    np.testing.assert_array_equal(prepare_det_input(grey, 960, "max"), prepare_det_input(bgr, 960, "max"))
    np.testing.assert_array_equal(prepare_det_input(grey, 64, "min"), prepare_det_input(bgr, 64, "min"))
    quads = np.array(
        [
            [[10, 10], [210, 10], [210, 40], [10, 40]],  # axis-aligned integer box: a slice
            [[20.5, 60.2], [300.7, 70.1], [299.0, 101.9], [19.2, 92.3]],  # perspective warp
            [[400, 20], [430, 20], [430, 200], [400, 200]],  # tall: turned 90 degrees
        ],
        np.float32,
    )
    grey_crops, bgr_crops = crop_lines(grey, quads), crop_lines(bgr, quads)
    for g, c in zip(grey_crops, bgr_crops, strict=True):
        assert g.shape == (*c.shape[:2], 1)
        np.testing.assert_array_equal(np.repeat(g, 3, axis=2), c)
    np.testing.assert_array_equal(
        prepare_rec_batch(grey_crops, width_buckets=(320, 640), rows=4),
        prepare_rec_batch(bgr_crops, width_buckets=(320, 640), rows=4),
    )
    np.testing.assert_array_equal(prepare_textline_cls_batch(grey_crops), prepare_textline_cls_batch(bgr_crops))


def test_doc_orientation_input_of_a_thin_strip_samples_its_centre_window_only():
    """A 1 x 100,000 px strip would be resized to 256 x 25,600,000 px (tens of GB) before its
    centre crop; its window is sampled directly instead, with the resize's own pixel mapping:
    on a page where both fit, the two agree within a grey level (normalised units)."""
    from ocr_actors import preprocess

    rng = np.random.default_rng(1)
    grey = cv2.GaussianBlur(rng.integers(0, 255, (60, 3000), dtype=np.uint8), (7, 7), 0)
    page = np.dstack([grey, grey[::-1], grey[:, ::-1]])  # resized whole: 256 x 12,800 px
    windowed = preprocess.prepare_doc_orientation_input(page)
    limit = preprocess.ORIENTATION_RESIZE_LIMIT
    try:
        preprocess.ORIENTATION_RESIZE_LIMIT = 10**9
        resized = preprocess.prepare_doc_orientation_input(page)
    finally:
        preprocess.ORIENTATION_RESIZE_LIMIT = limit
    assert windowed.shape == resized.shape == (1, 3, 224, 224)
    assert np.abs(windowed - resized).max() < 0.02
    strip = np.zeros((1, 100_000, 3), np.uint8)
    strip[:, 49_000:51_000] = 255
    patch = preprocess.prepare_doc_orientation_input(strip)
    assert patch.shape == (1, 3, 224, 224) and np.isfinite(patch).all()
    assert patch[0, :, :, 100:124].min() > 1.5  # the white middle, normalised


def test_thread_buffers_are_kept_per_thread_up_to_a_size_and_grow() -> None:
    import threading

    from ocr_actors.runtime.runners import ThreadBuffers

    buffers = ThreadBuffers(keep_bytes=4000)
    first = buffers.get(100)
    assert first.dtype == np.float32 and first.size == 100 and np.shares_memory(buffers.get(50), first)  # kept
    grown = buffers.get(900)
    assert grown.size == 900 and not np.shares_memory(grown, first)  # grown: new memory
    assert np.shares_memory(buffers.get(100), grown)  # then kept
    pixels = buffers.get(1800, np.uint16)  # the same bytes as another dtype (a pixel batch)
    assert pixels.dtype == np.uint16 and pixels.size == 1800 and np.shares_memory(pixels, grown)
    huge = buffers.get(2000)  # 8000 bytes, past keep_bytes: its own memory, not kept
    assert huge.size == 2000 and not np.shares_memory(huge, grown) and np.shares_memory(buffers.get(900), grown)
    other: list = []
    worker = threading.Thread(target=lambda: other.append(buffers.get(100)))
    worker.start()
    worker.join()
    assert not np.shares_memory(other[0], grown)  # another thread builds in memory of its own
