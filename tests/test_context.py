"""The arch context's disk cache of WordNet distances (Eq. 2 inputs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from consis_lib.context import cached_distances

DOG, CAT, CAR = "n02084071", "n02121620", "n02958343"


def test_cached_distances_known_answers_reuse_and_repair(tmp_path: Path, wordnet: Any, monkeypatch: Any) -> None:
    d = cached_distances([DOG, CAT, CAR], tmp_path)
    assert d[0, 1] == 4 and d[0, 2] == 12 and np.array_equal(d, d.T)  # DESIGN: dog-cat 4, dog-car 12
    (cache,) = tmp_path.glob("wordnet-distances-*.npy")

    import consis_lib.wordnet as wn

    def refuse(_: object) -> None:
        raise AssertionError("the cached distances were recomputed")

    monkeypatch.setattr(wn, "distance_matrix", refuse)
    assert np.array_equal(cached_distances([DOG, CAT, CAR], tmp_path), d)  # read from the cache
    monkeypatch.undo()
    assert cached_distances([CAT, DOG], tmp_path)[0, 1] == 4  # another class list, another file
    assert len(list(tmp_path.glob("wordnet-distances-*.npy"))) == 2
    cache.write_bytes(b"damaged")
    assert np.array_equal(cached_distances([DOG, CAT, CAR], tmp_path), d)  # recomputed and replaced
    assert np.array_equal(np.load(cache), d)
