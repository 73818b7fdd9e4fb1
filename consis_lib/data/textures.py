"""Procedural region fills of the embedded probe: textures, materials and flat colours.

Each drawing function paints a whole ``size x size`` canvas (float32 RGB in 0..255)
from a numpy generator; the probe compositor (:mod:`consis_lib.data.probe_scene`)
cuts a region out of it.  Because the generator paints every fill itself, it knows
what each region shows and labels it by name:

==========  ===============================================================
kind        names (label category)
==========  ===============================================================
texture     Describable Textures Dataset terms, as Broden names them:
            ``striped``, ``chequered``, ``polka-dotted``, ``zigzagged``,
            ``blotchy`` (the training backgrounds of :mod:`.compose`),
            ``grid``, ``crosshatched``, ``honeycombed``, ``spiralled``,
            ``sprinkled``, ``woven``; two random colours each (texture)
material    ``wood`` (distorted ring grain in browns), ``brick`` (running-bond
            bricks with mortar joints), ``water`` (wave noise in sea blues, as
            the ``sea`` backdrop's water) (material)
colour      one of Broden's 11 colour names: its prototype RGB (:data:`COLOURS`)
            with a small tint and soft shading, a large near-uniform segment
            (labelled per pixel by the nearest colour name, category color)
==========  ===============================================================

No other material is claimed: a striped region may look like fabric, but the
generator did not draw fabric, so it is not labelled so.

Example
-------
>>> import numpy as np
>>> draw_fill("texture", "honeycombed", 32, np.random.default_rng(0)).shape
(32, 32, 3)
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np

from consis_lib.data.compose import _grid, _mix, _smooth_noise, _two_colours, make_background
from consis_lib.errors import ConsisError

__all__ = [
    "COLOURS",
    "TEXTURE_NAMES",
    "MATERIAL_NAMES",
    "FILL_KINDS",
    "draw_texture",
    "draw_material",
    "draw_colour",
    "draw_fill",
]

#: Prototype RGB value of each of Broden's 11 colour names (alphabetical, as in Broden).
COLOURS: Mapping[str, tuple[int, int, int]] = MappingProxyType({
    "black": (20, 20, 20),
    "blue": (40, 80, 210),
    "brown": (130, 80, 40),
    "green": (50, 160, 50),
    "grey": (128, 128, 128),
    "orange": (245, 140, 30),
    "pink": (245, 160, 195),
    "purple": (130, 50, 160),
    "red": (210, 30, 30),
    "white": (240, 240, 240),
    "yellow": (240, 220, 40),
})

#: texture label -> the training-background family of :func:`compose.make_background`
#: that draws it (None: drawn here)
_COMPOSE_TEXTURES: Mapping[str, str] = MappingProxyType({
    "striped": "striped",
    "chequered": "chequered",
    "polka-dotted": "dotted",
    "zigzagged": "zigzagged",
    "blotchy": "blotchy",
})


def _lines(coord: np.ndarray, period: float, width: float) -> np.ndarray:
    """1 on thin lines ``width`` wide every ``period`` along ``coord``, else 0."""
    return ((coord % period) < width).astype(np.float32)


def _grid_lines(size: int, rng: np.random.Generator) -> np.ndarray:
    # near axis-aligned square grid of thin lines
    period = size * rng.uniform(0.15, 0.3)
    u, v = _rotated(size, rng.uniform(-0.2, 0.2))
    return np.maximum(_lines(u, period, period * 0.2), _lines(v, period, period * 0.2))


def _crosshatch(size: int, rng: np.random.Generator) -> np.ndarray:
    # two families of dense thin diagonal strokes
    period = size * rng.uniform(0.07, 0.12)
    u, v = _rotated(size, np.pi / 4 + rng.uniform(-0.2, 0.2))
    return np.maximum(_lines(u, period, period * 0.35), _lines(v, period, period * 0.35))


def _honeycomb(size: int, rng: np.random.Generator) -> np.ndarray:
    # edges of the Voronoi cells of a triangular lattice (hexagons): pixels whose two
    # nearest lattice points (among the corners of their lattice cell) are nearly tied
    p = size * rng.uniform(0.18, 0.3)
    u, v = _rotated(size, rng.uniform(0, np.pi / 3))
    b = v / (p * np.sqrt(3) / 2)
    a = u / p - b / 2
    a0, b0 = np.floor(a), np.floor(b)
    dists = []
    for da, db in ((0, 0), (1, 0), (0, 1), (1, 1)):
        ca, cb = a0 + da, b0 + db
        cx, cy = (ca + cb / 2) * p, cb * p * np.sqrt(3) / 2
        dists.append((u - cx) ** 2 + (v - cy) ** 2)
    d = np.sort(np.sqrt(np.stack(dists)), axis=0)
    return ((d[1] - d[0]) < p * 0.12).astype(np.float32)


def _spiral(size: int, rng: np.random.Generator) -> np.ndarray:
    # an Archimedean spiral band around a random centre
    cy, cx = rng.uniform(0.2, 0.8, 2) * size
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    r = np.hypot(x - cx, y - cy)
    theta = np.arctan2(y - cy, x - cx) * float(rng.choice([-1.0, 1.0]))
    period = size * rng.uniform(0.12, 0.22)
    return (np.floor((r + theta / (2 * np.pi) * period) / (period / 2)) % 2).astype(np.float32)


def _sprinkles(size: int, rng: np.random.Generator) -> np.ndarray:
    # sparse 2x2-pixel specks on a plain ground
    half = (size + 1) // 2
    specks = (rng.uniform(size=(half, half)) < rng.uniform(0.08, 0.16)).astype(np.float32)
    return np.kron(specks, np.ones((2, 2), np.float32))[:size, :size]


def _weave(size: int, rng: np.random.Generator) -> np.ndarray:
    # basket weave: square blocks of parallel strands, alternating direction
    period = size * rng.uniform(0.16, 0.26)
    u, v = _rotated(size, rng.uniform(-0.3, 0.3))
    block = (np.floor(u / period) + np.floor(v / period)) % 2
    strand = np.where(block > 0, u, v)
    return np.where((strand % (period / 3)) < period / 3 * 0.75, 1.0, 0.0).astype(np.float32) * (0.55 + 0.45 * block)


_PATTERNS: Mapping[str, Callable[[int, np.random.Generator], np.ndarray]] = MappingProxyType({
    "grid": _grid_lines,
    "crosshatched": _crosshatch,
    "honeycombed": _honeycomb,
    "spiralled": _spiral,
    "sprinkled": _sprinkles,
    "woven": _weave,
})

#: texture labels the probe uses (DTD terms), sorted
TEXTURE_NAMES: tuple[str, ...] = tuple(sorted({*_COMPOSE_TEXTURES, *_PATTERNS}))
#: material labels the probe uses (Broden / OpenSurfaces terms), sorted
MATERIAL_NAMES: tuple[str, ...] = ("brick", "water", "wood")
#: region fill kinds and the names each draws
FILL_KINDS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "texture": TEXTURE_NAMES,
    "material": MATERIAL_NAMES,
    "colour": tuple(COLOURS),
})


def _rotated(size: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    c, s = np.cos(angle), np.sin(angle)
    return x * c + y * s, -x * s + y * c


def draw_texture(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Paint a whole canvas with the texture ``name`` (one of :data:`TEXTURE_NAMES`).

    Returns
    -------
    np.ndarray float32 [size, size, 3] in 0..255
        Two random, clearly different colours (:func:`compose._two_colours`) in the
        texture's pattern.
    """
    if name in _COMPOSE_TEXTURES:
        return make_background(_COMPOSE_TEXTURES[name], size, rng)[0]
    if name not in _PATTERNS:
        raise ConsisError(f"unknown texture {name!r}; choose from {', '.join(TEXTURE_NAMES)}")
    a, b = _two_colours(rng)
    return np.clip(_mix(_PATTERNS[name](size, rng), a, b), 0, 255).astype(np.float32)


def _wood(size: int, rng: np.random.Generator) -> np.ndarray:
    light = np.array([170, 115, 65]) + rng.uniform(-20, 20, 3)
    dark = np.array([105, 62, 30]) + rng.uniform(-15, 15, 3)
    u, v = _grid(size, rng)
    period = size * rng.uniform(0.08, 0.16)
    warp = _smooth_noise(size, int(rng.integers(2, 5)), rng) * period * 2.5
    rings = 0.5 + 0.5 * np.sin(2 * np.pi * (v + warp) / period)
    return _mix(rings**2, light, dark)


def _brick(size: int, rng: np.random.Generator) -> np.ndarray:
    h = size * rng.uniform(0.1, 0.18)
    w = h * rng.uniform(1.8, 2.6)
    mortar = np.array([190, 185, 175]) + rng.uniform(-20, 20, 3)
    base = np.array([165, 70, 50]) + rng.uniform(-20, 20, 3)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    row = np.floor(y / h)
    xs = x + (row % 2) * w / 2
    col = np.floor(xs / w)
    joint = ((y % h) < max(1.0, h * 0.15)) | ((xs % w) < max(1.0, w * 0.07))
    # one shade per brick, looked up from a small table indexed by its row and column
    shades = rng.uniform(-18, 18, size=(int(row.max()) + 1, int(col.max()) + 1)).astype(np.float32)
    brick = base + shades[row.astype(int), col.astype(int)][..., None]
    return np.where(joint[..., None], mortar, brick)


def _water(size: int, rng: np.random.Generator) -> np.ndarray:
    wave = _smooth_noise(size, int(rng.integers(6, 12)), rng)
    deep = np.array([20, 70, 130]) + rng.uniform(-15, 15, 3)
    light = np.array([40, 130, 180]) + rng.uniform(-15, 15, 3)
    return _mix(wave, deep, light)


_MATERIALS: Mapping[str, Callable[[int, np.random.Generator], np.ndarray]] = MappingProxyType({
    "brick": _brick,
    "water": _water,
    "wood": _wood,
})


def draw_material(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Paint a whole canvas with the material ``name`` (one of :data:`MATERIAL_NAMES`).

    Returns
    -------
    np.ndarray float32 [size, size, 3] in 0..255
    """
    if name not in _MATERIALS:
        raise ConsisError(f"unknown material {name!r}; choose from {', '.join(MATERIAL_NAMES)}")
    return np.clip(_MATERIALS[name](size, rng), 0, 255).astype(np.float32)


def draw_colour(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Paint a whole canvas in the colour ``name`` (a key of :data:`COLOURS`).

    The prototype RGB value plus a tint of +-10 per channel and soft shading of
    +-8: a near-uniform segment whose pixels keep the same nearest colour name.

    Returns
    -------
    np.ndarray float32 [size, size, 3] in 0..255
    """
    if name not in COLOURS:
        raise ConsisError(f"unknown colour {name!r}; choose from {', '.join(COLOURS)}")
    tint = np.asarray(COLOURS[name], np.float32) + rng.uniform(-10, 10, 3).astype(np.float32)
    shade = (_smooth_noise(size, 3, rng) - 0.5) * 16.0
    return np.clip(tint + shade[..., None], 0, 255).astype(np.float32)


def draw_fill(kind: str, name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Paint a canvas with one region fill: ``kind`` is a key of :data:`FILL_KINDS`."""
    draw = {"texture": draw_texture, "material": draw_material, "colour": draw_colour}.get(kind)
    if draw is None:
        raise ConsisError(f"unknown fill kind {kind!r}; choose from {', '.join(FILL_KINDS)}")
    return draw(name, size, rng)
