"""Tables 1-3 and the claims scorecard as the book shows them."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Literal

import pandas as pd

from consis_lib.errors import ConsisError
from consis_lib.present.numbers import MISSING, finite_number, interval
from consis_lib.present.tables import format_frame, text_frame
from consis_lib.results import CATEGORIES

TABLE1_LABELS = {
    "consis_u": "consis, unbiased",
    "consis_adv_u": "consis_adv, unbiased",
    "lift": "lift",
    "lift_adv": "lift_adv",
    "attack_success": "attack success",
    "consis_adv_success": "consis_adv, successful attacks",
    "consis_adv_shared": "consis_adv, shared FGSM set",
}
"""Column names of Table 1's unbiased form, lift and attack-success controls as the book prints them."""


def table1_view(t1: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Table 1 for the book: arch, model, units, consis, consis_adv, controls, then the paper's.

    ``attack_success`` (a fraction) is shown in %; columns ``paper_*`` are named
    "paper: ..." and placed last; ``*_lo``/``*_hi`` pairs (e.g. ``consis_lo``,
    ``consis_hi``) become intervals of their column.
    """
    cols = [c for c in t1.columns if not c.startswith("paper_")] + [c for c in t1.columns if c.startswith("paper_")]
    t1 = t1[cols]
    intervals = {c: (f"{c}_lo", f"{c}_hi") for c in t1.columns if f"{c}_lo" in t1.columns and f"{c}_hi" in t1.columns}
    labels = {c: "paper: " + c.removeprefix("paper_") for c in t1.columns if c.startswith("paper_")}
    labels.update({c: v for c, v in TABLE1_LABELS.items() if c in t1.columns})
    pct = [c for c in ("attack_success",) if c in t1.columns]
    return format_frame(t1, percent_cols=pct, intervals=intervals, labels=labels, digits=digits)


def table2_view(t2: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Table 2 for the book (values already in %), from ``results.table2`` or
    ``results.table2_beside_paper`` (its ``source`` level becomes a column)."""
    cats = [c for c in CATEGORIES if c in t2.columns]
    return format_frame(t2, percent_cols=cats, percent_scale=1.0, digits=digits)


def table3_view(t3: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Table 3 for the book: accuracies as %, FGSM eps as ``k/255``."""
    t3 = t3.copy()
    if "eps" in t3.columns:
        t3["eps"] = [MISSING if finite_number(e) is None else f"{float(e) * 255:g}/255" for e in t3["eps"]]
    acc = [c for c in t3.columns if c.endswith("_acc")]
    labels = {"clean_acc": "clean accuracy", "fgsm_acc": "FGSM accuracy", "eps": "FGSM eps"}
    return format_frame(t3, percent_cols=acc, labels=labels, digits=digits)

# ----------------------------------------------------------------------------- scorecard

_TEXT_COLS = ("text", "measured", "evidence")
_LO_COLS = ("lo", "ci_low")
_HI_COLS = ("hi", "ci_high")


def verdict(holds: bool, k: int | None = None, n: int | None = None) -> str:
    """A claim's verdict in words: ``"holds"``, ``"does not hold"``, or with seeds
    ``"holds (3 of 3 seeds)"`` / ``"does not hold (1 of 3 seeds)"``.

    ``holds`` is the decision rule's outcome; ``k`` of ``n`` seeds met the claim.
    """
    word = "holds" if holds else "does not hold"
    return word if n is None or n <= 1 else f"{word} ({k} of {n} seeds)"


def _pick(card: pd.DataFrame, names: Sequence[str]) -> str | None:
    return next((c for c in names if c in card.columns), None)


def _evidence(rows: pd.DataFrame, text: str | None, lo: str | None, hi: str | None, digits: int) -> list[str]:
    """One line per row: the scorecard's text and the interval of its estimate."""
    lines = []
    per_seed = "seed" in rows.columns and len(rows) > 1
    for _, r in rows.iterrows():
        line = (f"seed {r['seed']}: " if per_seed else "") + (str(r[text]) if text else "")
        if "estimate" in rows.columns and lo and hi and finite_number(r["estimate"]) is not None:
            line += f" (estimate {interval(r['estimate'], r[lo], r[hi], digits)})"
        lines.append(line.strip())
    return lines


def _verdict_cell(rows: pd.DataFrame, lines: list[str], evidence: str) -> str:
    if "tested" in rows.columns:  # per-seed rows: the seeds whose numbers could test the claim count
        rows = rows[rows["tested"].astype(bool)]
        if rows.empty:
            return _folded("– not measured", lines, evidence)
    if "seeds_holding" in rows.columns and "seeds" in rows.columns:
        k, n = int(rows["seeds_holding"].iloc[0]), int(rows["seeds"].iloc[0])
        holds = bool(rows["holds"].iloc[0])
    elif "seed" in rows.columns and len(rows) > 1:  # one row per seed: holds in every seed
        k, n = int(rows["holds"].astype(bool).sum()), int(rows["seed"].nunique())
        holds = k == n
    else:
        holds, k, n = bool(rows["holds"].iloc[0]), None, None
    return _folded(("✓ " if holds else "✗ ") + verdict(holds, k, n), lines, evidence)


def _folded(label: str, lines: list[str], evidence: str) -> str:
    """The verdict ``label`` with the evidence ``lines`` folded under it (or in its title)."""
    if evidence == "hover":
        return f'<span title="{html.escape("; ".join(lines), quote=True)}">{html.escape(label)}</span>'
    body = "<br>".join(html.escape(ln) for ln in lines)
    return f"<details><summary>{html.escape(label)}</summary>{body}</details>"


def scorecard_view(
    card: pd.DataFrame,
    claims: Mapping[str, str] | None = None,
    evidence: Literal["details", "hover"] = "details",
    digits: int = 3,
) -> pd.DataFrame:
    """The claims scorecard as one row per claim and one verdict column per architecture.

    Parameters
    ----------
    card : :func:`consis_lib.scorecard.scorecard` output: columns ``claim``,
        ``arch``, ``holds`` and optionally the evidence text (``measured`` or
        ``text``), ``estimate`` with its bounds (``ci_low``/``ci_high`` or
        ``lo``/``hi``), a ``statement`` of the claim, and seeds: either
        ``seeds_holding`` and ``seeds`` (k of n, with ``holds`` the rule's
        outcome), or one row per ``seed`` (then the claim holds when every seed does).
    claims : claim id -> the claim in words (default: the card's ``statement``
        column, else :data:`consis_lib.scorecard.CLAIMS`).
    evidence : ``"details"`` folds the evidence under the verdict (a ``<details>``
        element); ``"hover"`` puts it in the verdict's ``title`` attribute.

    Returns
    -------
    DataFrame of HTML strings (claim text escaped), columns ``claim`` then one per
    architecture in the card's order; show it with :func:`styled` or :func:`myst_table`.
    """
    missing = [c for c in ("claim", "arch", "holds") if c not in card.columns]
    if missing:
        raise ConsisError(f"the scorecard lacks columns {missing}; pass the frame of scorecard.scorecard()")
    if evidence not in ("details", "hover"):
        raise ConsisError(f"evidence must be 'details' or 'hover', not {evidence!r}")
    if claims is None and "statement" in card.columns:
        claims = dict(zip(card["claim"], card["statement"]))
    if claims is None:
        from consis_lib.scorecard import CLAIMS

        claims = dict(CLAIMS)
    text, lo, hi = _pick(card, _TEXT_COLS), _pick(card, _LO_COLS), _pick(card, _HI_COLS)
    archs = list(dict.fromkeys(card["arch"]))
    rows = []
    for cid in dict.fromkeys(card["claim"]):
        row = {"claim": html.escape(f"{cid}: {claims[cid]}" if cid in claims else str(cid))}
        for arch in archs:
            sub = card[(card["claim"] == cid) & (card["arch"] == arch)]
            row[str(arch)] = _verdict_cell(sub, _evidence(sub, text, lo, hi, digits), evidence) if len(sub) else MISSING
        rows.append(row)
    return text_frame(rows)
