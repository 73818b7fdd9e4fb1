"""Figures for the book. Every function returns a matplotlib ``Figure`` (or an image).

Nothing here computes a metric: the numbers come from :mod:`consis_lib.consistency`,
:mod:`consis_lib.dissect` and the training logs; these functions only draw them.

Example
-------
>>> import numpy as np
>>> from consis_lib.viz import consis_histograms
>>> rng = np.random.default_rng(0)
>>> fig = consis_histograms({"ResNet-18": (rng.random(64), rng.random(64) / 2)})
>>> len(fig.axes)
2
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from PIL import Image

from consis_lib.errors import ConsisError


def _subplots(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (4, 3), **kw: object) -> tuple[Figure, object]:
    """A new Figure with subplots, outside pyplot's global state (no figure is leaked
    or shown twice in notebooks; Jupyter renders the returned Figure)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kw)


def learning_curves(logs: Mapping[str, Sequence[Mapping[str, float]]], keys: Sequence[str] = ("loss", "train_acc", "val_acc")) -> Figure:
    """Learning curves of several runs side by side (one panel per key).

    Parameters
    ----------
    logs : run name (``"normal"``, ``"adv"``) -> list of log records (the rows of
        a training ``log.jsonl``); each record may hold ``epoch`` or ``step`` and
        any of ``keys``.
    keys : the quantities to plot, one panel each; keys absent from every record
        are skipped.

    Returns
    -------
    Figure with one axis per present key.

    Example
    -------
    >>> fig = learning_curves({"normal": [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.5}]})
    """
    present = [k for k in keys if any(k in r for rows in logs.values() for r in rows)]
    if not present:
        raise ConsisError(f"training logs hold none of {list(keys)}; check the run's log.jsonl")
    fig, axes = _subplots(1, len(present), figsize=(4 * len(present), 3), squeeze=False)
    for ax, key in zip(axes[0], present):
        for name, rows in logs.items():
            pts = [(r.get("epoch", r.get("step", i)), r[key]) for i, r in enumerate(rows) if key in r]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o", label=name)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    return fig


def consis_histograms(
    runs: Mapping[str, tuple[Sequence[float], Sequence[float]]], bins: int = 20
) -> Figure:
    """Fig. 5: histograms of ``consis(n)`` (top row) and ``consis_adv(n)`` (bottom row).

    Parameters
    ----------
    runs : model name -> (consis [K], consis_adv [K]), one column per model.
    bins : number of histogram bins (shared edges across the figure).

    Returns
    -------
    Figure with a 2 x len(runs) grid.
    """
    if not runs:
        raise ConsisError("no consistency results to plot; run the 03_consistency notebook first")
    runs = {k: tuple(_finite(v) for v in pair) for k, pair in runs.items()}
    allv = np.concatenate([v for pair in runs.values() for v in pair])
    hi = float(allv.max()) if allv.size else 1.0
    edges = np.linspace(0.0, hi if hi > 0 else 1.0, bins + 1)
    fig, axes = _subplots(2, len(runs), figsize=(3.6 * len(runs), 5), squeeze=False, sharex=True)
    for j, (name, (c, ca)) in enumerate(runs.items()):
        for i, (vals, lab) in enumerate(((c, "consis(n)"), (ca, "consis_adv(n)"))):
            ax = axes[i][j]
            ax.hist(vals, bins=edges, color="C0" if i == 0 else "C3")
            if vals.size:
                ax.axvline(float(np.mean(vals)), color="k", ls="--", lw=1)
            ax.set_title(f"{name}: {lab}", fontsize=9)
    fig.tight_layout()
    return fig


def _finite(values: Sequence[float | None]) -> np.ndarray:
    a = np.asarray([np.nan if v is None else float(v) for v in values], float)
    return a[np.isfinite(a)]


def sensitivity(table: pd.DataFrame, x: str, ys: Sequence[str] = ("consis", "consis_adv"), hue: str = "model") -> Figure:
    """Mean consistency as a function of one free choice (sigma or top fraction).

    Parameters
    ----------
    table : long DataFrame with columns ``x``, ``hue`` and each of ``ys``.
    x : the swept parameter's column (e.g. ``"sigma"``).
    """
    missing = [c for c in (x, hue, *ys) if c not in table.columns]
    if missing:
        raise ConsisError(f"sensitivity table lacks columns {missing}; pass the sweep DataFrame")
    fig, axes = _subplots(1, len(ys), figsize=(4 * len(ys), 3), squeeze=False)
    for ax, y in zip(axes[0], ys):
        for name, grp in table.groupby(hue, sort=False):
            grp = grp.sort_values(x)
            ax.plot(grp[x], grp[y], marker="o", label=str(name))
        ax.set_xlabel(x)
        ax.set_title(f"mean {y}")
        if x == "sigma":
            ax.set_xscale("log", base=2)
        ax.legend()
    fig.tight_layout()
    return fig


def accuracy_vs_eps(curves: Mapping[str, Mapping[float, float]]) -> Figure:
    """Accuracy under FGSM as a function of eps (in 1/255 units on the x axis).

    Parameters
    ----------
    curves : model name -> {eps in [0,1] units (float or numeric string): accuracy in [0,1]}.
    """
    fig, ax = _subplots(figsize=(4.5, 3))
    for name, curve in curves.items():
        pts = sorted((float(e), float(a)) for e, a in curve.items())
        ax.plot([e * 255 for e, _ in pts], [a for _, a in pts], marker="o", label=name)
    ax.set_xlabel("eps (x 1/255)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    return fig


def ratio_bars(table: pd.DataFrame) -> Figure:
    """Table 2 as grouped bars: % aligned units per category, real vs adversarial.

    Parameters
    ----------
    table : rows = model x images (index or columns ``model``, ``images``), one
        column per category holding percentages.
    """
    df = table.reset_index() if "model" not in table.columns else table
    cats = list(df.select_dtypes("number").columns)
    keys = [c for c in ("arch", "model", "images") if c in df.columns]
    if not cats or df.empty:
        raise ConsisError("the Table 2 frame holds no category columns; run the 04_dissection notebook first")
    fig, ax = _subplots(figsize=(7, 3))
    width = 0.8 / max(len(df), 1)
    for i, (_, row) in enumerate(df.iterrows()):
        label = " ".join(str(row[k]) for k in keys)
        ax.bar(np.arange(len(cats)) + i * width, [float(row[c]) for c in cats], width, label=label)
    ax.set_xticks(np.arange(len(cats)) + 0.4 - width / 2, cats)
    ax.set_ylabel("% aligned units")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _to_uint8(img: torch.Tensor | np.ndarray) -> np.ndarray:
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
    base = _to_uint8(image).astype(np.float32)
    if heat is None:
        return base.astype(np.uint8)
    h = torch.as_tensor(heat, dtype=torch.float32)[None, None]
    h = torch.nn.functional.interpolate(h, size=base.shape[:2], mode="bilinear", align_corners=False)[0, 0]
    h = h - h.min()
    h = (h / h.max()).numpy() if float(h.max()) > 0 else np.ones(base.shape[:2], np.float32)
    w = 1.0 - strength * (1.0 - h[..., None])
    return np.clip(base * w, 0, 255).astype(np.uint8)


def montage(
    rows: Sequence[Sequence[torch.Tensor]],
    heats: Sequence[Sequence[torch.Tensor | None]] | None = None,
    thumb: int = 64,
    pad: int = 2,
) -> Image.Image:
    """Tile images into a grid (one row per sequence), optionally highlighted.

    Parameters
    ----------
    rows : e.g. ``[top_real, top_adversarial]``, each a sequence of [3, H, W] images in [0,1].
    heats : matching maps (or None) passed to :func:`overlay`.
    thumb : side of each tile in pixels.

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
            tile = Image.fromarray(overlay(img, heat)).resize((thumb, thumb), Image.BILINEAR)
            canvas.paste(tile, (pad + j * (thumb + pad), pad + i * (thumb + pad)))
    return canvas


def jpeg_bytes(image: Image.Image, quality: int = 80) -> bytes:
    """Encode a PIL image as JPEG bytes (small thumbnails keep book pages light)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def label_distribution(names: Sequence[str], probs: Sequence[float], probs_adv: Sequence[float] | None = None, top: int = 8) -> Figure:
    """Eq. 1 label distribution of one unit (real, and adversarial if given) as bars."""
    p = np.asarray(probs, float)
    order = np.argsort(-p)[:top]
    fig, ax = _subplots(figsize=(4, 2.4))
    x = np.arange(len(order))
    ax.bar(x - 0.2, p[order], 0.4, label="real")
    if probs_adv is not None:
        ax.bar(x + 0.2, np.asarray(probs_adv, float)[order], 0.4, label="adversarial")
    ax.set_xticks(x, [names[i] for i in order], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("consis(n, c)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def views_figure(views: Mapping[str, Sequence[object]]) -> Figure:
    """Fig. 3/4: one row per chosen unit, one column per model, each cell the unit's montage.

    Parameters
    ----------
    views : model name -> sequence of :class:`consis_lib.explorer.UnitView`
        (same length for every model).
    """
    names = list(views)
    n = max((len(v) for v in views.values()), default=0)
    if n == 0:
        raise ConsisError("no unit views to draw; build them with explorer.build_views")
    fig, axes = _subplots(n, len(names), figsize=(4.2 * len(names), 2.4 * n), squeeze=False)
    for j, name in enumerate(names):
        for i in range(n):
            ax = axes[i][j]
            ax.axis("off")
            if i >= len(views[name]):
                continue
            v = views[name][i]
            ax.imshow(Image.open(io.BytesIO(v.montage_jpeg)))
            ax.set_title(f"{name} unit {v.unit}: consis {v.consis:.3f} / adv {v.consis_adv:.3f}", fontsize=8)
    fig.suptitle("top: real images with the highest activation; bottom: adversarial (FGSM) images", fontsize=9)
    fig.tight_layout()
    return fig


def targeted_figure(example: Mapping[str, object]) -> Figure:
    """Eq. 4 example: the image, its targeted adversarial version and the perturbation."""
    x, xa = example["x"], example["x_adv"]
    fig, axes = _subplots(1, 3, figsize=(7.5, 2.8))
    diff = (xa - x)
    scale = float(diff.abs().max()) or 1.0
    for ax, img, title in (
        (axes[0], x, f"real: {example['label']}\npredicted {example['pred_before']}"),
        (axes[1], xa, f"Eq. 4 target {example['target']}\npredicted {example['pred_after']}"),
        (axes[2], diff / (2 * scale) + 0.5, f"perturbation (L2 {example['l2']:.2f})\nx{0.5 / scale:.0f} for display"),
    ):
        ax.imshow(_to_uint8(img))
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
    fig, ax = _subplots(figsize=(per_class * thumb / 60 + 1.5, len(rows) * thumb / 60 + 0.5))
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
    fig, axes = _subplots(1 + len(categories), n, figsize=(1.8 * n, 1.8 * (1 + len(categories))), squeeze=False)
    for j in range(n):
        item = probe[j]
        axes[0][j].imshow(_to_uint8(item.image))
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
