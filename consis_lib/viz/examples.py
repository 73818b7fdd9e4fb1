"""Figures of example images: Fig. 3/4 unit montages, the Eq. 4 targeted example, class samples and probe label maps."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from consis_lib.book_style import model_color, model_label
from consis_lib.errors import ConsisError
from consis_lib.viz.canvas import PAGE_WIDTH, subplots
from consis_lib.viz.images import montage, to_uint8


def views_figure(views: Mapping[str, Sequence[object]], bottom: str = "adversarial (FGSM) images") -> Figure:
    """Fig. 3/4: one row per chosen unit, one column per model, each cell the unit's montage.

    Parameters
    ----------
    views : model name -> sequence of :class:`consis_lib.explorer.UnitView`
        (same length for every model).
    bottom : what the montages' bottom rows show, for the figure's title.
    """
    names = list(views)
    n = max((len(v) for v in views.values()), default=0)
    if n == 0:
        raise ConsisError("no unit views to draw; build them with explorer.build_views")
    width = min(4.2 * len(names), PAGE_WIDTH * 1.1)
    fig, axes = subplots(n, len(names), figsize=(width, width / len(names) * 0.6 * n + 0.4), squeeze=False)
    for j, name in enumerate(names):
        for i in range(n):
            ax = axes[i][j]
            ax.axis("off")
            if i >= len(views[name]):
                continue
            v = views[name][i]
            ax.imshow(Image.open(io.BytesIO(v.montage_jpeg)))
            ax.set_title(f"{model_label(name)}, unit {v.unit}\nconsis {v.consis:.3f}, consis_adv {v.consis_adv:.3f}", fontsize=8, color=model_color(name) or "k")
    fig.suptitle(f"top: real images with the highest activation; bottom: {bottom}", fontsize=9)
    fig.tight_layout()
    return fig


def targeted_figure(example: Mapping[str, object]) -> Figure:
    """Eq. 4 example: the image, its targeted adversarial version and the perturbation."""
    x, xa = example["x"], example["x_adv"]
    fig, axes = subplots(1, 3, figsize=(7.5, 2.8))
    diff = (xa - x)
    scale = float(diff.abs().max()) or 1.0
    for ax, img, title in (
        (axes[0], x, f"real: {example['label']}\npredicted {example['pred_before']}"),
        (axes[1], xa, f"Eq. 4 target {example['target']}\npredicted {example['pred_after']}"),
        (axes[2], diff / (2 * scale) + 0.5, f"perturbation (L2 {example['l2']:.2f})\nx{0.5 / scale:.0f} for display"),
    ):
        ax.imshow(to_uint8(img))
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return fig


def class_samples(dataset: object, per_class: int = 6, thumb: int = 48) -> Figure:
    """The first ``per_class`` images of every class, one row per class.

    Parameters
    ----------
    dataset : a :class:`consis_lib.data.imagefolder.WnidImageFolder` (``targets``,
        ``names`` and items ``(image [3,H,W], label)``).
    """
    targets = list(dataset.targets)
    names = list(dataset.names)
    rows = []
    for c in range(len(names)):
        idx = [i for i, t in enumerate(targets) if t == c][:per_class]
        rows.append([dataset[i][0] for i in idx])
    rows = [r for r in rows if r]
    if not rows:
        raise ConsisError("the data set holds no images; regenerate it with `consis data embedded`")
    fig, ax = subplots(figsize=(per_class * thumb / 60 + 1.5, len(rows) * thumb / 60 + 0.5))
    ax.imshow(montage(rows, thumb=thumb))
    ax.set_yticks([2 + (thumb + 2) * i + thumb / 2 for i in range(len(rows))], [n for n, r in zip(names, rows)], fontsize=7)
    ax.set_xticks([])
    fig.tight_layout()
    return fig


def probe_examples(probe: object, n: int = 4, categories: Sequence[str] = ("object", "color", "texture")) -> Figure:
    """Probe images (top row) and their per-pixel label maps for a few categories.

    Parameters
    ----------
    probe : a :class:`consis_lib.data.broden.Broden` data set (items with ``image``
        [3,H,W] and ``pixel_labels`` {category: int array [L, sh, sw]}).
    """
    n = min(n, len(probe))
    fig, axes = subplots(1 + len(categories), n, figsize=(1.8 * n, 1.8 * (1 + len(categories))), squeeze=False)
    for j in range(n):
        item = probe[j]
        axes[0][j].imshow(to_uint8(item.image))
        for i, cat in enumerate(categories, start=1):
            lab = item.pixel_labels.get(cat)
            ax = axes[i][j]
            if lab is not None and len(lab):
                ax.imshow(np.asarray(lab).max(axis=0), cmap="tab20", interpolation="nearest")
            else:
                ax.text(0.5, 0.5, "image-level\nor none", ha="center", va="center", fontsize=7)
            if j == 0:
                ax.set_ylabel(cat, fontsize=8)
    for row in axes:
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig
