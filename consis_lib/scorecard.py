"""The claims scorecard: each qualitative claim of the paper (C1-C6) tested on the
run's own numbers with a bootstrap confidence interval, reported as holds / does not hold.

The decision rules are fixed in :class:`ScorecardConfig` before any result is seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from consis_lib.errors import ConsisError
from consis_lib.results import MODELS, ArchResults, _finite, _values, aligned_flags, arch_label, bootstrap_ci

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
