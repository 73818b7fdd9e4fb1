"""Tables a reader can read: number formatting, book tables and the claims scorecard.

Nothing here computes a metric. The functions turn the frames of
:mod:`consis_lib.results` and :mod:`consis_lib.scorecard` into frames of display
strings (3 significant digits, percentages with ``%``, intervals as
``0.52 [0.49, 0.55]``, model names as the book writes them, no index), and wrap
those either as a pandas ``Styler`` (HTML, :func:`styled`) or as a numbered MyST
table (:func:`myst_table`, rendered by myst-nb with ``nb_render_markdown_format:
myst``; Sphinx's ``numfig`` numbers it "Table N").

Example
-------
>>> interval(0.52, 0.49, 0.55, digits=2)
'0.52 [0.49, 0.55]'
>>> percent(0.8412)
'84.1%'
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from IPython.display import Markdown
from pandas.io.formats.style import Styler

from consis_lib.errors import ConsisError
from consis_lib.results import CATEGORIES, MODEL_LABELS, arch_label

MISSING = "–"
"""What a missing or undefined value (None, NaN) is shown as."""

_NUMERIC = "numeric"  # DataFrame.attrs key: columns that hold formatted numbers


# ----------------------------------------------------------------------------- numbers


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _decimals(magnitude: float, digits: int) -> int:
    """Decimals that give ``digits`` significant digits to ``magnitude`` (never negative)."""
    if magnitude == 0:
        return max(digits - 1, 0)
    rounded = float(f"{abs(magnitude):.{digits - 1}e}")  # 0.09996 -> 0.100: count its digits
    return max(digits - 1 - math.floor(math.log10(rounded)), 0)


def _fixed(v: float, decimals: int, signed: bool) -> str:
    s = f"{v:+.{decimals}f}" if signed else f"{v:.{decimals}f}"
    if float(s) == 0:  # no "-0.00", and an exact zero reads as 0
        return s.replace("-", "+" if signed else "")
    return s


def sig(x: Any, digits: int = 3, signed: bool = False) -> str:
    """``x`` with ``digits`` significant digits, in fixed notation.

    Large numbers keep their integer digits (``1234.5`` -> ``"1234"``); an exact
    zero is ``"0"``; None and NaN are :data:`MISSING`.

    Example
    -------
    >>> sig(0.023456), sig(84.123), sig(-0.5, signed=True), sig(0.0)
    ('0.0235', '84.1', '-0.500', '0')
    """
    v = _finite(x)
    if v is None:
        return MISSING
    if v == 0:
        return "+0" if signed else "0"
    return _fixed(v, _decimals(v, digits), signed)


def percent(x: Any, digits: int = 3, scale: float = 100.0, signed: bool = False) -> str:
    """A fraction (``scale=100``) or a value already in % (``scale=1``) as ``"84.1%"``.

    Example
    -------
    >>> percent(0.8412), percent(68.75, scale=1), percent(0.05), percent(-0.012, signed=True)
    ('84.1%', '68.8%', '5.00%', '-1.20%')
    """
    v = _finite(x)
    return MISSING if v is None else sig(v * scale, digits, signed) + "%"


def interval(est: Any, lo: Any, hi: Any, digits: int = 3, scale: float = 1.0, unit: str = "", signed: bool = False) -> str:
    """An estimate with its interval, ``"0.520 [0.490, 0.550]"``, on common decimals.

    The decimals give ``digits`` significant digits to the largest magnitude of the
    three, so the bounds line up with the estimate. ``scale=100, unit="%"`` shows a
    fraction as percentages; a missing bound prints the estimate alone.

    Example
    -------
    >>> interval(0.52, 0.49, 0.55, digits=2)
    '0.52 [0.49, 0.55]'
    >>> interval(-0.2352, -0.3, -0.17)
    '-0.235 [-0.300, -0.170]'
    >>> interval(0.841, 0.823, 0.859, scale=100, unit="%")
    '84.1% [82.3%, 85.9%]'
    """
    vals = [_finite(v) for v in (est, lo, hi)]
    if vals[0] is None:
        return MISSING
    e, l, h = (None if v is None else v * scale for v in vals)
    dec = _decimals(max(abs(v) for v in (e, l, h) if v is not None), digits)
    text = _fixed(e, dec, signed) + unit
    if l is None or h is None:
        return text
    return f"{text} [{_fixed(l, dec, signed)}{unit}, {_fixed(h, dec, signed)}{unit}]"


def direction(x: Any) -> str:
    """An arrow for the sign of an effect: ``"↑"``, ``"↓"``, ``"="`` or :data:`MISSING`."""
    v = _finite(x)
    if v is None:
        return MISSING
    return "↑" if v > 0 else ("↓" if v < 0 else "=")


def model_label(model: str) -> str:
    """The book's name of a model kind (``"at"`` -> ``"AT (beta = 0)"``); others unchanged."""
    return MODEL_LABELS.get(str(model), str(model))


# ----------------------------------------------------------------------------- frames


def format_frame(
    df: pd.DataFrame,
    percent_cols: Sequence[str] = (),
    percent_scale: float = 100.0,
    intervals: Mapping[str, tuple[str, str]] | None = None,
    labels: Mapping[str, str] | None = None,
    digits: int = 3,
) -> pd.DataFrame:
    """A frame of display strings: index levels become columns, numbers are formatted.

    Parameters
    ----------
    df : any results frame (a named index or MultiIndex becomes leading columns; an
        unnamed RangeIndex is dropped).
    percent_cols : columns shown as percentages (fractions when ``percent_scale``
        is 100, values already in % when it is 1).
    intervals : ``{column: (low_column, high_column)}``: the column is shown as
        ``est [lo, hi]`` and the two bound columns are dropped.
    labels : new column names (applied last).
    digits : significant digits of every float.

    Returns
    -------
    DataFrame of str; ``attrs["numeric"]`` names the columns that hold numbers
    (:func:`styled` and :func:`myst_table` right-align them). A ``model`` column
    is shown with the book's model names.
    """
    intervals = dict(intervals or {})
    missing = [c for c in [*percent_cols, *intervals, *(b for pair in intervals.values() for b in pair)] if c not in df.columns]
    if missing:
        raise ConsisError(f"columns {missing} are not in the table (it has {list(df.columns)}); pass existing column names")
    named = any(n is not None for n in df.index.names)
    frame = df.reset_index() if named else df.reset_index(drop=True)
    bounds = {b for pair in intervals.values() for b in pair}
    out: dict[str, list[str]] = {}
    numeric: list[str] = []
    for col in frame.columns:
        if col in bounds:
            continue
        values = frame[col]
        pct = col in percent_cols
        scale, unit = (percent_scale, "%") if pct else (1.0, "")
        if col in intervals:
            lo, hi = intervals[col]
            out[col] = [interval(e, a, b, digits, scale, unit) for e, a, b in zip(values, frame[lo], frame[hi])]
        elif pd.api.types.is_bool_dtype(values):
            out[col] = ["yes" if v else "no" for v in values]
            continue
        elif pd.api.types.is_integer_dtype(values) and not pct:
            out[col] = [f"{int(v):,}" for v in values]
        elif _is_number_column(values) or pct:
            out[col] = [percent(v, digits, scale) if pct else sig(v, digits) for v in values]
        else:
            out[col] = [MISSING if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in values]
            if col == "model":
                out[col] = [model_label(v) for v in out[col]]
            continue
        numeric.append(col)
    res = pd.DataFrame(out, dtype=object)
    if labels:
        res = res.rename(columns=dict(labels))
        numeric = [labels.get(c, c) for c in numeric]
    res.attrs[_NUMERIC] = numeric
    return res


def _is_number_column(values: pd.Series) -> bool:
    """Numeric dtype, or an object column whose non-missing cells are all real numbers."""
    if pd.api.types.is_numeric_dtype(values):
        return True
    cells = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return bool(cells) and all(isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)) for v in cells)


def styled(frame: pd.DataFrame, caption: str | None = None) -> Styler:
    """An HTML table without the index, numbers right-aligned, with an optional caption.

    Cells are shown as they are (HTML in a cell, e.g. from :func:`scorecard_view`,
    is rendered; text from :func:`format_frame` is already escaped-safe plain text).
    """
    sty = frame.style.hide(axis="index")
    if caption:
        sty = sty.set_caption(caption)
    numeric = [c for c in frame.attrs.get(_NUMERIC, []) if c in frame.columns]
    sty = sty.set_table_styles(
        [
            {"selector": "th", "props": "text-align: left; padding: 0.25em 0.6em;"},
            {"selector": "td", "props": "text-align: left; padding: 0.25em 0.6em; vertical-align: top;"},
            {"selector": "caption", "props": "caption-side: top; text-align: left; font-weight: 600;"},
        ]
    )
    if numeric:
        sty = sty.set_properties(subset=numeric, **{"text-align": "right", "font-variant-numeric": "tabular-nums"})
    return sty


# Markdown syntax that a table cell's text must not trigger, as HTML entities: they
# read the same in text and inside an HTML attribute (the scorecard's hover title).
_MD_ENTITIES = str.maketrans({"|": "&#124;", "*": "&#42;", "_": "&#95;", "`": "&#96;", "$": "&#36;", "\n": " "})


def _cell(text: Any) -> str:
    return str(text).translate(_MD_ENTITIES)


def myst_table(frame: pd.DataFrame, caption: str, name: str | None = None) -> Markdown:
    """A numbered MyST table (``{table}`` directive) of a display frame.

    myst-nb renders it as "Table N: caption" when the book sets
    ``nb_render_markdown_format: myst``; ``name`` is the label for ``{numref}``
    (labels are global to the book: include the architecture on per-arch pages).
    The caption is MyST inline markup (inline code and roles allowed); cell text
    is escaped so that ``|``, ``*``, ``_``, backticks and ``$`` show as written,
    while HTML in a cell (the scorecard's ``<details>``) is kept.

    Example
    -------
    >>> myst_table(pd.DataFrame({"a": ["x"]}), "A table.").data.splitlines()[:2]
    ['~~~{table} A table.', ':align: left']
    """
    if frame.empty:
        raise ConsisError("the table has no rows; run the notebook that produces its results first")
    numeric = set(frame.attrs.get(_NUMERIC, []))
    head = "| " + " | ".join(_cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("--:" if c in numeric else ":--" for c in frame.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    opts = [":align: left"] + ([f":name: {name}"] if name else [])
    # a tilde fence: the caption may hold inline code (backticks end a backtick fence's info)
    return Markdown("\n".join([f"~~~{{table}} {' '.join(caption.split())}", *opts, "", head, rule, *body, "~~~"]))


# ----------------------------------------------------------------------------- results tables


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
        t3["eps"] = [MISSING if _finite(e) is None else f"{float(e) * 255:g}/255" for e in t3["eps"]]
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
        if "estimate" in rows.columns and lo and hi and _finite(r["estimate"]) is not None:
            line += f" (estimate {interval(r['estimate'], r[lo], r[hi], digits)})"
        lines.append(line.strip())
    return lines


def _verdict_cell(rows: pd.DataFrame, lines: list[str], evidence: str) -> str:
    if "seeds_holding" in rows.columns and "seeds" in rows.columns:
        k, n = int(rows["seeds_holding"].iloc[0]), int(rows["seeds"].iloc[0])
        holds = bool(rows["holds"].iloc[0])
    elif "seed" in rows.columns and len(rows) > 1:  # one row per seed: holds in every seed
        k, n = int(rows["holds"].astype(bool).sum()), int(rows["seed"].nunique())
        holds = k == n
    else:
        holds, k, n = bool(rows["holds"].iloc[0]), None, None
    label = ("✓ " if holds else "✗ ") + verdict(holds, k, n)
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
    out = pd.DataFrame(rows, dtype=object)
    out.attrs[_NUMERIC] = []
    return out


# ----------------------------------------------------------------------------- page furniture


def provenance(profile: str, seed: int, arch: str | None = None, notebook: str | None = None, **parameters: Any) -> Markdown:
    """A folded "How this page was made" block: the parameters and the command.

    Parameters
    ----------
    profile, seed, arch : the page's papermill parameters (``arch`` None or
        ``"all"`` for pages over every architecture).
    notebook : the template's name (``"03_consistency"``); adds the papermill
        command that re-executes this page alone once the models exist.
    parameters : further parameters shown in the table (e.g. ``archs``; a list
        is passed to papermill as YAML with ``-y``).

    Returns
    -------
    Markdown holding a MyST ``admonition`` with the ``dropdown`` class (folded in
    the book); show it from a cell tagged ``remove-input``.
    """
    params = {"profile": profile, "seed": seed, **({"arch": arch} if arch else {}), **parameters}
    shown = {k: v if isinstance(v, (str, int, float)) else ", ".join(map(str, v)) for k, v in params.items()}
    table = ["| parameter | value |", "|:--|:--|", *(f"| {_cell(k)} | {_cell(v)} |" for k, v in shown.items())]
    cmd = f"consis reproduce --profile {profile}"
    if arch and arch != "all":
        cmd += f" --arch {arch}"
    cmds = [cmd]
    if notebook:
        flags = " ".join(
            f"-p {k} {v}" if isinstance(v, (str, int, float)) else f"-y '{k}: [{', '.join(map(str, v))}]'" for k, v in params.items()
        )
        cmds.append(f"papermill notebooks/{notebook}.ipynb {notebook}.out.ipynb {flags}")
    lines = [
        "````{admonition} How this page was made", ":class: dropdown", "",
        "This page is a notebook executed by papermill with these parameters:", "", *table, "",
        "Reproduce the whole book for this profile (the second command re-executes this page alone, once the models exist):"
        if notebook else "Reproduce it with:", "", "```bash", *cmds, "```", "````",
    ]
    return Markdown("\n".join(lines))


# ----------------------------------------------------------------------------- this run vs the paper


def _keyed(df: pd.DataFrame | None, levels: Sequence[str]) -> pd.DataFrame | None:
    """``df`` indexed by ``levels`` (taken from its columns or index), model labels
    ("Eq. 6") turned back into model kinds ("adv")."""
    if df is None or df.empty:
        return None
    named = any(n is not None for n in df.index.names)
    flat = df.reset_index() if named else df
    missing = [c for c in levels if c not in flat.columns]
    if missing:
        raise ConsisError(f"the table lacks {missing}; pass the frame of results.table1/table2/table3")
    kinds = {v: k for k, v in MODEL_LABELS.items()}
    return flat.assign(model=[kinds.get(m, m) for m in flat["model"]]).set_index(list(levels))


def _at(df: pd.DataFrame | None, key: tuple, col: str) -> float | None:
    if df is None or df.empty or key not in df.index or col not in df.columns:
        return None
    return _finite(df.loc[key, col])


def _diff(a: float | None, b: float | None, ratio: bool = False) -> float | None:
    if a is None or b is None or (ratio and b == 0):
        return None
    return a / b - 1.0 if ratio else a - b


def _effect(effect: str, arch: str, paper: float | str | None, run: float | None, fmt: Any, paper_sign: float | None = None) -> dict[str, str]:
    """One row: the effect's value and direction in the paper and in this run."""
    sign = paper_sign if paper_sign is not None else _finite(paper)
    paper_text = paper if isinstance(paper, str) else (MISSING if paper is None else f"{direction(paper)} {fmt(paper)}")
    run_text = MISSING if run is None else f"{direction(run)} {fmt(run)}"
    same = MISSING if sign is None or run is None else ("yes" if np.sign(sign) == np.sign(run) else "no")
    return {"effect": effect, "arch": arch, "paper": paper_text, "this run": run_text, "same direction": same}


def _totals(t2: pd.DataFrame | None) -> pd.Series | None:
    """% of units aligned with any category, per (arch, model, images)."""
    if t2 is None or t2.empty:
        return None
    return t2[[c for c in CATEGORIES if c in t2.columns]].sum(axis=1)


def effects_vs_paper(
    t1: pd.DataFrame,
    t2: pd.DataFrame | None = None,
    paper_t2: pd.DataFrame | None = None,
    t3: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The direction of each effect the paper reports, in the paper and in this run.

    Parameters
    ----------
    t1 : ``results.table1`` (arch, model as columns or index; columns consis,
        consis_adv and the paper's ``paper_consis``, ``paper_consis_adv``). Models
        may be kinds (``adv``) or labels (``Eq. 6``).
    t2, paper_t2 : ``results.table2`` and ``results.paper_table2`` (index arch,
        model, images; % of units per category); optional.
    t3 : ``results.table3`` (clean_acc, fgsm_acc as fractions); optional. The paper
        gives Table 3's direction in words only (clean accuracy "drops about 10%",
        accuracy under attack improves).

    Returns
    -------
    Display frame: effect, arch, paper, this run, same direction (``yes``/``no``);
    "Eq. 6" is the paper's adversarially trained model (``adv``).
    """
    pct = lambda v: percent(v, scale=100.0, signed=True)  # noqa: E731
    pts = lambda v: sig(v, signed=True) + " points"  # noqa: E731
    num = lambda v: sig(v, signed=True)  # noqa: E731
    t1, t3 = _keyed(t1, ("arch", "model")), _keyed(t3, ("arch", "model"))
    if t1 is None:
        raise ConsisError("Table 1 is empty; run the consistency notebooks first")
    tot = _totals(_keyed(t2, ("arch", "model", "images")))
    ptot = _totals(_keyed(paper_t2, ("arch", "model", "images")))
    rows = []
    for arch in dict.fromkeys(k[0] for k in t1.index):
        n, a = (arch, "normal"), (arch, "adv")
        run, paper = (lambda k, c: _at(t1, k, c)), (lambda k, c: _at(t1, k, "paper_" + c))
        rows.append(_effect("consis_adv - consis, normal net (Table 1)", arch, _diff(paper(n, "consis_adv"), paper(n, "consis")), _diff(run(n, "consis_adv"), run(n, "consis")), num))
        rows.append(_effect("consis_adv, Eq. 6 - normal (Table 1)", arch, _diff(paper(a, "consis_adv"), paper(n, "consis_adv")), _diff(run(a, "consis_adv"), run(n, "consis_adv")), num))
        rows.append(_effect("consis, Eq. 6 vs normal, relative (Table 1)", arch, _diff(paper(a, "consis"), paper(n, "consis"), ratio=True), _diff(run(a, "consis"), run(n, "consis"), ratio=True), pct))
        if (arch, "at") in t1.index:
            rows.append(_effect("consis_adv, Eq. 6 - AT (control; Table 1)", arch, "not in the paper", _diff(run(a, "consis_adv"), run((arch, "at"), "consis_adv")), num))
        if tot is not None:
            g = lambda s, m, im: None if s is None or (arch, m, im) not in s.index else float(s[(arch, m, im)])  # noqa: E731
            drop_n = (_diff(g(ptot, "normal", "adversarial"), g(ptot, "normal", "real")), _diff(g(tot, "normal", "adversarial"), g(tot, "normal", "real")))
            drop_a = (_diff(g(ptot, "adv", "adversarial"), g(ptot, "adv", "real")), _diff(g(tot, "adv", "adversarial"), g(tot, "adv", "real")))
            rows.append(_effect("aligned units, adversarial - real images, normal net (Table 2)", arch, drop_n[0], drop_n[1], pts))
            rows.append(_effect("change of aligned units, Eq. 6 - normal (Table 2)", arch, _diff(drop_a[0], drop_n[0]), _diff(drop_a[1], drop_n[1]), pts))
        if t3 is not None:
            acc = lambda m, c: None if _at(t3, (arch, m), c) is None else 100 * _at(t3, (arch, m), c)  # noqa: E731
            rows.append(_effect("clean accuracy, Eq. 6 - normal (Table 3)", arch, "↓ about 10 points", _diff(acc("adv", "clean_acc"), acc("normal", "clean_acc")), pts, paper_sign=-1.0))
            rows.append(_effect("FGSM accuracy, Eq. 6 - normal (Table 3)", arch, "↑ (no value in the text)", _diff(acc("adv", "fgsm_acc"), acc("normal", "fgsm_acc")), pts, paper_sign=1.0))
    out = pd.DataFrame(rows, dtype=object)
    out.attrs[_NUMERIC] = []
    return out


_PAPER_SETTING = {
    "images": "ImageNet (ILSVRC-2012) photographs",
    "classes": "1000",
    "image size": "224 px crops (standard for these networks)",
    "training images": "about 1.28 million",
    "evaluation images": "the 50,000 ImageNet validation images",
    "networks": "AlexNet, VGG-16, ResNet-18 (full size)",
    "dissection probe": "Broden (63,305 images, six categories including parts)",
    "FGSM eps": "not stated",
    "adversarial training": "Eq. 6 (alpha, beta not stated)",
    "seeds": "one model per architecture",
}


def setting_vs_paper(profile: Any) -> pd.DataFrame:
    """What differs in the setting: the paper's experiment beside this run's profile.

    Parameters
    ----------
    profile : a :class:`consis_lib.config.Profile`.

    Returns
    -------
    Display frame with columns aspect, paper, this run.
    """
    d, m, t = profile.data, profile.model, profile.train
    embedded = d.source == "embedded"
    classes = str(d.num_classes) if d.num_classes else "every curated class"
    study = getattr(profile, "study", None)
    seeds = MISSING if study is None else ", ".join(f"{arch_label(a)} {len(study.seeds_of(a))}" for a in profile.archs)
    run = {
        "images": "embedded emoji renderings on generated backgrounds (WordNet classes)" if embedded else f"image folders under {d.root}",
        "classes": classes,
        "image size": f"{d.image_size} px",
        "training images": f"{d.train_per_class} per class" if d.train_per_class else "the folder's",
        "evaluation images": f"{d.val_per_class} held-out renderings per class" if d.val_per_class else "the folder's validation split",
        "networks": "AlexNet, VGG-16, ResNet-18 " + ("(full size, torchvision)" if m.scale == "paper" else f"(BatchNorm variants, width / {m.width_divisor})"),
        "dissection probe": f"embedded Broden-format probe ({d.probe_images} images at {d.probe_size} px, no parts)" if embedded else f"Broden from {d.probe_root}",
        "FGSM eps": f"{profile.attack.eps * 255:g}/255",
        "adversarial training": f"Eq. 6 fine-tuning from the normal net, alpha {t.alpha:g}, beta {t.beta:g}; AT control with beta 0"
        if t.finetune_from_normal else f"Eq. 6 from scratch, alpha {t.alpha:g}, beta {t.beta:g}",
        "seeds": seeds,
    }
    out = pd.DataFrame([{"aspect": k, "paper": v, "this run": run[k]} for k, v in _PAPER_SETTING.items()], dtype=object)
    out.attrs[_NUMERIC] = []
    return out


EVIDENCE_PAGES = (
    ("03_consistency", "consistency: Table 1, Fig. 5, sensitivity"),
    ("02_ambiguity", "ambiguity: Fig. 3/4"),
    ("04_dissection", "network dissection: Table 2"),
    ("05_performance", "accuracy: Table 3"),
)


def evidence_links(archs: Sequence[str], summary: str | None = "summary", pages: Sequence[tuple[str, str]] = EVIDENCE_PAGES) -> Markdown:
    """A list of links to the pages that hold the evidence, per architecture.

    Parameters
    ----------
    archs : the run's architectures (``resnet18``); only their pages are linked,
        so a profile that trains fewer architectures has no broken link.
    summary : the summary page's name beside the calling page (None: no link).
    pages : (notebook, what it shows) per architecture, relative to the calling
        page's folder (``notebooks/runs/``).
    """
    lines = [f"- {{doc}}`Summary: Tables 1-3, Fig. 5 and the claims scorecard <{summary}>`"] if summary else []
    for arch in archs:
        links = ", ".join(f"{{doc}}`{what} <{arch}/{page}>`" for page, what in pages)
        lines.append(f"- {arch_label(arch)}: {links}")
    return Markdown("\n".join(lines))
