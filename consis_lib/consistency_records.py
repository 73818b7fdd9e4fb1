"""The consistency report's data types (per-unit values, layer means with CIs, sweep rows) and their JSON round trip."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from consis_lib.atomic import atomic_write_text
from consis_lib.consistency_stats import UNIT_STATS
from consis_lib.errors import ConsisError


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


@dataclass(frozen=True)
class SideStats:
    """Chance-corrected consistency of one image set (clean, adversarial, or
    successful adversarial images) at the default sigma and top fraction.

    Attributes
    ----------
    num_images : images the units were ranked among (``N``, or the successful ones).
    num_top : ``m`` for that set (:func:`consis_lib.consistency_estimators.num_top`).
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
