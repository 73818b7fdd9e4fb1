"""Image tiles: images as uint8, highlighted by a map, square thumbnails, montages and JPEG bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from consis_lib.errors import ConsisError


def to_uint8(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """An image ``[3, H, W]``, ``[1, H, W]``, ``[H, W, 3]`` or ``[H, W]`` in [0, 1] as a uint8 array ``[H, W, 3]``."""
    a = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = np.transpose(a, (1, 2, 0))
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return (np.clip(a, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def overlay(image: torch.Tensor, heat: torch.Tensor | None, strength: float = 0.6) -> np.ndarray:
    """Darken an image where a (discrepancy or activation) map is low.

    Parameters
    ----------
    image : FloatTensor [3, H, W] in [0, 1].
    heat : map [h, w] of any scale (resized bilinearly to H x W), or None.
    strength : how much low-map regions are dimmed (0 = no change).

    Returns
    -------
    uint8 array [H, W, 3].
    """
    base = to_uint8(image).astype(np.float32)
    if heat is None:
        return base.astype(np.uint8)
    h = torch.as_tensor(heat, dtype=torch.float32)[None, None]
    h = torch.nn.functional.interpolate(h, size=base.shape[:2], mode="bilinear", align_corners=False)[0, 0]
    h = h - h.min()
    h = (h / h.max()).numpy() if float(h.max()) > 0 else np.ones(base.shape[:2], np.float32)
    w = 1.0 - strength * (1.0 - h[..., None])
    return np.clip(base * w, 0, 255).astype(np.uint8)


def square_thumb(image: np.ndarray | Image.Image, size: int, fit: str = "pad") -> Image.Image:
    """A ``size`` x ``size`` thumbnail that keeps the image's aspect ratio.

    Parameters
    ----------
    image : uint8 array [H, W, 3] or a PIL image.
    size : side of the thumbnail in pixels.
    fit : ``"pad"`` scales the longer side to ``size`` and centres the image on
        white; ``"crop"`` keeps the centred square of side min(H, W). Never stretches.

    Example
    -------
    >>> square_thumb(np.zeros((8, 16, 3), np.uint8), 16).size
    (16, 16)
    """
    im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
    im = im.convert("RGB")
    w, h = im.size
    if fit == "crop":
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        return im.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
    if fit != "pad":
        raise ConsisError(f"fit must be 'pad' or 'crop', not {fit!r}")
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(im.resize((nw, nh), Image.BILINEAR), ((size - nw) // 2, (size - nh) // 2))
    return canvas


def montage(
    rows: Sequence[Sequence[torch.Tensor]],
    heats: Sequence[Sequence[torch.Tensor | None]] | None = None,
    thumb: int = 64,
    pad: int = 2,
    fit: str = "pad",
) -> Image.Image:
    """Tile images into a grid of square tiles (one row per sequence), optionally highlighted.

    Parameters
    ----------
    rows : e.g. ``[top_real, top_adversarial]``, each a sequence of [3, H, W] images in [0,1].
    heats : matching maps (or None) passed to :func:`overlay`.
    thumb : side of each tile in pixels.
    fit : how a non-square image becomes a square tile (:func:`square_thumb`):
        ``"pad"`` (default) or ``"crop"``; images are never stretched.

    Returns
    -------
    PIL RGB image of size ``(cols*(thumb+pad)+pad, len(rows)*(thumb+pad)+pad)``.

    Example
    -------
    >>> im = montage([[torch.zeros(3, 8, 8)] * 3, [torch.ones(3, 8, 8)] * 2], thumb=16)
    >>> im.size
    (56, 38)
    """
    cols = max((len(r) for r in rows), default=0)
    if cols == 0:
        raise ConsisError("montage needs at least one image; the unit has no top images")
    canvas = Image.new("RGB", (cols * (thumb + pad) + pad, len(rows) * (thumb + pad) + pad), (255, 255, 255))
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            heat = heats[i][j] if heats is not None else None
            tile = square_thumb(overlay(img, heat), thumb, fit)
            canvas.paste(tile, (pad + j * (thumb + pad), pad + i * (thumb + pad)))
    return canvas


def jpeg_bytes(image: Image.Image, quality: int = 80) -> bytes:
    """Encode a PIL image as JPEG bytes (small thumbnails keep book pages light)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
