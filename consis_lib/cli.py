"""The ``consis`` command (also ``python -m consis_lib``).

Each subsystem contributes its sub-commands through an ``add_cli(subparsers)``
function in its own module; this file only wires them together.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from consis_lib.errors import ConsisError

# Modules that contribute sub-commands, in the order they appear in ``--help``.
CLI_MODULES = ("consis_lib.data.cli", "consis_lib.train", "consis_lib.reproduce")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="consis", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in CLI_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except (ConsisError, FileNotFoundError) as exc:
        msg = exc.args[0] if exc.args else str(exc)
        print(f"consis: error: {msg}", file=sys.stderr)
        return 2
