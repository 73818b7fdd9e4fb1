"""Bootstrap over images: resampled layer means of Eq. 3 and of the common scale, and their confidence intervals.

Images are resampled with replacement and Eq. 1-3 (and every column of
:data:`consis_lib.consistency_stats.UNIT_STATS`) recomputed on each resample; every
image set, sigma and top fraction sees the same resamples, so differences such as
``consis - consis_adv`` get paired intervals.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from consis_lib.consistency_estimators import (
    _consistency_many,
    _Ranked,
    _weighted_distributions,
    nanmean_units,
    resample_window,
)
from consis_lib.consistency_records import MeanCI, SideStats
from consis_lib.consistency_stats import UNIT_STATS, chance_corrected, label_counts

# Elements per bootstrap chunk ([replicates, units, ranked images]); bounds memory.
_CHUNK_ELEMENTS = 4_000_000


def _resample_weights(num_images: int, replicates: int, gen: torch.Generator) -> torch.Tensor:
    """``[replicates, N]``: how often each image occurs in each resample (drawn with replacement)."""
    idx = torch.randint(num_images, (replicates, num_images), generator=gen)
    w = torch.zeros(replicates, num_images)
    return w.scatter_add_(1, idx, torch.ones(idx.shape))


def _resample_chunks(
    num_images: int, replicates: int, seed: int, num_units: int, m_max: int
) -> Iterator[tuple[slice, torch.Tensor]]:
    """The ``replicates`` resamples seeded by ``seed``, in chunks: ``(replicate slice, weights [b, N])``.

    A chunk holds as many replicates as keep one ``[replicates, K, L]`` table of
    :func:`_weighted_distributions` under ``_CHUNK_ELEMENTS`` elements.
    """
    gen = torch.Generator().manual_seed(seed)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, num_units * min(num_images, resample_window(m_max))))
    for start in range(0, replicates, chunk):
        b = min(chunk, replicates - start)
        yield slice(start, start + b), _resample_weights(num_images, b, gen)


def bootstrap_layer_means(
    ranked: dict[str, _Ranked],
    m_of: dict[float, int],
    A: dict[float, torch.Tensor],
    replicates: int,
    seed: int,
    min_activating: int,
) -> dict[tuple[str, float, float], np.ndarray]:
    """Layer means of ``consis`` (Eq. 3) for ``replicates`` bootstrap resamples of the images.

    Parameters
    ----------
    ranked : image set (``"real"``, ``"adv"``) -> its units' ranking of all ``N`` images.
    m_of : top fraction -> top size ``m``.
    A : sigma -> ``A [C, C]`` (Eq. 2).

    Returns
    -------
    ``{(side, sigma, top_fraction): [replicates]}``; every side, sigma and fraction
    sees the same resamples (paired comparisons such as real - adv).
    """
    sigmas = list(A)
    A_stack = torch.stack([A[s] for s in sigmas]).float()
    C = A_stack.shape[-1]
    reps = {(side, s, f): np.full(max(replicates, 0), np.nan) for side in ranked for s in sigmas for f in m_of}
    if replicates <= 0:
        return reps
    ms = sorted(set(m_of.values()))
    K, N = next(iter(ranked.values())).order.shape
    for rows, W in _resample_chunks(N, replicates, seed, K, ms[-1]):
        for side, rk in ranked.items():
            Pb = _weighted_distributions(rk, W, ms, C, min_activating)
            for frac, m in m_of.items():
                c_all = nanmean_units(_consistency_many(Pb[m][0], A_stack)).numpy()  # [S, b]
                for si, s in enumerate(sigmas):
                    reps[(side, s, frac)][rows] = c_all[si]
    return reps


@dataclass(frozen=True)
class ImageSet:
    """One image set of the report's common scale (clean, adversarial or successful
    adversarial images): its ranking, its images' labels, its top size ``m`` and the
    positions of its images among the ``N`` evaluated ones (``None``: all)."""

    ranked: _Ranked
    labels: torch.Tensor
    m: int
    index: torch.Tensor | None = None


def image_set_stats(
    image_set: ImageSet, A: torch.Tensor, min_activating: int, weights: torch.Tensor | None = None
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Every :data:`UNIT_STATS` column (Eq. 3, its unbiased form, baselines, lift) of one image set.

    Parameters
    ----------
    image_set : the set's ranking, labels and ``m``.
    A : [C, C] (Eq. 2).
    weights : [B, N] copies of each evaluated image per resample; a subset keeps
        the copies of its own images and its ``m``, and the permutation baseline is
        that of the resampled labels. ``None``: the images once (``B = 1``, float64).

    Returns
    -------
    ``({stat: [B, K]}, n [B, K])`` with ``n`` the activating-set sizes.
    """
    C = A.shape[0]
    if weights is not None and image_set.index is not None:
        weights = weights[:, image_set.index]
    P, n = _weighted_distributions(image_set.ranked, weights, [image_set.m], C, min_activating)[image_set.m]
    return chance_corrected(P, n, label_counts(image_set.labels, C, weights), A, min_activating), n


def bootstrap_common_scale(
    image_sets: dict[str, ImageSet], A: torch.Tensor, replicates: int, seed: int, num_images: int, min_activating: int
) -> dict[str, dict[str, np.ndarray]]:
    """Layer means of every :data:`UNIT_STATS` column for ``replicates`` bootstrap
    resamples of the ``num_images`` evaluated images, ``{set: {stat: [replicates]}}``.

    Every set sees the same resamples (:func:`image_set_stats` describes a subset's).
    """
    reps = {name: {s: np.full(max(replicates, 0), np.nan) for s in UNIT_STATS} for name in image_sets}
    if replicates <= 0:
        return reps
    K = next(iter(image_sets.values())).ranked.order.shape[0]
    m_max = max(s.m for s in image_sets.values())
    for rows, W in _resample_chunks(num_images, replicates, seed, K, m_max):
        for name, image_set in image_sets.items():
            stats, _ = image_set_stats(image_set, A, min_activating, W)
            means = nanmean_units(torch.stack([stats[stat] for stat in UNIT_STATS])).numpy()  # [stats, b]
            for i, stat in enumerate(UNIT_STATS):
                reps[name][stat][rows] = means[i]
    return reps


def bootstrap_ci(point: float, reps: np.ndarray, confidence: float, units: int) -> MeanCI:
    """Bias-shifted percentile interval of the bootstrap replicates ``reps`` around ``point``.

    A resample holds duplicated images; a duplicate fills several of the top-m
    slots, which concentrates the label histogram and biases every replicate
    upwards (the U-statistic counts two copies of one image as a pair too). The
    percentile interval is therefore shifted by the bootstrap bias estimate
    ``mean(reps) - point``, so that it is centred on the point estimate's scale.
    """
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return MeanCI(float(point), float("nan"), float("nan"), units)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(reps, [alpha, 1.0 - alpha])
    bias = float(reps.mean()) - float(point) if math.isfinite(point) else 0.0
    return MeanCI(float(point), float(lo) - bias, float(hi) - bias, units)


def layer_mean_ci(values: torch.Tensor, reps: np.ndarray, confidence: float) -> MeanCI:
    """The layer mean of per-unit ``values [K]`` over the defined units, with the
    :func:`bootstrap_ci` of its replicates ``reps``."""
    return bootstrap_ci(float(nanmean_units(values)), reps, confidence, int((~torch.isnan(values)).sum()))


def summarise_side(
    point: dict[str, torch.Tensor], reps: dict[str, np.ndarray], num_images: int, num_top: int, confidence: float
) -> SideStats:
    """:class:`SideStats` from the per-unit point values of :func:`chance_corrected`
    (plus ``n_activating``) and the bootstrap replicates of their layer means."""
    return SideStats(
        num_images=num_images,
        num_top=num_top,
        n_activating=[int(v) for v in point["n_activating"].tolist()],
        units={name: point[name].tolist() for name in UNIT_STATS},
        means={name: layer_mean_ci(point[name], reps[name], confidence) for name in UNIT_STATS},
    )
