"""The common scale of neuron consistency: the unbiased form of Eq. 3, its permutation baseline, the lift over it.

The report (:func:`consis_lib.consistency.consistency_report`) gives every column
of :data:`UNIT_STATS` per unit and as layer means with bootstrap CIs.

Notation: a unit's activating set holds ``n`` images with labels ``y_1 .. y_n``
(a multiset: in a bootstrap resample an image drawn twice counts twice), ``p`` is
their label histogram (Eq. 1) and ``A`` the label correlation matrix (Eq. 2).

Plug-in (Eq. 3)
    ``p^T A p = (1 / n^2) sum_{i, j} A[y_i, y_j]``; the sum includes the ``n``
    terms ``i = j``, each worth ``A[y_i, y_i]`` (1 for Eq. 2).

Unbiased (U-statistic over without-replacement pairs)
    ``U = sum_{i != j} A[y_i, y_j] / (n (n - 1)) = (n p^T A p - p^T diag(A)) / (n - 1)``,
    because ``sum_{i, j} A[y_i, y_j] = n^2 p^T A p`` and
    ``sum_i A[y_i, y_i] = n sum_c p_c A[c, c]``. Defined for ``n >= 2``.

Bias
    When the labels are exchangeable draws with marginal ``q`` (i.i.d. from ``q``, or
    a without-replacement draw from a pool whose pairs of distinct members have
    ``E[A[y_i, y_j]] = q^T A q``), every pair ``i != j`` has expectation
    ``q^T A q``, so ``E[U] = q^T A q``, whereas
    ``E[plug-in] = ((n - 1) / n) q^T A q + (1 / n) sum_c q_c A[c, c]``. For
    ``A = I``: ``E[plug-in] = sum q^2 + (1 - sum q^2) / n``; a unit whose labels are
    uniform over 24 classes scores ``1/24 + (23/24)/24 = 0.0816`` at ``n = 24``
    instead of ``1/24``.

Permutation baseline (labels shuffled among the evaluated images, same ``n``)
    With ``N`` evaluated images of which ``N_c`` carry label ``c``, the activating
    set's labels become a uniform without-replacement draw of ``n`` of the ``N``
    labels. An ordered pair of distinct positions is then a uniform ordered pair of
    distinct images, so (multivariate hypergeometric moments
    ``E[n_c n_d] = n (n - 1) N_c (N_d - [c = d]) / (N (N - 1)) + [c = d] n N_c / N``)

    ``b_u = E[U] = (N^T A N - sum_c N_c A[c, c]) / (N (N - 1))`` (the same for every ``n``),
    ``b(n) = E[plug-in] = ((n - 1) / n) b_u + (1 / n) sum_c (N_c / N) A[c, c]``.

Lift and excess
    ``lift = consis / baseline`` is the headline: its expectation is 1 for a unit whose
    labels are no more related than a random draw of the same size, whatever the number
    of classes, the class balance, sigma or ``n``, and it can be formed for the
    paper's numbers from the baseline of its own class set. ``excess = consis -
    baseline`` is reported beside it; it keeps the units of ``A`` and so still
    depends on the class set. Neither reaches a common ceiling: a one-class unit
    has ``lift = 1 / baseline`` (about ``C`` for balanced classes and ``A = I``).

Example
-------
>>> counts = torch.tensor([2.0, 2.0], dtype=torch.float64)  # N = 4 images, two classes
>>> float(baseline_unbiased(counts, torch.eye(2)))           # 4 same-label ordered pairs of 12
0.3333333333333333
"""

from __future__ import annotations

import torch

from consis_lib.config import MetricConfig
from consis_lib.consistency_estimators import check_correlation, quadratic_form
from consis_lib.errors import ConsisError

#: Per-unit columns of :func:`chance_corrected`, in report order.
UNIT_STATS = ("consis", "consis_u", "baseline", "baseline_u", "lift", "lift_u", "excess", "excess_u")


def unbiased_consistency(P: torch.Tensor, n: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """U-statistic form of Eq. 3: the mean of ``A[y_i, y_j]`` over ordered pairs ``i != j``.

    Parameters
    ----------
    P : [..., K, C] label distributions (Eq. 1) of the activating sets.
    n : [..., K] sizes of the activating sets (copies counted in a resample).
    A : [C, C] label correlation matrix (Eq. 2).

    Returns
    -------
    Tensor [..., K] in ``P``'s dtype: ``(n p^T A p - p^T diag(A)) / (n - 1)``, NaN
    where ``n < 2`` or ``P`` is NaN. Unbiased for ``q^T A q`` when the labels are
    exchangeable draws with marginal ``q`` (module docstring).

    Example
    -------
    >>> P = torch.tensor([[0.5, 0.5]]); n = torch.tensor([2.0])   # labels {0, 1}
    >>> unbiased_consistency(P, n, torch.eye(2))                  # the one pair differs
    tensor([0.])
    """
    A = check_correlation(A, P.shape[-1]).to(P.dtype)
    return _unbiased(quadratic_form(P, A), P, n, A)


def _unbiased(pap: torch.Tensor, P: torch.Tensor, n: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """``(n p^T A p - p^T diag(A)) / (n - 1)`` from the plug-in ``pap``; NaN where ``n < 2``."""
    n = n.to(P.dtype)
    u = (n * pap - P @ torch.diagonal(A)) / (n - 1).clamp(min=1)
    return u.masked_fill(n < 2, float("nan"))


def label_counts(labels: torch.Tensor, num_classes: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``N_c``: how many evaluated images carry each label, ``[C]`` or ``[B, C]``.

    ``weights [B, N]`` counts every image that many times (bootstrap resamples).

    Example
    -------
    >>> label_counts(torch.tensor([0, 2, 2]), 3)
    tensor([1., 0., 2.], dtype=torch.float64)
    """
    onehot = torch.nn.functional.one_hot(labels.long(), num_classes).to(torch.float64)
    if weights is None:
        return onehot.sum(0)
    return weights.to(torch.float32) @ onehot.to(torch.float32)


def baseline_unbiased(counts: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """Permutation baseline of the unbiased estimator: the mean of ``A`` over ordered
    pairs of distinct evaluated images, ``(N^T A N - sum_c N_c A[c, c]) / (N (N - 1))``.

    Parameters
    ----------
    counts : [..., C] label counts ``N_c`` (:func:`label_counts`).
    A : [C, C] (Eq. 2).

    Returns
    -------
    Tensor [...] in ``counts``' dtype; NaN with fewer than two images.

    Example
    -------
    >>> float(baseline_unbiased(torch.tensor([3.0, 1.0]), torch.eye(2)))  # 6 of 12 pairs agree
    0.5
    """
    A = check_correlation(A, counts.shape[-1]).to(counts.dtype)
    N = counts.sum(-1)
    pairs = quadratic_form(counts, A) - counts @ torch.diagonal(A)
    return (pairs / (N * (N - 1)).clamp(min=1)).masked_fill(N < 2, float("nan"))


def baseline_plugin(counts: torch.Tensor, n: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """Permutation baseline of the plug-in Eq. 3 for activating sets of size ``n``:
    ``((n - 1) / n) b_u + (1 / n) sum_c (N_c / N) A[c, c]`` (module docstring).

    Parameters
    ----------
    counts : [..., C] label counts of the evaluated images.
    n : [..., K] activating-set sizes (``n <= N``).
    A : [C, C] (Eq. 2).

    Returns
    -------
    Tensor [..., K] in ``counts``' dtype; NaN where ``n < 1``.

    Example
    -------
    >>> baseline_plugin(torch.tensor([3.0, 1.0]), torch.tensor([1.0, 4.0]), torch.eye(2))
    tensor([1.0000, 0.6250])
    """
    A = check_correlation(A, counts.shape[-1]).to(counts.dtype)
    n = n.to(counts.dtype)
    b_u = baseline_unbiased(counts, A).nan_to_num(0.0)[..., None]  # only read when n >= 2
    self_pair = ((counts @ torch.diagonal(A)) / counts.sum(-1).clamp(min=1))[..., None]
    out = ((n - 1) * b_u + self_pair) / n.clamp(min=1)
    return out.masked_fill(n < 1, float("nan"))


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` with NaN wherever the baseline is not positive (no chance level)."""
    return torch.where(den > 0, num / den.clamp(min=torch.finfo(den.dtype).tiny), torch.full_like(num, float("nan")))


def chance_corrected(
    P: torch.Tensor, n: torch.Tensor, counts: torch.Tensor, A: torch.Tensor, min_activating: int = 2
) -> dict[str, torch.Tensor]:
    """Every per-unit column of :data:`UNIT_STATS` for one image set.

    Parameters
    ----------
    P : [..., K, C] label distributions of the activating sets (Eq. 1); a row that
        is undefined is all NaN.
    n : [..., K] activating-set sizes.
    counts : [..., C] label counts of the evaluated images (the shuffle's pool).
    A : [C, C] (Eq. 2).
    min_activating : units with ``n < min_activating`` are undefined (NaN everywhere).

    Returns
    -------
    ``{name: Tensor [..., K]}`` with ``consis`` (plug-in Eq. 3), ``consis_u``
    (unbiased), ``baseline``/``baseline_u`` (their permutation baselines, the latter
    broadcast over units), ``lift = consis / baseline``, ``lift_u``, ``excess =
    consis - baseline`` and ``excess_u``.

    Example
    -------
    >>> P = torch.tensor([[1.0, 0.0]], dtype=torch.float64); n = torch.tensor([2.0])
    >>> chance_corrected(P, n, torch.tensor([2.0, 2.0], dtype=torch.float64), torch.eye(2))["lift_u"]
    tensor([3.], dtype=torch.float64)
    """
    A = check_correlation(A, P.shape[-1]).to(P.dtype)
    nan = float("nan")
    undefined = (n < min_activating) | torch.isnan(P[..., 0])  # an undefined row of P is all NaN
    pap = quadratic_form(P, A)
    out = {"consis": pap.masked_fill(undefined, nan), "consis_u": _unbiased(pap, P, n, A).masked_fill(undefined, nan)}
    counts = counts.to(P.dtype)
    out["baseline"] = baseline_plugin(counts, n, A).masked_fill(undefined, nan)
    b_u = baseline_unbiased(counts, A)[..., None]
    out["baseline_u"] = b_u.expand_as(undefined).masked_fill(undefined, nan)
    for est in ("", "_u"):
        out["lift" + est] = _ratio(out["consis" + est], out["baseline" + est])
        out["excess" + est] = out["consis" + est] - out["baseline" + est]
    return out


# ---------------------------------------------------------------- undefined units


#: Default minimum number of activating images of a defined unit in the report.
#: Below five images the label histogram moves in steps of at least 1/4, the
#: plug-in's bias term ``(1 - sum p^2) / n`` can exceed 0.15, and the unbiased form
#: averages at most 12 ordered pairs. Such a unit exceeds the floor on fewer than
#: 5 of the evaluated images (0.2% of 2,400) and is reported as undefined instead.
DEFAULT_MIN_ACTIVATING = 5


def resolve_min_activating(min_activating: int | None, cfg: MetricConfig) -> int:
    """``min_activating`` for the report: the keyword, else ``cfg.min_activating`` where the
    config has that field, else :data:`DEFAULT_MIN_ACTIVATING`; checked to lie in ``[2, cfg.min_top]``."""
    value = int(min_activating if min_activating is not None else getattr(cfg, "min_activating", DEFAULT_MIN_ACTIVATING))
    if not 2 <= value <= cfg.min_top:
        raise ConsisError(
            f"min_activating={value} must lie in [2, min_top={cfg.min_top}]: the unbiased form needs a pair of images"
        )
    return value
