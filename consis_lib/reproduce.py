"""Orchestration: data -> train -> papermill notebooks per arch -> summary -> book.

``consis reproduce --profile P`` runs the whole pipeline:

1. the data set and the dissection probe (cached under ``runs/<profile>/``);
2. a normal and an adversarially trained model per architecture (a checkpoint
   is reused only when its stored config hash matches the profile's);
3. every per-arch notebook template ``notebooks/NN_*.ipynb`` through papermill
   into ``notebooks/runs/<arch>/``; the notebooks save their numbers as JSON
   under ``runs/<profile>/<arch>/``;
4. ``notebooks/summary.ipynb`` into ``notebooks/runs/summary.ipynb`` (Tables 1-3
   beside the paper's values, Fig. 5 and the claims scorecard of this module);
5. ``jupyter-book build book -W -n --keep-going``.

It exits non-zero when any step failed and ends with a line naming the book.

The summary helpers (:func:`load_results`, :func:`table1`, :func:`table2`,
:func:`table3`, :func:`scorecard`) read the per-arch JSON files.

Example
-------
>>> from consis_lib.reproduce import paper_table1
>>> float(paper_table1().loc[("ResNet-18", "normal"), "consis"])
0.0261
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from consis_lib.config import Profile, config_hash, get_profile
from consis_lib.errors import ConsisError

LOG = logging.getLogger(__name__)

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


# ----------------------------------------------------------------------------- paths and IO


@dataclass(frozen=True)
class RunPaths:
    """Where one profile's outputs live (relative to the repository root ``root``)."""

    root: Path
    profile: str

    @property
    def runs(self) -> Path:
        return self.root / "runs" / self.profile

    @property
    def data_cache(self) -> Path:
        return self.runs / "data"

    def arch_dir(self, arch: str) -> Path:
        return self.runs / arch

    def checkpoint_dir(self, arch: str, model: str) -> Path:
        return self.runs / arch / model

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def executed(self) -> Path:
        return self.root / "notebooks" / "runs"

    @property
    def book_html(self) -> Path:
        return self.root / "book" / "_build" / "html" / "index.html"


def save_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as JSON atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=1, sort_keys=True, default=_json_default)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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


@dataclass(frozen=True)
class ScorecardConfig:
    """Fixed before any result is seen; the book prints these with the scorecard.

    ``consis_tolerance``: C3 holds when the bootstrap CI of the relative change of
    mean consis(n) after adversarial training lies within +- this fraction.
    """

    n_boot: int = 1000
    level: float = 0.95
    seed: int = 0
    consis_tolerance: float = 0.2


def _row(claim: str, arch: str, text: str, est: float, lo: float, hi: float, holds: bool) -> dict[str, Any]:
    return dict(claim=claim, arch=arch, measured=text, estimate=est, ci_low=lo, ci_high=hi, holds=bool(holds))


def scorecard(results: Sequence[ArchResults], cfg: ScorecardConfig = ScorecardConfig()) -> pd.DataFrame:
    """The claims scorecard C1-C6, one row per claim and architecture.

    C1 consis_adv < consis for normal nets (paired over units);
    C2 adversarial training raises mean consis_adv;
    C3 mean consis changes little (relative change within ``consis_tolerance``);
    C4 aligned units drop on adversarial images for normal nets (paired over units);
    C5 adv nets lose fewer aligned units on adversarial images than normal nets;
    C6 clean accuracy drops and FGSM accuracy rises after adversarial training
    (paired over images; both must hold).

    Returns
    -------
    DataFrame with columns claim, arch, measured, estimate, ci_low, ci_high, holds.
    A claim whose inputs are missing is listed with ``holds=False`` and the reason.
    """
    kw = dict(n_boot=cfg.n_boot, level=cfg.level, seed=cfg.seed)
    rows: list[dict[str, Any]] = []
    nan = float("nan")
    for r in results:
        a = arch_label(r.arch)
        cons = r.consistency or {}
        if "normal" in cons:
            c, ca = _finite(_values(cons["normal"]["consis"]), _values(cons["normal"]["consis_adv"]))
            est, lo, hi = bootstrap_ci([ca - c], np.mean, **kw)
            rows.append(_row("C1", a, f"mean consis_adv - consis = {est:.4f} ({ca.mean():.4f} vs {c.mean():.4f})", est, lo, hi, hi < 0))
        else:
            rows.append(_row("C1", a, "no consistency results", nan, nan, nan, False))
        if "normal" in cons and "adv" in cons:
            (n_ca,) = _finite(_values(cons["normal"]["consis_adv"]))
            (a_ca,) = _finite(_values(cons["adv"]["consis_adv"]))
            est, lo, hi = bootstrap_ci([a_ca, n_ca], lambda x, y: x.mean() - y.mean(), **kw)
            rows.append(_row("C2", a, f"consis_adv adv - normal = {est:.4f} ({a_ca.mean():.4f} vs {n_ca.mean():.4f})", est, lo, hi, lo > 0))
            (n_c,) = _finite(_values(cons["normal"]["consis"]))
            (a_c,) = _finite(_values(cons["adv"]["consis"]))
            est, lo, hi = bootstrap_ci([a_c, n_c], lambda x, y: x.mean() / y.mean() - 1.0, **kw)
            tol = cfg.consis_tolerance
            rows.append(_row("C3", a, f"relative change of mean consis = {est:+.1%} (tolerance +-{tol:.0%})", est, lo, hi, -tol <= lo and hi <= tol))
        else:
            rows.append(_row("C2", a, "needs normal and adv consistency results", nan, nan, nan, False))
            rows.append(_row("C3", a, "needs normal and adv consistency results", nan, nan, nan, False))
        dis = r.dissection or {}
        thr = float(dis.get("iou_threshold", 0.04))
        drops = {}
        for m in MODELS:
            part = dis.get(m, {})
            if "real" in part and "adversarial" in part:
                drops[m] = aligned_flags(part["adversarial"], thr) - aligned_flags(part["real"], thr)
        if "normal" in drops:
            d = drops["normal"]
            est, lo, hi = bootstrap_ci([d], lambda x: 100 * x.mean(), **kw)
            real = 100 * aligned_flags(dis["normal"]["real"], thr).mean()
            rows.append(_row("C4", a, f"aligned units real {real:.1f}% -> adversarial {real + est:.1f}% ({est:+.1f} points)", est, lo, hi, hi < 0))
        else:
            rows.append(_row("C4", a, "no dissection results", nan, nan, nan, False))
        if "normal" in drops and "adv" in drops:
            est, lo, hi = bootstrap_ci([drops["adv"], drops["normal"]], lambda x, y: 100 * (x.mean() - y.mean()), **kw)
            rows.append(
                _row("C5", a, f"change of aligned units on adversarial images: adv {100 * drops['adv'].mean():+.1f} vs normal {100 * drops['normal'].mean():+.1f} points", est, lo, hi, lo > 0)
            )
        else:
            rows.append(_row("C5", a, "needs normal and adv dissection results", nan, nan, nan, False))
        perf = r.performance or {}
        if "normal" in perf and "adv" in perf:
            clean = np.asarray(perf["adv"]["clean_correct"], float) - np.asarray(perf["normal"]["clean_correct"], float)
            fg = np.asarray(perf["adv"]["fgsm_correct"], float) - np.asarray(perf["normal"]["fgsm_correct"], float)
            if clean.size != np.asarray(perf["normal"]["clean_correct"]).size:
                raise ConsisError("performance.json: normal and adv were scored on different images; rerun 05_performance")
            ec, lc, hc = bootstrap_ci([clean], lambda x: 100 * x.mean(), **kw)
            ef, lf, hf = bootstrap_ci([fg], lambda x: 100 * x.mean(), **kw)
            text = f"clean {ec:+.1f} points [{lc:+.1f}, {hc:+.1f}]; FGSM {ef:+.1f} points [{lf:+.1f}, {hf:+.1f}]"
            rows.append(_row("C6", a, text, ef, lf, hf, hc < 0 and lf > 0))
        else:
            rows.append(_row("C6", a, "needs normal and adv performance results", nan, nan, nan, False))
    return pd.DataFrame(rows)


CLAIMS = (
    ("C1", "consis_adv(n) < consis(n) for normally trained nets"),
    ("C2", "adversarial training raises mean consis_adv(n)"),
    ("C3", "adversarial training changes mean consis(n) little"),
    ("C4", "aligned units drop on adversarial images for normal nets"),
    ("C5", "adversarially trained nets keep more aligned units on adversarial images"),
    ("C6", "adversarial training lowers clean accuracy and raises FGSM accuracy"),
)


def claims_summary(card: pd.DataFrame) -> pd.DataFrame:
    """One row per claim: its statement and for how many architectures it holds."""
    rows = []
    for cid, text in CLAIMS:
        sub = card[card["claim"] == cid]
        n, k = len(sub), int(sub["holds"].sum()) if len(sub) else 0
        verdict = "holds" if n and k == n else ("does not hold" if k == 0 else f"holds for {k} of {n}")
        rows.append(dict(claim=cid, statement=text, verdict=verdict, holds_for=f"{k}/{n}"))
    return pd.DataFrame(rows).set_index("claim")


# ----------------------------------------------------------------------------- pipeline


def per_arch_templates(notebooks: Path) -> list[Path]:
    """The numbered per-arch templates (``NN_name.ipynb``) in order."""
    return sorted(p for p in notebooks.glob("[0-9][0-9]_*.ipynb"))


def execute_notebook(template: Path, out: Path, parameters: Mapping[str, Any], cwd: Path, timeout: int = 1800) -> str | None:
    """Run one template with papermill (widget state stored); returns None or an error line."""
    import papermill as pm

    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        pm.execute_notebook(
            str(template), str(out), parameters=dict(parameters), kernel_name="python3",
            cwd=str(cwd), progress_bar=False, log_output=False, execution_timeout=timeout,
            store_widget_state=True,
        )
    except Exception as exc:  # papermill wraps the cell's exception; keep going
        line = str(exc).strip().splitlines()
        return f"{template.name} ({parameters.get('arch', 'summary')}): {line[-1] if line else type(exc).__name__}"
    return None


def prepare_data(profile: Profile, paths: RunPaths) -> tuple[Path, Path]:
    """The data set and the dissection probe for ``profile`` (generated once, cached by config hash)."""
    from consis_lib.data.embedded import prepare_dataset
    from consis_lib.data.probe import prepare_probe

    return prepare_dataset(profile.data, paths.data_cache), prepare_probe(profile.data, paths.data_cache)


def train_models(profile: Profile, arch: str, data_root: Path, paths: RunPaths, device: str | None = None) -> dict[str, Path]:
    """Train the normal and the adv model of ``arch`` (adv fine-tunes the normal one).

    A checkpoint is reused only when its stored config hash equals this run's
    (``fit(resume=True)`` checks it); any other checkpoint is retrained from the start.

    Returns
    -------
    {"normal": DIR/normal/model.pt, "adv": DIR/adv/model.pt}
    """
    from consis_lib.train import fit

    ckpts: dict[str, Path] = {}
    for name, adv in (("normal", False), ("adv", True)):
        out = paths.checkpoint_dir(arch, name)
        init = ckpts.get("normal") if adv and profile.train.finetune_from_normal else None
        kw = dict(arch=arch, adv=adv, data_root=data_root, init=init, device=device, progress=False)
        try:
            res = fit(profile, out, resume=(out / "model.pt").is_file(), **kw)
        except ConsisError as exc:
            if "another configuration" not in str(exc):
                raise
            LOG.info("%s: config changed, retraining from scratch", out)
            res = fit(profile, out, resume=False, **kw)
        ckpts[name] = Path(res.checkpoint)
    return ckpts


class ArchContext:
    """What a per-arch notebook needs: data, the two models, the metric layer.

    Built by :func:`notebook_context`; every property is computed on first use.

    Example
    -------
    >>> ctx = notebook_context("smoke", "resnet18", "runs")
    >>> model = ctx.model("adv")
    """

    def __init__(self, profile: Profile, arch: str | None, runs_root: str | Path = "runs", device: str | None = None) -> None:
        import torch

        if arch is not None and arch not in profile.archs:
            raise ConsisError(f"unknown arch {arch!r}; the profile has {', '.join(profile.archs)}")
        self.profile = profile
        self.arch = arch
        self.paths = RunPaths(Path(runs_root).resolve().parent, profile.name)
        self.out = self.paths.arch_dir(arch) if arch else self.paths.runs
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._cache: dict[str, Any] = {}

    def _memo(self, key: str, make: Any) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def label(self) -> str:
        """Display name, e.g. ``ResNet-18``."""
        return arch_label(self.arch)

    @property
    def data_root(self) -> Path:
        from consis_lib.data.embedded import prepare_dataset

        return self._memo("data_root", lambda: Path(prepare_dataset(self.profile.data, self.paths.data_cache)))

    @property
    def probe_root(self) -> Path:
        from consis_lib.data.probe import prepare_probe

        return self._memo("probe_root", lambda: Path(prepare_probe(self.profile.data, self.paths.data_cache)))

    @property
    def layer(self) -> str:
        """The metric layer (last conv layer after ReLU)."""
        from consis_lib.models import metric_layer

        return metric_layer(self.arch, self.profile.model.scale)

    def dataset(self, split: str = "val") -> Any:
        """The ``WnidImageFolder`` of ``split`` (images [3,H,W] in [0,1], labels)."""
        from consis_lib.data.imagefolder import WnidImageFolder

        return self._memo(f"ds-{split}", lambda: WnidImageFolder(self.data_root, split, image_size=self.profile.data.image_size))

    def tensors(self, split: str = "val") -> tuple[Any, Any]:
        """All images ``[N, 3, H, W]`` and labels ``[N]`` of ``split``, decoded once and kept."""
        import torch

        def make() -> tuple[Any, Any]:
            ds = self.dataset(split)
            items = [ds[i] for i in range(len(ds))]
            return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])

        return self._memo(f"tensors-{split}", make)

    def loader(self, split: str = "val") -> Any:
        """A deterministic (unshuffled) DataLoader over the preloaded :meth:`tensors`."""
        from torch.utils.data import DataLoader, TensorDataset

        return DataLoader(TensorDataset(*self.tensors(split)), batch_size=self.profile.dissect.batch_size, shuffle=False)

    def model(self, name: str) -> Any:
        """The trained ``"normal"`` or ``"adv"`` model (eval mode, on ``self.device``)."""
        from consis_lib.train import load_checkpoint

        if name not in MODELS:
            raise ConsisError(f"unknown model {name!r}; use 'normal' or 'adv'")

        def make() -> Any:
            m, _meta = load_checkpoint(self.paths.checkpoint_dir(self.arch, name), arch=self.arch)
            return m.to(self.device).eval()

        return self._memo(f"model-{name}", make)

    def train_logs(self) -> dict[str, list[dict[str, Any]]]:
        """The per-epoch training log of each model (``log.jsonl``)."""
        logs = {}
        for name in MODELS:
            f = self.paths.checkpoint_dir(self.arch, name) / "log.jsonl"
            if not f.is_file():
                raise ConsisError(f"{f} is missing; train with `consis reproduce --profile {self.profile.name}`")
            logs[name] = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        return logs

    def class_names(self) -> list[str]:
        return list(self.dataset("val").names)

    def distances(self) -> np.ndarray:
        """WordNet distances [C, C] between the classes (for Eq. 2)."""
        from consis_lib.wordnet import distance_matrix

        return self._memo("dist", lambda: distance_matrix(self.dataset("val").wnids))

    def activations(self, name: str, keep_maps: bool = False) -> Any:
        """``a_n(x)`` on the val images and on their FGSM counterparts (one pass)."""
        from consis_lib.activations import fgsm_attack, unit_activations

        def make() -> Any:
            return unit_activations(
                self.model(name), self.loader("val"), self.layer, reduce=self.profile.metric.activation,
                device=self.device, keep_maps=keep_maps, attack=fgsm_attack(self.profile.attack.eps), progress=False,
            )

        return self._memo(f"acts-{name}-{keep_maps}", make)

    def unit_consistency(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Per-unit ``consis(n)`` and ``consis_adv(n)`` [K] (Eq. 1-3 at the defaults, no bootstrap).

        The same numbers as :meth:`consistency` gives per unit, without its
        confidence intervals and sweeps (used by the explorer).
        """
        from consis_lib.consistency import consistency, label_distributions
        from consis_lib.wordnet import correlation_matrix

        def make() -> tuple[np.ndarray, np.ndarray]:
            acts, m = self.activations(name), self.profile.metric
            A = correlation_matrix(self.distances(), m.sigma)
            C = A.shape[0]
            out = []
            for a in (acts.acts, acts.adv_acts):
                P = label_distributions(a, acts.labels, C, m.top_fraction, m.min_top)
                out.append(np.asarray(consistency(P, A), float))
            return out[0], out[1]

        return self._memo(f"unit-cons-{name}", make)

    def consistency(self, name: str) -> Any:
        """Eq. 1-3 report (consis, consis_adv per unit, means with bootstrap CIs, sweeps)."""
        from consis_lib.consistency import consistency_report

        return self._memo(
            f"cons-{name}",
            lambda: consistency_report(self.activations(name), self.distances(), self.profile.metric, seed=self.profile.train.seed),
        )

    def probe(self) -> Any:
        """The Broden-format probe set (embedded or real) at the profile's image size."""
        from consis_lib.data.broden import Broden

        size = self.profile.data.image_size
        return self._memo("probe", lambda: Broden(self.probe_root, image_size=size))

    def dissect(self, name: str, adversarial: bool = False) -> Any:
        """Network dissection of the metric layer on real or least-likely-class images."""
        from consis_lib.activations import least_likely_attack
        from consis_lib.dissect import dissect

        attack = least_likely_attack(self.profile.attack.eps, self.profile.attack.ll_step) if adversarial else None
        return self._memo(
            f"dissect-{name}-{adversarial}",
            lambda: dissect(self.model(name), self.layer, self.probe(), self.profile.dissect, attack=attack, device=self.device, progress=False),
        )

    def dissection_results(self) -> dict[str, Any]:
        """Per-unit best concepts for both models on real and adversarial probe images (JSON-ready)."""
        out: dict[str, Any] = {"iou_threshold": self.profile.dissect.iou_threshold, "layer": self.layer}
        for name in MODELS:
            out[name] = {}
            for images in ("real", "adversarial"):
                res = self.dissect(name, adversarial=images == "adversarial")
                table = res.table[["unit", "concept", "category", "iou"]]
                out[name][images] = {"units": table.astype(object).where(table.notna(), None).values.tolist()}
        return out

    def fgsm_correct(self, name: str, eps: float) -> np.ndarray:
        """Per val image 0/1: the model classifies the FGSM image (``eps``) correctly."""
        import torch

        from consis_lib.attacks import fgsm

        model = self.model(name)
        flags = []
        for x, y in self.loader("val"):
            x, y = x.to(self.device), y.to(self.device)
            xa = fgsm(model, x, y, eps) if eps > 0 else x
            with torch.no_grad():
                flags.append((model(xa).argmax(1) == y).cpu().numpy())
        return np.concatenate(flags).astype(int)

    def performance(self, eps_grid: Sequence[float] = (0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255)) -> dict[str, Any]:
        """Table 3 inputs: per-image clean and FGSM correctness, and accuracy vs eps."""
        eps = self.profile.attack.eps
        out: dict[str, Any] = {}
        for name in MODELS:
            flags = {e: self.fgsm_correct(name, e) for e in sorted(set(eps_grid) | {eps, 0.0})}
            out[name] = {
                "eps": eps,
                "clean_correct": flags[0.0].tolist(),
                "fgsm_correct": flags[eps].tolist(),
                "eps_curve": {f"{e:.6f}": float(f.mean()) for e, f in flags.items()},
            }
        return out

    def targeted_example(self, name: str = "normal", index: int = 0) -> dict[str, Any]:
        """Eq. 4 on one val image: the target is the class WordNet puts farthest from its label."""
        import torch

        from consis_lib.attacks import targeted_l2

        xs, ys = self.tensors("val")
        x, y = xs[index], int(ys[index])
        target = int(np.argmax(self.distances()[y]))
        model = self.model(name)
        a = self.profile.attack
        xb = x[None].to(self.device)
        x_adv = targeted_l2(model, xb, torch.tensor([target], device=self.device), a.targeted_lambda, a.targeted_steps, a.targeted_lr)
        with torch.no_grad():
            before = int(model(xb).argmax(1))
            after = int(model(x_adv).argmax(1))
        names = self.class_names()
        return dict(
            x=x, x_adv=x_adv[0].cpu(), label=names[y], target=names[target], pred_before=names[before],
            pred_after=names[after], l2=float((x_adv[0].cpu() - x).norm()), success=after == target,
        )

    def result(self, name: str) -> Any:
        """A results file saved by an earlier notebook of this arch (e.g. ``"consistency"``)."""
        return load_json(self.out / f"{name}.json")

    def save(self, name: str, obj: Any) -> Path:
        """Save ``obj`` as ``runs/<profile>/<arch>/<name>.json`` (atomic)."""
        return save_json(obj, self.out / f"{name}.json")


def notebook_context(profile: str, arch: str | None, runs_root: str | Path = "runs", device: str | None = None) -> ArchContext:
    """The :class:`ArchContext` of a per-arch notebook (its ``parameters`` cell's values);
    ``arch=None`` for the arch-independent data page."""
    return ArchContext(get_profile(profile), arch, runs_root, device)


def build_book(root: Path) -> str | None:
    """``jupyter-book build book -W -n --keep-going`` with the output in ``book/_build``."""
    launcher = "import sys; from jupyter_book.cli.main import main; sys.exit(main())"
    cmd = [sys.executable, "-c", launcher, "build", str(root / "book"), "-W", "-n", "--keep-going", "--path-output", str(root / "book")]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "WARNING" in ln or "rror" in ln]
        for ln in tail[-20:]:
            LOG.error("%s", ln)
        return "jupyter-book build failed (warnings above)"
    return None


def template_parameters(profile: Profile, template: str) -> dict[str, Any]:
    """Extra papermill parameters of one template for a profile.

    The ambiguity page uses discrepancy maps (Zhou et al. 2015), except on the
    ``smoke`` profile, whose time budget only allows the upsampled activation map;
    the page names the highlight it shows.
    """
    if template == "02_ambiguity":
        return {"highlight": "activation" if profile.name == "smoke" else "discrepancy"}
    return {}


def reproduce(
    profile_name: str,
    root: str | Path = ".",
    archs: Sequence[str] | None = None,
    build: bool = True,
    seed: int = 0,
) -> int:
    """Run the whole pipeline for a profile; returns the process exit code (0 = success).

    Parameters
    ----------
    profile_name : ``smoke``, ``default``, ``full`` or ``paper``.
    root : repository root (holds ``notebooks/``, ``book/``; ``runs/`` is written here).
    archs : subset of the profile's architectures (default: all of them).
    build : also build the book.
    seed : passed to every notebook's ``parameters`` cell.
    """
    from tqdm.auto import tqdm

    profile = get_profile(profile_name)
    root = Path(root).resolve()
    paths = RunPaths(root, profile.name)
    archs = tuple(archs or profile.archs)
    unknown = [a for a in archs if a not in profile.archs]
    if unknown:
        raise ConsisError(f"unknown arch {unknown}; choose from {', '.join(profile.archs)}")
    templates = per_arch_templates(paths.notebooks)
    summary = paths.notebooks / "summary.ipynb"
    data_nb = paths.notebooks / "data.ipynb"
    if not templates or not summary.is_file() or not data_nb.is_file():
        raise ConsisError(f"notebook templates missing in {paths.notebooks}; restore notebooks/*.ipynb from the repository")
    failures: list[str] = []
    t0 = time.time()
    steps = 2 + 2 * len(archs) + len(archs) * len(templates) + 1 + int(build)
    bar = tqdm(total=steps, desc=f"consis reproduce {profile.name}", unit="step")
    try:
        bar.set_postfix_str("data")
        data_root, _probe_root = prepare_data(profile, paths)
        bar.update(1)
        if paths.executed.exists():
            shutil.rmtree(paths.executed)  # never publish notebooks of an earlier run
        save_json({"profile": profile.name, "archs": list(archs), "config_hash": config_hash(profile)}, paths.runs / "run.json")
        bar.set_postfix_str("data page")
        common = dict(arch="all", profile=profile.name, seed=seed, runs_root=str(root / "runs"))
        err = execute_notebook(data_nb, paths.executed / "data.ipynb", common, root)
        if err:
            LOG.error("%s", err)
            failures.append(err)
        bar.update(1)
        for arch in archs:
            bar.set_postfix_str(f"train {arch}")
            try:
                train_models(profile, arch, data_root, paths)
            except Exception as exc:  # keep going: the other archs still run
                LOG.error("training %s failed: %s", arch, exc)
                failures.append(f"train {arch}: {exc}")
                bar.update(2 + len(templates))
                continue
            bar.update(2)
            for tpl in templates:
                bar.set_postfix_str(f"{arch} {tpl.stem}")
                params = dict(arch=arch, profile=profile.name, seed=seed, runs_root=str(root / "runs"))
                params.update(template_parameters(profile, tpl.stem))
                err = execute_notebook(tpl, paths.executed / arch / tpl.name, params, root)
                if err:
                    LOG.error("%s", err)
                    failures.append(err)
                bar.update(1)
        bar.set_postfix_str("summary")
        err = execute_notebook(summary, paths.executed / "summary.ipynb", dict(common, archs=list(archs)), root)
        if err:
            LOG.error("%s", err)
            failures.append(err)
        bar.update(1)
        if build:
            bar.set_postfix_str("book")
            err = build_book(root)
            if err:
                failures.append(err)
            bar.update(1)
    finally:
        bar.close()
    elapsed = time.time() - t0
    if failures:
        for f in failures:
            LOG.error("failed: %s", f)
        sys.stdout.write(f"consis reproduce: {len(failures)} step(s) failed after {elapsed:.0f} s; see the messages above\n")
        return 1
    where = paths.book_html if build else paths.executed
    sys.stdout.write(f"consis reproduce: done in {elapsed:.0f} s; the book is at {where}\n")
    return 0


def _cli(args: argparse.Namespace) -> int:
    logging.getLogger("papermill").setLevel(logging.WARNING)  # one progress bar, not a line per cell
    return reproduce(args.profile, root=args.root, archs=args.arch or None, build=not args.no_book, seed=args.seed)


def add_cli(sub: argparse._SubParsersAction) -> None:
    """Register ``consis reproduce --profile P [--arch A ...] [--no-book] [--seed S]``."""
    p = sub.add_parser("reproduce", help="data -> train -> notebooks -> book, for one profile")
    p.add_argument("--profile", default="default", choices=("smoke", "default", "full", "paper"))
    p.add_argument("--arch", action="append", help="only this architecture (repeatable)")
    p.add_argument("--root", default=".", help="repository root (default: current folder)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-book", action="store_true", help="stop after the notebooks")
    p.set_defaults(func=_cli)
