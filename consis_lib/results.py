"""Results of a run: the per-arch JSON files, Tables 1-3, Fig. 5 inputs, bootstrap CIs.

The per-arch notebooks save ``consistency.json``, ``dissection.json`` and
``performance.json`` under ``runs/<profile>/<arch>/``; the summary notebook reads
them back with :func:`load_results` and lays them beside the paper's published
values (:func:`paper_table1`, :func:`paper_table2`).

Example
-------
>>> from consis_lib.results import paper_table1
>>> float(paper_table1().loc[("ResNet-18", "normal"), "consis"])
0.0261
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from consis_lib.atomic import atomic_write_text
from consis_lib.errors import ConsisError

ARCH_NAMES = (("alexnet", "AlexNet"), ("vgg16", "VGG-16"), ("resnet18", "ResNet-18"))
CATEGORIES = ("color", "texture", "material", "scene", "part", "object")
MODELS = ("normal", "adv")

# Published values (paper Tables 1 and 2), as immutable tuples.
_PAPER_T1 = (
    ("AlexNet", "normal", 0.0162, 0.0116),
    ("AlexNet", "adv", 0.0161, 0.0121),
    ("VGG-16", "normal", 0.0296, 0.0187),
    ("VGG-16", "adv", 0.0287, 0.0220),
    ("ResNet-18", "normal", 0.0261, 0.0133),
    ("ResNet-18", "adv", 0.0251, 0.0206),
)
# arch, model, images, color, texture, material, scene, part, object (% of units)
_PAPER_T2 = (
    ("AlexNet", "normal", "real", 0.4, 13.3, 0.8, 0.4, 6.6, 17.2),
    ("AlexNet", "adv", "real", 0.4, 20.7, 0.0, 0.4, 4.3, 16.4),
    ("VGG-16", "normal", "real", 0.2, 11.9, 0.8, 4.7, 10.2, 34.6),
    ("VGG-16", "adv", "real", 0.2, 18.0, 1.2, 5.7, 8.6, 30.9),
    ("ResNet-18", "normal", "real", 0.0, 12.7, 0.8, 5.9, 4.3, 33.8),
    ("ResNet-18", "adv", "real", 0.2, 21.3, 1.6, 6.1, 6.8, 33.8),
    ("AlexNet", "normal", "adversarial", 0.4, 12.1, 0.4, 0.0, 5.5, 10.2),
    ("AlexNet", "adv", "adversarial", 0.4, 18.8, 0.0, 0.4, 4.3, 11.3),
    ("VGG-16", "normal", "adversarial", 0.2, 2.9, 0.0, 0.2, 3.3, 6.4),
    ("VGG-16", "adv", "adversarial", 0.4, 14.1, 0.6, 1.4, 6.4, 17.4),
    ("ResNet-18", "normal", "adversarial", 0.0, 4.3, 0.2, 0.6, 1.0, 6.1),
    ("ResNet-18", "adv", "adversarial", 0.2, 15.0, 0.4, 1.2, 3.1, 6.8),
)


def arch_label(arch: str) -> str:
    """Display name of an architecture (``resnet18`` -> ``ResNet-18``)."""
    return dict(ARCH_NAMES).get(arch, arch)


def paper_table1() -> pd.DataFrame:
    """The paper's Table 1 (mean consis and consis_adv), index (arch, model)."""
    return pd.DataFrame(_PAPER_T1, columns=["arch", "model", "consis", "consis_adv"]).set_index(["arch", "model"])


def paper_table2() -> pd.DataFrame:
    """The paper's Table 2 (% aligned units per category), index (arch, model, images)."""
    cols = ["arch", "model", "images", *CATEGORIES]
    return pd.DataFrame(_PAPER_T2, columns=cols).set_index(["arch", "model", "images"])


def save_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as JSON atomically (temp file in the same folder, then rename)."""
    return atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"cannot serialise {type(o).__name__}")


def load_json(path: str | Path) -> Any:
    """Read a results JSON file, with a one-line error naming what produces it."""
    path = Path(path)
    if not path.is_file():
        raise ConsisError(f"{path} is missing; run `consis reproduce --profile <profile>` (or its notebook) to produce it")
    return json.loads(path.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- statistics


def bootstrap_ci(
    samples: Sequence[np.ndarray],
    stat: Any,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile bootstrap of ``stat(*samples)``, each sample resampled independently.

    Parameters
    ----------
    samples : arrays ``[N_i]`` (resampled with replacement, each on its own); pass
        one array of paired differences for a paired statistic.
    stat : callable of resampled arrays -> float.
    n_boot : number of bootstrap replicates.
    level : coverage of the interval.

    Returns
    -------
    (estimate on the data, lower, upper).

    Example
    -------
    >>> est, lo, hi = bootstrap_ci([np.array([1.0, 2.0, 3.0])], np.mean, n_boot=200)
    >>> est
    2.0
    """
    arrays = [np.asarray(s, float) for s in samples]
    if any(a.size == 0 for a in arrays):
        raise ConsisError("bootstrap needs non-empty samples; the results file holds no units or images")
    rng = np.random.default_rng(seed)
    est = float(stat(*arrays))
    reps = np.empty(n_boot)
    for b in range(n_boot):
        reps[b] = stat(*[a[rng.integers(0, a.size, a.size)] for a in arrays])
    alpha = (1.0 - level) / 2
    return est, float(np.quantile(reps, alpha)), float(np.quantile(reps, 1 - alpha))


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ArchResults:
    """Per-arch results as saved by the notebooks (any part may be missing: None)."""

    arch: str
    consistency: Mapping[str, Any] | None
    dissection: Mapping[str, Any] | None
    performance: Mapping[str, Any] | None


def load_results(runs_dir: str | Path, archs: Sequence[str]) -> list[ArchResults]:
    """Read ``consistency.json``, ``dissection.json`` and ``performance.json`` per arch.

    Parameters
    ----------
    runs_dir : ``runs/<profile>`` folder.
    archs : architectures to read, e.g. ``("alexnet", "vgg16", "resnet18")``.
    """
    out = []
    for arch in archs:
        d = Path(runs_dir) / arch
        parts = {}
        for name in ("consistency", "dissection", "performance"):
            f = d / f"{name}.json"
            parts[name] = json.loads(f.read_text()) if f.is_file() else None
        out.append(ArchResults(arch=arch, **parts))
    if not any(r.consistency or r.dissection or r.performance for r in out):
        raise ConsisError(f"no results under {runs_dir}; run `consis reproduce --profile <profile>` first")
    return out


def table1(results: Sequence[ArchResults]) -> pd.DataFrame:
    """Table 1: mean consis(n) and consis_adv(n) per arch and model, with the paper's values."""
    paper = paper_table1()
    rows = []
    for r in results:
        if not r.consistency:
            continue
        for m in MODELS:
            if m not in r.consistency:
                continue
            c = _values(r.consistency[m]["consis"])
            ca = _values(r.consistency[m]["consis_adv"] or [])
            key = (arch_label(r.arch), m)
            p = paper.loc[key] if key in paper.index else None
            rows.append(
                dict(
                    arch=key[0], model=m, units=int(np.isfinite(c).sum()), consis=float(np.nanmean(c)), consis_adv=float(np.nanmean(ca)) if ca.size else np.nan,
                    paper_consis=None if p is None else p["consis"],
                    paper_consis_adv=None if p is None else p["consis_adv"],
                )
            )
    return pd.DataFrame(rows).set_index(["arch", "model"]) if rows else pd.DataFrame()


def _values(v: Sequence[float | None]) -> np.ndarray:
    """Per-unit values as floats, ``None`` (undefined unit) as NaN."""
    return np.asarray([np.nan if x is None else float(x) for x in v], float)


def _finite(*arrays: np.ndarray) -> list[np.ndarray]:
    """Drop positions where any of the (equal-length) arrays is NaN."""
    ok = np.logical_and.reduce([np.isfinite(a) for a in arrays])
    return [a[ok] for a in arrays]


def _unit_table(part: Mapping[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(part["units"], columns=["unit", "concept", "category", "iou"])


def aligned_flags(part: Mapping[str, Any], threshold: float) -> np.ndarray:
    """Per-unit 0/1: the unit's best concept has IoU above ``threshold``."""
    t = _unit_table(part)
    return (t["iou"].astype(float).fillna(0.0).to_numpy() > threshold).astype(float)


def category_ratios(part: Mapping[str, Any], threshold: float) -> dict[str, float]:
    """Table 2 cells: % of all units whose best aligned concept is in each category."""
    t = _unit_table(part)
    n = max(len(t), 1)
    ok = t["iou"].astype(float).fillna(0.0) > threshold
    return {c: 100.0 * float(((t["category"] == c) & ok).sum()) / n for c in CATEGORIES}


def table2(results: Sequence[ArchResults]) -> pd.DataFrame:
    """Table 2: % aligned units per category, real and adversarial images, per arch and model."""
    rows = []
    for r in results:
        if not r.dissection:
            continue
        thr = float(r.dissection.get("iou_threshold", 0.04))
        for m in MODELS:
            for images in ("real", "adversarial"):
                part = r.dissection.get(m, {}).get(images)
                if part is None:
                    continue
                rows.append(dict(arch=arch_label(r.arch), model=m, images=images, **category_ratios(part, thr)))
    return pd.DataFrame(rows).set_index(["arch", "model", "images"]) if rows else pd.DataFrame()


def table3(results: Sequence[ArchResults]) -> pd.DataFrame:
    """Table 3: clean and FGSM accuracy per arch and model (the paper prints no values in its text)."""
    rows = []
    for r in results:
        if not r.performance:
            continue
        for m in MODELS:
            p = r.performance.get(m)
            if p is None:
                continue
            rows.append(
                dict(
                    arch=arch_label(r.arch), model=m, images=len(p["clean_correct"]),
                    clean_acc=float(np.mean(p["clean_correct"])), fgsm_acc=float(np.mean(p["fgsm_correct"])),
                    eps=p.get("eps"),
                )
            )
    return pd.DataFrame(rows).set_index(["arch", "model"]) if rows else pd.DataFrame()


def table2_beside_paper(results: Sequence[ArchResults]) -> pd.DataFrame:
    """Table 2 with the paper's published row under each measured row (column ``source``)."""
    ours = table2(results)
    if ours.empty:
        return ours
    paper = paper_table2()
    rows = []
    for key, row in ours.iterrows():
        rows.append(dict(zip(("arch", "model", "images"), key), source="this run", **row.to_dict()))
        if key in paper.index:
            rows.append(dict(zip(("arch", "model", "images"), key), source="paper", **paper.loc[key].to_dict()))
    return pd.DataFrame(rows).set_index(["arch", "model", "images", "source"])


def fig5_data(results: Sequence[ArchResults]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fig. 5 inputs: model label (``ResNet-18``, ``ResNet-18-Adv``) -> (consis, consis_adv)."""
    out = {}
    for r in results:
        for m in MODELS:
            if r.consistency and m in r.consistency:
                name = arch_label(r.arch) + ("-Adv" if m == "adv" else "")
                out[name] = (_values(r.consistency[m]["consis"]), _values(r.consistency[m]["consis_adv"] or []))
    return out


def sweep_table(reports: Mapping[str, Any], vary: str) -> pd.DataFrame:
    """Sensitivity of the layer means to ``vary`` (``"sigma"`` or ``"top_fraction"``).

    The other parameter is held at its default. Returns a DataFrame with columns
    model, ``vary``, consis, consis_adv (layer means).
    """
    if vary not in ("sigma", "top_fraction"):
        raise ConsisError(f"vary must be 'sigma' or 'top_fraction', not {vary!r}")
    fixed = "top_fraction" if vary == "sigma" else "sigma"
    rows = []
    for m, rep in reports.items():
        sw = rep.sweep_frame()
        sw = sw[np.isclose(sw[fixed], getattr(rep, fixed))]
        piv = sw.pivot_table(index=vary, columns="kind", values="mean").reset_index()
        piv = piv.rename(columns={"real": "consis", "adv": "consis_adv"})
        piv["model"] = m
        rows.append(piv)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
