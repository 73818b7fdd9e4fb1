"""Numbers as the book prints them: significant digits, percentages, intervals, directions."""

from __future__ import annotations

import math
from typing import Any

MISSING = "–"
"""What a missing or undefined value (None, NaN) is shown as."""


def finite_number(x: Any) -> float | None:
    """``x`` as a float, ``None`` when it is missing, not a number or not finite."""
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
    v = finite_number(x)
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
    v = finite_number(x)
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
    vals = [finite_number(v) for v in (est, lo, hi)]
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
    v = finite_number(x)
    if v is None:
        return MISSING
    return "↑" if v > 0 else ("↓" if v < 0 else "=")
