"""The per-layer consistency report: ``consis``/``consis_adv`` per unit (Eq. 1-3), layer means with CIs, sweeps, the common scale.

The parts it puts together: Eq. 1 and Eq. 3 in :mod:`consis_lib.consistency_estimators`,
the common scale (unbiased form of Eq. 3, permutation baseline, lift) in
:mod:`consis_lib.consistency_stats`, the bootstrap over images in
:mod:`consis_lib.consistency_bootstrap` and the report's data types in
:mod:`consis_lib.consistency_records`. The names the rest of the library uses are
re-exported here (:data:`__all__`).

``consis_adv(n)`` (DESIGN section 2) is Eq. 1-3 on the adversarial counterparts,
labelled with their source images' labels. Controls reported beside it:
``consis_adv`` over the successful adversarial images only (ranked among those
alone) and on a shared adversarial set. Only precomputed activations are read, so
a shared set needs no special path: run the other model on the normal model's FGSM
images (same order) and pass ``Activations(acts=res.acts, labels=res.labels,
preds=res.preds, adv_acts=shared.acts, adv_preds=shared.preds)``; its success mask
then marks the shared images that fool this model.

Units that fewer than ``min_activating`` images activate are undefined (NaN);
layer means skip them and the report lists them.

Example
-------
>>> rep = consistency_report(res, distance_matrix(wnids), profile.metric)
>>> rep.mean.mean, rep.mean_adv.mean
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from consis_lib.config import MetricConfig
from consis_lib.consistency_bootstrap import (
    ImageSet,
    bootstrap_ci,
    bootstrap_common_scale,
    bootstrap_layer_means,
    image_set_stats,
    layer_mean_ci,
    summarise_side,
)
from consis_lib.consistency_estimators import (
    _check_inputs,
    _rank,
    _Ranked,
    _weighted_distributions,
    consistency,
    label_distributions,
    num_top,
)
from consis_lib.consistency_records import (
    SIDE_SUFFIX,
    ConsistencyReport,
    MeanCI,
    SideStats,
    SweepRow,
    column_name,
    finite_or_none,
)
from consis_lib.consistency_stats import DEFAULT_MIN_ACTIVATING, UNIT_STATS, resolve_min_activating
from consis_lib.errors import ConsisError

__all__ = [
    "DEFAULT_MIN_ACTIVATING",
    "SIDE_SUFFIX",
    "UNIT_STATS",
    "ConsistencyReport",
    "MeanCI",
    "SideStats",
    "SweepRow",
    "column_name",
    "consistency",
    "consistency_report",
    "label_distributions",
    "num_top",
]

log = logging.getLogger(__name__)


def success_mask(activations: Any, labels: torch.Tensor, adv_success: Any) -> torch.Tensor | None:
    """[N] bool: the adversarial images that fool the model.

    ``adv_success`` when given, else ``activations.adv_preds != labels`` (for a
    shared adversarial set: the shared images that fool the model whose
    activations these are); ``None`` without adversarial activations or predictions.

    Example
    -------
    >>> success_mask(res, res.labels, None).float().mean()   # attack success rate
    """
    if getattr(activations, "adv_acts", None) is None:
        if adv_success is not None:
            raise ConsisError("adv_success was given but the activations hold no adv_acts; pass adversarial activations")
        return None
    if adv_success is None:
        preds = getattr(activations, "adv_preds", None)
        if preds is None:
            return None
        preds = torch.as_tensor(preds).reshape(-1).cpu()
        if preds.numel() != labels.numel():
            raise ConsisError(f"{preds.numel()} adv_preds but {labels.numel()} labels; pass matching tensors")
        return preds != labels
    mask = torch.as_tensor(adv_success).reshape(-1).cpu()
    if mask.dtype != torch.bool or mask.numel() != labels.numel():
        raise ConsisError(
            f"adv_success must be a bool mask of {labels.numel()} images, got {mask.dtype} of {mask.numel()}; "
            "pass adv_preds != labels"
        )
    return mask


def success_rate(mask: torch.Tensor | None) -> float | None:
    """Attack success rate: the fraction of adversarial images in ``mask`` (None without one)."""
    return None if mask is None or mask.numel() == 0 else float(mask.float().mean())


def _check_distances(distances: np.ndarray, num_classes: int | None) -> tuple[np.ndarray, int]:
    """WordNet distances ``[C, C]`` as float64 and ``C``, checked to be finite and to match the classes."""
    dist = np.asarray(distances, dtype=np.float64)
    C = int(num_classes if num_classes is not None else dist.shape[0])
    if dist.shape != (C, C):
        raise ConsisError(f"distances have shape {dist.shape} but there are {C} classes; compute them for the same classes")
    if not np.isfinite(dist).all():
        raise ConsisError("distances contain non-finite entries; every class pair needs a WordNet path")
    return dist, C


def _activations_by_side(activations: Any, num_classes: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Validated ``[N, K]`` activations of the clean (``"real"``) and, where present, the
    adversarial (``"adv"``) images, and the ``[N]`` labels of both."""
    acts, labels = _check_inputs(activations.acts, activations.labels, num_classes)
    sides = {"real": acts}
    if getattr(activations, "adv_acts", None) is not None:
        sides["adv"], _ = _check_inputs(activations.adv_acts, activations.labels, num_classes)
    return sides, labels


def _sweep_points(
    ranked: dict[str, _Ranked], m_of: dict[float, int], A: dict[float, torch.Tensor], min_activating: int
) -> dict[tuple[str, float, float], torch.Tensor]:
    """Eq. 3 per unit, ``[K]``, for every image set, sigma and top fraction: ``{(side, sigma, fraction): consis}``."""
    C = next(iter(A.values())).shape[0]
    point = {}
    for side, rk in ranked.items():
        Ps = _weighted_distributions(rk, None, sorted(set(m_of.values())), C, min_activating)
        for frac, m in m_of.items():
            for s, A_s in A.items():
                point[(side, s, frac)] = consistency(Ps[m][0][0], A_s)
    return point


def _image_sets(
    ranked: dict[str, _Ranked],
    adv_acts: torch.Tensor | None,
    labels: torch.Tensor,
    mask: torch.Tensor | None,
    cfg: MetricConfig,
    floor: float,
) -> dict[str, ImageSet]:
    """Image sets of the common scale: all clean, all adversarial, successful adversarial."""
    m = num_top(labels.numel(), cfg.top_fraction, cfg.min_top)
    sets = {name: ImageSet(rk, labels, m) for name, rk in ranked.items()}
    if mask is None or adv_acts is None:
        return sets
    index = mask.nonzero().flatten()
    if index.numel() < cfg.min_top:
        log.warning(
            "only %d successful adversarial images (min_top=%d): consis_adv over successful images is not reported",
            index.numel(),
            cfg.min_top,
        )
        return sets
    sub = labels[index]
    m_s = num_top(index.numel(), cfg.top_fraction, cfg.min_top)
    sets["adv_success"] = ImageSet(_rank(adv_acts[index], sub, floor), sub, m_s, index)
    return sets


def _common_scale(
    image_sets: dict[str, ImageSet],
    A: torch.Tensor,
    replicates: int,
    seed: int,
    num_images: int,
    min_activating: int,
    confidence: float,
) -> tuple[dict[str, SideStats], dict[str, dict[str, np.ndarray]]]:
    """:class:`SideStats` of every image set and the bootstrap replicates of its layer means."""
    reps = bootstrap_common_scale(image_sets, A, replicates, seed, num_images, min_activating)
    stats = {}
    for name, image_set in image_sets.items():
        columns, n = image_set_stats(image_set, A, min_activating)
        point = {stat: values[0] for stat, values in columns.items()} | {"n_activating": n[0]}
        stats[name] = summarise_side(point, reps[name], image_set.labels.numel(), image_set.m, confidence)
    return stats, reps


def consistency_report(
    activations: Any,
    distances: np.ndarray,
    cfg: MetricConfig = MetricConfig(),
    num_classes: int | None = None,
    seed: int = 0,
    confidence: float = 0.95,
    floor: float = 0.0,
    adv_success: torch.Tensor | np.ndarray | None = None,
    min_activating: int | None = None,
) -> ConsistencyReport:
    """``consis`` and ``consis_adv`` per unit (Eq. 1-3), layer means with bootstrap CIs,
    sweeps, and the common scale (unbiased form, permutation baselines, lift).

    Parameters
    ----------
    activations : :class:`consis_lib.activations.Activations` or any object with
        ``acts [N, K]``, ``labels [N]`` and optionally ``adv_acts [N, K]``,
        ``adv_preds [N]``, ``preds [N]`` (a shared adversarial set: module docstring).
    distances : [C, C] WordNet distances (:func:`consis_lib.wordnet.distance_matrix`);
        ``A`` (Eq. 2) is built for ``cfg.sigma`` and each sweep sigma.
    cfg : MetricConfig (top_fraction, min_top, sigma, sigmas, top_fractions, bootstrap).
    num_classes : C (default: ``distances.shape[0]``).
    seed : seeds the bootstrap resampling.
    confidence : CI level of the bootstrap over images, whose percentile interval
        is shifted by the bootstrap bias estimate (:func:`consis_lib.consistency_bootstrap.bootstrap_ci`).
    floor : see :func:`label_distributions`.
    adv_success : [N] bool, the adversarial images that count as successful
        attacks; default ``adv_preds != labels``. ``consis_adv`` over successful
        images ranks each unit's activating images among these images only
        (``m`` from their number); it is left out, with a warning, when fewer than
        ``min_top`` succeed.
    min_activating : a unit with fewer activating images is undefined (NaN) in every
        column; default ``cfg.min_activating`` where the config has that field,
        else :data:`DEFAULT_MIN_ACTIVATING`. Must lie in ``[2, cfg.min_top]``.

    Returns
    -------
    ConsistencyReport; the sweep covers every (sigma, top_fraction) pair of
    ``cfg.sigmas x cfg.top_fractions`` (plus the defaults), real and adversarial,
    with ``cfg.sweep_bootstrap`` replicates per point (``cfg.bootstrap`` for the
    default point, whose row equals ``mean``/``mean_adv``). ``stats`` holds the
    common scale at the default point with ``cfg.bootstrap`` replicates.

    Example
    -------
    >>> res = unit_activations(model, loader, "layer4", attack=fgsm_attack(8 / 255))
    >>> rep = consistency_report(res, distance_matrix(wnids), profile.metric)
    >>> rep.mean.mean, rep.mean_adv.mean, rep.stats["adv_success"].means["lift_u"].mean
    """
    from consis_lib.wordnet import correlation_matrix

    dist, C = _check_distances(distances, num_classes)
    if cfg.activation != getattr(activations, "reduce", cfg.activation):
        raise ConsisError(
            f"activations were reduced with {activations.reduce!r} but MetricConfig.activation={cfg.activation!r}; recompute them"
        )
    min_act = resolve_min_activating(min_activating, cfg)
    sides, labels = _activations_by_side(activations, C)
    mask = success_mask(activations, labels, adv_success)
    N, K = sides["real"].shape
    sigmas = sorted({float(s) for s in (*cfg.sigmas, cfg.sigma)})
    fractions = sorted({float(f) for f in (*cfg.top_fractions, cfg.top_fraction)})
    A = {s: torch.as_tensor(correlation_matrix(dist, s), dtype=torch.float64) for s in sigmas}
    R = int(cfg.bootstrap)
    ranked = {k: _rank(v, labels, floor) for k, v in sides.items()}
    m_of = {frac: num_top(N, frac, cfg.min_top) for frac in fractions}
    point = _sweep_points(ranked, m_of, A, min_act)
    reps = bootstrap_layer_means(ranked, m_of, A, min(R, int(cfg.sweep_bootstrap)), seed + 1, min_act)
    # the default point: every column of the common scale on the same resamples (more replicates)
    image_sets = _image_sets(ranked, sides.get("adv"), labels, mask, cfg, floor)
    stats, scale_reps = _common_scale(image_sets, A[cfg.sigma], R, seed, N, min_act, confidence)
    for side in sides:
        reps[(side, cfg.sigma, cfg.top_fraction)] = scale_reps[side]["consis"]
    rep = _assemble(activations, cfg, point, reps, stats, confidence, N, K, C, R)
    rep.min_activating = min_act
    rep.attack_success_rate = success_rate(mask)
    return rep


def _assemble(
    activations: Any,
    cfg: MetricConfig,
    point: dict[tuple[str, float, float], torch.Tensor],
    reps: dict[tuple[str, float, float], np.ndarray],
    stats: dict[str, SideStats],
    confidence: float,
    N: int,
    K: int,
    C: int,
    R: int,
) -> ConsistencyReport:
    """The report from the sweep's point values and replicates and the common scale."""
    key = (cfg.sigma, cfg.top_fraction)
    sides = sorted({k[0] for k in point}, key=list(SIDE_SUFFIX).index)

    def summary(side: str, s: float, frac: float) -> MeanCI:
        return layer_mean_ci(point[(side, s, frac)], reps[(side, s, frac)], confidence)

    sweep = [
        SweepRow(s, f, side, *(lambda ci: (ci.mean, ci.low, ci.high))(summary(side, s, f)))
        for side in sides
        for s in sorted({k[1] for k in point})
        for f in sorted({k[2] for k in point})
    ]
    real = point[("real", *key)]
    rep = ConsistencyReport(
        layer=getattr(activations, "layer", ""),
        sigma=cfg.sigma,
        top_fraction=cfg.top_fraction,
        min_top=cfg.min_top,
        num_images=N,
        num_top=num_top(N, cfg.top_fraction, cfg.min_top),
        num_classes=C,
        num_units=K,
        bootstrap=R,
        confidence=confidence,
        consis=real.tolist(),
        mean=summary("real", *key),
        undefined_units=torch.isnan(real).nonzero().flatten().tolist(),
        sweep=sweep,
        sweep_bootstrap=min(R, int(cfg.sweep_bootstrap)),
        accuracy=finite_or_none(activations.accuracy) if hasattr(activations, "preds") else None,
        stats=stats,
    )
    if "adv" in sides:
        adv = point[("adv", *key)]
        rep.consis_adv = adv.tolist()
        rep.mean_adv = summary("adv", *key)
        rep.undefined_units_adv = torch.isnan(adv).nonzero().flatten().tolist()
        diff_reps = reps[("real", *key)] - reps[("adv", *key)]
        rep.diff = bootstrap_ci(rep.mean.mean - rep.mean_adv.mean, diff_reps, confidence, min(rep.mean.units, rep.mean_adv.units))
        acc = getattr(activations, "adv_accuracy", None)
        rep.adv_accuracy = finite_or_none(acc) if acc is not None else None
    return rep
