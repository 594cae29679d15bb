"""Pixels of the synthetic shapes: anti-aliased masks, textures, contrasting colours and backgrounds.

All arrays are float32 in [0, 255] (colours) or [0, 1] (alpha), laid out (H, W[, 3]).
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from minidet.data.shapes_geometry import Ops

SUPERSAMPLE = 4  # sub-pixels per pixel side for anti-aliasing
TEXTURES: tuple[str, ...] = ("solid", "stripes", "checker", "noise")
MIN_CONTRAST = 90.0  # minimum RGB distance between an object's colour and what lies beneath it


def rasterize(ops: Ops) -> tuple[int, int, np.ndarray]:
    """Anti-aliased coverage of ``ops`` on the integer patch that holds its vertices.

    Returns ``(x0, y0, alpha)``: ``alpha`` (h, w) float32 in [0, 1] is the fraction of pixel
    ``(y0 + i, x0 + j)`` covered by the shape, estimated with SUPERSAMPLE**2 sub-pixel centres.
    The patch may extend beyond the image; the caller clips it.
    """
    allv = np.concatenate([v for v, _ in ops])
    x0, y0 = np.floor(allv.min(0)).astype(int)
    x1, y1 = np.ceil(allv.max(0)).astype(int)
    w, h = max(int(x1 - x0), 1), max(int(y1 - y0), 1)
    s = SUPERSAMPLE
    canvas = Image.new("L", (w * s, h * s), 0)
    draw = ImageDraw.Draw(canvas)
    for v, fill in ops:
        # PIL fills sub-pixel j when the polygon covers the point j; shifting by half a sub-pixel
        # makes it test the sub-pixel centre (j + 0.5) / s instead, the COCO pixel convention.
        sub = (v - np.array([x0, y0])) * s - 0.5
        draw.polygon([tuple(p) for p in sub.tolist()], fill=fill)
    hi = np.asarray(canvas, dtype=np.float32).reshape(h, s, w, s)
    return int(x0), int(y0), hi.mean(axis=(1, 3)) / 255.0


def contrasting_colour(rng: np.random.Generator, beneath: np.ndarray) -> np.ndarray:
    """A random RGB colour (3,) at least MIN_CONTRAST away from the mean colour ``beneath`` (3,)."""
    for _ in range(20):
        colour = rng.uniform(0, 255, size=3)
        if np.linalg.norm(colour - beneath) >= MIN_CONTRAST:
            return colour.astype(np.float32)
    # Fallback: the corner of the RGB cube farthest from ``beneath`` (always >= 127 * sqrt(3) away).
    return np.where(beneath < 127.5, 255.0, 0.0).astype(np.float32)


def texture(rng: np.random.Generator, kind: str, h: int, w: int, colour: np.ndarray) -> np.ndarray:
    """(h, w, 3) fill of ``kind`` in TEXTURES built around ``colour`` (3,).

    Stripes and checkers alternate ``colour`` with a shade 35-55% darker or lighter, so the
    object's mean colour stays near ``colour`` and keeps its contrast to the background.
    """
    if kind == "solid":
        return np.broadcast_to(colour, (h, w, 3)).astype(np.float32)
    if kind == "noise":
        return np.clip(colour + rng.normal(0, 25, size=(h, w, 3)), 0, 255).astype(np.float32)
    k = rng.uniform(0.35, 0.55)
    shade = colour * (1 - k) if colour.mean() > 127.5 else colour + (255 - colour) * k
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = rng.uniform(3, 8)
    if kind == "stripes":
        t = rng.uniform(0, np.pi)
        on = np.floor((xx * np.cos(t) + yy * np.sin(t)) / period) % 2 == 0
    elif kind == "checker":
        on = (np.floor(xx / period) + np.floor(yy / period)) % 2 == 0
    else:
        raise ValueError(f"unknown texture {kind!r}; expected one of {TEXTURES}")
    return np.where(on[..., None], colour, shade).astype(np.float32)


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) background: a bilinear gradient between four random corner colours, a few
    thin lines and faint blobs of clutter, and Gaussian noise of std 4 (out of 255)."""
    corners = rng.uniform(0, 255, size=(2, 2, 3)).astype(np.float32)
    t = np.linspace(0, 1, size, dtype=np.float32)
    top = corners[0, 0] * (1 - t[:, None]) + corners[0, 1] * t[:, None]  # (W, 3)
    bottom = corners[1, 0] * (1 - t[:, None]) + corners[1, 1] * t[:, None]
    img = top[None] * (1 - t[:, None, None]) + bottom[None] * t[:, None, None]  # (H, W, 3)

    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    mean = img.mean(axis=(0, 1))

    def faint() -> tuple[int, int, int]:  # clutter stays low-contrast so it never looks like an object
        return tuple(int(c) for c in np.clip(mean + rng.uniform(-50, 50, size=3), 0, 255))

    for _ in range(int(rng.integers(1, 6))):
        x = rng.uniform(0, size, size=2)
        y = rng.uniform(0, size, size=2)
        draw.line([(x[0], y[0]), (x[1], y[1])], fill=faint(), width=int(rng.integers(1, 3)))
    for _ in range(int(rng.integers(0, 4))):
        cx, cy = rng.uniform(0, size, size=2)
        rx, ry = rng.uniform(2, 10, size=2)
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=faint())

    out = np.asarray(pil, dtype=np.float32) + rng.normal(0, 4, size=(size, size, 3)).astype(np.float32)
    return np.clip(out, 0, 255)
