"""The Trifeature primitives (Hermann & Lampinen 2020): 10 shapes, 10 textures, 10 colours.

Shapes are polygons (and one disc) in a 128x128 box, drawn with their vertices already rotated
by the image's integer angle, anti-aliased by 4x supersampling. Every shape stays inside its
box at any rotation (no vertex farther than 0.96 half-box from the centre).

Textures are binary patterns with a 10 px period on the 224 px canvas. The original draws each
texture at twice the canvas size, rotates it and centre-crops it; here the pattern is evaluated
directly on rotated canvas coordinates, ``u = cos(a) x + sin(a) y, v = -sin(a) x + cos(a) y``
around the canvas centre, which is the same picture without the resampling blur.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw

from kdspec.catalogue.facts import TRIFEATURE_COLORS, TRIFEATURE_SHAPES, TRIFEATURE_TEXTURES

CANVAS = 224
SHAPE_BOX = 128
TEXTURE_PERIOD = 10.0
SUPERSAMPLE = 4
GREY = (0.5, 0.5, 0.5)
COLOR_RGB: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "pink": (1.0, 0.4, 1.0),
    "cyan": (0.0, 1.0, 1.0),
    "purple": (0.3, 0.0, 0.5),
    "ocean": (0.1, 0.4, 0.5),
    "orange": (1.0, 0.6, 0.0),
    "white": (1.0, 1.0, 1.0),
}
assert tuple(COLOR_RGB) == TRIFEATURE_COLORS


def to_uint8(rgb: tuple[float, float, float]) -> tuple[int, int, int]:
    """[0, 1] channels -> 0..255, halves rounded up (grey .5 -> 128, ocean .1 -> 26)."""
    r, g, b = (math.floor(channel * 255.0 + 0.5 + 1e-9) for channel in rgb)
    return r, g, b


def _regular(n: int, radius: float, start_degrees: float = -90.0) -> list[tuple[float, float]]:
    return [(radius * math.cos(math.radians(start_degrees + 360.0 * k / n)),
             radius * math.sin(math.radians(start_degrees + 360.0 * k / n))) for k in range(n)]


def _rect(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _star(points: int, outer: float, inner: float) -> list[tuple[float, float]]:
    vertices = []
    for k in range(2 * points):
        radius = outer if k % 2 == 0 else inner
        angle = math.radians(-90.0 + 180.0 * k / points)
        vertices.append((radius * math.cos(angle), radius * math.sin(angle)))
    return vertices


#: Each shape as polygons in box units: x right, y down, centre 0, box edges at +-1.
SHAPE_POLYGONS: dict[str, list[list[tuple[float, float]]]] = {
    "triangle": [_regular(3, 0.95)],
    "square": [_rect(-0.67, -0.67, 0.67, 0.67)],
    "plus": [_rect(-0.25, -0.9, 0.25, 0.9), _rect(-0.9, -0.25, 0.9, 0.25)],
    "circle": [],  # a disc of radius CIRCLE_RADIUS, drawn as an ellipse
    "tee": [_rect(-0.64, -0.64, 0.64, -0.3), _rect(-0.17, -0.3, 0.17, 0.64)],
    "rhombus": [[(0.0, -0.95), (0.6, 0.0), (0.0, 0.95), (-0.6, 0.0)]],
    "pentagon": [_regular(5, 0.9)],
    "star": [_star(5, 0.95, 0.4)],
    "fivesquare": [_rect(cx - 0.18, cy - 0.18, cx + 0.18, cy + 0.18)
                   for cx, cy in ((0, 0), (-0.5, -0.5), (0.5, -0.5), (-0.5, 0.5), (0.5, 0.5))],
    "trapezoid": [[(-0.4, -0.5), (0.4, -0.5), (0.8, 0.5), (-0.8, 0.5)]],
}
CIRCLE_RADIUS = 0.8
assert tuple(SHAPE_POLYGONS) == TRIFEATURE_SHAPES


def shape_mask(shape: str, angle_degrees: int) -> np.ndarray:
    """Coverage in [0, 1], float32 ``[128, 128]``, of ``shape`` rotated counter-clockwise."""
    size = SHAPE_BOX * SUPERSAMPLE
    half = size / 2.0
    image = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(image)
    if shape == "circle":
        r = CIRCLE_RADIUS * half
        draw.ellipse((half - r, half - r, half + r, half + r), fill=255)
    cos, sin = math.cos(math.radians(angle_degrees)), math.sin(math.radians(angle_degrees))
    for polygon in SHAPE_POLYGONS[shape]:
        # Counter-clockwise on screen (y down): x' = x cos + y sin, y' = -x sin + y cos.
        rotated = [(half + half * (x * cos + y * sin), half + half * (-x * sin + y * cos))
                   for x, y in polygon]
        draw.polygon(rotated, fill=255)
    coverage = image.resize((SHAPE_BOX, SHAPE_BOX), Image.Resampling.BOX)  # mean of 4x4 blocks
    return np.asarray(coverage, dtype=np.float32) / 255.0


def _hexgrid(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Edges of a hexagonal tiling: centres ``TEXTURE_PERIOD`` apart; a point is on an edge
    when its hex-norm distance to the nearest centre exceeds the inradius minus 1 px."""
    a = TEXTURE_PERIOD
    row = a * math.sqrt(3.0)
    best_du = best_dv = None
    for offset_u, offset_v in ((0.0, 0.0), (a / 2, row / 2)):
        du = u - offset_u - a * torch.round((u - offset_u) / a)
        dv = v - offset_v - row * torch.round((v - offset_v) / row)
        if best_du is None or best_dv is None:
            best_du, best_dv = du, dv
        else:
            closer = du * du + dv * dv < best_du * best_du + best_dv * best_dv
            best_du, best_dv = torch.where(closer, du, best_du), torch.where(closer, dv, best_dv)
    assert best_du is not None and best_dv is not None
    s3 = math.sqrt(3.0) / 2.0
    hex_norm = torch.maximum(best_du.abs(), torch.maximum(
        (0.5 * best_du + s3 * best_dv).abs(), (0.5 * best_du - s3 * best_dv).abs()))
    return hex_norm > a / 2 - 1.0


def texture_pattern(
    texture: str, u: torch.Tensor, v: torch.Tensor, noise: torch.Tensor | None = None
) -> torch.Tensor:
    """Binary pattern (float 0/1) at rotated coordinates ``u, v`` (any equal shapes, pixels).

    ``noise`` (uniform [0, 1) of the same shape) is needed only for the ``noise`` texture.
    """
    p = TEXTURE_PERIOD
    s = torch.remainder(u, p)  # position inside the 10 px cell
    t = torch.remainder(v, p)
    if texture == "solid":
        on = torch.ones_like(u, dtype=torch.bool)
    elif texture == "stripes":
        on = s < p / 2
    elif texture == "grid":
        on = (s < 2.0) | (t < 2.0)
    elif texture == "hexgrid":
        on = _hexgrid(u, v)
    elif texture == "dots":
        on = (s - p / 2) ** 2 + (t - p / 2) ** 2 < 3.0**2
    elif texture == "noise":
        if noise is None:
            raise ValueError("the noise texture needs uniform noise")
        on = noise < 0.5
    elif texture == "triangles":
        on = (t < 8.5) & (t > 1.5 + 2.0 * (s - p / 2).abs())
    elif texture == "zigzags":
        on = torch.remainder(v - (s - p / 2).abs(), p) < 3.0
    elif texture == "rain":
        shift = (p / 2) * torch.remainder(torch.floor(u / p), 2.0)
        on = ((s - p / 2).abs() < 1.0) & (torch.remainder(v + shift, p) < p / 2)
    elif texture == "pluses":
        ds, dt = (s - p / 2).abs(), (t - p / 2).abs()
        on = ((ds < 1.25) & (dt < 4.0)) | ((dt < 1.25) & (ds < 4.0))
    else:
        raise ValueError(f"unknown texture {texture!r}; known: {', '.join(TRIFEATURE_TEXTURES)}")
    return on.to(torch.float32)


def rotated_coordinates(
    top: torch.Tensor, left: torch.Tensor, angle_degrees: torch.Tensor, box: int = SHAPE_BOX
) -> tuple[torch.Tensor, torch.Tensor]:
    """Texture coordinates ``(u, v)``, each ``[B, box, box]``, of the pixels of a ``box``-sized
    window at ``(top, left)`` on the canvas, rotated by each image's texture angle about the
    canvas centre."""
    centre = CANVAS / 2.0
    offsets = torch.arange(box, dtype=torch.float32) + 0.5
    y = (top.float()[:, None] + offsets - centre)[:, :, None]  # [B, box, 1]
    x = (left.float()[:, None] + offsets - centre)[:, None, :]  # [B, 1, box]
    radians = torch.deg2rad(angle_degrees.float())[:, None, None]
    cos, sin = torch.cos(radians), torch.sin(radians)
    return x * cos + y * sin, -x * sin + y * cos
