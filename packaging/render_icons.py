"""Render resources/icons/handwriting-studio.svg to PNGs (16..512 px) and a Windows .ico.

Run after editing the SVG: `python3 packaging/render_icons.py`. Uses Qt's SVG renderer
offscreen (no display needed) and Pillow for the .ico.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICONS = Path(__file__).resolve().parent.parent / "resources" / "icons"
SVG = ICONS / "handwriting-studio.svg"


def render(size: int, out: Path) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        raise SystemExit(f"{SVG} is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    if not image.save(str(out)):
        raise SystemExit(f"could not write {out}")


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841
    for size in SIZES:
        render(size, ICONS / f"handwriting-studio-{size}.png")
    from PIL import Image

    big = Image.open(ICONS / "handwriting-studio-256.png")
    big.save(ICONS / "handwriting-studio.ico", sizes=[(s, s) for s in SIZES if s <= 256])
    print(f"rendered {len(SIZES)} PNGs and an .ico into {ICONS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
