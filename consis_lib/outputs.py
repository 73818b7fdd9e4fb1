"""Ownership of output folders: the project only replaces what it wrote itself.

Every folder the project creates as an output (a generated image set, a probe, a
training run) carries a marker file :data:`MARKER` (``.consis-output.json``)::

    {"project": "consis", "format": 1, "kind": "embedded",
     "writer": "consis_lib.data.embedded (consis 0.1.0)",
     "expected": [],                      # names the writer adds later (model.pt, ...)
     "files": {"train/n02084071/n02084071_00000.png": {"size": 1234, "sha256": "..."}}}

A folder may be written into or replaced only when it is absent, empty, or carries
the marker of the same kind and holds nothing besides the files its manifest lists,
the names its writer declared (``expected``) and the project's own lock and
temporary files. Anything else (a user's data set, a Broden folder, a file the user
added to an output) is refused with one line; nothing is ever deleted to make room.

The manifest (names, sizes, SHA-256) also lets a cache be checked cheaply on use
(:func:`verify_manifest`: sizes by default, hashes on request).

Example
-------
>>> out = claim_output_dir("runs/smoke/resnet18/normal", "train", "consis train",
...                        expected=("model.pt", "log.jsonl"))
>>> with output_lock(out):
...     ...   # train, then write_marker(out, "train", "consis train", ...)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from consis_lib.atomic import TMP_TAG, atomic_write_text, clean_stale_temps, pid_alive, temp_name
from consis_lib.checks import output_location
from consis_lib.errors import ConsisError

__all__ = [
    "MARKER",
    "LOCK",
    "KINDS",
    "writer_id",
    "manifest",
    "read_marker",
    "write_marker",
    "verify_manifest",
    "check_output_dir",
    "claim_output_dir",
    "output_lock",
    "atomic_output_dir",
]

log = logging.getLogger(__name__)

MARKER = ".consis-output.json"
LOCK = ".consis-lock"
KINDS = {"embedded": "classes.json", "probe": "index.csv", "train": "model.pt", "paper-layout": "layout.json"}
"""Output kinds and the file that identifies each (a generator may name a kind by that file)."""

_FORMAT = 1


def _kind(kind: str) -> str:
    for name, index_file in KINDS.items():
        if kind in (name, index_file):
            return name
    raise ValueError(f"unknown output kind {kind!r}; use one of {', '.join(KINDS)}")


def writer_id(module: str) -> str:
    """``"<module> (consis <version>)"``: what wrote an output."""
    try:
        version = metadata.version("consis")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"{module} (consis {version})"


def _own_name(name: str) -> bool:
    """The marker, the lock and temporary files: never part of a manifest."""
    return name in (MARKER, LOCK) or TMP_TAG in name


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest(root: str | Path) -> dict[str, dict[str, Any]]:
    """``relative path -> {"size", "sha256"}`` of every file under ``root`` (marker, lock, temps left out)."""
    root = Path(root)
    files: dict[str, dict[str, Any]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not _own_name(d))
        for name in sorted(filenames):
            if _own_name(name):
                continue
            path = Path(dirpath) / name
            files[path.relative_to(root).as_posix()] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    return files


def read_marker(root: str | Path) -> dict[str, Any] | None:
    """The marker of ``root``, or None when it has none; a damaged marker is a ConsisError."""
    path = Path(root) / MARKER
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConsisError(f"{path} is damaged (not JSON); choose another output folder") from exc
    if not isinstance(data, dict) or data.get("project") != "consis" or not isinstance(data.get("files"), dict):
        raise ConsisError(f"{path} is not a consis output marker; choose another output folder")
    return data


def write_marker(root: str | Path, kind: str, writer: str, expected: Sequence[str] = ()) -> Path:
    """Write ``root``'s marker with a manifest of the files it holds now; returns its path."""
    root = Path(root)
    data = {
        "project": "consis",
        "format": _FORMAT,
        "kind": _kind(kind),
        "writer": writer,
        "expected": sorted(expected),
        "files": manifest(root),
    }
    return atomic_write_text(root / MARKER, json.dumps(data, indent=1, sort_keys=True) + "\n")


def verify_manifest(root: str | Path, deep: bool = False) -> str | None:
    """The first problem of ``root`` against its manifest, or None when it matches.

    Checks that every listed file exists with its size (one ``stat`` per file);
    ``deep=True`` also compares SHA-256 hashes.
    """
    root = Path(root)
    marker = read_marker(root)
    if marker is None:
        return f"{root / MARKER} is missing"
    for rel, entry in marker["files"].items():
        path = root / rel
        try:
            size = path.stat().st_size
        except OSError:
            return f"{path} is missing"
        if size != entry.get("size"):
            return f"{path} has {size} bytes, the manifest says {entry.get('size')}"
        if deep and _sha256(path) != entry.get("sha256"):
            return f"{path} differs from the manifest (SHA-256)"
    return None


def _foreign_entry(root: Path, marker: dict[str, Any]) -> str | None:
    """The first name under ``root`` that its marker does not account for."""
    listed = set(marker["files"]) | set(marker.get("expected", []))
    prefixes = {rel.split("/")[0] for rel in listed}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        dirnames[:] = [d for d in dirnames if not _own_name(d)]
        if rel_dir == ".":
            stray = [d for d in dirnames if d not in prefixes]
            if stray:
                return sorted(stray)[0]
        for name in filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if not _own_name(name) and rel not in listed:
                return rel
    return None


def check_output_dir(path: str | Path, kind: str) -> Path:
    """Refuse, with one line, an output folder this kind of output may not write to.

    Accepted: a folder that does not exist yet (its nearest existing ancestor being
    a writable folder), an empty folder, or one carrying the marker of ``kind`` with
    nothing besides what the marker accounts for. Nothing is created.

    Returns
    -------
    The path, unchanged.
    """
    path = output_location(path)
    kind = _kind(kind)
    if not path.exists():
        return path
    marker = read_marker(path)
    entries = [e for e in os.listdir(path) if not _own_name(e)]
    if marker is None:
        if entries:
            what = f"holds {KINDS[kind]}" if KINDS[kind] in entries else "is not empty"
            raise ConsisError(
                f"{path} {what} but was not written by consis (no {MARKER}); "
                "it is left untouched: pass a new or empty output folder"
            )
    elif marker.get("kind") != kind:
        raise ConsisError(
            f"{path} holds a consis {marker.get('kind')} output, not {kind}: pass a new or empty output folder"
        )
    else:
        stray = _foreign_entry(path, marker)
        if stray is not None:
            raise ConsisError(
                f"{path / stray} was not written by consis; move it out of {path} or pass another output folder"
            )
    return path


def claim_output_dir(path: str | Path, kind: str, writer: str, expected: Sequence[str] = ()) -> Path:
    """Create or accept an output folder (see :func:`check_output_dir`) and mark it as ``kind``'s.

    ``expected`` names the files the writer will add later (e.g. ``model.pt``), so
    that a later run recognises them as its own. Returns the folder.
    """
    path = check_output_dir(path, kind)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConsisError(f"cannot create {path}: {exc.strerror or exc}; pass an output folder you can write to") from exc
    clean_stale_temps(path)
    marker = read_marker(path)
    known = set(marker.get("expected", [])) if marker is not None else set()
    if marker is None or not known.issuperset(expected):
        write_marker(path, kind, writer, sorted(known | set(expected)))
    return path


def _read_lock(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


@contextmanager
def output_lock(folder: str | Path, what: str = "consis") -> Iterator[Path]:
    """Hold ``folder/.consis-lock`` while the block runs; a second holder is refused.

    A lock left by a process of this machine that no longer runs is taken over.
    The lock file holds the pid, the host name and ``what``.
    """
    path = Path(folder) / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "what": what}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            other = _read_lock(path)
            pid = int(other.get("pid", 0) or 0)
            if other.get("host") == me["host"] and not pid_alive(pid):
                log.info("taking over the lock %s of a run that no longer runs (pid %d)", path, pid)
                path.unlink(missing_ok=True)
                continue
            raise ConsisError(
                f"{folder} is in use by another run ({other.get('what', 'consis')}, pid {pid} on "
                f"{other.get('host', '?')}): wait for it to finish or pass another output folder"
            ) from None
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(me, fh)
        break
    else:
        raise ConsisError(f"cannot take the lock {path}: another run took it meanwhile; run one at a time")
    try:
        yield path
    finally:
        if _read_lock(path).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)


def _swap_in(tmp: Path, out: Path, kind: str) -> None:
    """Rename ``tmp`` to ``out``, moving an earlier output of ``kind`` aside and removing it."""
    for _ in range(3):
        old = None
        if out.exists():
            check_output_dir(out, kind)  # may have changed since the start (another writer)
            old = out.parent / temp_name(out)
            try:
                os.replace(out, old)
            except FileNotFoundError:
                continue  # another writer moved it meanwhile
        try:
            os.rename(tmp, out)
        except OSError:
            if old is not None and not out.exists():
                os.replace(old, out)  # put ours back; try again
            continue
        finally:
            if old is not None and old.exists():
                shutil.rmtree(old, ignore_errors=True)
        return
    raise ConsisError(f"another consis run writes {out} at the same time: run one generator per folder")


@contextmanager
def atomic_output_dir(out: str | Path, kind: str, writer: str | None = None) -> Iterator[Path]:
    """Yield a temporary sibling folder of ``out``; on success mark it and rename it to ``out``.

    ``out`` must pass :func:`check_output_dir` for ``kind`` (checked first, before any
    work). On an exception the temporary folder is removed and ``out`` is left as it
    was; temporary folders of killed runs are removed on the next run.
    """
    out = Path(out)
    kind = _kind(kind)
    check_output_dir(out, kind)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConsisError(f"cannot create {out.parent}: {exc.strerror or exc}; pass an output folder you can write to") from exc
    clean_stale_temps(out.parent)
    tmp = out.parent / temp_name(out)
    tmp.mkdir()
    try:
        yield tmp
        write_marker(tmp, kind, writer or writer_id(f"consis data {kind}"))
        _swap_in(tmp, out, kind)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
