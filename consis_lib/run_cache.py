"""Computations kept on disk under the identity of their inputs, shared by a run's notebooks.

A cache file holds ``{"key": <JSON text>, "value": {name: tensor, str or None}}``,
written atomically (:func:`consis_lib.atomic.atomic_path`) and read with
``torch.load(weights_only=True)``. The key names everything the value depends on:
the model (SHA-256 of its checkpoint file), the data (:func:`dataset_identity`)
and the settings. A file whose key differs, or that cannot be read, is computed
again and replaced; it is never used.

Example
-------
>>> key = {"what": "activations", "model": file_sha256(ckpt), "data": dataset_identity(ds)}
>>> value = cached(Path("runs/smoke/resnet18/seed0/cache/normal-activations.pt"), key, compute)
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from consis_lib.atomic import atomic_path

log = logging.getLogger(__name__)

FORMAT = 1
"""Version of the cached values' layout; part of every key."""


def key_text(key: Mapping[str, Any]) -> str:
    """The canonical JSON of a cache key (sorted keys, with :data:`FORMAT`)."""
    return json.dumps({"format": FORMAT, **key}, sort_keys=True)


def dataset_identity(ds: Any) -> str:
    """SHA-256 naming a :class:`~consis_lib.data.imagefolder.WnidImageFolder`'s images.

    Covers the folder, split and image size and, per image, its path in the
    folder, label, byte size and modification time: replacing, adding or relabelling
    an image gives another identity (no image is decoded).
    """
    h = hashlib.sha256(json.dumps([str(Path(ds.root).resolve()), ds.split, ds.image_size]).encode())
    for path, label in ds.samples:
        st = Path(path).stat()
        h.update(f"{Path(path).relative_to(ds.root)}\t{label}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def read_cached(path: Path, text: str) -> dict[str, Any] | None:
    """The value stored in ``path`` under the key ``text``; None when absent, unreadable or keyed otherwise."""
    if not path.is_file():
        return None
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is recomputed
        log.info("cache %s is unreadable (%s); computing it again", path, exc.__class__.__name__)
        return None
    if not isinstance(stored, dict) or stored.get("key") != text or not isinstance(stored.get("value"), dict):
        log.info("cache %s was computed from other inputs; computing it again", path)
        return None
    return stored["value"]


def write_cached(path: Path, text: str, value: Mapping[str, Any]) -> None:
    """Store ``value`` under the key ``text`` in ``path`` (atomic: temporary file, then rename)."""
    with atomic_path(path) as tmp:
        torch.save({"key": text, "value": dict(value)}, tmp)


def cached(path: str | Path, key: Mapping[str, Any], compute: Callable[[], Mapping[str, Any]]) -> dict[str, Any]:
    """``compute()`` (a dict of tensors, strings, numbers, None), kept in ``path`` under ``key``.

    Example
    -------
    >>> cached(tmp / "x.pt", {"what": "ones"}, lambda: {"x": torch.ones(2)})["x"]
    tensor([1., 1.])
    """
    path, text = Path(path), key_text(key)
    found = read_cached(path, text)
    if found is not None:
        log.debug("cache hit %s", path)
        return found
    value = dict(compute())
    write_cached(path, text, value)
    return value


def cached_distances(wnids: Sequence[str], cache: Path) -> np.ndarray:
    """:func:`consis_lib.wordnet.distance_matrix` of ``wnids`` (Eq. 2's ``d``), kept as
    ``cache/wordnet-distances-<hash of the WNIDs>.npy`` so that the notebooks of a run
    load WordNet once, not once per kernel (about 4 s each)."""
    from consis_lib.wordnet import distance_matrix

    key = hashlib.sha256(("wordnet-3.0:" + ",".join(wnids)).encode()).hexdigest()[:16]
    path = Path(cache) / f"wordnet-distances-{key}.npy"
    if path.is_file():
        try:
            d = np.load(path, allow_pickle=False)
            if d.shape == (len(wnids), len(wnids)) and np.isfinite(d).all():
                return d
        except (OSError, ValueError):
            pass  # a damaged cache file is recomputed and replaced below
    d = np.asarray(distance_matrix(list(wnids)), dtype=np.float64)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, d, allow_pickle=False)
    return d
