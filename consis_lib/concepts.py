"""Broden's six concept categories (Bau et al. 2017) and a label's primary category.

One definition of the categories serves the Broden reader, the dissection and the
tables: :data:`CATEGORIES` in the order of the paper's Table 2, and
:data:`BRODEN_COLUMNS`, the same six in the order of Broden's ``index.csv``.

A Broden label may belong to several categories (``label.csv`` writes its category
cell as ``object(12);part(3)``); the dissection scores it against one, its primary
category, chosen by one of :data:`PRIMARY_RULES`:

``"count"``     the category with the largest count in ``label.csv``'s cell, the
                first on ties.
``"coverage"``  the category whose ``c_<category>.csv`` gives the label the largest
                ``coverage`` (pixel area in units of whole images), the later in
                ``category.csv``'s order on ties: NetDissect-Lite's
                ``primary_categories_per_index``.

Example
-------
>>> counts = parse_category_cell("object(12);part(3)", "label.csv row 2")
>>> primary_by_count(counts), primary_by_coverage({"object": 0.5, "part": 2.5})
('object', 'part')
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from consis_lib.errors import ConsisError

__all__ = [
    "CATEGORIES",
    "BRODEN_COLUMNS",
    "PRIMARY_RULES",
    "check_primary_rule",
    "parse_category_cell",
    "primary_by_count",
    "primary_by_coverage",
]

CATEGORIES: tuple[str, ...] = ("color", "texture", "material", "scene", "part", "object")
"""The six concept categories, in the order of the paper's Table 2 (C. T. M. S. P. O.)."""

BRODEN_COLUMNS: tuple[str, ...] = ("color", "object", "part", "material", "scene", "texture")
"""The same six in the order of the category columns of Broden's ``index.csv``."""

if sorted(BRODEN_COLUMNS) != sorted(CATEGORIES):
    raise ImportError("BRODEN_COLUMNS must order the same six categories as CATEGORIES")

PRIMARY_RULES: tuple[str, ...] = ("count", "coverage")
"""How a label's primary category is chosen (see the module docstring)."""

_CELL_RE = re.compile(r"^\s*([a-z_]+)\s*(?:\((\d+)\))?\s*$")


def check_primary_rule(rule: str) -> None:
    """Raise ConsisError unless ``rule`` is one of :data:`PRIMARY_RULES`."""
    if rule not in PRIMARY_RULES:
        raise ConsisError(f"primary_category={rule!r} is not one of {', '.join(PRIMARY_RULES)}; fix DissectConfig.primary_category")


def parse_category_cell(cell: str, where: str) -> dict[str, int]:
    """``"object(12);part(3)"`` -> ``{"object": 12, "part": 3}`` (a missing count is 0).

    A category that is not one of the six is refused with the cell's location ``where``.
    """
    counts: dict[str, int] = {}
    for token in cell.split(";"):
        if not token.strip():
            continue
        m = _CELL_RE.match(token)
        if m is None:
            raise ConsisError(f"{where}: bad category cell {cell!r}; expected e.g. 'color(289)'")
        if m.group(1) not in CATEGORIES:
            raise ConsisError(f"{where}: unknown category {m.group(1)!r} in {cell!r}; Broden's are {', '.join(BRODEN_COLUMNS)}")
        counts[m.group(1)] = int(m.group(2) or 0)
    return counts


def primary_by_count(counts: Mapping[str, int]) -> str:
    """The category with the largest count, the first on ties; ``""`` when none."""
    best, best_count = "", -1
    for cat, count in counts.items():
        if count > best_count:
            best, best_count = cat, count
    return best


def primary_by_coverage(coverage: Mapping[str, float]) -> str:
    """The category with the largest coverage, the later on ties (NetDissect-Lite's
    ``max((coverage, index))``); ``coverage`` is in ``category.csv``'s order. ``""`` when empty."""
    best, best_cov = "", float("-inf")
    for cat, cov in coverage.items():
        if cov >= best_cov:
            best, best_cov = cat, cov
    return best
