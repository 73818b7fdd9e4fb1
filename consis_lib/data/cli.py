"""``consis data ...``: generate the embedded image set, the probe and the contact sheet.

Examples
--------
``consis data embedded --profile smoke --out data/smoke``
``consis data probe --profile smoke --out data/smoke-probe --seed 1``
``consis data sheet --profile default --out contact_sheet.png``
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from consis_lib.config import DataConfig, get_profile
from consis_lib.errors import ConsisError

__all__ = ["add_cli", "data_config"]

_EMBEDDED_PROFILES = ("smoke", "default", "full")


def data_config(profile: str, seed: int | None = None) -> DataConfig:
    """The profile's DataConfig, with ``seed`` replaced when given."""
    if profile not in _EMBEDDED_PROFILES:
        raise ConsisError(
            f"profile {profile!r} has no embedded data; choose one of {', '.join(_EMBEDDED_PROFILES)}"
        )
    cfg = get_profile(profile).data
    return cfg if seed is None else dataclasses.replace(cfg, seed=seed)


def _common(p: argparse.ArgumentParser, out_help: str) -> None:
    p.add_argument("--profile", default="smoke", choices=_EMBEDDED_PROFILES, help="run profile")
    p.add_argument("--out", required=True, type=Path, help=out_help)
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the profile's)")
    p.add_argument("--cache", type=Path, default=None, help="sprite cache (default $CONSIS_CACHE or ~/.cache/consis)")


def _embedded(args: Any) -> int:
    from consis_lib.data.embedded import generate_embedded

    generate_embedded(data_config(args.profile, args.seed), args.out, args.cache)
    return 0


def _probe(args: Any) -> int:
    from consis_lib.data.probe import generate_probe

    generate_probe(data_config(args.profile, args.seed), args.out, args.cache)
    return 0


def _sheet(args: Any) -> int:
    from consis_lib.data.contact_sheet import contact_sheet, save_figure

    cfg = data_config(args.profile, args.seed)
    fig = contact_sheet(cfg, cache_dir=args.cache, composite=args.composite)
    save_figure(fig, args.out)
    return 0


def add_cli(sub: Any) -> None:
    """Register ``consis data {embedded,probe,sheet}`` on the top-level sub-parsers."""
    data = sub.add_parser("data", help="generate the embedded image set and probe")
    dsub = data.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser("embedded", help="write DIR/train|val/<wnid>/*.png and DIR/classes.json")
    _common(p, "output folder (replaced atomically)")
    p.set_defaults(func=_embedded)
    p = dsub.add_parser("probe", help="write a Broden-format probe folder")
    _common(p, "output folder (replaced atomically)")
    p.set_defaults(func=_probe)
    p = dsub.add_parser("sheet", help="contact sheet: one row per class, one column per style")
    _common(p, "output image (.png, .svg or .pdf)")
    p.add_argument("--composite", action="store_true", help="show composited images, not bare sprites")
    p.set_defaults(func=_sheet)
