"""Eq. 1-3 (label distributions, consistency) and the consistency report."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from consis_lib.activations import Activations
from consis_lib.config import MetricConfig
from consis_lib.consistency import (
    DEFAULT_MIN_ACTIVATING,
    ConsistencyReport,
    consistency,
    consistency_report,
    label_distributions,
    num_top,
)
from consis_lib.consistency_estimators import _rank, _weighted_distributions
from consis_lib.consistency_stats import (
    baseline_plugin,
    baseline_unbiased,
    chance_corrected,
    label_counts,
    unbiased_consistency,
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
    Pw, nw = _weighted_distributions(_rank(acts, labels, 0.0), counts[None], [m], C)[m]
    Pw = Pw[0]
    idx = torch.repeat_interleave(torch.arange(N), counts)
    Pr = label_distributions(acts[idx], labels[idx], C, 0.1, 5)
    assert torch.allclose(Pw.double(), Pr, atol=1e-6, equal_nan=True)
    # several top sizes in one call give the same answers as separate calls
    both = _weighted_distributions(_rank(acts, labels, 0.0), counts[None], [m, 3 * m], C)
    assert torch.equal(both[m][0][0], Pw)
    P3 = label_distributions(acts[idx], labels[idx], C, 0.3, 5)
    assert torch.allclose(both[3 * m][0][0].double(), P3, atol=1e-6, equal_nan=True)
    # the set sizes count copies: min(m, copies of the images above the floor)
    valid = (acts > 0).double().t() @ counts.double()
    assert torch.equal(nw[0].double(), valid.clamp(max=m))


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
    assert list(back.units_frame().columns)[:3] == ["unit", "consis", "consis_adv"]
    assert back.units_frame().equals(rep.units_frame())


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


# ---------------------------------------------------------------- the common scale: estimators


def pair_mean(labels: list[int], A: np.ndarray) -> float:
    """The U-statistic by its definition: mean of A over ordered pairs i != j."""
    n = len(labels)
    return sum(A[labels[i], labels[j]] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))


def plug_in(labels: list[int], A: np.ndarray) -> float:
    p = np.bincount(labels, minlength=A.shape[0]) / len(labels)
    return float(p @ A @ p)


def _dist_of(label_sets: list[list[int]], C: int) -> tuple[torch.Tensor, torch.Tensor]:
    P = torch.tensor(np.array([np.bincount(ls, minlength=C) / len(ls) for ls in label_sets]), dtype=torch.float64)
    return P, torch.tensor([float(len(ls)) for ls in label_sets], dtype=torch.float64)


def test_unbiased_hand_computed():
    # labels {0, 0, 1}; a = A[0, 1] = exp(-2^2 / 8) = 0.6065307
    A = correlation_matrix(np.array([[0, 2], [2, 0]]), 2.0)
    P, n = _dist_of([[0, 0, 1], [1, 1], [0, 1]], 2)
    # ordered pairs: (0,0) twice -> 1, (0,1)/(1,0) four times -> a: (2 + 4a) / 6 = 0.7376871
    # one-class pair: 1; the pair {0, 1}: a (the plug-in gives (1 + a) / 2 = 0.8032653)
    np.testing.assert_allclose(unbiased_consistency(P, n, A).numpy(), [0.7376871, 1.0, 0.6065307], atol=1e-7)
    np.testing.assert_allclose(consistency(P, A).numpy(), [0.8251248, 1.0, 0.8032653], atol=1e-7)
    one = unbiased_consistency(*_dist_of([[1]], 2), A)
    assert math.isnan(float(one[0]))  # a single image has no pair


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=2, max_size=9), st.integers(0, 10_000))
def test_unbiased_equals_pair_loop(labels, seed):
    A = random_A(4, np.random.default_rng(seed), sigma=1.5)
    P, n = _dist_of([labels], 4)
    assert float(unbiased_consistency(P, n, A)[0]) == pytest.approx(pair_mean(labels, A), abs=1e-12)
    assert float(consistency(P, A)[0]) == pytest.approx(plug_in(labels, A), abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(2, 4), st.integers(0, 10_000), st.booleans())
def test_unbiased_in_expectation_and_plugin_bias(C, n, seed, identity):
    """Exact expectation over every label sequence of n i.i.d. draws from p."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(C))
    A = np.eye(C) if identity else random_A(C, rng, sigma=float(rng.uniform(0.5, 4)))
    seqs = [list(s) for s in itertools.product(range(C), repeat=n)]
    prob = np.array([np.prod(p[s]) for s in seqs])
    P, nn = _dist_of(seqs, C)
    e_u = float(prob @ unbiased_consistency(P, nn, A).numpy())
    e_plug = float(prob @ consistency(P, A).numpy())
    pap = float(p @ A @ p)
    assert e_u == pytest.approx(pap, abs=1e-12)
    assert e_plug == pytest.approx(pap + (float(p @ np.diag(A)) - pap) / n, abs=1e-12)
    if identity:  # E[plug-in] = sum p^2 + (1 - sum p^2) / n
        assert e_plug == pytest.approx((p**2).sum() + (1 - (p**2).sum()) / n, abs=1e-12)


# ---------------------------------------------------------------- the common scale: permutation baseline


def test_permutation_baseline_hand_computed():
    # pool {0, 0, 0, 1}, A = I. Pairs of the 4 images: 3 of the 6 share label 0 -> b_u = 1/2.
    # Size-2 sets: {0,0} (3 of 6) has plug-in 1, {0,1} (3 of 6) has 1/2 -> b(2) = 3/4.
    counts = label_counts(torch.tensor([0, 0, 0, 1]), 2)
    assert torch.equal(counts, torch.tensor([3.0, 1.0], dtype=torch.float64))
    assert float(baseline_unbiased(counts, torch.eye(2))) == pytest.approx(0.5)
    got = baseline_plugin(counts, torch.tensor([1.0, 2.0, 4.0]), torch.eye(2))
    np.testing.assert_allclose(got.numpy(), [1.0, 0.75, 10 / 16])  # n = N: the pool's own p^T A p


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=2, max_size=8), st.data(), st.integers(0, 10_000))
def test_baseline_equals_exhaustive_shuffle(pool, data, seed):
    """Closed forms against every size-n subset of the pool (a shuffle's activating set)."""
    n = data.draw(st.integers(1, len(pool)))
    A = random_A(4, np.random.default_rng(seed), sigma=2.0)
    subsets = [[pool[i] for i in idx] for idx in itertools.combinations(range(len(pool)), n)]
    counts = label_counts(torch.tensor(pool), 4)
    b = float(baseline_plugin(counts, torch.tensor([float(n)]), A)[0])
    assert b == pytest.approx(np.mean([plug_in(s, A) for s in subsets]), abs=1e-12)
    if n >= 2:
        assert float(baseline_unbiased(counts, A)) == pytest.approx(np.mean([pair_mean(s, A) for s in subsets]), abs=1e-12)


def test_baseline_matches_monte_carlo_shuffle_of_report():
    """The report's per-unit baselines against shuffled labels (same rankings, same m)."""
    rng = np.random.default_rng(11)
    N, K, C = 150, 6, 5
    acts = rng.random((N, K)).astype(np.float32)
    acts[:, 4][acts[:, 4] < 0.95] = 0.0  # a few images above the floor: n < m
    labels = rng.choice(C, size=N, p=[0.4, 0.3, 0.15, 0.1, 0.05])
    d = np.triu(rng.integers(1, 6, (C, C)), 1)
    d = d + d.T
    cfg = MetricConfig(top_fraction=0.1, min_top=10, sigmas=(2.0,), top_fractions=(0.1,), bootstrap=0)
    res = Activations(acts=torch.from_numpy(acts), labels=torch.from_numpy(labels), preds=torch.from_numpy(labels))
    real = consistency_report(res, d, cfg, min_activating=2).stats["real"]
    A = correlation_matrix(d, 2.0)
    ranked = _rank(torch.from_numpy(acts), torch.from_numpy(labels), 0.0)
    n = np.minimum(15, ranked.num_valid.numpy())
    assert real.n_activating == n.tolist() and 2 <= n[4] < 15
    shuffles = np.stack([rng.permutation(labels) for _ in range(4000)])  # [S, N]
    for k in range(K):
        top = shuffles[:, ranked.order[k, : n[k]].numpy()]  # labels of the activating set after a shuffle
        pairs = A[top[:, :, None], top[:, None, :]]  # [S, n, n]: A[y_i, y_j]
        plug = pairs.mean((1, 2))  # (1/n^2) sum_{i,j}
        u = (pairs.sum((1, 2)) - np.trace(pairs, axis1=1, axis2=2)) / (n[k] * (n[k] - 1))
        for vals, col in ((plug, "baseline"), (u, "baseline_u")):
            se = vals.std() / math.sqrt(len(vals))
            assert abs(vals.mean() - real.units[col][k]) < 4 * se, (k, col)


# ---------------------------------------------------------------- the common scale in the report


def test_two_image_unit_is_undefined_not_one():
    g = torch.Generator().manual_seed(0)
    N, C = 100, 4
    labels = torch.randint(0, C, (N,), generator=g)
    acts = torch.rand(N, 3, generator=g) + 0.1
    acts[:, 0] = 0.0
    acts[:2, 0] = torch.tensor([2.0, 1.0])  # only two images activate unit 0
    labels[:2] = 3
    res = Activations(acts=acts, labels=labels, preds=labels)
    d = np.full((C, C), 4) - 4 * np.eye(C, dtype=int)
    cfg = MetricConfig(top_fraction=0.1, min_top=10, sigmas=(2.0,), top_fractions=(0.1,), bootstrap=10)
    rep = consistency_report(res, d, cfg)
    assert DEFAULT_MIN_ACTIVATING == 5 and rep.min_activating == 5
    assert math.isnan(rep.consis[0]) and rep.undefined_units == [0]
    assert rep.stats["real"].n_activating == [2, 10, 10]
    assert all(math.isnan(rep.stats["real"].units[c][0]) for c in ("consis_u", "baseline", "lift", "lift_u"))
    assert rep.mean.units == 2 and rep.stats["real"].means["lift"].units == 2
    loose = consistency_report(res, d, cfg, min_activating=2)
    assert loose.consis[0] == 1.0 and loose.stats["real"].units["consis_u"][0] == 1.0
    for bad in (1, 11):
        with pytest.raises(ConsisError, match="min_activating"):
            consistency_report(res, d, cfg, min_activating=bad)


def test_uniform_labels_score_chance_and_lift_one():
    """The issue's example: labels unrelated to the units, 24 balanced classes, m = 24."""
    g = torch.Generator().manual_seed(1)
    N, K, C = 2400, 40, 24
    labels = torch.arange(N) % C
    res = Activations(acts=torch.rand(N, K, generator=g), labels=labels, preds=labels)
    d = np.full((C, C), 50) - 50 * np.eye(C, dtype=int)  # A = I up to exp(-50^2/8)
    cfg = MetricConfig(sigmas=(2.0,), top_fractions=(0.01,), bootstrap=200)
    real = consistency_report(res, d, cfg).stats["real"]
    b_u = (C * 100**2 - N) / (N * (N - 1))  # 0.0412672
    assert real.units["baseline_u"][0] == pytest.approx(b_u)
    assert real.units["baseline"][0] == pytest.approx(23 / 24 * b_u + 1 / 24)  # 0.0812, not 1/24
    assert real.means["consis"].mean == pytest.approx(0.0812, abs=0.008)
    for lift in ("lift", "lift_u"):
        ci = real.means[lift]
        assert ci.low < 1.0 < ci.high and ci.mean == pytest.approx(1.0, abs=0.15)


def test_report_common_scale_matches_primitives():
    res = _toy_activations(seed=2)
    d = np.array([[0, 2, 2, 4, 4], [2, 0, 2, 4, 4], [2, 2, 0, 4, 4], [4, 4, 4, 0, 2], [4, 4, 4, 2, 0]])
    cfg = MetricConfig(top_fraction=0.05, min_top=5, sigmas=(2.0,), top_fractions=(0.05,), bootstrap=60)
    rep = consistency_report(res, d, cfg, seed=3)
    A = torch.as_tensor(correlation_matrix(d, 2.0))
    for side, acts in (("real", res.acts), ("adv", res.adv_acts)):
        st_ = rep.stats[side]
        P = label_distributions(acts, res.labels, 5, 0.05, 5)
        n = torch.full((10,), 15.0, dtype=torch.float64)  # every image is above the floor
        want = chance_corrected(P, n, label_counts(res.labels, 5), A)
        for col, vals in want.items():
            np.testing.assert_allclose(st_.units[col], vals.numpy(), rtol=1e-12)
        np.testing.assert_allclose(st_.units["lift"], np.divide(st_.units["consis"], st_.units["baseline"]))
        for ci in st_.means.values():
            assert ci.low <= ci.mean <= ci.high
    assert rep.stats["real"].means["consis"] == rep.mean  # the same replicates
    assert rep.stats["adv"].means["consis"] == rep.mean_adv
    assert rep.consis == rep.stats["real"].units["consis"]
    # planted class units: every pair agrees (consis_u = 1), so the lift is 1 / chance level
    real = rep.stats["real"]
    np.testing.assert_allclose(real.units["consis_u"][:5], 1.0)
    np.testing.assert_allclose(real.units["lift_u"][:5], 1.0 / np.array(real.units["baseline_u"][:5]))
    assert min(real.units["lift_u"][:5]) > 2 and real.means["lift_u"].low > 1


def _attacked(seed=0, N=400, C=4):
    """Units 0..C-1 prefer one class; the attack succeeds on odd images, whose class
    signal it wipes out, and fails on even ones, which keep it."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (N,), generator=g)
    acts = torch.rand(N, C, generator=g)
    acts[torch.arange(N), labels] += 2.0
    success = torch.arange(N) % 2 == 1
    adv = torch.where(success[:, None], torch.rand(N, C, generator=g), acts)
    adv_preds = torch.where(success, (labels + 1) % C, labels)
    return Activations(acts=acts, labels=labels, preds=labels, adv_acts=adv, adv_preds=adv_preds), success


def test_successful_adversarial_images_only():
    res, success = _attacked()
    d = np.full((4, 4), 3) - 3 * np.eye(4, dtype=int)
    cfg = MetricConfig(top_fraction=0.05, min_top=10, sigmas=(2.0,), top_fractions=(0.05,), bootstrap=100)
    rep = consistency_report(res, d, cfg)
    assert rep.attack_success_rate == 0.5
    ok = rep.stats["adv_success"]
    assert ok.num_images == 200 and ok.num_top == 10
    A = correlation_matrix(d, 2.0)
    want = consistency(label_distributions(res.adv_acts[success], res.labels[success], 4, 0.05, 10), A)
    np.testing.assert_allclose(ok.units["consis"], want.numpy())
    # all adversarial images: the failed attacks keep the class signal and look consistent
    assert np.allclose(rep.consis_adv, 1.0) and rep.stats["adv"].means["lift_u"].low > 2
    assert ok.means["lift_u"].low < 1.0 < ok.means["lift_u"].high  # successful ones: chance
    explicit = consistency_report(res, d, cfg, adv_success=success)
    assert explicit.units_frame().equals(rep.units_frame())
    assert "consis_adv_success_u" in rep.units_frame().columns
    with pytest.raises(ConsisError, match="adv_success"):
        consistency_report(res, d, cfg, adv_success=success.long())


def test_too_few_successes_leave_the_control_out_and_shared_set_needs_no_special_path():
    res, success = _attacked()
    # a shared adversarial set: this model's activations on images attacked elsewhere
    shared = Activations(acts=res.acts, labels=res.labels, preds=res.preds, adv_acts=res.adv_acts, adv_preds=res.labels)
    d = np.full((4, 4), 3) - 3 * np.eye(4, dtype=int)
    cfg = MetricConfig(top_fraction=0.05, min_top=10, sigmas=(2.0,), top_fractions=(0.05,), bootstrap=0)
    rep = consistency_report(shared, d, cfg)  # adv_preds == labels: no attack succeeds
    assert rep.attack_success_rate == 0.0 and "adv_success" not in rep.stats
    A = correlation_matrix(d, 2.0)
    np.testing.assert_allclose(rep.consis_adv, consistency(label_distributions(res.adv_acts, res.labels, 4, 0.05, 10), A).numpy())
    given_mask = consistency_report(shared, d, cfg, adv_success=success)
    assert given_mask.attack_success_rate == 0.5 and given_mask.stats["adv_success"].num_images == 200


def test_common_scale_json_round_trip_and_old_reports(tmp_path):
    res, _ = _attacked(seed=1)
    d = np.full((4, 4), 3) - 3 * np.eye(4, dtype=int)
    cfg = MetricConfig(top_fraction=0.05, min_top=10, sigmas=(2.0,), top_fractions=(0.05,), bootstrap=30)
    rep = consistency_report(res, d, cfg)
    back = ConsistencyReport.load(rep.save(tmp_path / "c.json"))
    assert back.units_frame().equals(rep.units_frame())
    assert back.means_frame().equals(rep.means_frame())
    assert back.min_activating == rep.min_activating and back.attack_success_rate == rep.attack_success_rate
    cols = set(back.units_frame().columns)
    for c in ("consis_u", "consis_adv_u", "baseline", "baseline_adv", "lift", "lift_adv", "lift_adv_success_u", "n_activating"):
        assert c in cols
    assert set(back.means_frame()["set"]) == {"real", "adv", "adv_success"}
    old = {k: v for k, v in rep.to_dict().items() if k not in ("stats", "min_activating", "attack_success_rate")}
    legacy = ConsistencyReport.from_dict(old)
    assert legacy.stats == {} and legacy.min_activating == 1
    assert list(legacy.units_frame().columns) == ["unit", "consis", "consis_adv"]
