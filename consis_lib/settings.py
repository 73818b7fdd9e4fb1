"""``SECTION.FIELD=VALUE`` settings of a profile (``consis reproduce --set``, ``consis train --set``).

A setting replaces one field of one of the profile's config sections
(:class:`~consis_lib.config.Profile`: ``data``, ``model``, ``attack``, ``train``,
``metric``, ``dissect``, ``discrepancy``, ``study``). The value is read as the
field's type: ``true``/``false`` for switches, numbers, text, or comma-separated
items for tuples (``study.seeds=0,1``). Everything keyed by the configuration
(checkpoints, caches, results) follows the changed hash, and ``reproduce`` records
the settings in ``run.json`` so the notebooks read the same profile.

Example
-------
>>> from consis_lib.config import get_profile
>>> prof = apply_settings(get_profile("paper"), ["attack.targeted_steps=20", "study.seeds=0,1"])
>>> prof.attack.targeted_steps, prof.study.seeds
(20, (0, 1))
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from consis_lib.config import Profile
from consis_lib.errors import ConsisError

SECTIONS = ("data", "model", "attack", "train", "metric", "dissect", "discrepancy", "study")
# fields that name the run rather than configure it: each has its own option
_OWN_OPTION = {
    "data.profile": "--profile", "data.source": "--profile", "data.root": "--data",
    "data.probe_root": "--probe", "model.weights": "--weights", "model.arch": "--arch",
}
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
# every number of a profile is >= 0; these must also be > 0, or lie in [0, 1]
_POSITIVE = {
    "data.image_size", "data.probe_size", "model.width_divisor", "train.batch_size", "train.lr", "train.adv_lr",
    "attack.targeted_lr", "metric.sigma", "metric.sigmas", "metric.top_fraction", "metric.top_fractions",
    "metric.bootstrap", "dissect.batch_size", "dissect.quantile", "discrepancy.patch_at_224",
    "discrepancy.stride_at_224", "discrepancy.batch_size",
}
_FRACTION = {
    "attack.eps", "train.alpha", "train.momentum", "metric.top_fraction", "metric.top_fractions",
    "dissect.quantile", "dissect.iou_threshold",
}


def apply_settings(profile: Profile, settings: Sequence[str]) -> Profile:
    """``profile`` with every ``SECTION.FIELD=VALUE`` of ``settings`` applied, in order.

    Raises ConsisError (one line naming the setting) for an unknown section or field,
    a field with its own option, or a value that is not of the field's type.
    """
    for setting in settings:
        section_name, field_name, value = _split(setting, profile)
        section = getattr(profile, section_name)
        new = parse_value(getattr(section, field_name), value, setting)
        _check_range(f"{section_name}.{field_name}", new, setting)
        profile = dataclasses.replace(profile, **{section_name: dataclasses.replace(section, **{field_name: new})})
    return profile


def _split(setting: str, profile: Profile) -> tuple[str, str, str]:
    """``(section, field, value)`` of one setting, each name checked against ``profile``."""
    key, sep, value = setting.partition("=")
    section, dot, field = key.strip().partition(".")
    if not sep or not dot:
        raise ConsisError(f"--set {setting!r}: write SECTION.FIELD=VALUE, e.g. attack.targeted_steps=20")
    if section not in SECTIONS:
        raise ConsisError(f"--set {setting!r}: unknown section {section!r}; choose from {', '.join(SECTIONS)}")
    if f"{section}.{field}" in _OWN_OPTION:
        raise ConsisError(f"--set {setting!r}: {section}.{field} is given with {_OWN_OPTION[section + '.' + field]}")
    names = [f.name for f in dataclasses.fields(getattr(profile, section))]
    if field not in names:
        raise ConsisError(f"--set {setting!r}: {section} has no field {field!r}; its fields: {', '.join(names)}")
    return section, field, value.strip()


def _check_range(key: str, value: Any, setting: str) -> None:
    """Refuse a negative number, a zero where only a positive one works, or a fraction > 1."""
    for v in value if isinstance(value, tuple) else (value,):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if not math.isfinite(v) or v < 0 or (key in _POSITIVE and v == 0):
            raise ConsisError(f"--set {setting!r}: expected a finite number {'> 0' if key in _POSITIVE else '>= 0'}")
        if key in _FRACTION and v > 1:
            raise ConsisError(f"--set {setting!r}: expected a fraction in [0, 1]")


def parse_value(current: Any, text: str, setting: str) -> Any:
    """``text`` read as the type of the field's ``current`` value (module docstring)."""
    if isinstance(current, bool):
        if text.lower() not in _TRUE + _FALSE:
            raise ConsisError(f"--set {setting!r}: expected true or false")
        return text.lower() in _TRUE
    if isinstance(current, tuple):
        if _holds_configs(current):
            raise ConsisError(f"--set {setting!r}: this field holds configurations and cannot be set from the command line")
        kind = type(current[0]) if current else str
        return tuple(parse_value(kind(), item.strip(), setting) for item in text.split(",") if item.strip())
    for kind in (int, float):
        if isinstance(current, kind):
            try:
                return kind(text)
            except ValueError:
                raise ConsisError(f"--set {setting!r}: expected {'an integer' if kind is int else 'a number'}") from None
    if isinstance(current, str):
        return text
    raise ConsisError(f"--set {setting!r}: a field of type {type(current).__name__} cannot be set from the command line")


def settings_between(base: Profile, profile: Profile) -> list[str]:
    """The settings that :func:`apply_settings` needs to turn ``base`` into ``profile``.

    Left out: fields with their own option, and fields no setting can express (tuples
    of configurations such as ``study.variants``); callers compare the result.
    """
    out = []
    for section in SECTIONS:
        old, new = getattr(base, section), getattr(profile, section)
        for f in dataclasses.fields(new):
            value = getattr(new, f.name)
            was = getattr(old, f.name)
            settable = f"{section}.{f.name}" not in _OWN_OPTION and not (_holds_configs(value) or _holds_configs(was))
            if settable and value != was:
                out.append(f"{section}.{f.name}={format_value(value)}")
    return out


def format_value(value: Any) -> str:
    """The text :func:`parse_value` reads back as ``value``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(format_value(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def _holds_configs(value: Any) -> bool:
    return isinstance(value, tuple) and any(dataclasses.is_dataclass(v) for v in value)
