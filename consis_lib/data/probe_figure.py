"""One embedded probe image beside its label masks, one panel per Broden category.

The data page shows what network dissection (DESIGN section 2) compares a unit's
thresholded map with: the colour, object, texture and material masks of one probe
image (each pixel coloured by its label, unlabelled pixels white), the part panel
(always empty: the sprites have no annotated parts) and the image-level scene label
in the image's title.

Example
-------
>>> from consis_lib.config import get_profile
>>> from consis_lib.data.probe import probe_example
>>> fig = probe_example_figure(probe_example(get_profile("smoke").data, 0))   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from consis_lib.concepts import BRODEN_COLUMNS as CATEGORIES
from consis_lib.data.probe import ProbeExample
from consis_lib.data.textures import COLOURS
from consis_lib.errors import ConsisError

__all__ = ["PANEL_CATEGORIES", "label_colours", "probe_example_figure"]

#: the pixel-level categories shown, in Broden's order
PANEL_CATEGORIES: tuple[str, ...] = ("color", "object", "material", "texture", "part")
_UNLABELLED = np.array([1.0, 1.0, 1.0])


def label_colours(mask: np.ndarray, names: dict[int, str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """RGB rendering of a label mask and the colour of each label in it.

    Colour labels (``red-c``) are drawn in their Broden prototype colour
    (:data:`consis_lib.data.textures.COLOURS`); other labels take the ``tab20``
    colours in order of label number; unlabelled pixels are white.

    Parameters
    ----------
    mask : int [H, W] label numbers (0 = unlabelled).
    names : label number -> name.

    Returns
    -------
    rgb : float [H, W, 3] in 0..1
    legend : label name -> its RGB colour, in order of label number.
    """
    numbers = [int(n) for n in np.unique(mask) if n]
    palette = colormaps["tab20"].colors
    legend: dict[str, np.ndarray] = {}
    rgb = np.tile(_UNLABELLED, mask.shape + (1,))
    for i, n in enumerate(numbers):
        name = names.get(n, str(n))
        proto = COLOURS.get(name[:-2]) if name.endswith("-c") else None
        colour = np.asarray(proto, float) / 255.0 if proto is not None else np.asarray(palette[i % len(palette)])
        rgb[mask == n] = colour
        legend[name] = colour
    return rgb, legend


def probe_example_figure(example: ProbeExample, categories: Sequence[str] = PANEL_CATEGORIES) -> Figure:
    """The probe image and one label-mask panel per category (module docstring).

    Parameters
    ----------
    example : from :func:`consis_lib.data.probe.probe_example`.
    categories : pixel-level categories to show (default all five).

    Returns
    -------
    matplotlib.figure.Figure
        Outside pyplot's global state; a notebook renders the returned figure.
    """
    unknown = [c for c in categories if c not in example.masks]
    if unknown:
        raise ConsisError(f"categories {unknown} have no masks; choose from {[c for c in CATEGORIES if c in example.masks]}")
    fig = Figure(figsize=(1.75 * (1 + len(categories)), 3.3), layout="constrained")
    axes = fig.subplots(1, 1 + len(categories))
    axes[0].imshow(example.image, interpolation="nearest")
    axes[0].set_title(f"probe image {example.index}\nscene: {example.scene or 'none'}", fontsize=8)
    for ax, cat in zip(axes[1:], categories):
        rgb, legend = label_colours(example.masks[cat], example.names)
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(cat, fontsize=8)
        if not legend:
            ax.text(0.5, 0.5, f"no {cat} labels\nin this image", ha="center", va="center", fontsize=7, transform=ax.transAxes)
        handles = [Patch(facecolor=c, edgecolor="0.5", linewidth=0.3, label=n) for n, c in legend.items()]
        if handles:
            ax.legend(
                handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), fontsize=6, frameon=False,
                handlelength=1.0, ncol=2 if len(handles) > 5 else 1, columnspacing=0.6,
            )
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig
