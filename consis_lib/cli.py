"""The ``consis`` command (also ``python -m consis_lib``).

Each subsystem contributes its sub-commands through an ``add_cli(subparsers)``
function in its own module; this file only wires them together.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys
from typing import Any

from consis_lib.errors import ConsisError, one_line

# Modules that contribute sub-commands, in the order they appear in ``--help``.
CLI_MODULES = ("consis_lib.data.cli", "consis_lib.train_cli", "consis_lib.reproduce", "consis_lib.measure_report")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block); sub-parsers inherit it."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="consis", description=__doc__.splitlines()[0])
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
    except KeyboardInterrupt:
        hint = getattr(args, "resume_hint", "rerun the same command")
        print(f"consis: interrupted; {hint}", file=sys.stderr)
        return 130
    except ConsisError as exc:
        print(f"consis: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"consis: error: {_os_error(exc)}", file=sys.stderr)
        return 2


def _os_error(exc: OSError) -> str:
    """One line for a failed file operation: the file, the reason, what to do."""
    where = f"{exc.filename}: " if exc.filename else ""
    why = exc.strerror or one_line(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{where}{why}; free space or pass an output folder on another disk"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{where}{why}; pass a path you can read and write"
    return f"{where}{why}; check the path and pass an existing one"
