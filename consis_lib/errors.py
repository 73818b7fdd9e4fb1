"""The project's one exception type for input a user can fix, and its one-line form."""

from __future__ import annotations

import re

__all__ = ["ConsisError", "one_line"]

# DataLoader workers re-raise an error in the main process with the worker's whole
# traceback as the message; its last line is "<module>.<Type>: <message>".
_WORKER_RE = re.compile(r"^Caught \w+ in DataLoader worker process \d+")
_TYPE_PREFIX = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception): ")


class ConsisError(ValueError):
    """Bad input or missing data: the message is one line naming the file and the fix."""


def one_line(exc: BaseException) -> str:
    """The one-line message of ``exc``.

    A ConsisError raised inside a DataLoader worker reaches the main process with
    the worker's traceback as its message; this returns only the original message.
    Any other multi-line message is cut to its first line.

    Example
    -------
    >>> one_line(ConsisError("Caught ConsisError in DataLoader worker process 0.\\n"
    ...     "Traceback ...\\nconsis_lib.errors.ConsisError: cannot read image a.png"))
    'cannot read image a.png'
    """
    msg = str(exc.args[0]) if exc.args else str(exc)
    lines = [line for line in msg.splitlines() if line.strip()]
    if not lines:
        return exc.__class__.__name__
    if _WORKER_RE.match(lines[0]):
        return _TYPE_PREFIX.sub("", lines[-1].strip())
    return lines[0].strip()
