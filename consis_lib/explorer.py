"""Neuron explorer: the live (kernel) view and the unit views of the figures.

A unit is described by a :class:`UnitView`: its ``consis(n)`` and ``consis_adv(n)``
(Eq. 3), its Eq. 1 label distribution on real and adversarial images, its best
dissection concept, and one small JPEG montage (top real images over top
adversarial images, highlighted by the unit's activation or discrepancy map).

* :func:`live_explorer` / :func:`live_from_context` need a kernel: choose the
  model, sort the unit list by consis, consis_adv or their gap, and render any
  unit on demand (ipywidgets).
* :func:`explorer_views` renders a few chosen units per model (Fig. 3/4).
* The static explorer of the book, over every unit of every model with no
  kernel, is :func:`consis_lib.explorer_static.static_explorer`.

Example
-------
>>> from consis_lib import context, explorer
>>> ctx = context.notebook_context("smoke", "resnet18", "runs")
>>> box = explorer.live_from_context(ctx)  # display(box) in Jupyter
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from consis_lib.errors import ConsisError

SORT_KEYS = ("gap", "consis", "consis_adv")


@dataclass(frozen=True)
class UnitView:
    """Everything the explorer shows for one unit.

    Attributes
    ----------
    unit : channel index in the metric layer.
    consis, consis_adv : Eq. 3 on real and on adversarial (FGSM) images.
    label_names : class names, aligned with ``label_probs``.
    label_probs, label_probs_adv : Eq. 1 distributions ``consis(n, c)`` [C].
    concept, category, iou : best dissection concept (None when unaligned).
    montage_jpeg : JPEG bytes of the top-real / top-adversarial montage.
    """

    unit: int
    consis: float
    consis_adv: float
    montage_jpeg: bytes = b""
    label_names: tuple[str, ...] = ()
    label_probs: tuple[float, ...] = ()
    label_probs_adv: tuple[float, ...] = ()
    concept: str | None = None
    category: str | None = None
    iou: float | None = None
    extra: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def gap(self) -> float:
        """``consis(n) - consis_adv(n)``: how much adversarial images blur the unit."""
        return self.consis - self.consis_adv


def interesting_units(consis: Sequence[float], consis_adv: Sequence[float], n: int = 32) -> list[int]:
    """Pick ``n`` units worth showing: half by largest gap, the rest by highest consis.

    Parameters
    ----------
    consis, consis_adv : per-unit Eq. 3 values [K].
    n : how many units (at most K).

    Returns
    -------
    list of distinct unit indices, largest gap first.

    Example
    -------
    >>> interesting_units([0.5, 0.2, 0.9], [0.1, 0.2, 0.8], n=2)
    [0, 2]
    """
    c = np.asarray([np.nan if v is None else v for v in consis], float)
    ca = np.asarray([np.nan if v is None else v for v in consis_adv], float)
    if c.shape != ca.shape or c.ndim != 1:
        raise ConsisError("consis and consis_adv must be 1-D arrays of the same length; pass per-unit values")
    n = min(n, c.size)
    # undefined units (NaN: no image activates them) come last in both orders
    gap = np.where(np.isfinite(c) & np.isfinite(ca), c - ca, -np.inf)
    c = np.where(np.isfinite(c), c, -np.inf)
    gap_order = [int(i) for i in np.argsort(-gap, kind="stable")]
    chosen = gap_order[: (n + 1) // 2]
    for i in np.argsort(-c, kind="stable"):
        if len(chosen) >= n:
            break
        if int(i) not in chosen:
            chosen.append(int(i))
    return chosen


def unit_consistency(acts: Any, distances: np.ndarray, metric: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit ``consis(n)`` and ``consis_adv(n)`` [K] (Eq. 1-3 at ``metric``'s settings, no bootstrap).

    ``acts`` is an :class:`~consis_lib.activations.Activations` with ``adv_acts``;
    ``A`` (Eq. 2) is built from the WordNet ``distances`` [C, C] at ``metric.sigma``.
    The same per-unit numbers as :func:`consis_lib.consistency.consistency_report`,
    without its confidence intervals and sweeps.
    """
    from consis_lib.consistency import consistency, label_distributions
    from consis_lib.wordnet import correlation_matrix

    A = correlation_matrix(distances, metric.sigma)
    out = []
    for a in (acts.acts, acts.adv_acts):
        P = label_distributions(a, acts.labels, A.shape[0], metric.top_fraction, metric.min_top)
        out.append(np.asarray(consistency(P, A), float))
    return out[0], out[1]


def stats_table(views: Sequence[UnitView]) -> pd.DataFrame:
    """One row per unit: unit, consis, consis_adv, gap, concept, category, iou."""
    return pd.DataFrame(
        [
            dict(unit=v.unit, consis=v.consis, consis_adv=v.consis_adv, gap=v.gap, concept=v.concept, category=v.category, iou=v.iou)
            for v in views
        ]
    )


def sort_units(table: pd.DataFrame, key: str) -> list[int]:
    """Unit indices of ``table`` sorted descending by ``key`` (one of ``SORT_KEYS``)."""
    if key not in SORT_KEYS:
        raise ConsisError(f"unknown sort key {key!r}; use one of {', '.join(SORT_KEYS)}")
    return [int(u) for u in table.sort_values(key, ascending=False, kind="stable")["unit"]]


def _info_html(v: UnitView, model: str, top: int = 5) -> str:
    rows = ""
    if v.label_probs:
        p = np.asarray(v.label_probs, float)
        pa = np.asarray(v.label_probs_adv, float) if v.label_probs_adv else np.full_like(p, np.nan)
        for i in np.argsort(-p, kind="stable")[:top]:
            rows += (
                f"<tr><td>{html.escape(v.label_names[i])}</td><td>{p[i]:.2f}</td>"
                f"<td>{pa[i]:.2f}</td></tr>"
            )
    concept = (
        f"{html.escape(v.concept)} ({html.escape(v.category or '')}, IoU {v.iou:.3f})"
        if v.concept and v.iou is not None
        else "none above the IoU threshold"
    )
    extra = "".join(f"<br>{html.escape(k)}: {html.escape(val)}" for k, val in v.extra)
    return (
        f"<div class='consis-unit' data-unit='{v.unit}'><b>{html.escape(model)} unit {v.unit}</b><br>"
        f"consis(n) = {v.consis:.4f}, consis_adv(n) = {v.consis_adv:.4f}, gap = {v.gap:.4f}<br>"
        f"best dissection concept: {concept}{extra}"
        "<br><small>top row: top real images; bottom row: top adversarial images "
        "(bright = where the unit responds)</small>"
        f"<table><tr><th>class</th><th>real</th><th>adv</th></tr>{rows}</table></div>"
    )


def unit_panel(view: UnitView, model: str = "model"):
    """Widget for one unit: the montage image beside its numbers and label distribution."""
    import ipywidgets as w

    children = []
    if view.montage_jpeg:
        from io import BytesIO

        from PIL import Image

        width, _height = Image.open(BytesIO(view.montage_jpeg)).size
        children.append(w.Image(value=view.montage_jpeg, format="jpeg", layout=w.Layout(width=f"{width}px", min_width=f"{width}px")))
    children.append(w.HTML(_info_html(view, model)))
    return w.HBox(children)


def live_explorer(tables: Mapping[str, pd.DataFrame], render: Callable[[str, int], UnitView]):
    """Kernel-backed explorer: model choice, sortable unit list, on-demand rendering.

    Parameters
    ----------
    tables : model name -> per-unit table with columns unit, consis, consis_adv,
        gap (see :func:`stats_table`; every unit of the layer may be listed).
    render : ``render(model, unit) -> UnitView``; called when a unit is picked
        (results are cached per explorer).

    Returns
    -------
    ipywidgets ``VBox``.
    """
    import ipywidgets as w

    if not tables:
        raise ConsisError("live_explorer needs at least one model table")
    cache: dict[tuple[str, int], UnitView] = {}
    model_dd = w.Dropdown(options=list(tables), description="model")
    sort_dd = w.Dropdown(options=list(SORT_KEYS), description="sort by")
    units = w.Select(rows=12, layout=w.Layout(width="22em"))
    out = w.Output()

    def refresh_list(_change: object = None) -> None:
        table = tables[model_dd.value]
        order = sort_units(table, sort_dd.value)
        row = table.set_index("unit")
        units.options = [
            (f"unit {u}: {sort_dd.value} {float(row.loc[u, sort_dd.value]):.3f}", u) for u in order
        ]

    def show(_change: object = None) -> None:
        if units.value is None:
            return
        key = (model_dd.value, int(units.value))
        if key not in cache:
            cache[key] = render(*key)
        out.clear_output(wait=True)
        with out:
            from IPython.display import display

            display(unit_panel(cache[key], key[0]))

    model_dd.observe(refresh_list, "value")
    sort_dd.observe(refresh_list, "value")
    units.observe(show, "value")
    refresh_list()
    return w.VBox([w.HBox([model_dd, sort_dd]), w.HBox([units, out])])


HIGHLIGHTS = ("activation", "discrepancy")
HIGHLIGHT_TEXT = {
    "discrepancy": "bright regions are the unit's discrepancy map (Zhou et al. 2015): occluding them lowers its activation the most",
    "activation": "bright regions are the unit's activation map upsampled to the image (the fast option; not a discrepancy map)",
}


def build_views(
    ctx: Any,
    name: str,
    units: Sequence[int],
    top_k: int = 4,
    highlight: str = "activation",
    thumb: int = 64,
    fit: str = "pad",
    adversarial: str = "fgsm",
) -> list[UnitView]:
    """Render :class:`UnitView` objects for ``units`` of one model of an arch context.

    Parameters
    ----------
    ctx : :class:`consis_lib.context.ArchContext` (the cached activation table,
        the data set's images by index, the model; dissection results when the
        run's measures exist). Only the shown images are read and mapped.
    name : one of the run's models (``"normal"``, ``"adv"``, ...).
    units : channel indices of the metric layer.
    top_k : images per row (top real, top adversarial by ``a_n``).
    highlight : ``"activation"`` (the unit's map upsampled; fast) or
        ``"discrepancy"`` (occlusion maps, Zhou et al. 2015; slow). The panel names
        the one used.
    thumb : tile size in pixels of the JPEG montage.
    fit : ``"pad"`` or ``"crop"``: how a non-square image becomes a square tile
        (never stretched; :func:`consis_lib.explorer_tiles.square_tile`).
    adversarial : the bottom row: ``"fgsm"`` (the unit's top FGSM images) or
        ``"targeted"`` (its top successful Eq. 4 examples, targets the WordNet-farthest
        class, :meth:`consis_lib.context.ArchContext.targeted`; the paper's Fig. 3/4).
    """
    from consis_lib.activations import fgsm_attack, top_k_per_unit
    from consis_lib.ambiguity import top_activating
    from consis_lib.consistency import label_distributions
    from consis_lib.explorer_tiles import square_tile
    from consis_lib.viz import jpeg_bytes, montage

    if highlight not in HIGHLIGHTS:
        raise ConsisError(f"unknown highlight {highlight!r}; use one of {', '.join(HIGHLIGHTS)}")
    if adversarial not in ("fgsm", "targeted"):
        raise ConsisError(f"unknown adversarial row {adversarial!r}; use 'fgsm' or 'targeted'")
    acts = ctx.activations(name)
    consis, consis_adv = ctx.unit_consistency(name)
    metric = ctx.profile.metric
    names = tuple(ctx.class_names())
    P = label_distributions(acts.acts, acts.labels, len(names), metric.top_fraction, metric.min_top)
    Pa = label_distributions(acts.adv_acts, acts.labels, len(names), metric.top_fraction, metric.min_top)
    concepts = _concepts(ctx, name)
    labels, model, units = ctx.labels("val"), ctx.model(name), list(units)
    real_top = top_k_per_unit(acts.acts[:, units], top_k)[0]
    adv_top = top_k_per_unit(acts.adv_acts[:, units], top_k)[0]
    views = []
    for i, u in enumerate(units):
        xr = ctx.images(real_top[i])
        if adversarial == "targeted":
            examples, targeted_acts = ctx.targeted(name)
            top = top_activating(targeted_acts.acts[:, u], top_k, among=examples.success)
            xa = examples.images(top)
        else:
            ya = labels[adv_top[i]]
            xa = fgsm_attack(ctx.profile.attack.eps)(model, ctx.images(adv_top[i]).to(ctx.device), ya.to(ctx.device)).cpu()
        hr, ha = (_highlights(ctx, model, x, u, highlight) for x in (xr, xa))
        rows = [[_as_image(square_tile(x, h, thumb, fit)) for x, h in zip(xs, hs)] for xs, hs in ((xr, hr), (xa, ha))]
        concept = concepts.get(int(u))
        views.append(
            UnitView(
                unit=int(u), consis=float(consis[u]), consis_adv=float(consis_adv[u]), montage_jpeg=jpeg_bytes(montage(rows, thumb=thumb)),
                label_names=names, label_probs=tuple(float(v) for v in P[u]), label_probs_adv=tuple(float(v) for v in Pa[u]),
                concept=concept[0] if concept else None, category=concept[1] if concept else None,
                iou=concept[2] if concept else None, extra=(("highlight", f"{highlight} map"),),
            )
        )
    return views


def _concepts(ctx: Any, name: str) -> dict[int, tuple[str, str, float]]:
    """Unit -> best dissection concept on real images above the IoU threshold (empty without measures)."""
    try:
        dis = ctx.dissection_summary()
    except ConsisError:
        return {}
    out = {}
    for u, concept, category, iou in dis.get(name, {}).get("real", {}).get("units", []):
        if iou is not None and concept is not None and float(iou) > float(dis["iou_threshold"]):
            out[int(u)] = (str(concept), str(category), float(iou))
    return out


def _highlights(ctx: Any, model: Any, x: Any, unit: int, highlight: str) -> list[Any]:
    """Unit ``unit``'s map on each image of ``x``: its activation map or its discrepancy map."""
    if highlight == "activation":
        from consis_lib.activations import unit_map

        return list(unit_map(model, ctx.layer, x, [unit] * len(x), ctx.device))
    from consis_lib.discrepancy import discrepancy_maps

    return list(discrepancy_maps(model, ctx.layer, x, [unit], ctx.profile.discrepancy)[:, 0])


def _as_image(tile: np.ndarray) -> Any:
    """uint8 [S, S, 3] -> float tensor [3, S, S] in [0, 1] (what :func:`consis_lib.viz.montage` takes)."""
    import torch

    return torch.from_numpy(np.array(tile)).permute(2, 0, 1).float() / 255.0


def _models(models: Sequence[str] | None) -> tuple[str, ...]:
    from consis_lib.results import MODELS

    return tuple(models) if models is not None else tuple(MODELS)


def explorer_views(
    ctx: Any,
    n_units: int = 32,
    top_k: int = 4,
    highlight: str = "activation",
    models: Sequence[str] | None = None,
    adversarial: str = "fgsm",
) -> dict[str, list[UnitView]]:
    """The ~``n_units`` most interesting units of each model (see :func:`interesting_units`).

    ``models`` defaults to every model of the run (:data:`consis_lib.results.MODELS`);
    ``adversarial`` chooses the bottom row (:func:`build_views`).
    """
    out = {}
    for name in _models(models):
        c, ca = ctx.unit_consistency(name)
        units = interesting_units(c, ca, n_units)
        out[name] = build_views(ctx, name, units, top_k=top_k, highlight=highlight, adversarial=adversarial)
    return out


def live_from_context(ctx: Any, top_k: int = 4, highlight: str = "activation", models: Sequence[str] | None = None) -> Any:
    """:func:`live_explorer` over every unit of every model of an arch context (needs a kernel)."""
    tables = {}
    for name in _models(models):
        c, ca = ctx.unit_consistency(name)
        t = pd.DataFrame({"unit": range(len(c)), "consis": c, "consis_adv": ca})
        t["gap"] = t["consis"] - t["consis_adv"]
        tables[name] = t.fillna(-1.0)
    return live_explorer(tables, lambda name, u: build_views(ctx, name, [u], top_k=top_k, highlight=highlight)[0])
