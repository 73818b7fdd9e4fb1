"""Thumbnails and sprites of the static neuron explorer.

Every unit's top images become square tiles (padded or centre-cropped, never
stretched), dimmed where the unit's map is low, and all tiles of one model are
pasted into one sprite image that the page shows by CSS ``background-position``
(:func:`tile_origin` is the layout the page's JavaScript computes as well).

Example
-------
>>> tile = square_tile(torch.rand(3, 24, 32), torch.rand(4, 4), size=16)
>>> sprite_sheet([[tile, None]], 16).size
(32, 16)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from consis_lib.errors import ConsisError

FITS = ("pad", "crop")
BLANK = (235, 235, 235)  # tile colour where fewer than top_k images activate the unit


def square_tile(image: torch.Tensor, heat: torch.Tensor | None = None, size: int = 48, fit: str = "pad") -> np.ndarray:
    """One square thumbnail of an image, highlighted by a unit's map, without distortion.

    Parameters
    ----------
    image : FloatTensor [3, H, W] in [0, 1] (any aspect ratio).
    heat : the unit's map [h, w] (activation or discrepancy map) or None; regions
        where it is low are dimmed (:func:`consis_lib.viz.overlay`).
    size : side of the thumbnail in pixels.
    fit : ``"pad"`` (letterbox the whole image on white) or ``"crop"`` (the centre
        square). The image is never stretched.

    Returns
    -------
    uint8 array [size, size, 3].

    Example
    -------
    >>> square_tile(torch.zeros(3, 8, 16), size=16, fit="pad")[0, 0].tolist()  # padding row
    [255, 255, 255]
    """
    from consis_lib.viz import overlay

    return square(overlay(image, heat), size, fit)


def square(image: np.ndarray, size: int, fit: str = "pad") -> np.ndarray:
    """A uint8 image [H, W, 3] as a square [size, size, 3]: padded on white or centre-cropped, never stretched.

    Example
    -------
    >>> square(np.zeros((2, 4, 3), np.uint8), 4, "pad")[:, 0, 0].tolist()
    [255, 0, 0, 255]
    """
    if fit not in FITS:
        raise ConsisError(f"unknown thumbnail fit {fit!r}; use one of {', '.join(FITS)}")
    if size < 1:
        raise ConsisError(f"thumbnail size must be positive, got {size}")
    img = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    w, h = img.size
    side = max(w, h) if fit == "pad" else min(w, h)
    if fit == "pad":
        canvas = Image.new("RGB", (side, side), (255, 255, 255))
        canvas.paste(img, ((side - w) // 2, (side - h) // 2))
        img = canvas
    else:
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    if side != size:
        img = img.resize((size, size), Image.BILINEAR, reducing_gap=2.0 if side > size else None)
    return np.asarray(img, dtype=np.uint8)


def highlight(images: torch.Tensor, heats: torch.Tensor, strength: float = 0.6) -> np.ndarray:
    """:func:`consis_lib.viz.overlay` for a batch: dim each image where its map is low.

    Parameters
    ----------
    images : [T, 3, H, W] in [0, 1].
    heats : [T, h, w], one map per image (bilinearly resized to H x W, min-max
        scaled per image; a constant map leaves its image unchanged).
    strength : how much low-map regions are dimmed.

    Returns
    -------
    uint8 array [T, H, W, 3], equal to ``overlay`` image by image (up to float rounding).
    """
    size = images.shape[-2:]
    h = torch.nn.functional.interpolate(heats[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    h = h - h.amin(dim=(1, 2), keepdim=True)
    top = h.amax(dim=(1, 2), keepdim=True)
    h = torch.where(top > 0, h / top.clamp_min(torch.finfo(h.dtype).tiny), torch.ones_like(h))
    base = torch.floor(images.float().clamp(0, 1) * 255 + 0.5)
    out = (base * (1.0 - strength * (1.0 - h[:, None]))).clamp(0, 255)
    return out.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def tile_origin(unit: int, slot: int, size: int, per_unit: int, units_per_column: int = 256) -> tuple[int, int]:
    """Top-left pixel ``(x, y)`` of tile ``slot`` of ``unit`` in a sprite of :func:`sprite_sheet`.

    Units run down a column block of ``units_per_column`` rows, each row holding
    the unit's ``per_unit`` tiles; further units start the next column block. The
    explorer's JavaScript computes the same positions.

    Example
    -------
    >>> tile_origin(257, 1, size=32, per_unit=8, units_per_column=256)
    (288, 32)
    """
    block, row = divmod(unit, units_per_column)
    return (block * per_unit + slot) * size, row * size


def sprite_sheet(tiles: Sequence[Sequence[np.ndarray | None]], size: int, units_per_column: int = 256) -> Image.Image:
    """All units' tiles of one model in one image (see :func:`tile_origin` for the layout).

    Parameters
    ----------
    tiles : per unit, its tiles (e.g. top real then top adversarial), each a uint8
        array [size, size, 3] from :func:`square_tile`, or None for a blank tile.
    size : tile side in pixels.
    units_per_column : rows per column block (keeps both sides of the sprite
        within JPEG's and browsers' limits for layers of thousands of units).

    Returns
    -------
    PIL RGB image ``(ceil(K / upc) * per_unit * size, min(K, upc) * size)``.
    """
    per_unit = max((len(t) for t in tiles), default=0)
    if not tiles or per_unit == 0:
        raise ConsisError("sprite_sheet needs at least one unit with one tile; pass the units' thumbnails")
    blocks = math.ceil(len(tiles) / units_per_column)
    sheet = Image.new("RGB", (blocks * per_unit * size, min(len(tiles), units_per_column) * size), BLANK)
    for unit, row in enumerate(tiles):
        for slot, tile in enumerate(row):
            if tile is None:
                continue
            if tile.shape != (size, size, 3):
                raise ConsisError(f"tile of unit {unit} has shape {tile.shape}; expected ({size}, {size}, 3) from square_tile")
            sheet.paste(Image.fromarray(tile), tile_origin(unit, slot, size, per_unit, units_per_column))
    return sheet
