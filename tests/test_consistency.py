"""Eq. 1-3 (label distributions, consistency) and the consistency report."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from consis_lib.activations import Activations
from consis_lib.config import MetricConfig
from consis_lib.consistency import (
    ConsistencyReport,
    _rank,
    _weighted_distributions,
    consistency,
    consistency_report,
    label_distributions,
    num_top,
)
from consis_lib.errors import ConsisError
from consis_lib.wordnet import correlation_matrix

# ---------------------------------------------------------------- independent reference


def reference_consis(acts: np.ndarray, labels: np.ndarray, C: int, frac: float, min_top: int, A: np.ndarray):
    """Straightforward loop version of Eq. 1-3, written from DESIGN section 2."""
    N, K = acts.shape
    m = max(min_top, math.ceil(round(frac * N, 9)))
    out_p, out_c = [], []
    for k in range(K):
        # stable descending ranking: higher activation first, lower index on ties
        ranking = sorted(range(N), key=lambda i: (-acts[i, k], i))[:m]
        active = [i for i in ranking if acts[i, k] > 0.0]
        if not active:
            out_p.append([float("nan")] * C)
            out_c.append(float("nan"))
            continue
        p = [0.0] * C
        for i in active:
            p[labels[i]] += 1.0 / len(active)
        total = 0.0
        for i in range(C):
            for j in range(C):
                total += p[i] * A[i][j] * p[j]
        out_p.append(p)
        out_c.append(total)
    return np.array(out_p), np.array(out_c)


def random_A(C: int, rng: np.random.Generator, sigma: float = 2.0) -> np.ndarray:
    d = rng.integers(1, 10, size=(C, C))
    d = np.triu(d, 1)
    d = d + d.T
    return correlation_matrix(d, sigma)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_independent_loop_implementation(seed):
    rng = np.random.default_rng(seed)
    N, K, C = 157, 9, 6
    acts = rng.random((N, K)).astype(np.float32)
    acts[rng.random((N, K)) < 0.4] = 0.0  # ReLU zeros: ties and images below the floor
    acts[:, 3] = 0.0  # a dead unit
    acts[:, 4] = np.round(acts[:, 4] * 3) / 3  # heavy ties
    labels = rng.integers(0, C, size=N)
    A = random_A(C, rng)
    ref_p, ref_c = reference_consis(acts, labels, C, 0.05, 7, A)
    P = label_distributions(torch.from_numpy(acts), torch.from_numpy(labels), C, 0.05, 7)
    c = consistency(P, A)
    np.testing.assert_allclose(P.numpy(), ref_p, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(c.numpy(), ref_c, atol=1e-6, equal_nan=True)
    assert math.isnan(float(c[3]))


# ---------------------------------------------------------------- hand-computed answers


def test_one_hot_rows_give_one():
    rng = np.random.default_rng(0)
    A = random_A(5, rng)
    P = torch.eye(5)[[0, 3, 4, 1]]
    assert torch.allclose(consistency(P, A), torch.ones(4, dtype=torch.float64))


@pytest.mark.parametrize("C", [2, 5, 10])
def test_uniform_rows_with_identity_give_one_over_C(C):
    P = torch.full((3, C), 1.0 / C)
    assert torch.allclose(consistency(P, torch.eye(C)), torch.full((3,), 1.0 / C, dtype=torch.float64))


def test_five_class_toy_hierarchy():
    # root -> animal -> {dog, wolf, cat}; root -> vehicle -> {car, bus}
    # siblings are 2 edges apart, animal-vehicle leaves 4 edges apart.
    d = np.array(
        [
            [0, 2, 2, 4, 4],  # dog
            [2, 0, 2, 4, 4],  # wolf
            [2, 2, 0, 4, 4],  # cat
            [4, 4, 4, 0, 2],  # car
            [4, 4, 4, 2, 0],  # bus
        ]
    )
    A = correlation_matrix(d, sigma=2.0)  # a(2) = exp(-4/8) = 0.6065307, a(4) = exp(-16/8) = 0.1353353
    P = torch.tensor(
        [
            [0.5, 0.5, 0.0, 0.0, 0.0],  # dog+wolf: 0.25 + 0.25 + 2*0.25*0.6065307 = 0.8032653
            [0.5, 0.0, 0.0, 0.5, 0.0],  # dog+car:  0.5 + 0.5*0.1353353 = 0.5676676
            [0.0, 0.0, 0.0, 0.0, 1.0],  # bus only: 1
            [0.25, 0.25, 0.0, 0.25, 0.25],  # (4 + 4*0.6065307 + 8*0.1353353)/16 = 0.4693003
        ]
    )
    expected = [0.8032653, 0.5676676, 1.0, 0.4693003]
    np.testing.assert_allclose(consistency(P, A).numpy(), expected, atol=1e-6)


def test_label_distributions_hand_computed():
    # unit 0 ranks images 0,1,2,3; unit 1 ranks 3,2,1 and image 0 is zero (inactive)
    acts = torch.tensor([[5.0, 0.0], [4.0, 1.0], [3.0, 2.0], [2.0, 3.0]])
    labels = torch.tensor([0, 1, 1, 2])
    P = label_distributions(acts, labels, 3, top_fraction=0.5, min_top=1)  # m = 2
    expected = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]], dtype=torch.float64)
    assert torch.equal(P, expected)
    P4 = label_distributions(acts, labels, 3, top_fraction=1.0, min_top=1)  # all 4; unit 1 only 3 active
    assert torch.allclose(P4[1], torch.tensor([0.0, 2 / 3, 1 / 3], dtype=torch.float64))


def test_num_top():
    assert num_top(2400, 0.01, 20) == 24
    assert num_top(100, 0.01, 20) == 20
    assert num_top(1001, 0.01, 1) == 11
    with pytest.raises(ConsisError, match="min_top"):
        num_top(10, 0.01, 20)


def test_sigma_to_zero_gives_identity():
    d = np.array([[0, 1, 3], [1, 0, 2], [3, 2, 0]])
    assert np.allclose(correlation_matrix(d, 1e-3), np.eye(3))


# ---------------------------------------------------------------- properties


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 8), st.integers(1, 6), st.integers(0, 10_000))
def test_consistency_is_bounded_by_A(K, C, seed):
    rng = np.random.default_rng(seed)
    A = random_A(C, rng, sigma=float(rng.uniform(0.5, 5)))
    P = rng.random((K, C))
    P /= P.sum(1, keepdims=True)
    c = consistency(torch.from_numpy(P), A).numpy()
    assert np.all(c <= 1 + 1e-12)
    assert np.all(c >= A.min() - 1e-12)


def test_permuting_units_permutes_results():
    rng = np.random.default_rng(3)
    acts = torch.from_numpy(rng.random((200, 12)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 4, 200))
    A = random_A(4, rng)
    perm = torch.from_numpy(rng.permutation(12))
    c = consistency(label_distributions(acts, labels, 4, 0.05, 5), A)
    cp = consistency(label_distributions(acts[:, perm], labels, 4, 0.05, 5), A)
    assert torch.equal(cp, c[perm])


def test_permuting_images_changes_nothing_without_ties():
    rng = np.random.default_rng(4)
    acts = torch.from_numpy(rng.random((120, 5)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 3, 120))
    perm = torch.from_numpy(rng.permutation(120))
    P = label_distributions(acts, labels, 3, 0.1, 5)
    assert torch.allclose(P, label_distributions(acts[perm], labels[perm], 3, 0.1, 5))


def test_bootstrap_weights_equal_explicit_resample():
    rng = np.random.default_rng(5)
    N, K, C = 90, 6, 4
    acts = torch.from_numpy(rng.random((N, K)).astype(np.float32))
    acts[acts < 0.3] = 0
    labels = torch.from_numpy(rng.integers(0, C, N))
    counts = torch.from_numpy(rng.multinomial(N, np.ones(N) / N))
    m = num_top(N, 0.1, 5)
    Pw = _weighted_distributions(_rank(acts, labels, 0.0), counts[None], [m], C)[m][0]
    idx = torch.repeat_interleave(torch.arange(N), counts)
    Pr = label_distributions(acts[idx], labels[idx], C, 0.1, 5)
    assert torch.allclose(Pw.double(), Pr, atol=1e-6, equal_nan=True)
    # several top sizes in one call give the same answers as separate calls
    both = _weighted_distributions(_rank(acts, labels, 0.0), counts[None], [m, 3 * m], C)
    assert torch.equal(both[m][0], Pw)
    P3 = label_distributions(acts[idx], labels[idx], C, 0.3, 5)
    assert torch.allclose(both[3 * m][0].double(), P3, atol=1e-6, equal_nan=True)


# ---------------------------------------------------------------- degenerate input


def test_nan_activations_raise():
    acts = torch.rand(50, 3)
    acts[7, 1] = float("nan")
    with pytest.raises(ConsisError, match=r"NaN for units \[1\]"):
        label_distributions(acts, torch.zeros(50, dtype=torch.long), 2, 0.1, 5)


def test_bad_labels_and_shapes_raise():
    with pytest.raises(ConsisError, match="outside"):
        label_distributions(torch.rand(30, 2), torch.full((30,), 5), 3, 0.1, 5)
    with pytest.raises(ConsisError, match="labels"):
        label_distributions(torch.rand(30, 2), torch.zeros(29, dtype=torch.long), 3, 0.1, 5)
    with pytest.raises(ConsisError, match="square"):
        consistency(torch.rand(2, 3), torch.rand(3, 2))
    with pytest.raises(ConsisError, match="classes"):
        consistency(torch.rand(2, 3), torch.eye(4))


def test_dead_unit_is_undefined_and_skipped():
    rng = np.random.default_rng(6)
    acts = torch.from_numpy(rng.random((80, 3)).astype(np.float32))
    acts[:, 1] = 0.0
    labels = torch.from_numpy(rng.integers(0, 3, 80))
    d = np.array([[0, 2, 4], [2, 0, 4], [4, 4, 0]])
    rep = consistency_report(
        Activations(acts=acts, labels=labels, preds=labels),
        d,
        MetricConfig(min_top=5, bootstrap=20, sigmas=(2.0,), top_fractions=(0.01,)),
    )
    assert rep.undefined_units == [1]
    assert math.isnan(rep.consis[1])
    assert rep.mean.units == 2
    assert rep.mean.mean == pytest.approx((rep.consis[0] + rep.consis[2]) / 2)


# ---------------------------------------------------------------- report


def _toy_activations(seed=0, N=300, K=10, C=5, adv_noise=1.0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (N,), generator=g)
    # units 0..C-1 prefer one class each: consistent on real images
    acts = torch.rand(N, K, generator=g)
    acts[torch.arange(N), labels] += 2.0
    noise = torch.rand(N, K, generator=g)
    adv = (1 - adv_noise) * acts + adv_noise * noise  # adversarial: class signal replaced by noise
    return Activations(acts=acts, labels=labels, preds=labels, adv_acts=adv, adv_preds=labels, layer="toy")


def test_report_values_match_primitives_and_round_trip(tmp_path):
    res = _toy_activations()
    d = np.array([[0, 2, 2, 4, 4], [2, 0, 2, 4, 4], [2, 2, 0, 4, 4], [4, 4, 4, 0, 2], [4, 4, 4, 2, 0]])
    cfg = MetricConfig(top_fraction=0.05, min_top=5, sigma=2.0, sigmas=(1.0, 2.0), top_fractions=(0.05, 0.1), bootstrap=50)
    rep = consistency_report(res, d, cfg, seed=1)
    A = correlation_matrix(d, 2.0)
    c = consistency(label_distributions(res.acts, res.labels, 5, 0.05, 5), A)
    ca = consistency(label_distributions(res.adv_acts, res.labels, 5, 0.05, 5), A)
    np.testing.assert_allclose(rep.consis, c.numpy())
    np.testing.assert_allclose(rep.consis_adv, ca.numpy())
    assert rep.mean.mean == pytest.approx(float(c.mean()))
    assert rep.diff.mean == pytest.approx(float(c.mean() - ca.mean()))
    # planted class units are perfectly consistent on real images, less so on adversarial ones
    assert np.allclose(rep.consis[:5], 1.0)
    assert rep.diff.low > 0
    assert rep.mean.low <= rep.mean.high and rep.mean_adv.low <= rep.mean_adv.high
    assert len(rep.sweep) == 2 * 2 * 2
    row = rep.sweep_frame().query("sigma == 2.0 and top_fraction == 0.05 and kind == 'adv'")
    assert row["mean"].item() == pytest.approx(rep.mean_adv.mean)
    path = rep.save(tmp_path / "r" / "consis.json")
    back = ConsistencyReport.load(path)
    assert back.consis == rep.consis and back.mean == rep.mean and back.sweep == rep.sweep
    assert list(back.units_frame().columns) == ["unit", "consis", "consis_adv"]


def test_report_bootstrap_is_seeded_and_identical_sides_give_zero_diff():
    res = _toy_activations(adv_noise=0.0)
    d = np.full((5, 5), 3) - 3 * np.eye(5, dtype=int)
    cfg = MetricConfig(top_fraction=0.05, min_top=5, sigmas=(2.0,), top_fractions=(0.05,), bootstrap=40)
    r1 = consistency_report(res, d, cfg, seed=7)
    r2 = consistency_report(res, d, cfg, seed=7)
    assert r1.mean == r2.mean
    assert r1.diff.mean == 0 and r1.diff.low == 0 and r1.diff.high == 0


def test_report_rejects_mismatched_distances():
    res = _toy_activations()
    with pytest.raises(ConsisError, match="distances"):
        consistency_report(res, np.zeros((4, 4)), MetricConfig(min_top=5, bootstrap=0), num_classes=5)
