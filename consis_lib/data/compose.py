"""Compositing a sprite onto a procedurally generated background.

One call of :func:`compose` draws one training / probe image: a background (a named
texture family or a scene-like backdrop), the sprite at a random scale (0.55-0.95 of
the image side), position, rotation (+-20 degrees) and horizontal flip, colour and
contrast jitter of the sprite, occasionally greyscale, and pixel noise on top.  It
also returns what the probe writer needs to label the image honestly: the sprite's
alpha mask and the background's id.

Backgrounds
-----------
Textures (named after the Describable Textures Dataset terms Broden uses):
``striped``, ``chequered``, ``dotted``, ``zigzagged``, ``blotchy`` and the plain
``gradient`` (which is *not* a texture label).  Scene-like backdrops: ``sky`` (blue
gradient with soft clouds), ``sea`` (sky over water, water pixels known) and
``grass`` (a green blade-noise meadow).  Nothing else about a background is claimed.

Example
-------
>>> import numpy as np
>>> from consis_lib.data.compose import compose
>>> sprite = np.zeros((64, 64, 4), np.uint8); sprite[16:48, 16:48] = (200, 30, 30, 255)
>>> c = compose(sprite, 32, np.random.default_rng(0))
>>> c.image.shape, c.mask.shape, c.background in BACKGROUNDS
((32, 32, 3), (32, 32), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

import numpy as np
from PIL import Image

from consis_lib.errors import ConsisError

__all__ = [
    "TEXTURES",
    "SCENES",
    "BACKGROUNDS",
    "TEXTURE_LABELS",
    "Composite",
    "make_background",
    "compose",
]

#: texture families; the value is the Broden/DTD texture label (None: no texture)
TEXTURE_LABELS: Mapping[str, str | None] = MappingProxyType({
    "striped": "striped",
    "chequered": "chequered",
    "dotted": "polka-dotted",
    "zigzagged": "zigzagged",
    "blotchy": "blotchy",
    "gradient": None,
})
TEXTURES: tuple[str, ...] = tuple(TEXTURE_LABELS)
SCENES: tuple[str, ...] = ("sky", "sea", "grass")
BACKGROUNDS: tuple[str, ...] = TEXTURES + SCENES

SCALE_RANGE = (0.55, 0.95)
MAX_ROTATION = 20.0
GREYSCALE_PROB = 0.1
MAX_NOISE_STD = 8.0  # in 0..255 units


@dataclass(frozen=True)
class Composite:
    """One composed image.

    Attributes
    ----------
    image : uint8 [H, W, 3]
    mask : bool [H, W]
        Where the sprite is opaque (alpha >= 0.5) in the final image.
    background : str
        One of :data:`BACKGROUNDS`.
    water : bool [H, W]
        Pixels known to show water (only the ``sea`` backdrop has any).
    greyscale : bool
        Whether the image was turned grey.
    """

    image: np.ndarray
    mask: np.ndarray
    background: str
    water: np.ndarray
    greyscale: bool


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, size=3)


def _two_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    a = _colour(rng)
    b = _colour(rng)
    # keep the pattern visible: push the pair apart when they are too alike
    if np.abs(a - b).sum() < 120:
        b = 255.0 - a
    return a, b


def _grid(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates rotated by a random angle, [H, W] each."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    t = rng.uniform(0, np.pi)
    return x * np.cos(t) + y * np.sin(t), -x * np.sin(t) + y * np.cos(t)


def _mix(t: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    t = t[..., None].astype(np.float32)
    return a * (1 - t) + b * t


def _smooth_noise(size: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    small = rng.uniform(0, 1, size=(cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC))


def make_background(kind: str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw a background.

    Parameters
    ----------
    kind : str
        One of :data:`BACKGROUNDS`.
    size : int
        Image side.
    rng : numpy Generator

    Returns
    -------
    image : float32 [size, size, 3] in 0..255
    water : bool [size, size]
        Water pixels (``sea`` only, else all False).
    """
    water = np.zeros((size, size), bool)
    period = size * rng.uniform(0.12, 0.35)
    if kind == "striped":
        u, _ = _grid(size, rng)
        a, b = _two_colours(rng)
        img = _mix((np.floor(u / (period / 2)) % 2), a, b)
    elif kind == "chequered":
        u, v = _grid(size, rng)
        a, b = _two_colours(rng)
        img = _mix((np.floor(u / (period / 2)) + np.floor(v / (period / 2))) % 2, a, b)
    elif kind == "dotted":
        u, v = _grid(size, rng)
        a, b = _two_colours(rng)
        du = (u % period) - period / 2
        dv = (v % period) - period / 2
        r = period * rng.uniform(0.2, 0.35)
        img = _mix((du**2 + dv**2) < r**2, a, b)
    elif kind == "zigzagged":
        u, v = _grid(size, rng)
        a, b = _two_colours(rng)
        tri = np.abs((u % period) - period / 2)
        img = _mix((np.floor((v + tri) / (period / 2)) % 2), a, b)
    elif kind == "blotchy":
        a, b = _two_colours(rng)
        n = _smooth_noise(size, int(rng.integers(3, 7)), rng)
        img = _mix(n > np.median(n), a, b) * 0.7 + _mix(n, a, b) * 0.3
    elif kind == "gradient":
        u, _ = _grid(size, rng)
        a, b = _two_colours(rng)
        t = (u - u.min()) / max(float(np.ptp(u)), 1e-6)
        img = _mix(t, a, b)
    elif kind in ("sky", "sea"):
        y = np.linspace(0, 1, size, dtype=np.float32)[:, None] * np.ones((1, size), np.float32)
        top = np.array([60, 120, 220]) + rng.uniform(-25, 25, 3)
        low = np.array([170, 210, 250]) + rng.uniform(-20, 5, 3)
        img = _mix(y, top, low)
        clouds = np.clip((_smooth_noise(size, int(rng.integers(3, 6)), rng) - 0.55) * 3.0, 0, 1)
        img = img * (1 - clouds[..., None]) + 245.0 * clouds[..., None]
        if kind == "sea":
            horizon = int(size * rng.uniform(0.3, 0.55))
            water[horizon:] = True
            wave = _smooth_noise(size, int(rng.integers(6, 12)), rng)
            deep = np.array([20, 70, 130]) + rng.uniform(-15, 15, 3)
            light = np.array([40, 130, 180]) + rng.uniform(-15, 15, 3)
            sea = _mix(wave, deep, light)
            img = np.where(water[..., None], sea, img)
    elif kind == "grass":
        base = np.array([60, 140, 50]) + rng.uniform(-25, 25, 3)
        blades = rng.uniform(-1, 1, size=(size, size)).astype(np.float32)
        # vertical streaks: blur along y by averaging shifted copies
        streak = sum(np.roll(blades, k, axis=0) for k in range(4)) / 4.0
        light = _smooth_noise(size, 4, rng)
        img = base * (0.6 + 0.5 * light[..., None]) + 45.0 * streak[..., None]
    else:
        raise ConsisError(f"unknown background {kind!r}; choose from {', '.join(BACKGROUNDS)}")
    return np.clip(img, 0, 255).astype(np.float32), water


def _transform_sprite(
    sprite: np.ndarray, size: int, rng: np.random.Generator, scale_range: tuple[float, float] = SCALE_RANGE
) -> np.ndarray:
    """Scale (side = ``scale_range`` x ``size``), flip and rotate an RGBA sprite;
    returns premultiplied float [h, w, 4]."""
    side = max(4, int(round(size * rng.uniform(*scale_range))))
    img = Image.fromarray(sprite, "RGBA").convert("RGBa")  # premultiplied: no dark fringes
    img = img.resize((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    if rng.uniform() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    angle = float(rng.uniform(-MAX_ROTATION, MAX_ROTATION))
    img = img.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)
    return np.asarray(img, dtype=np.float32)


def _jitter_sprite(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour / contrast jitter of a sprite's (straight, not premultiplied) RGB."""
    contrast = rng.uniform(0.75, 1.25)
    brightness = rng.uniform(-25, 25)
    gains = rng.uniform(0.85, 1.15, size=3)
    mean = 128.0
    rgb = (rgb - mean) * contrast + mean + brightness
    return np.clip(rgb * gains, 0, 255)


def compose(
    sprite: np.ndarray,
    size: int,
    rng: np.random.Generator,
    background: str | None = None,
    greyscale_prob: float = GREYSCALE_PROB,
    max_noise_std: float = MAX_NOISE_STD,
) -> Composite:
    """Composite one sprite onto a background (DESIGN section 3, embedded image set).

    Parameters
    ----------
    sprite : uint8 [S, S, 4]
        RGBA sprite from :func:`consis_lib.data.sprites.load_sprites`.
    size : int
        Output side in pixels.
    rng : numpy Generator
        The only source of randomness: the same generator state gives the same image.
    background : str, optional
        One of :data:`BACKGROUNDS`; drawn uniformly when omitted.
    greyscale_prob : float
        Probability of turning the whole image grey.
    max_noise_std : float
        Pixel noise standard deviation is uniform in ``[0, max_noise_std]`` (0..255 units).

    Returns
    -------
    Composite
        ``image`` uint8 [size, size, 3], ``mask`` bool [size, size] (sprite alpha >= 0.5),
        ``background`` id, ``water`` mask and the greyscale flag.
    """
    if sprite.ndim != 3 or sprite.shape[2] != 4 or sprite.dtype != np.uint8:
        raise ConsisError("compose needs an RGBA uint8 sprite [S, S, 4]; use load_sprites()")
    kind = background if background is not None else BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    bg, water = make_background(kind, size, rng)

    prem = _transform_sprite(sprite, size, rng)
    h, w = prem.shape[:2]
    # place so that the sprite's centre stays inside the middle part of the image
    top = int(rng.integers(min(0, size - h), max(0, size - h) + 1))
    left = int(rng.integers(min(0, size - w), max(0, size - w) + 1))
    layer = np.zeros((size, size, 4), np.float32)
    ys, xs = max(top, 0), max(left, 0)
    ye, xe = min(top + h, size), min(left + w, size)
    layer[ys:ye, xs:xe] = prem[ys - top : ye - top, xs - left : xe - left]

    alpha = layer[..., 3:4] / 255.0
    rgb = _jitter_sprite(np.where(alpha > 0, layer[..., :3] / np.maximum(alpha, 1e-6), 0.0), rng)
    out = rgb * alpha + bg * (1.0 - alpha)
    grey = bool(rng.uniform() < greyscale_prob)
    if grey:
        lum = out @ np.array([0.299, 0.587, 0.114], np.float32)
        out = np.repeat(lum[..., None], 3, axis=2)
    std = rng.uniform(0, max_noise_std)
    noise_shape = (size, size, 1) if grey else out.shape  # grey images stay grey
    out = out + rng.normal(0, 1, size=noise_shape).astype(np.float32) * std
    image = np.clip(np.round(out), 0, 255).astype(np.uint8)
    return Composite(image=image, mask=alpha[..., 0] >= 0.5, background=kind, water=water, greyscale=grey)
