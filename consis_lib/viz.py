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
from matplotlib.patches import Patch
from PIL import Image

from consis_lib.errors import ConsisError
from consis_lib.results import MODEL_LABELS

PAGE_WIDTH = 8.0
"""Width in inches of a figure that spans the book's text column (about 800 px)."""

MODEL_COLORS: Mapping[str, str] = {"normal": "#0173B2", "at": "#DE8F05", "adv": "#029E73"}
"""One colour per model kind across the book (seaborn's colour-blind palette):
``normal``, ``at`` (AT, beta = 0) and ``adv`` (Eq. 6); labels in ``results.MODEL_LABELS``."""

IMAGE_COLORS: Mapping[str, str] = {"real": "#4D4D4D", "adversarial": "#D55E00"}
"""Real images and their adversarial counterparts, wherever both are drawn."""


def model_kind(name: str) -> str | None:
    """The model kind (``normal``/``at``/``adv``) a run name or label denotes, if any.

    Accepts the kinds, their labels (``"Eq. 6"``, ``"AT (beta = 0)"``) and Fig. 5
    names (``"ResNet-18-Adv"``). Example: ``model_kind("VGG-16-Adv") == "adv"``.
    """
    name = str(name)
    if name in MODEL_COLORS:
        return name
    by_label = {v: k for k, v in MODEL_LABELS.items()}
    if name in by_label:
        return by_label[name]
    low = name.lower()
    return "adv" if low.endswith("-adv") else ("at" if low.endswith("-at") else None)


def model_color(name: str) -> str | None:
    """The book's colour of a model (see :func:`model_kind`); None for other names."""
    kind = model_kind(name)
    return MODEL_COLORS[kind] if kind else None


def model_label(name: str) -> str:
    """The book's label of a model kind (``"adv"`` -> ``"Eq. 6"``); other names unchanged."""
    return MODEL_LABELS.get(str(name), str(name))


def _subplots(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (4, 3), **kw: object) -> tuple[Figure, object]:
    """A new Figure with subplots, outside pyplot's global state (no figure is leaked
    or shown twice in notebooks; Jupyter renders the returned Figure)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kw)


def _panels(n: int, ncols: int = 2, height: float = 2.8, **kw: object) -> tuple[Figure, list]:
    """``n`` panels in rows of ``ncols`` at page width (unused grid cells removed)."""
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig = Figure(figsize=(PAGE_WIDTH, height * nrows), layout="constrained")
    axes = list(fig.subplots(nrows, ncols, squeeze=False, **kw).ravel())
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, axes[:n]


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
    fig, axes = _panels(len(present))
    for ax, key in zip(axes, present):
        for name, rows in logs.items():
            pts = [(r.get("epoch", r.get("step", i)), r[key]) for i, r in enumerate(rows) if key in r]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o", label=model_label(name), color=model_color(name))
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend(fontsize=8)
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
            ax.hist(vals, bins=edges, color=IMAGE_COLORS["real" if i == 0 else "adversarial"])
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
    fig, axes = _panels(len(ys))
    for ax, y in zip(axes, ys):
        for name, grp in table.groupby(hue, sort=False):
            grp = grp.sort_values(x)
            ax.plot(grp[x], grp[y], marker="o", label=model_label(name), color=model_color(name))
        ax.set_xlabel(x)
        ax.set_title(f"mean {y}")
        if x == "sigma":
            ax.set_xscale("log", base=2)
        ax.legend(fontsize=8)
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
        ax.plot([e * 255 for e, _ in pts], [a for _, a in pts], marker="o", label=model_label(name), color=model_color(name))
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
    fig, ax = _subplots(figsize=(PAGE_WIDTH, 3.2))
    width = 0.8 / max(len(df), 1)
    for i, (_, row) in enumerate(df.iterrows()):
        label = " ".join(model_label(row[k]) if k == "model" else str(row[k]) for k in keys)
        adv_images = str(row.get("images", "")) == "adversarial"
        ax.bar(
            np.arange(len(cats)) + i * width, [float(row[c]) for c in cats], width, label=label,
            color=model_color(row.get("model", "")), hatch="//" if adv_images else None, edgecolor="white" if adv_images else None,
        )
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


def label_distribution(names: Sequence[str], probs: Sequence[float], probs_adv: Sequence[float] | None = None, top: int = 8) -> Figure:
    """Eq. 1 label distribution of one unit (real, and adversarial if given) as bars."""
    p = np.asarray(probs, float)
    order = np.argsort(-p)[:top]
    fig, ax = _subplots(figsize=(4, 2.4))
    x = np.arange(len(order))
    ax.bar(x - 0.2, p[order], 0.4, label="real", color=IMAGE_COLORS["real"])
    if probs_adv is not None:
        ax.bar(x + 0.2, np.asarray(probs_adv, float)[order], 0.4, label="adversarial", color=IMAGE_COLORS["adversarial"])
    ax.set_xticks(x, [names[i] for i in order], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("consis(n, c)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


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
    fig, axes = _subplots(n, len(names), figsize=(width, width / len(names) * 0.6 * n + 0.4), squeeze=False)
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


def _long_consis(data: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]]) -> pd.DataFrame:
    """Fig. 5 inputs as a long frame: arch, model, images, value (finite values only)."""
    rows = []
    for arch, models in data.items():
        for model, pair in models.items():
            if len(pair) != 2:
                raise ConsisError(f"{arch}/{model}: pass (consis, consis_adv) per model, got {len(pair)} arrays")
            for images, vals in zip(("real", "adversarial"), pair):
                rows += [(arch, model, images, float(v)) for v in _finite(vals)]
    return pd.DataFrame(rows, columns=["arch", "model", "images", "value"])


def consis_facets(
    data: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
    by: str = "images",
    bins: int = 20,
) -> Figure:
    """Fig. 5 as a faceted figure: one row per architecture, shared axes.

    Parameters
    ----------
    data : arch label -> {model kind (``normal``, ``at``, ``adv``) -> (consis [K],
        consis_adv [K])}; 2 or 3 models per architecture (None/NaN units are dropped).
    by : ``"images"``: two columns, real images (consis(n), Eq. 3) and adversarial
        images (consis_adv(n)), one colour per model (:data:`MODEL_COLORS`);
        ``"model"``: one column per model, real vs adversarial in :data:`IMAGE_COLORS`
        (the paper's Fig. 5 layout, where the shift to the left shows).
    bins : histogram bins (edges shared by every panel).

    Returns
    -------
    Figure of len(data) x (2 or number of models) axes, page width, one legend;
    each panel shows the % of units per bin and a dashed line at each mean.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> fig = consis_facets({"ResNet-18": {"normal": (rng.random(32), rng.random(32) / 2),
    ...                                    "adv": (rng.random(32), rng.random(32))}})
    >>> len(fig.axes)
    2
    """
    import seaborn as sns

    if by not in ("images", "model"):
        raise ConsisError(f"by must be 'images' or 'model', not {by!r}")
    df = _long_consis(data)
    if df.empty:
        raise ConsisError("no consistency values to plot; run the 03_consistency notebook first")
    models = list(dict.fromkeys(df["model"]))
    cols, hue = (["real", "adversarial"], "model") if by == "images" else (models, "images")
    col_key = "images" if by == "images" else "model"
    palette = {m: model_color(m) or f"C{i}" for i, m in enumerate(models)} if hue == "model" else dict(IMAGE_COLORS)
    hi = float(df["value"].max())
    edges = np.linspace(0.0, hi if hi > 0 else 1.0, bins + 1)
    archs = list(data)
    fig = Figure(figsize=(PAGE_WIDTH, 2.2 * len(archs) + 0.8), layout="constrained")
    axes = fig.subplots(len(archs), len(cols), sharex=True, sharey=True, squeeze=False)
    for i, arch in enumerate(archs):
        for j, col in enumerate(cols):
            ax, sub = axes[i][j], df[(df["arch"] == arch) & (df[col_key] == col)]
            if not sub.empty:
                sns.histplot(data=sub, x="value", hue=hue, hue_order=list(palette), palette=palette, bins=edges, stat="percent",
                             common_norm=False, element="step", alpha=0.25, legend=False, ax=ax)
            for name, grp in sub.groupby(hue, sort=False):
                ax.axvline(float(grp["value"].mean()), color=palette[name], ls="--", lw=1.2)
            ax.set_title(_facet_title(by, col, arch, i == 0), fontsize=9)
            ax.set_ylabel(f"{arch}\n% of units" if j == 0 else "")
            ax.set_xlabel("consistency level (Eq. 3)" if i == len(archs) - 1 else "")
    handles = [Patch(facecolor=c, alpha=0.6, label=model_label(k) if hue == "model" else f"{k} images") for k, c in palette.items()]
    fig.legend(handles=handles, loc="outside upper center", ncol=len(handles), frameon=False, fontsize=9)
    return fig


def _facet_title(by: str, col: str, arch: str, top: bool) -> str:
    if by == "images":
        return ("real images: consis(n)" if col == "real" else "adversarial images: consis_adv(n)") if top else ""
    return f"{arch}, {model_label(col)}"


_SWEEP_PANELS = (
    ("consis_adv", "mean consis_adv(n)"),
    ("consis", "mean consis(n)"),
    ("clean_acc", "clean accuracy"),
    ("fgsm_acc", "FGSM accuracy"),
)


def beta_sweep(table: pd.DataFrame, default_beta: float | None = None) -> Figure:
    """consis_adv, consis, clean and FGSM accuracy against the weight beta of Eq. 6.

    Parameters
    ----------
    table : one row per trained model, columns ``beta``, ``seed``, ``consis``,
        ``consis_adv`` (layer means) and ``clean_acc``, ``fgsm_acc`` (fractions).
    default_beta : the profile's beta; its points take the Eq. 6 colour, beta = 0
        (the AT control) the AT colour, other betas grey.

    Returns
    -------
    Figure with four panels (2 x 2, shared beta axis, betas evenly spaced): every
    seed as a point, the mean over seeds as a line.

    Example
    -------
    >>> t = pd.DataFrame({"beta": [0, 0.01], "seed": [0, 0], "consis": [0.5, 0.5], "consis_adv": [0.3, 0.4],
    ...                   "clean_acc": [0.8, 0.8], "fgsm_acc": [0.3, 0.35]})
    >>> len(beta_sweep(t, default_beta=0.01).axes)
    4
    """
    import seaborn as sns
    from matplotlib.ticker import PercentFormatter

    missing = [c for c in ("beta", "seed", *(c for c, _ in _SWEEP_PANELS)) if c not in table.columns]
    if missing:
        raise ConsisError(f"the beta sweep table lacks columns {missing}; pass one row per model with beta, seed and the four measures")
    if table.empty:
        raise ConsisError("the beta sweep table has no rows; train the sweep's models first")
    df = table.assign(beta_label=[f"{float(b):g}" for b in table["beta"]])
    order = [f"{b:g}" for b in sorted({float(b) for b in table["beta"]})]
    palette = {lab: _beta_color(float(lab), default_beta) for lab in order}
    fig, axes = _panels(len(_SWEEP_PANELS), height=2.6, sharex=True)
    for ax, (col, title) in zip(axes, _SWEEP_PANELS):
        sns.stripplot(data=df, x="beta_label", y=col, order=order, hue="beta_label", hue_order=order, palette=palette,
                      jitter=0.08, size=5, legend=False, ax=ax)
        sns.pointplot(data=df, x="beta_label", y=col, order=order, estimator="mean", errorbar=None, color="0.2",
                      markers="_", linestyles="-", ax=ax)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("beta (Eq. 6)")
        ax.set_ylabel("")
        if col.endswith("_acc"):
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    return fig


def _beta_color(beta: float, default_beta: float | None) -> str:
    if beta == 0:
        return MODEL_COLORS["at"]
    if default_beta is not None and np.isclose(beta, default_beta):
        return MODEL_COLORS["adv"]
    return "0.55"
