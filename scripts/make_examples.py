"""Regenerate the bundled example inputs in examples/ (deterministic).

python scripts/make_examples.py
"""

from __future__ import annotations

from pathlib import Path

import cv2
from PIL import Image

from ocr_actors.synth import render_page

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def main() -> None:
    EXAMPLES.mkdir(exist_ok=True)
    page = render_page(
        seed=2026,
        columns=2,
        lines_per_column=14,
        font_size=24,
        title="Digital Archive Annual Report",
        kinds=("prose", "prose", "number", "currency"),
    )
    cv2.imwrite(str(EXAMPLES / "two_column_page.png"), page.image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    (EXAMPLES / "two_column_page.txt").write_text(page.text + "\n", encoding="utf-8")
    scans = [
        render_page(
            seed=2027 + i,
            lines_per_column=10,
            kinds=("prose", "number", "currency", "chinese"),
            rotation=180 * i,
            table_rows=3 * (1 - i),
        )
        for i in range(2)
    ]
    grey = [Image.fromarray(cv2.cvtColor(s.image, cv2.COLOR_BGR2GRAY)) for s in scans]
    # Pillow's PDF writer stores greyscale pages as JPEG images (DCTDecode), as scanners commonly do.
    grey[0].save(EXAMPLES / "scanned_report.pdf", "PDF", resolution=144, save_all=True, append_images=grey[1:])
    (EXAMPLES / "scanned_report.txt").write_text("\n\n".join(s.text for s in scans) + "\n", encoding="utf-8")
    print(f"wrote examples to {EXAMPLES}")


if __name__ == "__main__":
    main()
