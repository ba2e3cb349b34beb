"""Unit tests for ocr_actors.postprocess on hand-made probability maps and logits."""

from __future__ import annotations

import numpy as np
import pytest

from ocr_actors.postprocess import (
    DBParams,
    box_score,
    ctc_characters,
    ctc_greedy_decode,
    db_boxes,
    filter_tiny_quads,
    unclip,
)


def box_of(quad: np.ndarray) -> np.ndarray:
    return np.array([quad[:, 0].min(), quad[:, 1].min(), quad[:, 0].max(), quad[:, 1].max()])


def sorted_by_x(quads: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(quads[:, 0, 0], kind="stable")
    return quads[order], scores[order]


def expected_box(x0: int, y0: int, x1: int, y1: int, unclip_ratio: float, scale: float) -> np.ndarray:
    """Region [x0, x1) x [y0, y1) of the map grown by the DB unclip distance, in source pixels."""
    w, h = x1 - x0, y1 - y0
    d = w * h * unclip_ratio / (2 * (w + h))
    return np.array([x0 - d, y0 - d, x1 + d, y1 + d]) * scale


# --------------------------------------------------------------------------- DB


def two_region_map() -> np.ndarray:
    prob = np.zeros((200, 300), dtype=np.float32)
    prob[30:60, 20:120] = 0.9  # 100 x 30
    prob[100:140, 140:260] = 0.8  # 120 x 40
    return prob


def test_db_boxes_two_regions_rescaled_to_source() -> None:
    params = DBParams()  # thresh 0.3, box_thresh 0.6, unclip 1.5
    quads, scores = db_boxes(two_region_map(), (400, 600), params)  # source is 2x the map
    assert quads.shape == (2, 4, 2)
    assert quads.dtype == np.float32
    assert scores.dtype == np.float32
    quads, scores = sorted_by_x(quads, scores)
    np.testing.assert_allclose(box_of(quads[0]), expected_box(20, 30, 120, 60, 1.5, 2.0), atol=4)
    np.testing.assert_allclose(box_of(quads[1]), expected_box(140, 100, 260, 140, 1.5, 2.0), atol=4)
    np.testing.assert_allclose(scores, [0.9, 0.8], atol=1e-5)
    # Quads are ordered TL, TR, BR, BL.
    for q in quads:
        assert q[0, 0] < q[1, 0] and q[0, 1] < q[3, 1]
        assert q[1, 1] < q[2, 1] and q[3, 0] < q[2, 0]


def test_db_boxes_anisotropic_rescale() -> None:
    prob = np.zeros((100, 100), dtype=np.float32)
    prob[40:60, 10:90] = 0.95
    quads, _ = db_boxes(prob, (300, 50), DBParams(unclip_ratio=0.0))  # y x3, x x0.5
    assert quads.shape == (1, 4, 2)
    # Within one map pixel (0.5 source px in x, 3 in y) of the region's edges.
    x0, y0, x1, y1 = box_of(quads[0])
    assert abs(x0 - 5) <= 0.5 and abs(x1 - 45) <= 1
    assert abs(y0 - 120) <= 3 and abs(y1 - 180) <= 3


def test_db_boxes_quads_are_clipped_to_the_source() -> None:
    prob = np.zeros((100, 100), dtype=np.float32)
    prob[0:20, 70:100] = 0.9  # touches the top and right borders
    quads, _ = db_boxes(prob, (200, 200), DBParams(unclip_ratio=2.0))
    assert quads.shape == (1, 4, 2)
    assert quads[..., 0].min() >= 0 and quads[..., 0].max() == 200
    assert quads[..., 1].min() == 0 and quads[..., 1].max() <= 200


def test_db_boxes_unclip_expands() -> None:
    prob = np.zeros((200, 300), dtype=np.float32)
    prob[80:110, 50:250] = 0.9
    sizes = []
    for ratio in (0.0, 0.5, 1.5, 2.5):
        quads, _ = db_boxes(prob, (200, 300), DBParams(unclip_ratio=ratio))
        assert quads.shape == (1, 4, 2)
        x0, y0, x1, y1 = box_of(quads[0])
        # The grown box always contains the region (within a pixel).
        assert x0 <= 51 and y0 <= 81 and x1 >= 249 and y1 >= 109
        sizes.append((x1 - x0, y1 - y0))
        np.testing.assert_allclose(box_of(quads[0]), expected_box(50, 80, 250, 110, ratio, 1.0), atol=2)
    widths, heights = zip(*sizes, strict=True)
    assert list(widths) == sorted(widths) and widths[-1] > widths[0] + 20
    assert list(heights) == sorted(heights) and heights[-1] > heights[0] + 20


def test_db_boxes_box_thresh_drops_weak_region() -> None:
    prob = two_region_map()
    prob[150:180, 20:120] = 0.5  # above thresh 0.3, below box_thresh 0.6
    quads, scores = db_boxes(prob, (200, 300), DBParams(box_thresh=0.6))
    assert quads.shape == (2, 4, 2)
    assert all(box_of(q)[1] < 150 for q in quads)
    assert scores.min() >= 0.6
    # With a lower box_thresh the weak region is kept, with its mean probability as score.
    quads, scores = db_boxes(prob, (200, 300), DBParams(box_thresh=0.4))
    assert quads.shape == (3, 4, 2)
    np.testing.assert_allclose(np.sort(scores), [0.5, 0.8, 0.9], atol=1e-5)


def test_db_boxes_thresh_binarises() -> None:
    prob = np.zeros((100, 200), dtype=np.float32)
    prob[20:50, 20:180] = 0.4
    low = DBParams(thresh=0.3, box_thresh=0.3)
    high = DBParams(thresh=0.5, box_thresh=0.3)
    assert db_boxes(prob, (100, 200), low)[0].shape == (1, 4, 2)
    assert db_boxes(prob, (100, 200), high)[0].shape == (0, 4, 2)


def test_db_boxes_thresh_sets_region_extent() -> None:
    # A region with a soft edge: its core is 0.9, a 10 px fringe 0.4 on the left.
    prob = np.zeros((100, 200), dtype=np.float32)
    prob[40:60, 60:160] = 0.9
    prob[40:60, 50:60] = 0.4
    params = dict(box_thresh=0.3, unclip_ratio=0.0)
    wide, _ = db_boxes(prob, (100, 200), DBParams(thresh=0.3, **params))
    narrow, _ = db_boxes(prob, (100, 200), DBParams(thresh=0.5, **params))
    assert abs(box_of(wide[0])[0] - 50) <= 1
    assert abs(box_of(narrow[0])[0] - 60) <= 1


def test_db_boxes_max_candidates_limits() -> None:
    prob = np.zeros((100, 400), dtype=np.float32)
    for k in range(5):
        prob[30:60, 10 + 80 * k : 70 + 80 * k] = 0.9
    assert db_boxes(prob, (100, 400), DBParams(unclip_ratio=0.5))[0].shape == (5, 4, 2)
    assert db_boxes(prob, (100, 400), DBParams(unclip_ratio=0.5, max_candidates=2))[0].shape == (2, 4, 2)


def test_db_boxes_min_size_drops_tiny_blobs() -> None:
    prob = np.zeros((100, 200), dtype=np.float32)
    prob[10:40, 20:180] = 0.9  # a text line
    prob[70:72, 50:60] = 0.95  # 2 px high speck
    prob[80:81, 100:101] = 0.95  # single pixel
    quads, _ = db_boxes(prob, (100, 200), DBParams())
    assert quads.shape == (1, 4, 2)
    assert box_of(quads[0])[3] < 70
    # A region 6 px high survives the default min_size 3 but not min_size 8.
    prob2 = np.zeros((100, 200), dtype=np.float32)
    prob2[50:56, 20:120] = 0.9
    assert db_boxes(prob2, (100, 200), DBParams(min_size=3))[0].shape == (1, 4, 2)
    assert db_boxes(prob2, (100, 200), DBParams(min_size=8))[0].shape == (0, 4, 2)


def test_db_boxes_empty_map() -> None:
    quads, scores = db_boxes(np.zeros((64, 96), dtype=np.float32), (640, 960), DBParams())
    assert quads.shape == (0, 4, 2)
    assert quads.dtype == np.float32
    assert scores.shape == (0,)


def test_db_boxes_use_dilation_merges_close_regions() -> None:
    prob = np.zeros((100, 200), dtype=np.float32)
    prob[40:60, 20:99] = 0.9
    prob[40:60, 100:180] = 0.9  # separated by one empty column
    assert db_boxes(prob, (100, 200), DBParams(unclip_ratio=0.0))[0].shape == (2, 4, 2)
    assert db_boxes(prob, (100, 200), DBParams(unclip_ratio=0.0, use_dilation=True))[0].shape == (1, 4, 2)


def test_box_score_is_mean_inside_quad() -> None:
    prob = np.zeros((50, 50), dtype=np.float32)
    prob[10:20, 10:30] = 1.0
    prob[10:20, 20:30] = 0.5
    quad = np.array([[10, 10], [29, 10], [29, 19], [10, 19]], dtype=np.float32)
    assert box_score(prob, quad) == pytest.approx(0.75, abs=1e-6)


def test_unclip_grows_by_area_over_perimeter() -> None:
    quad = np.array([[0, 0], [100, 0], [100, 20], [0, 20]], dtype=np.float32)
    grown = unclip(quad, 1.2)
    assert grown is not None
    assert grown.dtype == np.int32 and grown.shape[1:] == (1, 2)
    d = 100 * 20 * 1.2 / 240  # = 10
    pts = grown.reshape(-1, 2)
    np.testing.assert_allclose([pts[:, 0].min(), pts[:, 1].min()], [-d, -d], atol=1)
    np.testing.assert_allclose([pts[:, 0].max(), pts[:, 1].max()], [100 + d, 20 + d], atol=1)


def test_filter_tiny_quads() -> None:
    quads = np.array(
        [
            [[0, 0], [10, 0], [10, 10], [0, 10]],
            [[0, 0], [2, 0], [2, 10], [0, 10]],
            [[0, 0], [10, 0], [10, 3], [0, 3]],
        ],
        dtype=np.float32,
    )
    assert filter_tiny_quads(quads).tolist() == [True, False, False]
    assert filter_tiny_quads(np.zeros((0, 4, 2), dtype=np.float32)).shape == (0,)


# --------------------------------------------------------------------------- CTC

CHARS = ctc_characters(list("abc"))  # blank, a, b, c, space


def logits(steps: list[tuple[int, float]], classes: int = len(CHARS)) -> np.ndarray:
    """One row of (T, C) probabilities: at each step ``cls`` gets ``p``, the rest share 1 - p."""
    out = np.zeros((len(steps), classes), dtype=np.float32)
    for t, (cls, p) in enumerate(steps):
        out[t, :] = (1.0 - p) / (classes - 1)
        out[t, cls] = p
    return out


def test_ctc_characters_adds_blank_and_space() -> None:
    assert ctc_characters(["x", "y"]) == ["blank", "x", "y", " "]
    assert ctc_characters(["x", "y"], use_space_char=False) == ["blank", "x", "y"]
    assert ctc_characters([]) == ["blank", " "]


def test_ctc_repeats_collapse() -> None:
    a, b, c = 1, 2, 3
    row = logits([(a, 0.9), (a, 0.9), (a, 0.9), (b, 0.9), (b, 0.9), (c, 0.9)])
    assert ctc_greedy_decode(row[None], CHARS)[0][0] == "abc"


def test_ctc_blank_separates_repeated_chars() -> None:
    a = 1
    row = logits([(a, 0.9), (0, 0.9), (a, 0.9)])
    assert ctc_greedy_decode(row[None], CHARS)[0][0] == "aa"
    row = logits([(0, 0.9), (a, 0.9), (a, 0.9), (0, 0.9), (0, 0.9), (a, 0.9), (0, 0.9)])
    assert ctc_greedy_decode(row[None], CHARS)[0][0] == "aa"


def test_ctc_space_and_mixed() -> None:
    a, b, space = 1, 2, 4
    row = logits([(a, 0.9), (space, 0.9), (space, 0.9), (0, 0.9), (b, 0.9), (0, 0.9), (b, 0.9)])
    assert ctc_greedy_decode(row[None], CHARS)[0][0] == "a bb"


def test_ctc_empty_row() -> None:
    row = logits([(0, 0.99)] * 6)
    assert ctc_greedy_decode(row[None], CHARS) == [("", 0.0)]


def test_ctc_score_is_mean_of_kept_maxima() -> None:
    a, b, c = 1, 2, 3
    # Kept steps: a@0.9 (the repeat at 0.5 is dropped), b@0.7, c@0.6; blanks are not counted.
    row = logits([(a, 0.9), (a, 0.5), (0, 0.99), (b, 0.7), (0, 0.3), (c, 0.6)])
    text, score = ctc_greedy_decode(row[None], CHARS)[0]
    assert text == "abc"
    assert score == pytest.approx((0.9 + 0.7 + 0.6) / 3, abs=1e-6)


def test_ctc_batch_rows_are_independent() -> None:
    a, b, c = 1, 2, 3
    rows = np.stack(
        [
            logits([(c, 0.8), (a, 0.8), (b, 0.8), (0, 0.8)]),
            logits([(0, 0.8)] * 4),
            logits([(b, 0.6), (b, 0.6), (0, 0.6), (b, 0.6)]),
        ]
    )
    out = ctc_greedy_decode(rows, CHARS)
    assert [t for t, _ in out] == ["cab", "", "bb"]
    assert out[0][1] == pytest.approx(0.8, abs=1e-6)
    assert out[1][1] == 0.0
    assert out[2][1] == pytest.approx(0.6, abs=1e-6)


def test_ctc_class_count_mismatch_raises_clearly() -> None:
    probs = np.zeros((1, 4, 7), dtype=np.float32)
    with pytest.raises(ValueError, match=r"model has 7 classes but the dictionary gives 5") as info:
        ctc_greedy_decode(probs, CHARS)
    assert "wrong dictionary" in str(info.value)


def test_ctc_wrong_rank_raises() -> None:
    with pytest.raises(ValueError, match=r"expected \(N, T, C\)"):
        ctc_greedy_decode(np.zeros((4, 5), dtype=np.float32), CHARS)
