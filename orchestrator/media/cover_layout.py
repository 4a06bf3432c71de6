"""Cover geometry and text: the aspect ratios and pixel sizes, finding a CJK-capable TrueType font, and wrapping
and balancing a title and caption into lines."""

from __future__ import annotations

import functools
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from PIL import ImageFont

logger = logging.getLogger(__name__)

COVER_ASPECTS = ("1:1", "3:4", "4:3", "9:16", "16:9")
COVER_LONG_SIDE = 1024  # pixels on the longer edge; 9:16 → 576 x 1024, 4:3 → 1024 x 768


def cover_size(aspect: str) -> tuple[int, int]:
    """Pixel size (width, height) for an aspect ratio from :data:`COVER_ASPECTS`."""
    if aspect not in COVER_ASPECTS:
        raise ValueError(f"cover_size must be one of {', '.join(COVER_ASPECTS)}; got {aspect!r}")
    w, h = (int(p) for p in aspect.split(":"))
    scale = COVER_LONG_SIDE / max(w, h)
    return round(w * scale), round(h * scale)


# ------------------------------------------------------------------------------------------------------- fonts
@dataclass(frozen=True)
class _FontFile:
    path: str
    index: int


def _ranktext_font(family: str, style: str) -> int:
    score = 0
    if "sans" in family.lower():
        score += 4
    if "mono" in family.lower() or "serif" in family.lower().replace("sans", ""):
        score -= 3
    if family.endswith(" SC") or "microhei" in family.lower().replace(" ", "") or "zenhei" in family.lower():
        score += 2  # simplified-Chinese glyph forms first
    if "bold" in style.lower():
        score += 1
    return score


@functools.cache
def _findtext_font(bold: bool) -> _FontFile | None:
    """The best installed font for titles: a CJK-capable sans (Noto Sans CJK SC, WenQuanYi …) if fontconfig lists
    one, else DejaVu Sans, else None (Pillow's built-in font)."""
    candidates: list[tuple[int, _FontFile]] = []
    if shutil.which("fc-list"):
        for pattern, bonus in ((":lang=zh", 10), (":lang=en", 0)):
            try:
                listing = subprocess.run(
                    ["fc-list", "-f", "%{file}|%{index}|%{family[0]}|%{style[0]}\n", pattern],
                    capture_output=True,
                    text=True,
                    timeout=10,
                    check=False,
                ).stdout
            except (OSError, subprocess.SubprocessError):
                continue
            for line in listing.splitlines():
                parts = line.split("|")
                if len(parts) != 4 or not parts[0].lower().endswith((".ttf", ".ttc", ".otf")):
                    continue
                file, index, family, style = parts
                rank = bonus + _ranktext_font(family, style)
                if bold != ("bold" in style.lower()):
                    rank -= 2
                candidates.append((rank, _FontFile(file, int(index or 0))))
    for path in (
        "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    ):
        if Path(path).exists():
            candidates.append((-5, _FontFile(path, 0)))
    if not candidates:
        logger.warning("no TrueType font found (install fonts-noto-cjk or fonts-wqy-microhei); using Pillow's default")
        return None
    # Highest rank; ties broken by path so every machine with the same fonts picks the same file.
    best = max(candidates, key=lambda c: (c[0], c[1].path, -c[1].index))[1]
    logger.debug("cover font (bold=%s): %s#%d", bold, best.path, best.index)
    return best


AnyFont = ImageFont.FreeTypeFont | ImageFont.ImageFont


def text_font(size: int, *, bold: bool) -> AnyFont:
    found = _findtext_font(bold)
    if found is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(found.path, size=size, index=found.index)


def _is_wide(ch: str) -> bool:
    code = ord(ch)
    return 0x2E80 <= code <= 0x9FFF or 0xAC00 <= code <= 0xD7AF or 0xF900 <= code <= 0xFAFF or 0xFF00 <= code <= 0xFFEF


def _tokens(text: str) -> list[str]:
    """Break points: each CJK character stands alone; Latin words keep their trailing space."""
    out: list[str] = []
    word = ""
    for ch in text:
        if _is_wide(ch):
            if word:
                out.append(word)
                word = ""
            out.append(ch)
        elif ch == " ":
            word += ch
            out.append(word)
            word = ""
        else:
            word += ch
    if word:
        out.append(word)
    return out


def _wrap(text: str, font: AnyFont, max_width: float) -> list[str]:
    lines: list[str] = []
    current = ""
    for token in _tokens(text):
        trial = current + token
        if current and font.getlength(trial.rstrip()) > max_width:
            lines.append(current.rstrip())
            current = token.lstrip()
        else:
            current = trial
    if current.strip():
        lines.append(current.rstrip())
    return lines


def _ellipsize(text: str, font: AnyFont, max_width: float) -> str:
    if font.getlength(text) <= max_width:
        return text
    while text and font.getlength(text + "…") > max_width:
        text = text[:-1]
    return text.rstrip() + "…"


def _balanced_wrap(text: str, font: AnyFont, max_width: float) -> list[str]:
    """Greedy wrap, then narrow the measure as far as the line count allows, so lines come out even
    (no lone last character under a long line)."""
    lines = _wrap(text, font, max_width)
    if len(lines) <= 1:
        return lines
    low, high = max_width / len(lines), max_width
    for _ in range(12):
        mid = (low + high) / 2
        if len(_wrap(text, font, mid)) <= len(lines):
            high = mid
        else:
            low = mid
    return _wrap(text, font, high)


def ink_extent(font: AnyFont) -> tuple[float, float]:
    """Top and bottom of typical ink (Latin ascenders/descenders and a CJK ideograph) below the 'la' anchor."""
    _, top, _, bottom = font.getbbox("国Ahgy")
    return float(top), float(bottom)


@dataclass
class TextLayout:
    title_font: AnyFont
    title_lines: list[str]
    title_size: int
    sub_font: AnyFont
    subtitle: str
    height: float


def layout_text(title: str, caption: str, width: float, height: float, max_lines: int = 3) -> TextLayout:
    """Largest title size whose lines (at most ``max_lines``) and one subtitle line fit in ``width`` x ``height``."""
    size = int(min(width * 0.13, height * 0.42))
    min_size = max(14, size // 4)
    while True:
        font = text_font(size, bold=True)
        lines = _balanced_wrap(title, font, width)
        sub_font = text_font(max(12, int(size * 0.34)), bold=False)
        top, bottom = ink_extent(font)
        sub_top, sub_bottom = ink_extent(sub_font)
        subtitle = _ellipsize(" ".join(caption.split()), sub_font, width) if caption.strip() else ""
        ink = bottom - top
        total = ink * len(lines) + ink * 0.22 * (len(lines) - 1)
        if subtitle:
            total += size * 0.45 + (sub_bottom - sub_top)
        if (len(lines) <= max_lines and total <= height) or size <= min_size:
            break
        size = max(min_size, int(size * 0.92))
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [_ellipsize("".join(lines[max_lines - 1 :]), font, width)]
    return TextLayout(font, lines, size, sub_font, subtitle, total)


# ------------------------------------------------------------------------------------------------ audio features
