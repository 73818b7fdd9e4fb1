"""Display tables: a results frame as display strings, an HTML ``Styler`` or a numbered MyST table."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from IPython.display import Markdown
from pandas.io.formats.style import Styler

from consis_lib.book_style import model_label
from consis_lib.errors import ConsisError
from consis_lib.present.numbers import MISSING, interval, percent, sig

NUMERIC_COLUMNS = "numeric"
"""``DataFrame.attrs`` key of a display frame: the columns that hold formatted numbers (right-aligned)."""


def index_as_columns(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its named index levels as leading columns; an unnamed index is dropped."""
    named = any(n is not None for n in df.index.names)
    return df.reset_index() if named else df.reset_index(drop=True)


def text_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """A display frame of text cells (no column right-aligned) from its rows."""
    out = pd.DataFrame(rows, dtype=object)
    out.attrs[NUMERIC_COLUMNS] = []
    return out


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
    frame = index_as_columns(df)
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
    res.attrs[NUMERIC_COLUMNS] = numeric
    return res


def _is_number_column(values: pd.Series) -> bool:
    """Numeric dtype, or an object column whose non-missing cells are all real numbers."""
    if pd.api.types.is_numeric_dtype(values):
        return True
    cells = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return bool(cells) and all(isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)) for v in cells)


def styled(frame: pd.DataFrame, caption: str | None = None) -> Styler:
    """An HTML table without the index, numbers right-aligned, with an optional caption.

    Cells are shown as they are (HTML in a cell, e.g. from :func:`~consis_lib.present.views.scorecard_view`,
    is rendered; text from :func:`format_frame` is already escaped-safe plain text).
    """
    sty = frame.style.hide(axis="index")
    if caption:
        sty = sty.set_caption(caption)
    numeric = [c for c in frame.attrs.get(NUMERIC_COLUMNS, []) if c in frame.columns]
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


def markdown_cell(text: Any) -> str:
    """``text`` for a Markdown table cell: Markdown syntax escaped as HTML entities, on one line."""
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
    numeric = set(frame.attrs.get(NUMERIC_COLUMNS, []))
    head = "| " + " | ".join(markdown_cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("--:" if c in numeric else ":--" for c in frame.columns) + "|"
    body = ["| " + " | ".join(markdown_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    opts = [":align: left"] + ([f":name: {name}"] if name else [])
    # a tilde fence: the caption may hold inline code (backticks end a backtick fence's info)
    return Markdown("\n".join([f"~~~{{table}} {' '.join(caption.split())}", *opts, "", head, rule, *body, "~~~"]))
