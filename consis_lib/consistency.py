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
  source images' labels.

Degenerate input, documented handling: a unit that no image activates (every
activation ``<= floor``, e.g. a dead ReLU unit) has an all-NaN row in ``P`` and
``consis = NaN``; layer means skip such units and the report lists them. NaN
activations, labels outside ``[0, C)`` and fewer images than ``min_top`` raise
:class:`ConsisError`.

Example
-------
>>> P = label_distributions(acts, labels, num_classes=10, top_fraction=0.01, min_top=20)
>>> consistency(P, A).shape        # [K]
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from consis_lib.atomic import atomic_write_text
from consis_lib.config import MetricConfig
from consis_lib.errors import ConsisError

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
    ranked: _Ranked, weights: torch.Tensor | None, ms: Sequence[int], num_classes: int
) -> dict[int, torch.Tensor]:
    """Eq. 1 for ``B`` weighted image sets and several top sizes ``m`` at once.

    ``weights [B, N]`` holds how often each image occurs in a (bootstrap) resample;
    ``None`` means every image once. Returns ``{m: P [B, K, C]}`` (float64 without
    weights, float32 for replicates; NaN rows
    for units that no image activates). Only the first ``L`` ranked positions are
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
        taken = cum[..., :Lm].clamp(max=m)
        total = taken[..., -1:].to(dtype, copy=True)
        taken[..., 1:] -= taken[..., :-1].clone()  # copies of each ranked image inside the top m
        P = torch.zeros(B, K, num_classes)
        P.scatter_add_(2, ranked.labels[:, :Lm].expand(B, K, Lm), taken)
        P = P.to(dtype).div_(total.clamp(min=1))
        out[m] = P.masked_fill_(total == 0, float("nan"))
    return out


def label_distributions(
    acts: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    top_fraction: float = 0.01,
    min_top: int = 20,
    floor: float = 0.0,
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

    Returns
    -------
    Tensor [K, C] float64; rows sum to 1, or are all NaN for a unit that no image
    activates.

    Example
    -------
    >>> acts = torch.tensor([[3.0], [2.0], [1.0]]); labels = torch.tensor([0, 1, 1])
    >>> label_distributions(acts, labels, 2, top_fraction=0.5, min_top=2)
    tensor([[0.5000, 0.5000]], dtype=torch.float64)
    """
    acts, labels = _check_inputs(acts, labels, num_classes)
    m = num_top(acts.shape[0], top_fraction, min_top)
    return _weighted_distributions(_rank(acts, labels, floor), None, [m], num_classes)[m][0]


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
    A = torch.as_tensor(A, dtype=torch.float64)
    if A.dim() != 2 or A.shape[0] != A.shape[1]:
        raise ConsisError(f"A must be a square [C, C] matrix, got shape {tuple(A.shape)}")
    if P.shape[-1] != A.shape[0]:
        raise ConsisError(f"P has {P.shape[-1]} classes but A is {tuple(A.shape)}; build A for the same classes")
    lead = P.shape[:-1]
    flat = P.reshape(-1, P.shape[-1])  # one 2-D GEMM: diag(P A P^T) = rowsum((P A) * P)
    return ((flat @ A) * flat).sum(-1).reshape(lead)


def _consistency_many(P: torch.Tensor, As: torch.Tensor) -> torch.Tensor:
    """Eq. 3 for several A at once: ``P [..., K, C]``, ``As [S, C, C]`` -> ``[S, ..., K]``."""
    S, C, _ = As.shape
    lead = P.shape[:-1]
    flat = P.reshape(-1, C)
    prod = (flat @ As.permute(1, 0, 2).reshape(C, S * C)).reshape(-1, S, C)
    return (prod * flat[:, None, :]).sum(-1).t().reshape(S, *lead)


@dataclass(frozen=True)
class MeanCI:
    """A layer mean with a percentile bootstrap confidence interval over images."""

    mean: float
    low: float
    high: float
    units: int  # units that entered the mean (defined consis)


@dataclass(frozen=True)
class SweepRow:
    """One point of the sensitivity sweep (book figure)."""

    sigma: float
    top_fraction: float
    kind: str  # "real" or "adv"
    mean: float
    low: float
    high: float


def _finite_or_none(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def _none_to_nan(v: Any) -> float:
    return float("nan") if v is None else float(v)


@dataclass
class ConsistencyReport:
    """Per-unit ``consis``/``consis_adv``, layer means with bootstrap CIs and sweeps.

    ``consis`` and ``consis_adv`` are lists of length K (NaN for undefined units);
    ``diff`` is the layer mean of ``consis - consis_adv`` with a paired bootstrap
    CI (the same resampled images on both sides). JSON round-trips through
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

    def units_frame(self) -> pd.DataFrame:
        """Tidy per-unit table: ``unit, consis, consis_adv``."""
        adv = self.consis_adv if self.consis_adv is not None else [float("nan")] * self.num_units
        return pd.DataFrame({"unit": range(self.num_units), "consis": self.consis, "consis_adv": adv})

    def sweep_frame(self) -> pd.DataFrame:
        """Tidy sweep table: ``sigma, top_fraction, kind, mean, low, high``."""
        return pd.DataFrame([asdict(r) for r in self.sweep], columns=[f for f in SweepRow.__dataclass_fields__])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite numbers become ``None``)."""

        def clean(obj: Any) -> Any:
            if isinstance(obj, float):
                return _finite_or_none(obj)
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
        def mci(v: dict | None) -> MeanCI | None:
            if v is None:
                return None
            return MeanCI(_none_to_nan(v["mean"]), _none_to_nan(v["low"]), _none_to_nan(v["high"]), int(v["units"]))

        d = dict(d)
        d["consis"] = [_none_to_nan(v) for v in d["consis"]]
        if d.get("consis_adv") is not None:
            d["consis_adv"] = [_none_to_nan(v) for v in d["consis_adv"]]
        d["mean"] = mci(d["mean"])
        d["mean_adv"] = mci(d.get("mean_adv"))
        d["diff"] = mci(d.get("diff"))
        d["sweep"] = [
            SweepRow(r["sigma"], r["top_fraction"], r["kind"], *(_none_to_nan(r[k]) for k in ("mean", "low", "high")))
            for r in d.get("sweep", [])
        ]
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


def _resample_weights(num_images: int, replicates: int, gen: torch.Generator) -> torch.Tensor:
    idx = torch.randint(num_images, (replicates, num_images), generator=gen)
    w = torch.zeros(replicates, num_images)
    return w.scatter_add_(1, idx, torch.ones(idx.shape))


def _nanmean_units(c: torch.Tensor) -> torch.Tensor:
    """Mean over the last (unit) axis skipping NaN; NaN when every unit is undefined."""
    ok = ~torch.isnan(c)
    n = ok.sum(-1)
    s = torch.where(ok, c, torch.zeros_like(c)).sum(-1)
    return torch.where(n > 0, s / n.clamp(min=1), torch.full_like(s, float("nan")))


def _ci(point: float, reps: np.ndarray, confidence: float, units: int) -> MeanCI:
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return MeanCI(float(point), float("nan"), float("nan"), units)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(reps, [alpha, 1.0 - alpha])
    # A resample holds duplicated images; a duplicate fills several of the top-m
    # slots, which concentrates the label histogram and biases every replicate
    # upwards. The percentile interval is therefore shifted by the bootstrap bias
    # estimate mean(reps) - point, so that it is centred on the point estimate's scale.
    bias = float(reps.mean()) - float(point) if math.isfinite(point) else 0.0
    return MeanCI(float(point), float(lo) - bias, float(hi) - bias, units)


def _bootstrap_means(
    ranked: dict[str, _Ranked],
    m_of: dict[float, int],
    A: dict[float, torch.Tensor],
    replicates: int,
    seed: int,
    N: int,
    K: int,
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
    m_max = ms[-1]
    gen = torch.Generator().manual_seed(seed)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, K * min(N, int(m_max + 6 * math.sqrt(m_max) + 16))))
    for start in range(0, replicates, chunk):
        b = min(chunk, replicates - start)
        W = _resample_weights(N, b, gen)
        for side, rk in ranked.items():
            Pb = _weighted_distributions(rk, W, ms, C)
            for frac, m in m_of.items():
                c_all = _nanmean_units(_consistency_many(Pb[m], A_stack)).numpy()  # [S, b]
                for si, s in enumerate(sigmas):
                    reps[(side, s, frac)][start : start + b] = c_all[si]
    return reps


def consistency_report(
    activations: Any,
    distances: np.ndarray,
    cfg: MetricConfig = MetricConfig(),
    num_classes: int | None = None,
    seed: int = 0,
    confidence: float = 0.95,
    floor: float = 0.0,
) -> ConsistencyReport:
    """``consis`` and ``consis_adv`` per unit, layer means with bootstrap CIs, sweeps.

    Parameters
    ----------
    activations : :class:`consis_lib.activations.Activations` (``acts [N, K]``,
        ``labels [N]``, optionally ``adv_acts [N, K]`` from an FGSM pass).
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

    Returns
    -------
    ConsistencyReport; the sweep covers every (sigma, top_fraction) pair of
    ``cfg.sigmas x cfg.top_fractions`` (plus the defaults), real and adversarial,
    with ``cfg.sweep_bootstrap`` replicates per point (``cfg.bootstrap`` for the
    default point, whose row equals ``mean``/``mean_adv``).

    Example
    -------
    >>> res = unit_activations(model, loader, "layer4", attack=fgsm_attack(8 / 255))
    >>> rep = consistency_report(res, distance_matrix(wnids), profile.metric)
    >>> rep.mean.mean, rep.mean_adv.mean
    """
    from consis_lib.wordnet import correlation_matrix

    dist = np.asarray(distances, dtype=np.float64)
    C = int(num_classes if num_classes is not None else dist.shape[0])
    if dist.shape != (C, C):
        raise ConsisError(f"distances have shape {dist.shape} but there are {C} classes; compute them for the same classes")
    if not np.isfinite(dist).all():
        raise ConsisError("distances contain non-finite entries; every class pair needs a WordNet path")
    if cfg.activation != getattr(activations, "reduce", cfg.activation):
        raise ConsisError(
            f"activations were reduced with {activations.reduce!r} but MetricConfig.activation={cfg.activation!r}; recompute them"
        )
    acts, labels = _check_inputs(activations.acts, activations.labels, C)
    sides = {"real": acts}
    if getattr(activations, "adv_acts", None) is not None:
        sides["adv"], _ = _check_inputs(activations.adv_acts, activations.labels, C)
    N, K = acts.shape
    sigmas = sorted({float(s) for s in (*cfg.sigmas, cfg.sigma)})
    fractions = sorted({float(f) for f in (*cfg.top_fractions, cfg.top_fraction)})
    A = {s: torch.as_tensor(correlation_matrix(dist, s), dtype=torch.float64) for s in sigmas}
    R = int(cfg.bootstrap)
    ranked = {k: _rank(v, labels, floor) for k, v in sides.items()}

    point: dict[tuple[str, float, float], torch.Tensor] = {}  # (side, sigma, frac) -> [K]
    m_of = {frac: num_top(N, frac, cfg.min_top) for frac in fractions}
    for side, rk in ranked.items():
        Ps = _weighted_distributions(rk, None, sorted(set(m_of.values())), C)
        for frac in fractions:
            for s in sigmas:
                point[(side, s, frac)] = consistency(Ps[m_of[frac]][0], A[s])
    key = (cfg.sigma, cfg.top_fraction)
    # the sweep's replicates first, then the default point's (more replicates)
    reps = _bootstrap_means(ranked, m_of, A, min(R, int(cfg.sweep_bootstrap)), seed + 1, N, K)
    reps.update(_bootstrap_means(ranked, {cfg.top_fraction: m_of[cfg.top_fraction]}, {cfg.sigma: A[cfg.sigma]}, R, seed, N, K))

    def summary(side: str, s: float, frac: float) -> MeanCI:
        c = point[(side, s, frac)]
        return _ci(float(_nanmean_units(c)), reps[(side, s, frac)], confidence, int((~torch.isnan(c)).sum()))

    sweep = [
        SweepRow(s, f, side, *(lambda ci: (ci.mean, ci.low, ci.high))(summary(side, s, f)))
        for side in sides
        for s in sigmas
        for f in fractions
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
        accuracy=_finite_or_none(activations.accuracy) if hasattr(activations, "preds") else None,
    )
    if "adv" in sides:
        adv = point[("adv", *key)]
        rep.consis_adv = adv.tolist()
        rep.mean_adv = summary("adv", *key)
        rep.undefined_units_adv = torch.isnan(adv).nonzero().flatten().tolist()
        diff_reps = reps[("real", *key)] - reps[("adv", *key)]
        rep.diff = _ci(rep.mean.mean - rep.mean_adv.mean, diff_reps, confidence, min(rep.mean.units, rep.mean_adv.units))
        acc = getattr(activations, "adv_accuracy", None)
        rep.adv_accuracy = _finite_or_none(acc) if acc is not None else None
    return rep
