"""Render terminal output with ANSI colours (``tmux capture-pane -e -p``) to a PNG.

Used to make the screenshots in docs/images from a real terminal session:

    tmux capture-pane -t SESSION -e -p > shot.ansi
    python docs/tools/ansi_to_png.py shot.ansi docs/images/shot.png --title "normstat fit"

Needs Pillow and the DejaVu Sans Mono font (Debian: fonts-dejavu-core). Handles the SGR codes
click and a shell emit: bold, 8/16 colours, 256 colours, 24-bit colours, resets.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
BG, FG = (30, 31, 41), (220, 223, 228)
PALETTE = [
    (40, 42, 54), (255, 85, 85), (80, 250, 123), (241, 250, 140),
    (98, 114, 164), (255, 121, 198), (139, 233, 253), (191, 191, 191),
    (98, 114, 164), (255, 110, 110), (105, 255, 148), (255, 255, 165),
    (125, 145, 210), (255, 146, 223), (164, 255, 255), (255, 255, 255),
]  # fmt: skip
BLOCKS = {"\u2588": 1.0, "\u2593": 0.75, "\u2592": 0.5, "\u2591": 0.3}
SGR = re.compile(r"\x1b\[([0-9;]*)m")


def _blend(fg: tuple, bg: tuple, alpha: float) -> tuple[int, int, int]:
    return tuple(int(f * alpha + b * (1 - alpha)) for f, b in zip(fg, bg, strict=True))


def _xterm256(n: int) -> tuple[int, int, int]:
    if n < 16:
        return PALETTE[n]
    if n < 232:
        n -= 16
        levels = [0, 95, 135, 175, 215, 255]
        return levels[n // 36], levels[(n // 6) % 6], levels[n % 6]
    g = 8 + (n - 232) * 10
    return g, g, g


def _apply(codes: list[int], style: dict) -> None:
    i = 0
    while i < len(codes):
        c = codes[i]
        if c == 0:
            style.update(fg=FG, bg=None, bold=False)
        elif c == 1:
            style["bold"] = True
        elif c == 22:
            style["bold"] = False
        elif 30 <= c <= 37 or 90 <= c <= 97:
            style["fg"] = PALETTE[c - 30 if c < 90 else c - 90 + 8]
        elif c == 39:
            style["fg"] = FG
        elif 40 <= c <= 47:
            style["bg"] = PALETTE[c - 40]
        elif c == 49:
            style["bg"] = None
        elif c in (38, 48) and i + 1 < len(codes):
            key = "fg" if c == 38 else "bg"
            if codes[i + 1] == 5:
                style[key], i = _xterm256(codes[i + 2]), i + 2
            elif codes[i + 1] == 2:
                style[key], i = tuple(codes[i + 2 : i + 5]), i + 4
        i += 1


def spans(line: str, style: dict) -> list[tuple[str, dict]]:
    """Split one line into (text, style) pieces; ``style`` carries over to the next line."""
    out, pos = [], 0
    for m in SGR.finditer(line):
        if m.start() > pos:
            out.append((line[pos : m.start()], dict(style)))
        _apply([int(x) if x else 0 for x in m[1].split(";")], style)
        pos = m.end()
    if pos < len(line):
        out.append((line[pos:], dict(style)))
    return out


def render(text: str, title: str, size: int = 15) -> Image.Image:
    regular = ImageFont.truetype(str(FONT_DIR / "DejaVuSansMono.ttf"), size)
    bold = ImageFont.truetype(str(FONT_DIR / "DejaVuSansMono-Bold.ttf"), size)
    lines = text.rstrip("\n").split("\n")
    while lines and not SGR.sub("", lines[-1]).strip():
        lines.pop()
    cw = regular.getlength("M")
    lh = int(size * 1.45)
    cols = max(len(SGR.sub("", ln)) for ln in lines)
    pad, bar = 18, 34
    img = Image.new("RGB", (int(cols * cw) + 2 * pad, len(lines) * lh + 2 * pad + bar), BG)
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, img.width, bar], fill=(45, 47, 60))
    for k, colour in enumerate([(255, 95, 86), (255, 189, 46), (39, 201, 63)]):
        x = pad + k * 22
        draw.ellipse([x, bar // 2 - 6, x + 12, bar // 2 + 6], fill=colour)
    draw.text((img.width / 2, bar / 2), title, fill=(170, 172, 180), font=regular, anchor="mm")
    style = {"fg": FG, "bg": None, "bold": False}
    for row, line in enumerate(lines):
        x, y = pad, pad + bar + row * lh
        for piece, st in spans(line, style):
            width = len(piece) * cw
            if st["bg"] is not None:
                draw.rectangle([x, y, x + width, y + lh], fill=st["bg"])
            for ch in piece:  # cell by cell, so the bar's block characters stay on the grid
                if ch in BLOCKS:
                    fill = _blend(st["fg"], st["bg"] or BG, BLOCKS[ch])
                    draw.rectangle([x, y + 2, x + cw, y + lh - 3], fill=fill)
                else:
                    draw.text((x, y), ch, fill=st["fg"], font=bold if st["bold"] else regular)
                x += cw
    return img


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ansi", type=Path)
    ap.add_argument("png", type=Path)
    ap.add_argument("--title", default="terminal")
    args = ap.parse_args()
    render(args.ansi.read_text(encoding="utf-8"), args.title).save(args.png, optimize=True)


if __name__ == "__main__":
    main()
