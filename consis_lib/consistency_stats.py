"""A common scale for neuron consistency (the unbiased form of Eq. 3, the permutation
baseline, lift) and the data types of the consistency report.

The report itself is computed by :func:`consis_lib.consistency.consistency_report`,
which re-exports :class:`ConsistencyReport`, :class:`SideStats` and :class:`MeanCI`.

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

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from consis_lib.atomic import atomic_write_text
from consis_lib.config import MetricConfig
from consis_lib.errors import ConsisError

#: Per-unit columns of :func:`chance_corrected`, in report order.
UNIT_STATS = ("consis", "consis_u", "baseline", "baseline_u", "lift", "lift_u", "excess", "excess_u")


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


# ---------------------------------------------------------------- undefined units and the attack-success control


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


# ---------------------------------------------------------------- layer summaries


def finite_or_none(v: float | None) -> float | None:
    """``v`` as a float, ``None`` when missing or non-finite (JSON has no NaN)."""
    return float(v) if v is not None and math.isfinite(v) else None


def none_to_nan(v: Any) -> float:
    """Inverse of :func:`finite_or_none`."""
    return float("nan") if v is None else float(v)


@dataclass(frozen=True)
class MeanCI:
    """A layer mean with a percentile bootstrap confidence interval over images."""

    mean: float
    low: float
    high: float
    units: int  # units that entered the mean (defined value)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> MeanCI | None:
        """Inverse of ``asdict`` after the JSON round trip (``None`` stays ``None``)."""
        if d is None:
            return None
        return cls(none_to_nan(d["mean"]), none_to_nan(d["low"]), none_to_nan(d["high"]), int(d["units"]))


def nanmean_units(c: torch.Tensor) -> torch.Tensor:
    """Mean over the last (unit) axis skipping NaN; NaN when every unit is undefined."""
    ok = ~torch.isnan(c)
    n = ok.sum(-1)
    s = torch.where(ok, c, torch.zeros_like(c)).sum(-1)
    return torch.where(n > 0, s / n.clamp(min=1), torch.full_like(s, float("nan")))


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


@dataclass(frozen=True)
class SideStats:
    """Chance-corrected consistency of one image set (clean, adversarial, or
    successful adversarial images) at the default sigma and top fraction.

    Attributes
    ----------
    num_images : images the units were ranked among (``N``, or the successful ones).
    num_top : ``m`` for that set (:func:`consis_lib.consistency.num_top`).
    n_activating : [K] activating images per unit (``min(m, images above the floor)``).
    units : every name of :data:`UNIT_STATS` -> [K] per-unit values (NaN: undefined).
    means : the same names -> layer mean over the units where the value is defined,
        with its bootstrap CI (the lift's layer value is the mean of per-unit lifts).
    """

    num_images: int
    num_top: int
    n_activating: list[int]
    units: dict[str, list[float]]
    means: dict[str, MeanCI]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SideStats:
        """Inverse of ``asdict`` after the JSON round trip."""
        return cls(
            num_images=int(d["num_images"]),
            num_top=int(d["num_top"]),
            n_activating=[int(v) for v in d["n_activating"]],
            units={k: [none_to_nan(v) for v in vals] for k, vals in d["units"].items()},
            means={k: MeanCI.from_dict(v) for k, v in d["means"].items()},
        )


def summarise_side(
    point: dict[str, torch.Tensor], reps: dict[str, np.ndarray], num_images: int, num_top: int, confidence: float
) -> SideStats:
    """:class:`SideStats` from the per-unit point values of :func:`chance_corrected`
    (plus ``n_activating``) and the bootstrap replicates of their layer means."""
    means = {}
    for name in UNIT_STATS:
        c = point[name]
        units = int((~torch.isnan(c)).sum())
        means[name] = bootstrap_ci(float(nanmean_units(c)), reps[name], confidence, units)
    return SideStats(
        num_images=num_images,
        num_top=num_top,
        n_activating=[int(v) for v in point["n_activating"].tolist()],
        units={name: point[name].tolist() for name in UNIT_STATS},
        means=means,
    )


# ---------------------------------------------------------------- the report's data


#: Image sets of the report and the suffix of their per-unit columns.
SIDE_SUFFIX = {"real": "", "adv": "_adv", "adv_success": "_adv_success"}


def column_name(stat: str, side: str) -> str:
    """Per-unit column of ``stat`` for image set ``side``: the set's suffix goes before
    the estimator's, e.g. ``("lift_u", "adv") -> "lift_adv_u"``."""
    sfx = SIDE_SUFFIX[side]
    return f"{stat[:-2]}{sfx}_u" if stat.endswith("_u") else f"{stat}{sfx}"


@dataclass(frozen=True)
class SweepRow:
    """One point of the sensitivity sweep (book figure)."""

    sigma: float
    top_fraction: float
    kind: str  # "real" or "adv"
    mean: float
    low: float
    high: float


@dataclass
class ConsistencyReport:
    """Per-unit ``consis``/``consis_adv``, layer means with bootstrap CIs and sweeps.

    ``consis`` and ``consis_adv`` are lists of length K (NaN for undefined units);
    ``diff`` is the layer mean of ``consis - consis_adv`` with a paired bootstrap
    CI (the same resampled images on both sides). ``stats`` holds the common scale
    (:class:`SideStats` per image set ``"real"``, ``"adv"`` and ``"adv_success"``:
    the unbiased estimator, permutation baselines, lift and excess, per unit and
    as layer means with CIs); ``attack_success_rate`` is the fraction of
    adversarial images that are misclassified. JSON round-trips through
    :meth:`to_json` / :meth:`from_json` (NaN is written as ``null``).
    """

    layer: str
    sigma: float
    top_fraction: float
    min_top: int
    num_images: int
    num_top: int
    num_classes: int
    num_units: int
    bootstrap: int
    confidence: float
    consis: list[float]
    mean: MeanCI
    undefined_units: list[int]
    consis_adv: list[float] | None = None
    mean_adv: MeanCI | None = None
    diff: MeanCI | None = None
    undefined_units_adv: list[int] | None = None
    sweep: list[SweepRow] = field(default_factory=list)
    sweep_bootstrap: int = 0
    accuracy: float | None = None
    adv_accuracy: float | None = None
    min_activating: int = 1  # 1 for reports written before the threshold existed
    attack_success_rate: float | None = None
    stats: dict[str, SideStats] = field(default_factory=dict)

    def units_frame(self) -> pd.DataFrame:
        """Tidy per-unit table: ``unit, consis, consis_adv``, then for every image set
        in ``stats`` its ``n_activating`` and :data:`UNIT_STATS` columns named by
        :func:`column_name` (``consis_u, baseline, ..., lift_adv_u, consis_adv_success, ...``)."""
        adv = self.consis_adv if self.consis_adv is not None else [float("nan")] * self.num_units
        cols: dict[str, Any] = {"unit": range(self.num_units), "consis": self.consis, "consis_adv": adv}
        for side, st in self.stats.items():
            cols.setdefault(f"n_activating{SIDE_SUFFIX[side]}", st.n_activating)
            for stat in UNIT_STATS:
                cols.setdefault(column_name(stat, side), st.units[stat])
        return pd.DataFrame(cols)

    def means_frame(self) -> pd.DataFrame:
        """Tidy layer means of ``stats``: ``set, stat, mean, low, high, units``."""
        rows = [
            {"set": side, "stat": stat, **asdict(ci)} for side, st in self.stats.items() for stat, ci in st.means.items()
        ]
        return pd.DataFrame(rows, columns=["set", "stat", "mean", "low", "high", "units"])

    def sweep_frame(self) -> pd.DataFrame:
        """Tidy sweep table: ``sigma, top_fraction, kind, mean, low, high``."""
        return pd.DataFrame([asdict(r) for r in self.sweep], columns=[f for f in SweepRow.__dataclass_fields__])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite numbers become ``None``)."""

        def clean(obj: Any) -> Any:
            if isinstance(obj, float):
                return finite_or_none(obj)
            if isinstance(obj, dict):
                return {k: clean(v) for k, v in obj.items()}
            if isinstance(obj, list):
                return [clean(v) for v in obj]
            return obj

        return clean(asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False)

    def save(self, path: str | Path) -> Path:
        """Write the JSON atomically (temp file + rename)."""
        return atomic_write_text(path, self.to_json())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConsistencyReport:
        d = dict(d)
        d["consis"] = [none_to_nan(v) for v in d["consis"]]
        if d.get("consis_adv") is not None:
            d["consis_adv"] = [none_to_nan(v) for v in d["consis_adv"]]
        d["mean"] = MeanCI.from_dict(d["mean"])
        d["mean_adv"] = MeanCI.from_dict(d.get("mean_adv"))
        d["diff"] = MeanCI.from_dict(d.get("diff"))
        d["sweep"] = [
            SweepRow(r["sigma"], r["top_fraction"], r["kind"], *(none_to_nan(r[k]) for k in ("mean", "low", "high")))
            for r in d.get("sweep", [])
        ]
        d["stats"] = {side: SideStats.from_dict(v) for side, v in d.get("stats", {}).items()}
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> ConsistencyReport:
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: str | Path) -> ConsistencyReport:
        try:
            return cls.from_json(Path(path).read_text())
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConsisError(f"cannot read consistency report {path}: {exc}; rerun the metric to regenerate it") from exc
