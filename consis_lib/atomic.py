"""Atomic file writes: write a temporary file beside the target, then rename.

An interrupted write never leaves a half-written output: the target is either
the old file or the complete new one.  Temporary files are named
``.<target>.consis-tmp-<pid>-<token><suffix>``; one left behind by a killed
process (its pid no longer runs) is removed by the next write into the same
folder.  New files get the usual mode ``0o666`` less the process umask, as
``open()`` would give them.

A write that fails because the disk is full, the folder is read-only or
``torch.save`` cannot write raises :class:`~consis_lib.errors.ConsisError` naming
the file, and the target is left untouched.

Example
-------
>>> with atomic_path(Path("out/report.json")) as tmp:
...     tmp.write_text("{}")
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from consis_lib.errors import ConsisError

__all__ = [
    "TMP_TAG",
    "atomic_path",
    "atomic_write_text",
    "clean_stale_temps",
    "pid_alive",
    "temp_name",
    "write_error",
]

log = logging.getLogger(__name__)

TMP_TAG = ".consis-tmp-"
"""Marks every temporary file or folder the project creates (followed by ``<pid>-``)."""

_TMP_RE = re.compile(r"^\..+" + re.escape(TMP_TAG) + r"(\d+)-")
_FULL = "free space or pass an output folder on another disk"
_DENIED = "pass an output folder you can write to"
_WRITE_ERRNOS = {
    errno.ENOSPC: ("the disk is full", _FULL),
    errno.EDQUOT: ("the disk quota is exceeded", _FULL),
    errno.EROFS: ("the file system is read-only", _DENIED),
    errno.EACCES: ("permission denied", _DENIED),
    errno.EPERM: ("permission denied", _DENIED),
}


def pid_alive(pid: int) -> bool:
    """True when a process with this id runs on this machine (or cannot be signalled)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists but belongs to someone else
        return True
    return True


def temp_name(target: str | Path) -> str:
    """A fresh temporary sibling name for ``target``: ``.<name>.consis-tmp-<pid>-<token>``."""
    name = Path(target).name
    return f".{name}{TMP_TAG}{os.getpid()}-{secrets.token_hex(4)}"


def clean_stale_temps(folder: str | Path) -> list[Path]:
    """Remove temporary files and folders in ``folder`` left by processes that no longer run.

    Only names of the form ``.<name>.consis-tmp-<pid>-...`` with a dead ``pid`` are
    removed; everything else is left alone. Returns the removed paths.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TMP_RE.match(entry.name)
        if m is None or pid_alive(int(m.group(1))):
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        log.info("removed %s, left by an interrupted run", path)
        removed.append(path)
    return removed


def write_error(path: Path, exc: BaseException) -> ConsisError | None:
    """A one-line ConsisError for a failed write of ``path``, or None when ``exc`` is no write failure."""
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
        why, fix = _WRITE_ERRNOS[exc.errno]
    elif isinstance(exc, RuntimeError) and re.search(r"PytorchStreamWriter|file write failed", str(exc)):
        why, fix = "torch.save could not write it", _FULL
        try:
            if shutil.disk_usage(path.parent).free < 2**20:
                why = "the disk is full"
        except OSError:
            pass
    else:
        return None
    return ConsisError(f"cannot write {path}: {why}; {fix}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success rename it to ``path``.

    The temporary name ends with ``path``'s suffix, so writers that infer the
    format from it (``Figure.savefig``) behave as for the target. On an exception
    the temporary file is removed and the target is left untouched; a full disk,
    read-only folder or failed ``torch.save`` becomes a one-line ConsisError.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise (write_error(path, exc) or exc) from exc
    clean_stale_temps(path.parent)
    tmp = path.parent / (temp_name(path) + path.suffix)
    try:
        # O_EXCL with mode 0o666: the kernel applies the umask, as for open().
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        yield tmp
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        err = write_error(path, exc)
        if err is None:
            raise
        raise err from exc
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
