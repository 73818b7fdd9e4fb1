"""Line and bar charts of measures: learning curves, sensitivity and beta (Eq. 6) sweeps, accuracy vs FGSM eps, Table 2 bars."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from consis_lib.book_style import MODEL_COLORS, model_color, model_label
from consis_lib.errors import ConsisError
from consis_lib.viz.canvas import PAGE_WIDTH, panels, subplots


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
    fig, axes = panels(len(present))
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
    fig, axes = panels(len(ys))
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
    fig, ax = subplots(figsize=(4.5, 3))
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
    fig, ax = subplots(figsize=(PAGE_WIDTH, 3.2))
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
    fig, axes = panels(len(_SWEEP_PANELS), height=2.6, sharex=True)
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
