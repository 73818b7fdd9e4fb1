"""Sprites: the curated concepts drawn in several independent emoji styles.

Where each style's art comes from is in :mod:`consis_lib.data.sprite_styles`.

Outline styles have transparent interiors; left so, the object mask would be a
thin outline and the shape nearly invisible on a textured background.  Their
enclosed holes are filled with opaque white (:func:`fill_holes`).

All sprites are normalised to the same canvas: cropped to the alpha bounding box,
padded to a square and resized to ``size x size`` RGBA ``uint8``.  Rendered
sprites are cached per style under ``<cache_dir>/sprites/`` in a file keyed by the
style's source version and the size.

Example
-------
>>> from consis_lib.data.sprites import render_sprite
>>> render_sprite("twemoji", "1F415", size=48).shape
(48, 48, 4)
"""

from __future__ import annotations

import io
import logging
import xml.etree.ElementTree as ET
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from consis_lib.atomic import atomic_path
from consis_lib.data.sprite_styles import STYLES, font_path, openmoji_dir, style_info, style_version, twemoji_dir
from consis_lib.errors import ConsisError

__all__ = ["render_sprite", "has_sprite", "fill_holes", "load_sprites"]

log = logging.getLogger(__name__)

_SVG_NS = "http://www.w3.org/2000/svg"


@lru_cache(maxsize=4)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


@lru_cache(maxsize=4)
def _cmap(path: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    return frozenset(TTFont(path, lazy=True).getBestCmap())


def _chars(emoji: str) -> str:
    return "".join(chr(int(p, 16)) for p in emoji.split("-"))


def _svg_path(emoji: str) -> Path | None:
    root = openmoji_dir()
    for name in (emoji.upper(), emoji.upper() + "-FE0F"):
        p = root / f"{name}.svg"
        if p.exists():
            return p
    return None


def _render_svg(svg: str, px: int) -> Image.Image:
    import resvg_py

    png = resvg_py.svg_to_bytes(svg_string=svg, width=px, height=px)
    return Image.open(io.BytesIO(bytes(png))).convert("RGBA")


def _line_layer(svg_text: str) -> str:
    """Keep only OpenMoji's black ``line`` group (its black-outline rendition)."""
    ET.register_namespace("", _SVG_NS)
    root = ET.fromstring(svg_text)
    for child in list(root):
        if child.get("id") != "line":
            root.remove(child)
    return ET.tostring(root, encoding="unicode")


def _raw(style: str, emoji: str) -> Image.Image | None:
    """Render one emoji in one style at its native resolution (or None if missing)."""
    if style == "twemoji":
        p = twemoji_dir() / f"{emoji.lower()}.png"
        return Image.open(p).convert("RGBA") if p.exists() else None
    if style in ("openmoji", "openmoji-line"):
        p = _svg_path(emoji)
        if p is None:
            return None
        text = p.read_text(encoding="utf-8")
        full = _render_svg(text, 144)
        if style == "openmoji":
            return full
        # The line layer's strokes rarely close, so hole filling alone leaves the
        # interior transparent: paint the artist's own silhouette (the colour
        # rendition's alpha) white underneath the black lines instead.
        silhouette = Image.new("RGBA", full.size, (255, 255, 255, 0))
        silhouette.putalpha(full.getchannel("A"))
        silhouette.alpha_composite(_render_svg(_line_layer(text), 144))
        return silhouette
    path = font_path(style)
    chars = _chars(emoji)
    if len(chars) != 1 or ord(chars) not in _cmap(str(path)):
        return None
    canvas = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    if style == "noto":
        draw.text((100, 100), chars, font=_font(str(path), 109), embedded_color=True, anchor="mm")
    else:
        draw.text((100, 100), chars, font=_font(str(path), 120), fill=(0, 0, 0, 255), anchor="mm")
    return canvas


def has_sprite(style: str, emoji: str) -> bool:
    """Whether ``style`` draws ``emoji`` (a file or font-glyph check; renders nothing).

    Examples
    --------
    >>> has_sprite("symbola", "1F415")
    True
    """
    style_info(style)
    if style == "twemoji":
        return (twemoji_dir() / f"{emoji.lower()}.png").exists()
    if style.startswith("openmoji"):
        return _svg_path(emoji) is not None
    chars = _chars(emoji)
    return len(chars) == 1 and ord(chars) in _cmap(str(font_path(style)))


def fill_holes(rgba: np.ndarray, colour: Sequence[int] = (255, 255, 255)) -> np.ndarray:
    """Fill the enclosed transparent holes of an outline sprite with an opaque colour.

    Parameters
    ----------
    rgba : np.ndarray, uint8 [H, W, 4]
    colour : RGB triple for the filled interior.

    Returns
    -------
    np.ndarray, uint8 [H, W, 4]
        A copy whose pixels enclosed by the opaque outline are ``colour`` with
        alpha 255; pixels connected to the border stay untouched.

    Examples
    --------
    >>> ring = np.zeros((5, 5, 4), np.uint8); ring[[0, 4], :, 3] = 255; ring[:, [0, 4], 3] = 255
    >>> int(fill_holes(ring)[2, 2, 3])
    255
    """
    out = rgba.copy()
    solid = rgba[..., 3] > 96
    # flood the transparent region connected to a 1-pixel frame (4-connectivity);
    # transparent pixels it cannot reach are enclosed holes
    framed = np.pad(np.where(solid, 255, 0).astype(np.uint8), 1)
    canvas = Image.fromarray(framed, "L").copy()  # a private, writable image
    ImageDraw.floodfill(canvas, (0, 0), 128, thresh=0)
    holes = np.asarray(canvas)[1:-1, 1:-1] == 0
    out[holes, :3] = np.asarray(colour, np.uint8)
    out[holes, 3] = 255
    return out


def _normalise(img: Image.Image, size: int, outline: bool) -> np.ndarray:
    arr = np.asarray(img.convert("RGBA"), dtype=np.uint8)
    if outline:
        arr = fill_holes(arr)
    ys, xs = np.nonzero(arr[..., 3] > 8)
    if len(ys) == 0:
        raise ConsisError("a sprite rendered empty; reinstall its source package")
    arr = arr[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = arr.shape[:2]
    side = max(h, w)
    square = np.zeros((side, side, 4), np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    square[top : top + h, left : left + w] = arr
    # resize premultiplied so transparent pixels do not bleed their (black) colour
    prem = square.astype(np.float32)
    prem[..., :3] *= prem[..., 3:4] / 255.0
    chans = [
        np.asarray(Image.fromarray(prem[..., i]).resize((size, size), Image.Resampling.LANCZOS))
        for i in range(4)
    ]
    res = np.clip(np.stack(chans, -1), 0, 255)
    alpha = res[..., 3:4]
    rgb = np.where(alpha > 0, res[..., :3] * 255.0 / np.maximum(alpha, 1e-6), 0)
    return np.concatenate([np.clip(rgb, 0, 255), alpha], -1).round().astype(np.uint8)


def render_sprite(style: str, emoji: str, size: int = 64) -> np.ndarray | None:
    """Render one emoji in one style on the normalised sprite canvas.

    Parameters
    ----------
    style : str
        One of :data:`STYLES`.
    emoji : str
        Hex code point(s), ``"1F415"`` (as in :class:`~consis_lib.data.classes.CuratedClass`).
    size : int
        Side of the square output.

    Returns
    -------
    np.ndarray, uint8 [size, size, 4] or None
        RGBA sprite, or ``None`` when the style has no drawing of this emoji.
    """
    info = style_info(style)
    img = _raw(style, emoji)
    if img is None:
        return None
    return _normalise(img, size, info.outline)


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def _read_cache(path: Path, wanted: Sequence[str], size: int) -> dict[str, np.ndarray]:
    """The cached sprites of one style file; a damaged file yields ``{}`` (re-rendered and rewritten).

    The zip container checks each member's CRC-32 as it is read; every sprite must be
    ``uint8 [size, size, 4]`` (``none-<emoji>`` entries are empty).
    """
    try:
        with np.load(path) as npz:
            names = set(npz.files)
            if all(e in names or f"none-{e}" in names for e in wanted):
                # read only the members we need (the file may hold every class)
                cached = {k: npz[k] for k in wanted if k in names}
            else:
                cached = {k: npz[k] for k in names}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        log.warning("sprite cache %s is damaged (%s); rendering its sprites again", path, exc.__class__.__name__)
        return {}
    for key, arr in cached.items():
        want = (0,) if key.startswith("none-") else (size, size, 4)
        if arr.dtype != np.uint8 or arr.shape != want:
            log.warning("sprite cache %s holds a malformed entry %s; rendering its sprites again", path, key)
            return {}
    return cached


def load_sprites(
    emojis: Iterable[str],
    styles: Sequence[str] = STYLES,
    size: int = 64,
    cache_dir: str | Path | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Render (or read from the cache) every requested emoji in every style.

    Parameters
    ----------
    emojis : iterable of str
        Hex code points, e.g. ``[c.emoji for c in classes]``.
    styles : sequence of str
        Styles to load, default all of :data:`STYLES`.
    size : int
        Sprite side in pixels.
    cache_dir : path, optional
        Cache root; sprites live in ``cache_dir/sprites/<style>-<version>-<size>.npz``.
        ``None`` renders without caching.

    Returns
    -------
    dict
        ``sprites[style][emoji] -> uint8 [size, size, 4]``; emojis a style lacks are
        absent from its dict.

    Examples
    --------
    >>> s = load_sprites(["1F415"], styles=("twemoji",), size=32)
    >>> s["twemoji"]["1F415"].shape
    (32, 32, 4)
    """
    wanted = list(dict.fromkeys(emojis))
    out: dict[str, dict[str, np.ndarray]] = {}
    for style in styles:
        cached: dict[str, np.ndarray] = {}
        path = None
        if cache_dir is not None:
            path = Path(cache_dir) / "sprites" / f"{style}-{style_version(style)}-{size}.npz"
            if path.exists():
                cached = _read_cache(path, wanted, size)
        missing = [e for e in wanted if e not in cached and f"none-{e}" not in cached]
        for e in missing:
            sprite = render_sprite(style, e, size)
            cached[e if sprite is not None else f"none-{e}"] = (
                sprite if sprite is not None else np.zeros((0,), np.uint8)
            )
        if missing and path is not None:
            _atomic_savez(path, cached)
            log.debug("cached %d %s sprites in %s", len(missing), style, path)
        out[style] = {e: cached[e] for e in wanted if e in cached}
    return out
