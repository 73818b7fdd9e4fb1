"""Validators run before any work starts, each failing with one line.

Every function raises :class:`~consis_lib.errors.ConsisError` whose message says
what is wrong and what to pass instead, and returns the (normalised) value when it
is fine, so a command can validate all of its arguments in a few lines before it
loads data or trains for hours.

Example
-------
>>> positive_int("--batch-size", 128)
128
>>> finite_float("--eps", float("nan"), low=0.0, high=1.0)
Traceback (most recent call last):
...
consis_lib.errors.ConsisError: --eps nan is not a finite number: pass a number in (0, 1]
"""

from __future__ import annotations

import math
import shutil
from numbers import Integral, Real
from pathlib import Path

import torch

from consis_lib.atomic import temp_name, write_error
from consis_lib.errors import ConsisError

__all__ = [
    "positive_int",
    "nonnegative_int",
    "finite_float",
    "device_present",
    "free_space",
    "output_location",
]


def _is_int(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def positive_int(name: str, value: object, example: int = 1) -> int:
    """``value`` as an int >= 1; else ConsisError naming ``name`` (e.g. ``"--batch-size"``)."""
    if not _is_int(value) or int(value) < 1:  # type: ignore[call-overload]
        raise ConsisError(f"{name} {value!r} is not a positive integer: pass e.g. {name} {example}")
    return int(value)  # type: ignore[call-overload]


def nonnegative_int(name: str, value: object, example: int = 0) -> int:
    """``value`` as an int >= 0; else ConsisError naming ``name``."""
    if not _is_int(value) or int(value) < 0:  # type: ignore[call-overload]
        raise ConsisError(f"{name} {value!r} is negative or not an integer: pass e.g. {name} {example}")
    return int(value)  # type: ignore[call-overload]


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is None and high is None:
        return "any finite number"
    if high is None:
        return f"a number {'>' if low_open else '>='} {low:g}"
    if low is None:
        return f"a number {'<' if high_open else '<='} {high:g}"
    return f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def finite_float(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = True,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float in the interval; open ends by default ``(low, high]``.

    Example
    -------
    >>> finite_float("--lr", -0.1, low=0.0)
    Traceback (most recent call last):
    ...
    consis_lib.errors.ConsisError: --lr -0.1 is out of range: pass a number > 0
    """
    want = _interval(low, high, low_open, high_open)
    if not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(float(value)):
        raise ConsisError(f"{name} {value} is not a finite number: pass {want}")
    v = float(value)
    too_low = low is not None and (v <= low if low_open else v < low)
    too_high = high is not None and (v >= high if high_open else v > high)
    if too_low or too_high:
        raise ConsisError(f"{name} {value} is out of range: pass {want}")
    return v


def device_present(device: str | torch.device | None) -> torch.device | None:
    """``device`` parsed and checked to exist on this machine (None passes through).

    Example
    -------
    >>> device_present("cpu")
    device(type='cpu')
    """
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConsisError(f"--device {device!r} is not a device: pass cpu, cuda or cuda:N") from exc
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConsisError(f"--device {device} asks for a CUDA GPU but none is available: pass --device cpu")
        if dev.index is not None and dev.index >= count:
            raise ConsisError(
                f"--device {device}: this machine has {count} CUDA GPU(s): pass cuda:0 .. cuda:{count - 1}"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConsisError(f"--device {device} is not available here: pass --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ConsisError(f"--device {device} is not supported: pass cpu, cuda or cuda:N")
    return dev


def free_space(folder: str | Path, need_bytes: int, what: str) -> int:
    """Refuse when the disk holding ``folder`` (or its nearest existing ancestor) has less than ``need_bytes`` free.

    Returns the free bytes.
    """
    path = Path(folder)
    while not path.exists() and path != path.parent:
        path = path.parent
    free = shutil.disk_usage(path).free
    if free < need_bytes:
        raise ConsisError(
            f"{folder} has {free / 2**20:.0f} MiB free, {what} needs about {need_bytes / 2**20:.0f} MiB: "
            "free space or pass an output folder on another disk"
        )
    return int(free)


def output_location(path: str | Path) -> Path:
    """Refuse an output path that is a file, lies under a file or cannot be written.

    The nearest existing folder on the way (``path`` itself when it exists) must
    accept a new entry: a uniquely named folder is made and removed again, so the
    check also catches read-only disks and permissions that ``os.access`` misses.
    Nothing is left behind. Returns ``path``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConsisError(f"{path} is a file, not a folder: pass a folder path as the output")
    anc = path
    while not anc.exists():
        if anc.is_symlink():
            raise ConsisError(f"{anc} is a broken symbolic link: pass an output folder that can be created")
        anc = anc.parent
    if not anc.is_dir():
        raise ConsisError(f"{path} lies under the file {anc}: pass an output folder that is not inside a file")
    probe = anc / temp_name(path)
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        err = write_error(path, exc) or ConsisError(
            f"cannot create {path}: {exc.strerror or exc}; pass an output folder you can write to"
        )
        raise err from exc
    return path
