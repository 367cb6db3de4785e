"""Draws the app icons (PNG) into quark_web/static/: a white "Q" ring on the accent blue.

Run once after a design change (`.venv/bin/python services/web/tools/make_icons.py`); the PNGs are committed
(small, and the module needs no Pillow at run time).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

STATIC = Path(__file__).resolve().parents[1] / "quark_web" / "static"
BLUE = (10, 88, 202, 255)
WHITE = (255, 255, 255, 255)


def icon(size: int, *, maskable: bool = False) -> Image.Image:
    scale = 4  # drawn large, scaled down: smooth edges
    big = size * scale
    img = Image.new("RGBA", (big, big), BLUE if maskable else (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    if not maskable:
        d.rounded_rectangle((0, 0, big - 1, big - 1), radius=big // 5, fill=BLUE)
    # Maskable icons keep the drawing inside the 80% safe zone.
    inset = big * (0.3 if maskable else 0.22)
    width = big // 11
    d.ellipse((inset, inset, big - inset, big - inset), outline=WHITE, width=width)
    tail = big * 0.56, big * 0.56, big - inset + width * 0.3, big - inset + width * 0.3
    d.line(tail, fill=WHITE, width=width)
    return img.resize((size, size), Image.Resampling.LANCZOS)


def main() -> None:
    for size in (180, 192, 512):
        icon(size).save(STATIC / f"icon-{size}.png", optimize=True)
    icon(512, maskable=True).save(STATIC / "icon-maskable-512.png", optimize=True)


if __name__ == "__main__":
    main()
