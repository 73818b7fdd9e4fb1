"""Composing one probe image: labelled region fills or a scene backdrop, plus small objects.

Network dissection can only report a category when the probe gives its concepts
segments a unit can match (DESIGN section 2: IoU > 0.04 against a mask that covers
0.5% of all pixels).  One probe image therefore mixes the categories:

* **background**: with probability :data:`SCENE_SHARE` a scene backdrop of
  :mod:`.compose` (``sky``, ``sea``, ``grass``) over the whole image; otherwise the
  image is cut into 1-3 Voronoi cells (random seeds; :data:`REGION_COUNT`), each
  filled with one texture, one material or one flat colour of :mod:`.textures`
  (probabilities :data:`FILL_SHARE`).  One cell in three images fills the whole
  background, as Broden's texture images (DTD) do; large cells also suit the coarse
  maps of a last convolutional layer (4x4 or 8x8 at 32 px, upsampled to 64 px);
* **objects**: 2-5 sprites, each scaled to :data:`OBJECT_SCALE` of the image side
  (a few percent of the image's area once the transparent margin is off), placed
  to overlap earlier ones little, with the training images' colour jitter; a
  later sprite hides an earlier one;
* pixel noise (standard deviation uniform in 0..:data:`MAX_NOISE_STD`), never
  greyscale, so colour regions keep their colour.

What to draw is decided first (:func:`plan_objects`), so a writer can list the
object labels of a whole probe before drawing it.

Example
-------
>>> import numpy as np
>>> sprite = np.zeros((64, 64, 4), np.uint8); sprite[8:56, 8:56] = (200, 30, 30, 255)
>>> rng = np.random.default_rng(0)
>>> plan = plan_objects(rng, [[("a", sprite)]], [])
>>> scene = compose_probe(plan, 64, rng)
>>> scene.image.shape, int(scene.objects.max()) <= len(plan)
((64, 64, 3), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, Sequence

import numpy as np

from consis_lib.data.compose import SCENES, _jitter_sprite, _transform_sprite, make_background
from consis_lib.data.textures import FILL_KINDS, draw_fill
from consis_lib.errors import ConsisError

__all__ = [
    "SCENE_SHARE",
    "FILL_SHARE",
    "OBJECT_SCALE",
    "OBJECT_COUNT",
    "REGION_COUNT",
    "PROFILE_OBJECT_SHARE",
    "MAX_NOISE_STD",
    "PlannedObject",
    "ProbeScene",
    "plan_objects",
    "compose_probe",
]

SCENE_SHARE = 0.25
#: probability of each region fill kind (texture, material, colour)
FILL_SHARE: Mapping[str, float] = MappingProxyType({"texture": 0.45, "material": 0.2, "colour": 0.35})
OBJECT_SCALE = (0.2, 0.34)
OBJECT_COUNT = (2, 5)
PROFILE_OBJECT_SHARE = 0.5
REGION_COUNT = (1, 3)
MAX_NOISE_STD = 6.0
_PLACEMENT_TRIES = 6


@dataclass(frozen=True)
class PlannedObject:
    """One object to draw: its class (``group``, ``index`` into that group's list) and sprite.

    Attributes
    ----------
    group : 0 for the profile's classes, 1 for the extra classes.
    index : position of the class in its group.
    style : the sprite style drawn.
    sprite : uint8 [S, S, 4] RGBA.
    """

    group: int
    index: int
    style: str
    sprite: np.ndarray


@dataclass(frozen=True)
class ProbeScene:
    """One composed probe image and what the generator knows it drew.

    Attributes
    ----------
    image : uint8 [H, W, 3]
    objects : int16 [H, W]; ``k`` (1-based) where object ``plan[k - 1]`` is on top, 0 elsewhere.
    regions : int16 [H, W]; index into ``fills`` (all 0 under a scene backdrop).
    fills : per region ``(kind, name)``, kind a key of :data:`textures.FILL_KINDS`;
        empty under a scene backdrop.
    backdrop : the scene backdrop (``sky``, ``sea``, ``grass``) or ``""``.
    water : bool [H, W]; the sea backdrop's water pixels (objects not removed).
    plan : the objects in drawing order.
    """

    image: np.ndarray
    objects: np.ndarray
    regions: np.ndarray
    fills: tuple[tuple[str, str], ...]
    backdrop: str
    water: np.ndarray
    plan: tuple[PlannedObject, ...]


def plan_objects(
    rng: np.random.Generator,
    profile_sprites: Sequence[Sequence[tuple[str, np.ndarray]]],
    extra_sprites: Sequence[Sequence[tuple[str, np.ndarray]]],
) -> tuple[PlannedObject, ...]:
    """Draw the objects of one probe image (the first draws of its generator).

    Parameters
    ----------
    rng : the image's generator.
    profile_sprites, extra_sprites : per class, its ``(style, sprite)`` drawings; a
        class comes from the profile's list with probability
        :data:`PROFILE_OBJECT_SHARE` (always when there are no extra classes).

    Returns
    -------
    tuple of PlannedObject
        :data:`OBJECT_COUNT` objects (inclusive range), uniformly over classes of the
        chosen group and over the styles that draw the class.
    """
    if not profile_sprites or any(len(c) == 0 for c in (*profile_sprites, *extra_sprites)):
        raise ConsisError("every probe class needs at least one sprite style; run `make setup`")
    plan = []
    for _ in range(int(rng.integers(OBJECT_COUNT[0], OBJECT_COUNT[1] + 1))):
        extra = bool(extra_sprites) and rng.uniform() >= PROFILE_OBJECT_SHARE
        group = extra_sprites if extra else profile_sprites
        index = int(rng.integers(len(group)))
        style, sprite = group[index][int(rng.integers(len(group[index])))]
        plan.append(PlannedObject(int(extra), index, style, sprite))
    return tuple(plan)


def _voronoi(size: int, rng: np.random.Generator) -> np.ndarray:
    """int16 [size, size] cell index of the nearest of :data:`REGION_COUNT` random seeds."""
    seeds = rng.uniform(0, size, size=(int(rng.integers(REGION_COUNT[0], REGION_COUNT[1] + 1)), 2))
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    d = (y[None] - seeds[:, 0, None, None]) ** 2 + (x[None] - seeds[:, 1, None, None]) ** 2
    return d.argmin(0).astype(np.int16)


def _background(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple, str, np.ndarray]:
    """Canvas, region map, region fills, backdrop name and water mask."""
    if rng.uniform() < SCENE_SHARE:
        backdrop = SCENES[int(rng.integers(len(SCENES)))]
        canvas, water = make_background(backdrop, size, rng)
        return canvas, np.zeros((size, size), np.int16), (), backdrop, water
    regions = _voronoi(size, rng)
    kinds = list(FILL_SHARE)
    canvas = np.zeros((size, size, 3), np.float32)
    fills = []
    for r in range(int(regions.max()) + 1):
        kind = kinds[int(rng.choice(len(kinds), p=list(FILL_SHARE.values())))]
        names = FILL_KINDS[kind]
        name = names[int(rng.integers(len(names)))]
        canvas = np.where((regions == r)[..., None], draw_fill(kind, name, size, rng), canvas)
        fills.append((kind, name))
    return canvas, regions, tuple(fills), "", np.zeros((size, size), bool)


def _place(h: int, w: int, size: int, boxes: list[tuple[int, int, int, int]], rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner inside the image overlapping the earlier boxes least (a few tries)."""
    best, best_overlap = (0, 0), np.inf
    for _ in range(_PLACEMENT_TRIES):
        top = int(rng.integers(0, max(0, size - h) + 1))
        left = int(rng.integers(0, max(0, size - w) + 1))
        overlap = sum(
            max(0, min(top + h, b[0] + b[2]) - max(top, b[0])) * max(0, min(left + w, b[1] + b[3]) - max(left, b[1]))
            for b in boxes
        )
        if overlap < best_overlap:
            best, best_overlap = (top, left), overlap
        if overlap <= 0.1 * h * w:
            break
    return best


def compose_probe(plan: Sequence[PlannedObject], size: int, rng: np.random.Generator) -> ProbeScene:
    """Draw one probe image (module docstring) after :func:`plan_objects` used ``rng``.

    Parameters
    ----------
    plan : the objects, drawn in order (later ones on top).
    size : image side in pixels.
    rng : the same generator, continued: the same state gives the same image.

    Returns
    -------
    ProbeScene
    """
    canvas, regions, fills, backdrop, water = _background(size, rng)
    objects = np.zeros((size, size), np.int16)
    boxes: list[tuple[int, int, int, int]] = []
    for k, obj in enumerate(plan, start=1):
        prem = _transform_sprite(obj.sprite, size, rng, OBJECT_SCALE)
        h, w = min(prem.shape[0], size), min(prem.shape[1], size)
        top, left = _place(h, w, size, boxes, rng)
        boxes.append((top, left, h, w))
        alpha = prem[:h, :w, 3:4] / 255.0
        rgb = _jitter_sprite(np.where(alpha > 0, prem[:h, :w, :3] / np.maximum(alpha, 1e-6), 0.0), rng)
        patch = canvas[top : top + h, left : left + w]
        canvas[top : top + h, left : left + w] = rgb * alpha + patch * (1.0 - alpha)
        objects[top : top + h, left : left + w][alpha[..., 0] >= 0.5] = k
    std = rng.uniform(0, MAX_NOISE_STD)
    out = canvas + rng.normal(0, 1, size=canvas.shape).astype(np.float32) * std
    image = np.clip(np.round(out), 0, 255).astype(np.uint8)
    return ProbeScene(image, objects, regions, fills, backdrop, water, tuple(plan))
