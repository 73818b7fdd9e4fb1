"""``consis data ...``: generate the embedded image set, the probe, the contact sheet
and the paper-shaped test set.

Examples
--------
``consis data embedded --profile smoke --out data/smoke``
``consis data probe --profile smoke --out data/smoke-probe --seed 1``
``consis data sheet --profile default --out contact_sheet.png``
``consis data paper-layout --out data/paper --classes 4 --per-class 4 --probe-images 12``
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from consis_lib.atomic import atomic_path
from consis_lib.checks import nonnegative_int, output_location
from consis_lib.config import DataConfig, get_profile
from consis_lib.errors import ConsisError
from consis_lib.outputs import check_output_dir

__all__ = ["add_cli", "data_config"]

_EMBEDDED_PROFILES = ("smoke", "default", "full")
_SHEET_SUFFIXES = (".png", ".svg", ".pdf")
_SHEET_TAG = "consis contact sheet"  # in the file's metadata: marks a sheet consis may replace


def data_config(profile: str, seed: int | None = None) -> DataConfig:
    """The profile's DataConfig, with ``seed`` replaced when given (a seed must be >= 0)."""
    if profile not in _EMBEDDED_PROFILES:
        raise ConsisError(
            f"profile {profile!r} has no embedded data; choose one of {', '.join(_EMBEDDED_PROFILES)}"
        )
    if seed is not None:
        nonnegative_int("--seed", seed)
    cfg = get_profile(profile).data
    return cfg if seed is None else dataclasses.replace(cfg, seed=seed)


def _common(p: argparse.ArgumentParser, out_help: str) -> None:
    p.add_argument("--profile", default="smoke", choices=_EMBEDDED_PROFILES, help="run profile")
    p.add_argument("--out", required=True, type=Path, help=out_help)
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the profile's)")
    p.add_argument("--cache", type=Path, default=None, help="sprite cache (default $CONSIS_CACHE or ~/.cache/consis)")


def _config(args: Any) -> DataConfig:
    """The command's DataConfig, after checking ``--seed`` and ``--cache``."""
    cfg = data_config(args.profile, args.seed)
    if args.cache is not None:
        output_location(args.cache)
    return cfg


def _embedded(args: Any) -> int:
    from consis_lib.data.embedded import generate_embedded

    cfg = _config(args)
    check_output_dir(args.out, "embedded")
    generate_embedded(cfg, args.out, args.cache)
    return 0


def _probe(args: Any) -> int:
    from consis_lib.data.probe import generate_probe

    cfg = _config(args)
    check_output_dir(args.out, "probe")
    generate_probe(cfg, args.out, args.cache)
    return 0


def _check_sheet_path(path: Path) -> None:
    """Refuse a sheet path of an unknown format, or one that would replace a file consis did not write."""
    if path.suffix.lower() not in _SHEET_SUFFIXES:
        raise ConsisError(f"--out {path}: unknown image format {path.suffix or '(none)'!r}; pass a .png, .svg or .pdf path")
    if path.is_dir():
        raise ConsisError(f"--out {path} is a folder: pass an image file path ending in .png, .svg or .pdf")
    output_location(path.parent)
    if path.exists() and _SHEET_TAG.encode() not in path.read_bytes():
        raise ConsisError(f"{path} exists and was not written by consis; it is left untouched: pass a new file name")


def _sheet(args: Any) -> int:
    from consis_lib.data.contact_sheet import contact_sheet

    cfg = _config(args)
    out = Path(args.out)
    _check_sheet_path(out)
    fig = contact_sheet(cfg, cache_dir=args.cache, composite=args.composite)
    key = "Software" if out.suffix.lower() == ".png" else "Creator"
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, metadata={key: _SHEET_TAG})
    return 0


def _paper_layout(args: Any) -> int:
    from consis_lib.data.paper_layout import PaperLayoutConfig, check_config, check_output, generate_paper_layout

    cfg = check_config(
        PaperLayoutConfig(
            classes=args.classes, per_class=args.per_class, probe_images=args.probe_images, seed=args.seed,
            val_per_class=args.val_per_class,
        )
    )
    if args.cache is not None:
        output_location(args.cache)
    check_output(args.out)
    generate_paper_layout(args.out, cfg, args.cache)
    return 0


def _add_paper_layout(dsub: Any) -> None:
    p = dsub.add_parser(
        "paper-layout",
        help="write DIR/imagenet (ImageNet layout, JPEG) and DIR/broden (Broden layout, 224 px) for the paper profile",
    )
    p.add_argument(
        "--out", required=True, type=Path, help="output folder: new, empty or an earlier `consis data paper-layout` output"
    )
    p.add_argument("--classes", type=int, default=4, help="WNID class folders (default 4)")
    p.add_argument("--per-class", type=int, default=4, help="training images per class (default 4)")
    p.add_argument("--val-per-class", type=int, default=None, help="validation images per class (default: --per-class)")
    p.add_argument("--probe-images", type=int, default=12, help="Broden-layout probe images, 3 or more (default 12)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--cache", type=Path, default=None, help="sprite cache (default $CONSIS_CACHE or ~/.cache/consis)")
    p.set_defaults(func=_paper_layout)


def add_cli(sub: Any) -> None:
    """Register ``consis data {embedded,probe,sheet,paper-layout}`` on the top-level sub-parsers."""
    data = sub.add_parser("data", help="generate the embedded image set and probe")
    dsub = data.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser("embedded", help="write DIR/train|val/<wnid>/*.png and DIR/classes.json")
    _common(p, "output folder: new, empty or an earlier `consis data embedded` output (replaced atomically)")
    p.set_defaults(func=_embedded)
    p = dsub.add_parser("probe", help="write a Broden-format probe folder")
    _common(p, "output folder: new, empty or an earlier `consis data probe` output (replaced atomically)")
    p.set_defaults(func=_probe)
    p = dsub.add_parser("sheet", help="contact sheet: one row per class, one column per style")
    _common(p, "output image (.png, .svg or .pdf)")
    p.add_argument("--composite", action="store_true", help="show composited images, not bare sprites")
    p.set_defaults(func=_sheet)
    _add_paper_layout(dsub)
