"""Pure post-processing: DB text detection boxes and CTC greedy decoding.

Probability maps are float32 ``(H, W)`` in [0, 1] in the frame of the resized
detection input; returned quads are float32 ``(N, 4, 2)`` in source-image pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import pyclipper

from ocr_actors.geometry import order_quad


@dataclass(frozen=True)
class DBParams:
    """DB post-processing parameters (names as the reference pipeline's)."""

    thresh: float = 0.3
    box_thresh: float = 0.6
    unclip_ratio: float = 1.5
    max_candidates: int = 1000
    min_size: int = 3
    use_dilation: bool = False


def min_area_quad(contour: np.ndarray) -> tuple[np.ndarray, float]:
    """Minimum-area rectangle of a contour as an ordered quad and its short side."""
    rect = cv2.minAreaRect(contour)
    quad = order_quad(cv2.boxPoints(rect))
    return quad, float(min(rect[1]))


def box_score(prob: np.ndarray, quad: np.ndarray) -> float:
    """Mean probability inside a quad (in ``prob``'s pixel frame)."""
    h, w = prob.shape
    xs, ys = quad[:, 0].tolist(), quad[:, 1].tolist()  # Python scalars: four points, no numpy calls
    x_min = min(max(math.floor(min(xs)), 0), w - 1)
    x_max = min(max(math.ceil(max(xs)), 0), w - 1)
    y_min = min(max(math.floor(min(ys)), 0), h - 1)
    y_max = min(max(math.ceil(max(ys)), 0), h - 1)
    mask = np.zeros((y_max - y_min + 1, x_max - x_min + 1), dtype=np.uint8)
    shifted = (quad - np.array([x_min, y_min], dtype=np.float32)).astype(np.int32)
    cv2.fillPoly(mask, [shifted], 1)
    mean = cv2.mean(prob[y_min : y_max + 1, x_min : x_max + 1], mask)
    return float(mean[0])  # type: ignore[index]


def unclip(quad: np.ndarray, unclip_ratio: float) -> np.ndarray | None:
    """Grow a quad by ``area * unclip_ratio / perimeter`` pixels (pyclipper offset).

    Returns the grown polygon ``(M, 1, 2)`` int32 or None when the offset is empty.
    """
    area = cv2.contourArea(quad)
    perimeter = cv2.arcLength(quad, True)
    if perimeter <= 0:
        return None
    distance = area * unclip_ratio / perimeter
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(quad.astype(np.float64).tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    expanded = offset.Execute(distance)
    if len(expanded) != 1:
        return None
    return np.asarray(expanded[0], dtype=np.int32).reshape(-1, 1, 2)


def db_boxes(prob: np.ndarray, source_shape: tuple[int, int], params: DBParams) -> tuple[np.ndarray, np.ndarray]:
    """Extract text quads from a DB probability map.

    Steps: binarise at ``thresh`` -> contours -> min-area quad -> mean probability
    (drop below ``box_thresh``) -> unclip -> min-area quad (drop if its short side is
    below ``min_size + 2``) -> rescale to the source image and clip.

    Args:
        prob: ``(H, W)`` float32 probability map of the resized input.
        source_shape: ``(H_src, W_src)`` of the image the quads should refer to.
        params: post-processing parameters.

    Returns:
        ``(quads, scores)``: ``(N, 4, 2)`` float32 quads in source pixels and
        ``(N,)`` float32 box scores.
    """
    height, width = prob.shape
    src_h, src_w = source_shape
    bitmap = (prob > params.thresh).astype(np.uint8)
    if params.use_dilation:
        bitmap = np.asarray(cv2.dilate(bitmap, np.ones((2, 2), np.uint8)), dtype=np.uint8)
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    scale = np.array([src_w / width, src_h / height], dtype=np.float32)
    quads: list[np.ndarray] = []
    scores: list[float] = []
    for contour in contours[: params.max_candidates]:
        if len(contour) < 4 and cv2.contourArea(contour) <= 0:
            continue
        quad, short_side = min_area_quad(contour)
        if short_side < params.min_size:
            continue
        score = box_score(prob, quad)
        if score < params.box_thresh:
            continue
        grown = unclip(quad, params.unclip_ratio)
        if grown is None:
            continue
        quad, short_side = min_area_quad(grown)
        if short_side < params.min_size + 2:
            continue
        quads.append(quad)
        scores.append(score)
    if not quads:
        return np.zeros((0, 4, 2), dtype=np.float32), np.zeros(0, dtype=np.float32)
    scaled = np.stack(quads) * scale  # to source pixels, all quads at once
    scaled[:, :, 0] = np.clip(np.round(scaled[:, :, 0]), 0, src_w)
    scaled[:, :, 1] = np.clip(np.round(scaled[:, :, 1]), 0, src_h)
    return scaled.astype(np.float32), np.asarray(scores, dtype=np.float32)


def filter_tiny_quads(quads: np.ndarray, min_side: float = 3.0) -> np.ndarray:
    """Boolean mask of quads whose both sides are longer than ``min_side`` pixels."""
    if len(quads) == 0:
        return np.zeros(0, dtype=bool)
    w = np.linalg.norm(quads[:, 0] - quads[:, 1], axis=1)
    h = np.linalg.norm(quads[:, 0] - quads[:, 3], axis=1)
    return (w > min_side) & (h > min_side)


# --------------------------------------------------------------------------- CTC


def ctc_characters(dictionary: Sequence[str], use_space_char: bool = True) -> list[str]:
    """Model output alphabet: ``"blank"`` + dictionary (+ a trailing space)."""
    chars = ["blank", *dictionary]
    if use_space_char:
        chars.append(" ")
    return chars


def ctc_greedy_decode(probs: np.ndarray, characters: Sequence[str], space_bias: float = 1.0) -> list[tuple[str, float]]:
    """Greedy CTC decoding.

    Args:
        probs: ``(N, T, C)`` float32 per-step class probabilities; class 0 is the blank.
        characters: ``C`` labels, as :func:`ctc_characters` builds them.
        space_bias: the space class wins a step when its probability times this factor
            exceeds the step's best probability. PP-OCR recognisers under-predict the
            spaces between words; a bias of a few times recovers most of them. 1.0 is
            plain greedy decoding.

    Returns:
        One ``(text, score)`` per row, leading and trailing spaces stripped; the score is
        the mean probability of the kept characters (0.0 for an empty text).
    """
    if probs.ndim != 3:
        raise ValueError(f"expected (N, T, C) probabilities, got shape {probs.shape}")
    if probs.shape[2] != len(characters):
        raise ValueError(
            f"model has {probs.shape[2]} classes but the dictionary gives {len(characters)}: "
            "wrong dictionary for this recognition model"
        )
    indices = probs.argmax(axis=2)
    maxima = probs.max(axis=2)
    if space_bias != 1.0 and characters[-1] == " ":
        space = len(characters) - 1
        space_probs = probs[:, :, space]
        boosted = space_probs * space_bias > maxima
        indices[boosted] = space
        maxima[boosted] = space_probs[boosted]
    return ctc_collapse(indices, maxima, characters)


def ctc_collapse(indices: np.ndarray, scores: np.ndarray, characters: Sequence[str]) -> list[tuple[str, float]]:
    """CTC best path to text: collapse repeats, drop blanks (class 0), strip outer spaces.

    Args:
        indices: ``(N, T)`` integer class chosen at each step.
        scores: ``(N, T)`` float probability of that class.
        characters: the labels, as :func:`ctc_characters` builds them.

    Returns:
        One ``(text, score)`` per row; the score is the mean probability of the kept
        characters (0.0 for an empty text).
    """
    if indices.ndim != 2 or scores.shape != indices.shape:
        raise ValueError(f"expected (N, T) indices and scores, got {indices.shape} and {scores.shape}")
    keep = indices != 0
    keep[:, 1:] &= indices[:, 1:] != indices[:, :-1]
    results: list[tuple[str, float]] = []
    for row_idx, row_keep, row_max in zip(indices, keep, scores, strict=True):
        text = "".join([characters[i] for i in row_idx[row_keep].tolist()])  # Python ints: no numpy scalars
        stripped = text.strip(" ")
        if not stripped:
            results.append(("", 0.0))
            continue
        lead = len(text) - len(text.lstrip(" "))
        kept_scores = row_max[row_keep][lead : lead + len(stripped)]
        results.append((stripped, float(kept_scores.mean())))
    return results
