"""A contact sheet of the embedded image set: one row per class, one column per style.

Example
-------
>>> from consis_lib.config import get_profile
>>> fig = contact_sheet(get_profile("smoke").data)        # doctest: +SKIP
>>> fig.savefig("sheet.png")                              # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from consis_lib.atomic import atomic_path
from consis_lib.config import DataConfig
from consis_lib.data.classes import CuratedClass, classes_for_profile
from consis_lib.data.compose import compose
from consis_lib.cache import cache_root
from consis_lib.data.embedded import SPRITE_SIZE, image_rng
from consis_lib.data.sprites import available_styles, load_sprites

__all__ = ["contact_sheet", "save_figure"]


def _on_grey(sprite: np.ndarray, level: float = 200.0) -> np.ndarray:
    a = sprite[..., 3:4].astype(np.float32) / 255.0
    return (sprite[..., :3] * a + level * (1 - a)).astype(np.uint8)


def contact_sheet(
    cfg: DataConfig,
    classes: Sequence[CuratedClass] | None = None,
    styles: Sequence[str] | None = None,
    composite: bool = False,
    cache_dir: str | Path | None = None,
    cell_inches: float = 0.7,
) -> Figure:
    """Draw every class (rows) in every sprite style (columns).

    Parameters
    ----------
    cfg : DataConfig
        Picks the classes (profile, num_classes) and, with ``composite``, the image
        size and seed of the example composites.
    classes : sequence of CuratedClass, optional
        Override the profile's classes.
    styles : sequence of str
        Columns, default every installed style (:func:`~consis_lib.data.sprites.available_styles`).
    composite : bool
        Show one composited validation-style image per cell instead of the bare sprite.
    cache_dir : path, optional
        Sprite cache, default :func:`~consis_lib.cache.cache_root`.
    cell_inches : float
        Size of one cell in inches.

    Returns
    -------
    matplotlib.figure.Figure
        ``len(classes)`` rows x ``len(styles)`` columns of images, rows labelled
        ``name (wnid)``, columns by style.
    """
    classes = list(classes) if classes is not None else classes_for_profile(cfg)
    styles = tuple(styles) if styles is not None else available_styles()
    cache = Path(cache_dir) if cache_dir is not None else cache_root()
    sprites = load_sprites([c.emoji for c in classes], styles, SPRITE_SIZE, cache)
    rows, cols = len(classes), len(styles)
    fig = Figure(figsize=(1.6 + cols * cell_inches, 0.4 + rows * cell_inches))
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, c in enumerate(classes):
        for k, style in enumerate(styles):
            ax = axes[r][k]
            sprite = sprites[style].get(c.emoji)
            if sprite is not None:
                if composite:
                    img = compose(sprite, cfg.image_size, image_rng(cfg.seed, "val", c.wnid, k)).image
                else:
                    img = _on_grey(sprite)
                ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if r == 0:
                ax.set_title(style, fontsize=8)
            if k == 0:
                ax.set_ylabel(f"{c.name}\n{c.wnid}", fontsize=7, rotation=0, ha="right", va="center")
    fig.subplots_adjust(left=1.4 / (1.6 + cols * cell_inches), right=0.99, top=0.97, bottom=0.01, wspace=0.05, hspace=0.05)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Save a figure atomically (temporary file + rename); the format follows the suffix."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    return path
