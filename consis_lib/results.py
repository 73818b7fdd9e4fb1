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
from consis_lib.concepts import CATEGORIES
from consis_lib.errors import ConsisError

ARCH_NAMES = (("alexnet", "AlexNet"), ("vgg16", "VGG-16"), ("resnet18", "ResNet-18"))
# normal; AT = the Eq. 6 fine-tuning schedule with beta = 0 (the control); Eq. 6
MODELS = ("normal", "at", "adv")
MODEL_LABELS = {"normal": "normal", "at": "AT (beta = 0)", "adv": "Eq. 6"}

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
class SeedResults:
    """The measures of one (architecture, seed), as saved by :mod:`consis_lib.measures`."""

    arch: str
    seed: int
    measures: Mapping[str, Any]

    def model(self, name: str) -> Mapping[str, Any] | None:
        """One model's measures (``normal``, ``at``, ``adv`` or a variant), or None."""
        return self.measures.get("models", {}).get(name)


def read_measures(path: Path, expected: Mapping[str, Any]) -> Mapping[str, Any]:
    """Read one ``measures.json`` and check it belongs to this run.

    ``expected`` holds the identity fields it must carry (profile, arch, seed,
    config hash, checkpoint hashes). A missing, unreadable, empty or mismatching
    file raises :class:`ConsisError` with one line naming the file.
    """
    rerun = f"rerun `consis reproduce --profile {expected.get('profile', '<profile>')}`"
    if not path.is_file():
        raise ConsisError(f"{path} is missing: {rerun}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConsisError(f"{path} is not readable JSON ({exc.__class__.__name__}): {rerun}") from exc
    if not isinstance(data, dict) or not data.get("models") or "identity" not in data:
        raise ConsisError(f"{path} holds no measures: {rerun}")
    identity = data["identity"]
    for key, want in expected.items():
        if identity.get(key) != want:
            raise ConsisError(f"{path} is stale: its {key} ({identity.get(key)!r:.60}) does not match this run's: {rerun}")
    return data


def load_results(runs_dir: str | Path, profile: Any, archs: Sequence[str] | None = None) -> list[SeedResults]:
    """Read every (arch, seed) ``measures.json`` of a run and check its identity.

    Parameters
    ----------
    runs_dir : ``runs/<profile>`` folder.
    profile : the run's :class:`~consis_lib.config.Profile` (its config hash and
        seeds); every file must carry its hash and the SHA-256 of the checkpoints
        now on disk, so nothing stale is ever published.
    archs : architectures to read (default: the profile's).
    """
    from consis_lib.config import config_hash
    from consis_lib.measures import MEASURES, file_sha256

    out = []
    for arch in archs or profile.archs:
        for seed in profile.study.seeds_of(arch):
            d = Path(runs_dir) / arch / f"seed{seed}"
            expected: dict[str, Any] = dict(profile=profile.name, arch=arch, seed=seed, config_hash=config_hash(profile))
            data = read_measures(d / MEASURES, expected)
            names = data["identity"].get("checkpoints", {})
            ckpts = {m: file_sha256(d / m / "model.pt") if (d / m / "model.pt").is_file() else None for m in names}
            read_measures(d / MEASURES, dict(expected, checkpoints=ckpts))
            out.append(SeedResults(arch=arch, seed=seed, measures=data))
    return out


def first_seeds(results: Sequence[SeedResults]) -> list[SeedResults]:
    """One entry per architecture: its first seed (what the per-arch pages show)."""
    seen: dict[str, SeedResults] = {}
    for r in results:
        seen.setdefault(r.arch, r)
    return list(seen.values())


def layer_mean(values: Sequence[float | None]) -> float:
    """Mean over the defined units (NaN when none is defined)."""
    v = _values(values)
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def imagenet_baseline(metric: Any, images_per_class: int = 50) -> float:
    """The permutation baseline of the plug-in Eq. 3 on the paper's setting: ILSVRC-2012
    validation (1000 classes, ``images_per_class`` each), the top ``metric.top_fraction``
    of the images activating a unit, A of Eq. 2 at ``metric.sigma`` over the WordNet
    distances of the 1000 classes. Dividing the paper's Table 1 by it gives its lift,
    comparable with this run's (about 12 s: 1000 x 1000 WordNet distances)."""
    import torch

    from consis_lib.classmap import imagenet1k_wnids
    from consis_lib.consistency import num_top
    from consis_lib.consistency_stats import baseline_plugin
    from consis_lib.wordnet import correlation_matrix, distance_matrix

    wnids = list(imagenet1k_wnids())
    A = torch.as_tensor(correlation_matrix(distance_matrix(wnids), metric.sigma), dtype=torch.float64)
    counts = torch.full((len(wnids),), float(images_per_class), dtype=torch.float64)
    m = num_top(len(wnids) * images_per_class, metric.top_fraction, metric.min_top)
    return float(baseline_plugin(counts, torch.tensor([float(m)]), A)[0])


def table1(results: Sequence[SeedResults], paper_baseline: float | None = None) -> pd.DataFrame:
    """Table 1 (first seed of each arch): mean consis and consis_adv per model (plug-in,
    and ``*_u`` the unbiased pair form), their lift over the permutation baseline
    (the common scale), the attack-success
    controls, and the paper's values (models ``normal`` and ``adv``), with the paper's
    lift when ``paper_baseline`` (:func:`imagenet_baseline`) is given."""
    paper = paper_table1()
    rows = []
    for r in first_seeds(results):
        for m in MODELS:
            d = r.model(m)
            if d is None:
                continue
            key = (arch_label(r.arch), m)
            p = paper.loc[key] if key in paper.index else None
            rows.append(
                dict(
                    arch=key[0], model=MODEL_LABELS[m], units=int(np.isfinite(_values(d["consis"])).sum()),
                    consis=layer_mean(d["consis"]), consis_adv=layer_mean(d["consis_adv"]),
                    consis_u=layer_mean(d.get("consis_u", [])), consis_adv_u=layer_mean(d.get("consis_u_adv", [])),
                    lift=layer_mean(d.get("lift", [])), lift_adv=layer_mean(d.get("lift_adv", [])),
                    attack_success=d["attack_success"],
                    consis_adv_success=layer_mean(d["consis_adv_success"]),
                    consis_adv_shared=layer_mean(d["consis_adv_shared"]),
                    paper_consis=None if p is None else p["consis"],
                    paper_consis_adv=None if p is None else p["consis_adv"],
                )
            )
            if paper_baseline:
                rows[-1]["paper_lift"] = None if p is None else p["consis"] / paper_baseline
                rows[-1]["paper_lift_adv"] = None if p is None else p["consis_adv"] / paper_baseline
    return pd.DataFrame(rows)


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


def table2(results: Sequence[SeedResults]) -> pd.DataFrame:
    """Table 2 (first seed of each arch): % aligned units per category, real and
    adversarial (least-likely-class) probe images, per arch and model."""
    rows = []
    for r in first_seeds(results):
        thr = float(r.measures.get("iou_threshold", 0.04))
        for m in MODELS:
            d = r.model(m)
            if d is None or "dissection" not in d:
                continue
            for images in ("real", "adversarial"):
                rows.append(
                    dict(arch=arch_label(r.arch), model=m, images=images, **category_ratios(d["dissection"][images], thr))
                )
    return pd.DataFrame(rows).set_index(["arch", "model", "images"]) if rows else pd.DataFrame()


def table3(results: Sequence[SeedResults]) -> pd.DataFrame:
    """Table 3 (first seed of each arch): clean and FGSM accuracy per model."""
    rows = []
    for r in first_seeds(results):
        for m in MODELS:
            d = r.model(m)
            if d is None:
                continue
            rows.append(
                dict(
                    arch=arch_label(r.arch), model=MODEL_LABELS[m], images=len(d["clean_correct"]),
                    clean_acc=float(np.mean(d["clean_correct"])), fgsm_acc=float(np.mean(d["fgsm_correct"])),
                    eps=r.measures.get("eps"),
                )
            )
    return pd.DataFrame(rows)


def table2_beside_paper(results: Sequence[SeedResults]) -> pd.DataFrame:
    """Table 2 with the paper's published row under each measured row (column ``source``)."""
    ours = table2(results)
    if ours.empty:
        return ours
    paper = paper_table2()
    rows = []
    for key, row in ours.iterrows():
        arch, m, images = key
        rows.append(dict(arch=arch, model=MODEL_LABELS[m], images=images, source="this run", **row.to_dict()))
        if key in paper.index:
            rows.append(dict(arch=arch, model=MODEL_LABELS[m], images=images, source="paper", **paper.loc[key].to_dict()))
    return pd.DataFrame(rows)


def fig5_data(results: Sequence[SeedResults]) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Fig. 5 inputs (first seed of each arch): arch label -> model -> (consis, consis_adv)."""
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for r in first_seeds(results):
        for m in MODELS:
            d = r.model(m)
            if d is not None:
                out.setdefault(arch_label(r.arch), {})[m] = (_values(d["consis"]), _values(d["consis_adv"]))
    return out


def mean_share(log: Sequence[Mapping[str, Any]]) -> float:
    """The consistent term's share of the Eq. 6 loss averaged over a run's epochs."""
    shares = [e["share_consistent"] for e in log if "share_consistent" in e]
    return float(np.mean(shares)) if shares else float("nan")


def verdict_sentence(verdicts: pd.DataFrame, claim: str) -> str:
    """``"holds for ResNet-18; holds for 2 of 3 seeds for AlexNet"`` from :func:`consis_lib.scorecard.verdicts`."""
    sub = verdicts[verdicts["claim"] == claim]
    return "; ".join(f"{v} for {a}" for a, v in zip(sub["arch"], sub["verdict"])) or "was not measured"


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
