"""Polygons of the synthetic shapes: the six classes, the un-annotated distractors, and box clipping.

Every shape is a list of *ops* ``[(vertices, fill), ...]``: ``vertices`` is a float array (V, 2) of
(x, y) image coordinates in the COCO convention (pixel ``i`` spans ``[i, i + 1)``), ``fill`` is 255
(paint) or 0 (cut a hole, e.g. the inside of a ring). Circles are 48-gons, so the tight box of the
drawn shape is exactly the box of its vertices.
"""
from __future__ import annotations

import numpy as np

SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon", "cross")
# further polygons a ShapesConfig may choose as its classes (e.g. a "new" dataset for fine-tuning)
EXTRA_SHAPES: tuple[str, ...] = ("pentagon", "diamond", "arrow")
ALL_SHAPES: tuple[str, ...] = SHAPE_CLASSES + EXTRA_SHAPES
DISTRACTOR_KINDS: tuple[str, ...] = ("ellipse", "ring", "segment", "arc")

Ops = list[tuple[np.ndarray, int]]


def _regular(n: int, radius: float = 1.0, phase: float = np.pi / 2) -> np.ndarray:
    """(n, 2) vertices of a regular n-gon of circumradius ``radius`` centred at 0."""
    t = phase + 2 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(t), np.sin(t)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    """(2 * points, 2) vertices alternating between radius 1 and ``inner``."""
    radius = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)[:, None]
    return radius * _regular(2 * points)


def _cross(half_width: float = 0.33) -> np.ndarray:
    """(12, 2) vertices of a plus sign with arms of half-width ``half_width`` reaching radius 1."""
    a, b = half_width, 1.0
    return np.array([[a, b], [-a, b], [-a, a], [-b, a], [-b, -a], [-a, -a],
                     [-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a]])


_UNIT_CLASS_POLYGONS: dict[str, np.ndarray] = {
    "circle": _regular(48),
    "square": np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]),
    "triangle": _regular(3),
    "star": _star(),
    "hexagon": _regular(6),
    "cross": _cross(),
    "pentagon": _regular(5),
    "diamond": np.array([[0.0, -1.0], [0.55, 0.0], [0.0, 1.0], [-0.55, 0.0]]),
    "arrow": np.array([[1.0, 0.0], [0.1, 0.8], [0.1, 0.3], [-1.0, 0.3], [-1.0, -0.3], [0.1, -0.3], [0.1, -0.8]]),
}


def _rotate(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return v @ np.array([[c, s], [-s, c]])


def _place(ops: Ops, angle: float, size: float, center: tuple[float, float]) -> Ops:
    """Rotate all ops by ``angle``, scale so the longer side of their joint tight box is ``size``,
    and move the box centre to ``center``."""
    rotated = [(_rotate(v, angle), fill) for v, fill in ops]
    allv = np.concatenate([v for v, _ in rotated])
    lo, hi = allv.min(0), allv.max(0)
    scale = size / float((hi - lo).max())
    mid = (lo + hi) / 2
    return [((v - mid) * scale + np.asarray(center), fill) for v, fill in rotated]


def class_ops(name: str, angle: float, size: float, center: tuple[float, float]) -> Ops:
    """Ops of class ``name`` whose tight box has longer side ``size`` (pixels) centred at ``center``."""
    return _place([(_UNIT_CLASS_POLYGONS[name], 255)], angle, size, center)


def distractor_ops(kind: str, rng: np.random.Generator, angle: float, size: float,
                   center: tuple[float, float]) -> Ops:
    """Ops of a non-class shape: a thin ellipse (aspect 2.5-4), a ring, a thick short segment
    (aspect 3-7) or a thick arc. None of them can be mistaken for a class shape."""
    if kind == "ellipse":
        unit = _regular(48) * np.array([1.0, 1.0 / rng.uniform(2.5, 4.0)])
        ops = [(unit, 255)]
    elif kind == "ring":
        ops = [(_regular(48), 255), (_regular(48, rng.uniform(0.5, 0.75)), 0)]
    elif kind == "segment":
        half = 0.5 / rng.uniform(3.0, 7.0)
        ops = [(np.array([[-1.0, -half], [1.0, -half], [1.0, half], [-1.0, half]]), 255)]
    elif kind == "arc":
        sweep = np.deg2rad(rng.uniform(90, 240))
        t = np.linspace(0, sweep, 32)
        inner = rng.uniform(0.55, 0.8)
        ring = np.stack([np.cos(t), np.sin(t)], axis=1)
        ops = [(np.concatenate([ring, inner * ring[::-1]]), 255)]
    else:
        raise ValueError(f"unknown distractor kind {kind!r}; expected one of {DISTRACTOR_KINDS}")
    return _place(ops, angle, size, center)


def clip_polygon(v: np.ndarray, width: float, height: float) -> np.ndarray:
    """Sutherland-Hodgman clip of polygon ``v`` (V, 2) to the rectangle [0, width] x [0, height].

    Returns the clipped polygon (V', 2); V' == 0 when nothing is inside.
    """
    # Each edge is (axis, bound, keep-side sign): keep points with sign * (p[axis] - bound) >= 0.
    for axis, bound, sign in ((0, 0.0, 1), (0, width, -1), (1, 0.0, 1), (1, height, -1)):
        if len(v) == 0:
            break
        d = sign * (v[:, axis] - bound)
        out = []
        for i in range(len(v)):
            p, q, dp, dq = v[i - 1], v[i], d[i - 1], d[i]
            if (dp >= 0) != (dq >= 0):  # the edge p->q crosses the boundary
                out.append(p + (q - p) * (dp / (dp - dq)))
            if dq >= 0:
                out.append(q)
        v = np.array(out).reshape(-1, 2)
    return v


def visible_box(ops: Ops, width: int, height: int) -> tuple[float, float, float, float] | None:
    """Tight (x0, y0, x1, y1) box of the painted part of ``ops`` inside the image, or None.

    Uses the first (outer) polygon: holes never change a tight box.
    """
    clipped = clip_polygon(ops[0][0], float(width), float(height))
    if len(clipped) == 0:
        return None
    (x0, y0), (x1, y1) = clipped.min(0), clipped.max(0)
    return float(x0), float(y0), float(x1), float(y1)
