"""Neuron consistency: Eq. 1-3 of Dong et al., ``consis_adv`` and bootstrap CIs.

Definitions (DESIGN section 2)
------------------------------
* An image ``x`` *activates* unit ``n`` when it is among the top ``top_fraction``
  of the evaluated images by ``a_n`` (never fewer than ``min_top`` images) **and**
  ``a_n(x) > floor`` (default 0: after a ReLU an image with zero activation does
  not activate the unit). Ranking is a stable descending sort: among equal
  activations the image with the lower index comes first.
* Eq. 1: ``consis(n, c) = Pr(label(x) = c | x activates n)``, the normalised label
  histogram of the activating images (row ``n`` of ``P``, shape ``[K, C]``).
* Eq. 3: ``consis(n) = p^T A p`` with ``A`` from Eq. 2
  (:func:`consis_lib.wordnet.correlation_matrix`); vectorised as ``diag(P A P^T)``.
* ``consis_adv(n)``: the same on the adversarial counterparts, labelled with their
  source images' labels. Controls (DESIGN section 2): ``consis_adv`` over the
  successful adversarial images only (ranked among those alone) and on a shared
  adversarial set (see :func:`consistency_report`).
* A common scale (:mod:`consis_lib.consistency_stats`): the unbiased U-statistic
  form of Eq. 3, the permutation baseline of both forms and the lift over it.

Degenerate input, documented handling: a unit that fewer than ``min_activating``
images activate (every activation ``<= floor`` for a dead ReLU unit; default
:data:`DEFAULT_MIN_ACTIVATING` in the report, 1 in :func:`label_distributions`)
has an all-NaN row in ``P`` and ``consis = NaN``; layer means skip such units and
the report lists them as undefined. NaN
activations, labels outside ``[0, C)`` and fewer images than ``min_top`` raise
:class:`ConsisError`.

Example
-------
>>> P = label_distributions(acts, labels, num_classes=10, top_fraction=0.01, min_top=20)
>>> consistency(P, A).shape        # [K]
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from consis_lib.config import MetricConfig
from consis_lib.consistency_stats import (  # the report's data types are re-exported here
    DEFAULT_MIN_ACTIVATING,
    SIDE_SUFFIX,
    UNIT_STATS,
    ConsistencyReport,
    MeanCI,
    SideStats,
    SweepRow,
    bootstrap_ci,
    chance_corrected,
    check_correlation,
    column_name,
    finite_or_none,
    label_counts,
    nanmean_units,
    quadratic_form,
    resolve_min_activating,
    success_mask,
    success_rate,
    summarise_side,
)
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

# Elements per bootstrap chunk ([replicates, units, ranked images]); bounds memory.
_CHUNK_ELEMENTS = 4_000_000


def num_top(num_images: int, top_fraction: float, min_top: int) -> int:
    """Number ``m`` of top-ranked images per unit: ``max(min_top, ceil(top_fraction * N))``.

    Raises :class:`ConsisError` when ``N < min_top`` (too few images to rank).

    Example
    -------
    >>> num_top(2400, 0.01, 20)
    24
    >>> num_top(100, 0.01, 20)
    20
    """
    if not 0.0 < top_fraction <= 1.0:
        raise ConsisError(f"top_fraction={top_fraction} must be in (0, 1]; fix MetricConfig.top_fraction")
    if min_top < 1:
        raise ConsisError(f"min_top={min_top} must be >= 1; fix MetricConfig.min_top")
    if num_images < min_top:
        raise ConsisError(
            f"only {num_images} images to rank but min_top={min_top}; evaluate more images or lower MetricConfig.min_top"
        )
    # round() guards against 0.01 * 2400 = 24.000000000000004 becoming 25
    return max(min_top, math.ceil(round(top_fraction * num_images, 9)))


def _check_inputs(acts: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    acts = torch.as_tensor(acts)
    labels = torch.as_tensor(labels).long().reshape(-1)
    if acts.dim() != 2:
        raise ConsisError(f"activations must be [N, K], got shape {tuple(acts.shape)}; reduce maps with reduce_maps()")
    if acts.shape[0] != labels.shape[0]:
        raise ConsisError(f"{acts.shape[0]} activation rows but {labels.shape[0]} labels; pass matching tensors")
    if acts.shape[0] == 0 or acts.shape[1] == 0:
        raise ConsisError(f"empty activation table {tuple(acts.shape)}; the loader yielded no images or the layer no units")
    nan_units = torch.isnan(acts).any(0).nonzero().flatten().tolist()
    if nan_units:
        raise ConsisError(
            f"activations contain NaN for units {nan_units[:10]}; check the model weights and input images"
        )
    if num_classes < 1:
        raise ConsisError(f"num_classes={num_classes} must be >= 1")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ConsisError(
            f"labels span [{int(labels.min())}, {int(labels.max())}] outside [0, {num_classes}); pass the right num_classes"
        )
    return acts.float().cpu(), labels.cpu()


@dataclass(frozen=True)
class _Ranked:
    """Per-unit descending ranking shared by the point estimate and all replicates."""

    order: torch.Tensor  # [K, N] image indices, best first (stable)
    labels: torch.Tensor  # [K, N] labels in that order
    num_valid: torch.Tensor  # [K] images with a_n > floor (a prefix of the ranking)


def _rank(acts: torch.Tensor, labels: torch.Tensor, floor: float) -> _Ranked:
    vals, order = torch.sort(acts.t().contiguous(), dim=1, descending=True, stable=True)
    return _Ranked(order=order, labels=labels[order], num_valid=(vals > floor).sum(1))


def _weighted_distributions(
    ranked: _Ranked, weights: torch.Tensor | None, ms: Sequence[int], num_classes: int, min_activating: int = 1
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Eq. 1 for ``B`` weighted image sets and several top sizes ``m`` at once.

    ``weights [B, N]`` holds how often each image occurs in a (bootstrap) resample;
    ``None`` means every image once. Returns ``{m: (P [B, K, C], n [B, K])}`` with
    ``n`` the size of each activating set (copies counted); float64 without
    weights, float32 for replicates; NaN rows of ``P`` for units with
    ``n < min_activating`` (at least 1). Only the first ``L`` ranked positions are
    read, ``L`` growing until every unit has gathered ``max(ms)`` images or run out
    of images above the floor, so the cost is ``O(B * K * m)``, not ``O(B * K * N)``.
    """
    K, N = ranked.order.shape
    B = 1 if weights is None else weights.shape[0]
    # replicates are summarised in float32 (counts stay exact); point estimates in float64
    dtype = torch.float64 if weights is None else torch.float32
    m_max = max(ms)
    L = min(N, m_max if weights is None else int(m_max + 6 * math.sqrt(m_max) + 16))
    while True:
        order = ranked.order[:, :L]
        w = torch.ones(1, K, L) if weights is None else weights[:, order].float()  # [B, K, L]
        if bool((ranked.num_valid < L).any()):
            w = w * (torch.arange(L)[None, :] < ranked.num_valid[:, None])[None]
        cum = w.cumsum(-1)
        short = (cum[..., -1] < m_max) & (ranked.num_valid[None, :] > L)
        if L >= N or not bool(short.any()):
            break
        L = min(N, 2 * L)
    out = {}
    flat = cum.reshape(-1, L)
    for m in sorted(set(ms)):
        # positions needed for this m: up to the first place where the count reaches m
        reach = torch.searchsorted(flat, torch.full((flat.shape[0], 1), float(m))).max()
        Lm = min(L, int(reach) + 1)
        capped = cum[..., :Lm].clamp(max=m)
        total = capped[..., -1].to(dtype)
        taken = torch.diff(capped, dim=-1, prepend=torch.zeros(B, K, 1))  # copies of each ranked image inside the top m
        P = torch.zeros(B, K, num_classes)
        P.scatter_add_(2, ranked.labels[:, :Lm].expand(B, K, Lm), taken)
        P = P.to(dtype).div_(total.clamp(min=1)[..., None])
        out[m] = (P.masked_fill_((total < max(1, min_activating))[..., None], float("nan")), total)
    return out


def label_distributions(
    acts: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    top_fraction: float = 0.01,
    min_top: int = 20,
    floor: float = 0.0,
    min_activating: int = 1,
) -> torch.Tensor:
    """Eq. 1: ``P[n, c] = consis(n, c) = Pr(label(x) = c | x activates n)``.

    Parameters
    ----------
    acts : [N, K] activations ``a_n(x)`` (see :func:`consis_lib.activations.unit_activations`).
    labels : [N] class indices in ``[0, num_classes)`` (for adversarial images: the
        source image's label).
    num_classes : C.
    top_fraction, min_top : the activating set is the top ``max(min_top,
        ceil(top_fraction * N))`` images of each unit.
    floor : images with ``a_n(x) <= floor`` never activate ``n`` (0 after a ReLU;
        pass ``-inf`` for layers with signed outputs).
    min_activating : a unit that fewer images activate is undefined (NaN row); the
        default 1 leaves only units that no image activates undefined.

    Returns
    -------
    Tensor [K, C] float64; rows sum to 1, or are all NaN for an undefined unit.

    Example
    -------
    >>> acts = torch.tensor([[3.0], [2.0], [1.0]]); labels = torch.tensor([0, 1, 1])
    >>> label_distributions(acts, labels, 2, top_fraction=0.5, min_top=2)
    tensor([[0.5000, 0.5000]], dtype=torch.float64)
    """
    acts, labels = _check_inputs(acts, labels, num_classes)
    m = num_top(acts.shape[0], top_fraction, min_top)
    return _weighted_distributions(_rank(acts, labels, floor), None, [m], num_classes, min_activating)[m][0][0]


def consistency(P: torch.Tensor | np.ndarray, A: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Eq. 3: ``consis(n) = p_n^T A p_n`` for every row of ``P``, i.e. ``diag(P A P^T)``.

    Parameters
    ----------
    P : [..., K, C] label distributions (Eq. 1), NaN rows allowed.
    A : [C, C] label correlation matrix (Eq. 2).

    Returns
    -------
    Tensor [..., K] float64 (NaN where the row of P is NaN).

    Example
    -------
    >>> consistency(torch.eye(3), torch.eye(3))          # one-hot rows
    tensor([1., 1., 1.], dtype=torch.float64)
    >>> consistency(torch.full((1, 4), 0.25), torch.eye(4))  # uniform: 1/C
    tensor([0.2500], dtype=torch.float64)
    """
    P = torch.as_tensor(P, dtype=torch.float64)
    return quadratic_form(P, check_correlation(A, P.shape[-1]))


def _consistency_many(P: torch.Tensor, As: torch.Tensor) -> torch.Tensor:
    """Eq. 3 for several A at once: ``P [..., K, C]``, ``As [S, C, C]`` -> ``[S, ..., K]``."""
    S, C, _ = As.shape
    lead = P.shape[:-1]
    flat = P.reshape(-1, C)
    prod = (flat @ As.permute(1, 0, 2).reshape(C, S * C)).reshape(-1, S, C)
    return (prod * flat[:, None, :]).sum(-1).t().reshape(S, *lead)


def _resample_weights(num_images: int, replicates: int, gen: torch.Generator) -> torch.Tensor:
    idx = torch.randint(num_images, (replicates, num_images), generator=gen)
    w = torch.zeros(replicates, num_images)
    return w.scatter_add_(1, idx, torch.ones(idx.shape))


def _chunk(K: int, N: int, m_max: int) -> int:
    """Replicates per chunk so that one ``[replicates, K, L]`` table stays bounded."""
    return max(1, _CHUNK_ELEMENTS // max(1, K * min(N, int(m_max + 6 * math.sqrt(m_max) + 16))))


def _bootstrap_means(
    ranked: dict[str, _Ranked],
    m_of: dict[float, int],
    A: dict[float, torch.Tensor],
    replicates: int,
    seed: int,
    N: int,
    K: int,
    min_activating: int,
) -> dict[tuple[str, float, float], np.ndarray]:
    """Layer means of ``consis`` for ``replicates`` bootstrap resamples of the images.

    Returns ``{(side, sigma, top_fraction): [replicates]}``. Every side, sigma and
    fraction sees the same resamples (paired comparisons such as real - adv).
    """
    sigmas = list(A)
    A_stack = torch.stack([A[s] for s in sigmas]).float()
    C = A_stack.shape[-1]
    reps = {(side, s, f): np.full(max(replicates, 0), np.nan) for side in ranked for s in sigmas for f in m_of}
    if replicates <= 0:
        return reps
    ms = sorted(set(m_of.values()))
    gen = torch.Generator().manual_seed(seed)
    chunk = _chunk(K, N, ms[-1])
    for start in range(0, replicates, chunk):
        b = min(chunk, replicates - start)
        W = _resample_weights(N, b, gen)
        for side, rk in ranked.items():
            Pb = _weighted_distributions(rk, W, ms, C, min_activating)
            for frac, m in m_of.items():
                c_all = nanmean_units(_consistency_many(Pb[m][0], A_stack)).numpy()  # [S, b]
                for si, s in enumerate(sigmas):
                    reps[(side, s, frac)][start : start + b] = c_all[si]
    return reps


@dataclass(frozen=True)
class _Side:
    """One image set of the report: its ranking, its images' labels, its top size
    ``m`` and the positions of its images among the ``N`` evaluated ones (``None``: all)."""

    ranked: _Ranked
    labels: torch.Tensor
    m: int
    index: torch.Tensor | None = None


def _side_point(side: _Side, A: torch.Tensor, C: int, min_activating: int) -> dict[str, torch.Tensor]:
    """Per-unit :data:`UNIT_STATS` (float64) and ``n_activating`` of one image set."""
    P, n = _weighted_distributions(side.ranked, None, [side.m], C, min_activating)[side.m]
    point = chance_corrected(P[0], n[0], label_counts(side.labels, C), A, min_activating)
    point["n_activating"] = n[0]
    return point


def _bootstrap_sides(
    sides: dict[str, _Side], A: torch.Tensor, replicates: int, seed: int, N: int, min_activating: int
) -> dict[str, dict[str, np.ndarray]]:
    """Layer means of every :data:`UNIT_STATS` column for ``replicates`` bootstrap
    resamples of the ``N`` images, ``{side: {stat: [replicates]}}``.

    Every set sees the same resamples; a subset (the successful adversarial images)
    keeps the resampled copies of its own images, its ``m`` fixed at the point
    estimate's, and the permutation baseline of each replicate is that of the
    resampled labels.
    """
    reps = {name: {s: np.full(max(replicates, 0), np.nan) for s in UNIT_STATS} for name in sides}
    if replicates <= 0:
        return reps
    A32 = A.float()
    C = A.shape[0]
    K = next(iter(sides.values())).ranked.order.shape[0]
    gen = torch.Generator().manual_seed(seed)
    chunk = _chunk(K, N, max(s.m for s in sides.values()))
    for start in range(0, replicates, chunk):
        b = min(chunk, replicates - start)
        W = _resample_weights(N, b, gen)
        for name, side in sides.items():
            Ws = W if side.index is None else W[:, side.index]
            P, n = _weighted_distributions(side.ranked, Ws, [side.m], C, min_activating)[side.m]
            stats = chance_corrected(P, n, label_counts(side.labels, C, Ws), A32, min_activating)
            means = nanmean_units(torch.stack([stats[stat] for stat in UNIT_STATS])).numpy()  # [stats, b]
            for i, stat in enumerate(UNIT_STATS):
                reps[name][stat][start : start + b] = means[i]
    return reps


def _check_distances(distances: np.ndarray, num_classes: int | None) -> tuple[np.ndarray, int]:
    dist = np.asarray(distances, dtype=np.float64)
    C = int(num_classes if num_classes is not None else dist.shape[0])
    if dist.shape != (C, C):
        raise ConsisError(f"distances have shape {dist.shape} but there are {C} classes; compute them for the same classes")
    if not np.isfinite(dist).all():
        raise ConsisError("distances contain non-finite entries; every class pair needs a WordNet path")
    return dist, C


def _report_sides(
    ranked: dict[str, _Ranked],
    adv_acts: torch.Tensor | None,
    labels: torch.Tensor,
    mask: torch.Tensor | None,
    cfg: MetricConfig,
    floor: float,
) -> dict[str, _Side]:
    """Image sets of the common scale: all clean, all adversarial, successful adversarial."""
    m = num_top(labels.numel(), cfg.top_fraction, cfg.min_top)
    sides = {name: _Side(rk, labels, m) for name, rk in ranked.items()}
    if mask is None or adv_acts is None:
        return sides
    index = mask.nonzero().flatten()
    if index.numel() < cfg.min_top:
        log.warning(
            "only %d successful adversarial images (min_top=%d): consis_adv over successful images is not reported",
            index.numel(),
            cfg.min_top,
        )
        return sides
    sub = labels[index]
    m_s = num_top(index.numel(), cfg.top_fraction, cfg.min_top)
    sides["adv_success"] = _Side(_rank(adv_acts[index], sub, floor), sub, m_s, index)
    return sides


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
    """``consis`` and ``consis_adv`` per unit, layer means with bootstrap CIs, sweeps,
    and the common scale (unbiased form, permutation baselines, lift).

    Parameters
    ----------
    activations : :class:`consis_lib.activations.Activations` or any object with
        ``acts [N, K]``, ``labels [N]`` and optionally ``adv_acts [N, K]``,
        ``adv_preds [N]``, ``preds [N]``. Only precomputed activations are read, so
        a *shared* adversarial set needs no special path: run the other model on
        the normal model's FGSM images (same order) and pass
        ``Activations(acts=res.acts, labels=res.labels, preds=res.preds,
        adv_acts=shared.acts, adv_preds=shared.preds)``; its success mask then
        marks the shared images that fool this model.
    distances : [C, C] WordNet distances (:func:`consis_lib.wordnet.distance_matrix`);
        ``A`` (Eq. 2) is built for ``cfg.sigma`` and each sweep sigma.
    cfg : MetricConfig (top_fraction, min_top, sigma, sigmas, top_fractions, bootstrap).
    num_classes : C (default: ``distances.shape[0]``).
    seed : seeds the bootstrap resampling.
    confidence : CI level. Bootstrap over images: images are resampled with
        replacement, Eq. 1-3 and the layer mean recomputed; the percentile interval
        of the replicates is shifted by the bootstrap bias estimate (duplicated
        images in a resample inflate the concentration of the top-m histogram).
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
    acts, labels = _check_inputs(activations.acts, activations.labels, C)
    sides = {"real": acts}
    if getattr(activations, "adv_acts", None) is not None:
        sides["adv"], _ = _check_inputs(activations.adv_acts, activations.labels, C)
    mask = success_mask(activations, labels, adv_success)
    N, K = acts.shape
    sigmas = sorted({float(s) for s in (*cfg.sigmas, cfg.sigma)})
    fractions = sorted({float(f) for f in (*cfg.top_fractions, cfg.top_fraction)})
    A = {s: torch.as_tensor(correlation_matrix(dist, s), dtype=torch.float64) for s in sigmas}
    R = int(cfg.bootstrap)
    ranked = {k: _rank(v, labels, floor) for k, v in sides.items()}
    key = (cfg.sigma, cfg.top_fraction)

    point: dict[tuple[str, float, float], torch.Tensor] = {}  # (side, sigma, frac) -> [K]
    m_of = {frac: num_top(N, frac, cfg.min_top) for frac in fractions}
    for side, rk in ranked.items():
        Ps = _weighted_distributions(rk, None, sorted(set(m_of.values())), C, min_act)
        for frac in fractions:
            for s in sigmas:
                point[(side, s, frac)] = consistency(Ps[m_of[frac]][0][0], A[s])
    reps = _bootstrap_means(ranked, m_of, A, min(R, int(cfg.sweep_bootstrap)), seed + 1, N, K, min_act)
    # the default point: every column of the common scale on the same resamples (more replicates)
    scale_sides = _report_sides(ranked, sides.get("adv"), labels, mask, cfg, floor)
    scale_reps = _bootstrap_sides(scale_sides, A[cfg.sigma], R, seed, N, min_act)
    stats = {
        name: summarise_side(_side_point(sd, A[cfg.sigma], C, min_act), scale_reps[name], sd.labels.numel(), sd.m, confidence)
        for name, sd in scale_sides.items()
    }
    for side in sides:
        reps[(side, *key)] = scale_reps[side]["consis"]
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
        c = point[(side, s, frac)]
        return bootstrap_ci(float(nanmean_units(c)), reps[(side, s, frac)], confidence, int((~torch.isnan(c)).sum()))

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
