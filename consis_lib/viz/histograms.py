"""Histograms of per-unit consistency (Fig. 5, Eq. 3) and a unit's label distribution (Eq. 1)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from consis_lib.book_style import IMAGE_COLORS, model_color, model_label
from consis_lib.errors import ConsisError
from consis_lib.viz.canvas import PAGE_WIDTH, subplots


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
    runs = {k: tuple(_finite_values(v) for v in pair) for k, pair in runs.items()}
    edges = _bin_edges(np.concatenate([v for pair in runs.values() for v in pair]), bins)
    fig, axes = subplots(2, len(runs), figsize=(3.6 * len(runs), 5), squeeze=False, sharex=True)
    for j, (name, (c, ca)) in enumerate(runs.items()):
        for i, (vals, lab) in enumerate(((c, "consis(n)"), (ca, "consis_adv(n)"))):
            ax = axes[i][j]
            ax.hist(vals, bins=edges, color=IMAGE_COLORS["real" if i == 0 else "adversarial"])
            if vals.size:
                ax.axvline(float(np.mean(vals)), color="k", ls="--", lw=1)
            ax.set_title(f"{name}: {lab}", fontsize=9)
    fig.tight_layout()
    return fig


def _finite_values(values: Sequence[float | None]) -> np.ndarray:
    """The finite entries of ``values`` (None and NaN units dropped) as a float array."""
    a = np.asarray([np.nan if v is None else float(v) for v in values], float)
    return a[np.isfinite(a)]


def _bin_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """``bins + 1`` edges shared by every panel, from 0 to the largest value (to 1 when none is positive)."""
    hi = float(values.max()) if values.size else 1.0
    return np.linspace(0.0, hi if hi > 0 else 1.0, bins + 1)


def label_distribution(names: Sequence[str], probs: Sequence[float], probs_adv: Sequence[float] | None = None, top: int = 8) -> Figure:
    """Eq. 1 label distribution of one unit (real, and adversarial if given) as bars."""
    p = np.asarray(probs, float)
    order = np.argsort(-p)[:top]
    fig, ax = subplots(figsize=(4, 2.4))
    x = np.arange(len(order))
    ax.bar(x - 0.2, p[order], 0.4, label="real", color=IMAGE_COLORS["real"])
    if probs_adv is not None:
        ax.bar(x + 0.2, np.asarray(probs_adv, float)[order], 0.4, label="adversarial", color=IMAGE_COLORS["adversarial"])
    ax.set_xticks(x, [names[i] for i in order], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("consis(n, c)")
    ax.legend(fontsize=7)
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
                rows += [(arch, model, images, float(v)) for v in _finite_values(vals)]
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
        images (consis_adv(n)), one colour per model (:data:`consis_lib.book_style.MODEL_COLORS`);
        ``"model"``: one column per model, real vs adversarial in :data:`consis_lib.book_style.IMAGE_COLORS`
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
    edges = _bin_edges(df["value"].to_numpy(), bins)
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
