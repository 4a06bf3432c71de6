"""Album covers: a built-in deterministic renderer and a client for an external image API.

``render_cover`` draws a cover from what the song already has — its title (set in a CJK-capable font when the
machine has one), its caption (mood and genre words pick the palette) and its audio (the loudness envelope becomes
a ring of bars around a record whose grooves follow the spectrum). Same inputs and seed → the same PNG bytes.

:func:`orchestrator.media.cover_fetch.fetch_cover` asks a configured image API instead; fonts, text layout and the
aspect ratios are in :mod:`orchestrator.media.cover_layout`.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from orchestrator.media.audio import write_atomically
from orchestrator.media.cover_layout import AnyFont, cover_size, ink_extent, layout_text

logger = logging.getLogger(__name__)



# Ring of loudness bars (time) and record grooves (frequency).
_ENVELOPE_BARS = 144
_SPECTRUM_BANDS = 40
_SPECTRUM_FRAME = 4096  # FFT size; at 48 kHz ≈ 85 ms, 11.7 Hz per bin
_SPECTRUM_LOW_HZ = 40.0
_SPECTRUM_HIGH_HZ = 16_000.0


# ----------------------------------------------------------------------------------------------------- palettes
@dataclass(frozen=True)
class _Mood:
    words: tuple[str, ...]
    hue: float  # degrees, primary colour
    accent_hue: float  # degrees
    saturation: float
    value: float


# Caption words (English and Chinese) → hues. The first mood found sets the primary colour; a second one found
# sets the accent. Order matters only for ties inside one caption.
_MOODS: tuple[_Mood, ...] = (
    _Mood(("sunny", "summer", "happy", "bright", "upbeat", "阳光", "夏", "快乐", "明亮", "欢快"), 34, 8, 0.78, 0.98),
    _Mood(("sea", "ocean", "beach", "wave", "surf", "海", "浪", "沙滩"), 188, 205, 0.70, 0.90),
    _Mood(
        ("sad", "melancholy", "lonely", "tears", "rain", "blue", "忧伤", "悲", "孤独", "雨", "眼泪"),
        218,
        250,
        0.55,
        0.70,
    ),
    _Mood(("night", "dark", "midnight", "moon", "夜", "黑", "月"), 248, 285, 0.60, 0.45),
    _Mood(("love", "romantic", "heart", "sweet", "爱", "浪漫", "甜"), 340, 15, 0.58, 0.95),
    _Mood(("rock", "metal", "punk", "angry", "energetic", "power", "摇滚", "激情", "燃"), 2, 28, 0.85, 0.85),
    _Mood(
        ("electronic", "edm", "synth", "techno", "house", "cyber", "dance", "电子", "舞曲", "合成器"),
        292,
        190,
        0.80,
        0.92,
    ),
    _Mood(("jazz", "blues", "soul", "swing", "爵士", "蓝调"), 30, 352, 0.65, 0.60),
    _Mood(("folk", "acoustic", "country", "guitar", "forest", "民谣", "木吉他", "森林", "乡村"), 95, 42, 0.50, 0.75),
    _Mood(("lofi", "lo-fi", "chill", "calm", "dream", "soft", "安静", "梦", "温柔", "治愈"), 265, 170, 0.32, 0.88),
    _Mood(("epic", "cinematic", "orchestral", "heroic", "史诗", "交响", "电影"), 40, 220, 0.62, 0.62),
    _Mood(("hip hop", "hip-hop", "rap", "trap", "说唱", "嘻哈"), 50, 300, 0.75, 0.80),
)


@dataclass(frozen=True)
class _Palette:
    top: tuple[int, int, int]
    bottom: tuple[int, int, int]
    primary: tuple[int, int, int]
    accent: tuple[int, int, int]
    ink: tuple[int, int, int]  # title colour


def _hsv(h_deg: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((h_deg % 360.0) / 360.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return round(r * 255), round(g * 255), round(b * 255)


def _palette(text: str, rng: np.random.Generator) -> _Palette:
    lowered = text.lower()
    found = [m for m in _MOODS if any(w in lowered for w in m.words)]
    if found:
        mood = found[0]
        hue, sat, val = mood.hue, mood.saturation, mood.value
        accent = found[1].hue if len(found) > 1 else mood.accent_hue
    else:
        hue = float(rng.uniform(0, 360))
        accent = hue + float(rng.choice([-150.0, -40.0, 40.0, 150.0]))
        sat, val = 0.62, 0.82
    jitter = float(rng.uniform(-8, 8))  # the seed shifts the hues a little, so batch items differ
    hue, accent = hue + jitter, accent + jitter
    return _Palette(
        top=_hsv(hue, sat * 0.9, val * 0.72),
        bottom=_hsv(accent + 10, min(1.0, sat * 1.05), val * 0.2),
        primary=_hsv(hue, sat, val),
        accent=_hsv(accent, min(1.0, sat + 0.1), min(1.0, val + 0.05)),
        ink=(250, 248, 244),
    )


def _envelope(audio: np.ndarray | None, bars: int, rng: np.random.Generator) -> np.ndarray:
    """RMS loudness over ``bars`` equal time slices, scaled to [0.08, 1]. No audio → a smooth seeded curve."""
    if audio is None or np.size(audio) < bars:
        walk = np.cumsum(rng.normal(0, 1, bars))
        walk = np.convolve(np.concatenate([walk[-6:], walk, walk[:6]]), np.ones(7) / 7, mode="same")[6:-6]
        values = walk - walk.min()
    else:
        mono = np.asarray(audio, dtype=np.float64)
        mono = mono.mean(axis=0) if mono.ndim == 2 else mono
        usable = mono[: (mono.size // bars) * bars].reshape(bars, -1)
        values = np.sqrt(np.mean(usable**2, axis=1))
    peak = float(values.max())
    values = values / peak if peak > 0 else np.zeros(bars)
    return 0.08 + 0.92 * values


def _spectrum(audio: np.ndarray | None, sample_rate: int, bands: int, rng: np.random.Generator) -> np.ndarray:
    """Average magnitude in ``bands`` log-spaced bands (40 Hz-16 kHz), in dB mapped to [0, 1]."""
    if audio is None or np.size(audio) < 2 * _SPECTRUM_FRAME:
        return np.clip(0.55 + 0.3 * np.sin(np.linspace(0, 5, bands) + rng.uniform(0, 6)), 0, 1)
    mono = np.asarray(audio, dtype=np.float64)
    mono = mono.mean(axis=0) if mono.ndim == 2 else mono
    hop = max(_SPECTRUM_FRAME, mono.size // 64)  # at most 64 frames: the cover must render in well under a second
    starts = np.arange(0, mono.size - _SPECTRUM_FRAME, hop)
    frames = np.stack([mono[s : s + _SPECTRUM_FRAME] for s in starts]) * np.hanning(_SPECTRUM_FRAME)
    power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(axis=0)
    freqs = np.fft.rfftfreq(_SPECTRUM_FRAME, 1.0 / sample_rate)
    high = min(_SPECTRUM_HIGH_HZ, sample_rate / 2)
    edges = np.geomspace(_SPECTRUM_LOW_HZ, high, bands + 1)
    levels = np.empty(bands)
    for i in range(bands):
        sel = (freqs >= edges[i]) & (freqs < edges[i + 1])
        levels[i] = power[sel].mean() if sel.any() else power[np.argmin(np.abs(freqs - edges[i]))]
    db = 10 * np.log10(levels + 1e-12)
    return np.clip((db - (db.max() - 60.0)) / 60.0, 0.0, 1.0)  # 60 dB of range below the loudest band


# ------------------------------------------------------------------------------------------------------ drawing
def _seeded_rng(seed: int, title: str, caption: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}\x00{title}\x00{caption}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _background(width: int, height: int, pal: _Palette, rng: np.random.Generator) -> Image.Image:
    angle = float(rng.uniform(0.35, 1.2))  # radians: a diagonal, never flat
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (xs / width) * math.cos(angle) * 0.35 + (ys / height) * math.sin(angle)
    t = (t - t.min()) / (t.max() - t.min())
    top, bottom = np.array(pal.top, np.float32), np.array(pal.bottom, np.float32)
    pixels = top[None, None, :] * (1 - t[..., None]) + bottom[None, None, :] * t[..., None]
    base = Image.fromarray(pixels.astype(np.uint8), "RGB")

    # Soft light blobs, drawn at quarter size, blurred and scaled up (cheap and smooth).
    small = (max(1, width // 4), max(1, height // 4))
    glow = Image.new("RGBA", small, (0, 0, 0, 0))
    draw = ImageDraw.Draw(glow)
    for i in range(6):
        colour = pal.primary if i % 2 == 0 else pal.accent
        cx, cy = rng.uniform(0, small[0]), rng.uniform(0, small[1])
        r = rng.uniform(0.12, 0.35) * max(small)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(*colour, int(rng.uniform(50, 110))))
    glow = glow.filter(ImageFilter.GaussianBlur(radius=max(small) / 9)).resize(
        (width, height), Image.Resampling.BILINEAR
    )
    base = Image.alpha_composite(base.convert("RGBA"), glow)

    grain = rng.normal(0.0, 5.0, (height, width, 1)).astype(np.float32)  # film grain, same for R/G/B
    arr = np.asarray(base, dtype=np.float32)
    arr[..., :3] = np.clip(arr[..., :3] + grain, 0, 255)
    return Image.fromarray(arr.astype(np.uint8), "RGBA")


def _draw_record(
    canvas: Image.Image, centre: tuple[float, float], radius: float, env: np.ndarray, spec: np.ndarray, pal: _Palette
) -> None:
    cx, cy = centre
    layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)

    # Loudness ring: one bar per time slice, clockwise from twelve o'clock, primary → accent along the song.
    inner = radius * 1.06
    bar_width = max(2, int(2 * math.pi * inner / env.size * 0.55))
    for i, level in enumerate(env):
        theta = -math.pi / 2 + 2 * math.pi * i / env.size
        outer = inner + level * radius * 0.48
        mix = i / max(1, env.size - 1)
        colour = tuple(int(a + (b - a) * mix) for a, b in zip(pal.primary, pal.accent, strict=True))
        draw.line(
            [
                (cx + inner * math.cos(theta), cy + inner * math.sin(theta)),
                (cx + outer * math.cos(theta), cy + outer * math.sin(theta)),
            ],
            fill=(*colour, 235),
            width=bar_width,
        )

    # The record: near-black disc, grooves brightened by the spectrum (low bands outside, high inside).
    draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=(14, 14, 18, 245))
    groove_outer, groove_inner = radius * 0.96, radius * 0.38
    for i, level in enumerate(spec):
        r = groove_outer - (groove_outer - groove_inner) * i / max(1, spec.size - 1)
        shade = int(40 + 120 * level)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=(shade, shade, shade + 8, 150), width=1)
    # A light sheen across the grooves.
    sheen = radius * 0.92
    draw.arc([cx - sheen, cy - sheen, cx + sheen, cy + sheen], 200, 250, fill=(255, 255, 255, 60), width=3)
    draw.arc([cx - sheen, cy - sheen, cx + sheen, cy + sheen], 20, 70, fill=(255, 255, 255, 40), width=3)

    # Label in the palette colours and the spindle hole.
    label = radius * 0.33
    draw.ellipse([cx - label, cy - label, cx + label, cy + label], fill=(*pal.primary, 255))
    ring = label * 0.78
    draw.ellipse(
        [cx - ring, cy - ring, cx + ring, cy + ring], outline=(*pal.accent, 255), width=max(2, int(label / 14))
    )
    hole = max(3.0, radius * 0.03)
    draw.ellipse([cx - hole, cy - hole, cx + hole, cy + hole], fill=(10, 10, 12, 255))

    shadow = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    ImageDraw.Draw(shadow).ellipse(
        [cx - radius * 1.02, cy - radius * 1.0 + radius * 0.05, cx + radius * 1.02, cy + radius * 1.08],
        fill=(0, 0, 0, 120),
    )
    canvas.alpha_composite(shadow.filter(ImageFilter.GaussianBlur(radius=radius * 0.06)))
    canvas.alpha_composite(layer)


def _draw_text_block(
    canvas: Image.Image,
    box: tuple[float, float, float, float],
    title: str,
    caption: str,
    pal: _Palette,
    align: str,
) -> None:
    left, top, right, bottom = box
    width = right - left
    lay = layout_text(title.strip() or "Untitled", caption, width, bottom - top)
    size = lay.title_size
    text_layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    shadow_layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw, shade = ImageDraw.Draw(text_layer), ImageDraw.Draw(shadow_layer)

    def place(text: str, font: AnyFont, ink_top: float, fill: tuple[int, ...]) -> float:
        """Draw one line with its ink starting at ``ink_top``; returns where its ink ends."""
        y0, y1 = ink_extent(font)
        x = left if align == "left" else left + (width - font.getlength(text)) / 2
        shade.text((x + size * 0.04, ink_top - y0 + size * 0.05), text, font=font, fill=(0, 0, 0, 170))
        draw.text((x, ink_top - y0), text, font=font, fill=fill)
        return ink_top + (y1 - y0)

    y = top + max(0.0, (bottom - top - lay.height) / 2)
    for i, line in enumerate(lay.title_lines):
        end = place(line, lay.title_font, y, (*pal.ink, 255))
        y = end + (end - y) * 0.22 if i < len(lay.title_lines) - 1 else end
    if lay.subtitle:
        rule_y = y + size * 0.2
        rule_x = left if align == "left" else left + width / 2 - size * 0.6
        draw.line([(rule_x, rule_y), (rule_x + size * 1.2, rule_y)], fill=(*pal.accent, 255), width=max(2, size // 24))
        place(lay.subtitle, lay.sub_font, y + size * 0.45, (*pal.ink, 210))
    canvas.alpha_composite(shadow_layer.filter(ImageFilter.GaussianBlur(radius=max(2, size / 14))))
    canvas.alpha_composite(text_layer)


def render_cover(
    *,
    title: str,
    caption: str,
    audio: np.ndarray | None,
    sample_rate: int,
    aspect: str,
    path: Path,
    seed: int = 0,
) -> Path:
    """Draw a cover PNG for a song and write it to ``path`` (suffix forced to ``.png``). Deterministic per inputs.

    ``audio`` is the song's waveform ([channels, samples] or [samples], any rate given by ``sample_rate``) or None.
    Raises ValueError for an aspect outside :data:`COVER_ASPECTS`.
    """
    width, height = cover_size(aspect)
    if audio is not None:
        audio = np.asarray(audio)
        if audio.ndim not in (1, 2) or not np.isfinite(audio).all():
            raise ValueError(f"audio for the cover must be finite [channels, samples]; got shape {audio.shape}")
    rng = _seeded_rng(seed, title, caption)
    pal = _palette(f"{caption} {title}", rng)
    env = _envelope(audio, _ENVELOPE_BARS, rng)
    spec = _spectrum(audio, sample_rate, _SPECTRUM_BANDS, rng)

    canvas = _background(width, height, pal, rng)
    if width > height:  # landscape: record on the left, words on the right
        radius = 0.27 * height
        _draw_record(canvas, (width * 0.29, height * 0.5), radius, env, spec, pal)
        box = (width * 0.55, height * 0.12, width * 0.95, height * 0.88)
        _draw_text_block(canvas, box, title, caption, pal, align="left")
    else:  # portrait or square: record above, words below
        radius = 0.25 * width if height > width else 0.21 * width
        centre_y = height * (0.36 if height > width else 0.37)
        _draw_record(canvas, (width * 0.5, centre_y), radius, env, spec, pal)
        text_top = centre_y + radius * 1.6
        _draw_text_block(canvas, (width * 0.07, text_top, width * 0.93, height * 0.95), title, caption, pal, "center")

    buffer = io.BytesIO()
    canvas.convert("RGB").save(buffer, format="PNG")
    return write_atomically(Path(path).with_suffix(".png"), buffer.getvalue())
