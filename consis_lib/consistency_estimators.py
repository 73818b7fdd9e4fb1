"""Eq. 1 and Eq. 3 per unit: rank the images by activation, label distributions of the activating sets, ``consis(n)``.

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

Degenerate input, documented handling: a unit that fewer than ``min_activating``
images activate (every activation ``<= floor`` for a dead ReLU unit; 1 in
:func:`label_distributions`, :data:`consis_lib.consistency_stats.DEFAULT_MIN_ACTIVATING`
in the report) has an all-NaN row in ``P`` and ``consis = NaN``; layer means
(:func:`nanmean_units`) skip such units. NaN activations, labels outside
``[0, C)`` and fewer images than ``min_top`` raise :class:`ConsisError`.

Example
-------
>>> P = label_distributions(acts, labels, num_classes=10, top_fraction=0.01, min_top=20)
>>> consistency(P, A).shape        # [K]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from consis_lib.errors import ConsisError


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


def resample_window(m: int) -> int:
    """Ranked positions first read to gather ``m`` images of a bootstrap resample: ``m + 6 sqrt(m) + 16``.

    The first ``L`` ranked images of a resample hold about ``L`` copies, give or
    take ``sqrt(L)``; :func:`_weighted_distributions` doubles the window in the
    rare case that a unit still falls short.
    """
    return int(m + 6 * math.sqrt(m) + 16)


def _check_inputs(acts: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``acts [N, K]`` and ``labels [N]`` validated, as float32 and int64 tensors on the CPU."""
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
    """Every unit's images ranked by activation ``acts [N, K]`` (stable, descending)."""
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
    L = min(N, m_max if weights is None else resample_window(m_max))
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


def check_correlation(A: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Validate ``A [C, C]`` (Eq. 2) against ``num_classes`` and return it as float64."""
    A = torch.as_tensor(A, dtype=torch.float64)
    if A.dim() != 2 or A.shape[0] != A.shape[1]:
        raise ConsisError(f"A must be a square [C, C] matrix, got shape {tuple(A.shape)}")
    if A.shape[0] != num_classes:
        raise ConsisError(f"P has {num_classes} classes but A is {tuple(A.shape)}; build A for the same classes")
    return A


def quadratic_form(P: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """``p^T A p`` for every row ``p`` of ``P [..., C]`` (Eq. 3), as one 2-D GEMM.

    ``diag(P A P^T) = rowsum((P A) * P)``; ``A`` must already match ``P``'s dtype.
    """
    lead = P.shape[:-1]
    flat = P.reshape(-1, P.shape[-1])
    return ((flat @ A) * flat).sum(-1).reshape(lead)


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


def nanmean_units(c: torch.Tensor) -> torch.Tensor:
    """Layer mean: the mean over the last (unit) axis skipping NaN; NaN when every unit is undefined."""
    ok = ~torch.isnan(c)
    n = ok.sum(-1)
    s = torch.where(ok, c, torch.zeros_like(c)).sum(-1)
    return torch.where(n > 0, s / n.clamp(min=1), torch.full_like(s, float("nan")))
