"""Eq. 4 targeted examples for the ambiguity figure: targets, batching, success, top images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from consis_lib.ambiguity import (
    farthest_target_example,
    farthest_targets,
    per_class_indices,
    targeted_examples,
    targeted_per_class,
    top_activating,
)
from consis_lib.config import AttackConfig
from consis_lib.errors import ConsisError

# hand-made WordNet-like distances: row 0 has a tie (classes 2 and 3 at 7)
DIST = np.array(
    [
        [0, 3, 7, 7],
        [3, 0, 4, 2],
        [7, 4, 0, 5],
        [7, 2, 5, 0],
    ]
)


def test_farthest_targets_known_answer_with_lowest_index_tie_break() -> None:
    labels = torch.tensor([3, 0, 1, 2, 0])
    # row 0 -> 2 (tie with 3, lower index wins); row 1 -> 2; row 2 -> 0; row 3 -> 0
    assert farthest_targets(labels, DIST).tolist() == [0, 2, 2, 0, 2]


def test_farthest_targets_take_the_row_maximum_and_never_the_true_class() -> None:
    g = np.random.default_rng(0)
    d = g.integers(1, 20, size=(9, 9))
    d = np.triu(d, 1) + np.triu(d, 1).T
    labels = torch.arange(9).repeat(3)
    targets = farthest_targets(labels, d)
    assert bool((targets != labels).all())
    assert np.array_equal(d[labels.numpy(), targets.numpy()], d.max(1)[labels.numpy()])


@pytest.mark.parametrize(
    ("labels", "dist", "match"),
    [
        (torch.tensor([0]), np.zeros((3, 2)), "square"),
        (torch.tensor([4]), DIST, "outside"),
        (torch.tensor([0]), np.where(DIST == 7, np.nan, DIST), "NaN"),
    ],
)
def test_farthest_targets_bad_input_is_a_consis_error(labels: torch.Tensor, dist: np.ndarray, match: str) -> None:
    with pytest.raises(ConsisError, match=match):
        farthest_targets(labels, dist)


def channel_model() -> nn.Module:
    """Hand-set linear model on [B, 3, 2, 2] images: logit of class c = 2 * (sum of channel c) - 4.

    Class 3 has logit 0 everywhere; raising channel c's pixels raises class c only.
    """
    lin = nn.Linear(12, 4)
    with torch.no_grad():
        lin.weight.zero_()
        for c in range(3):
            lin.weight[c, 4 * c : 4 * (c + 1)] = 2.0
        lin.bias.copy_(torch.tensor([-4.0, -4.0, -4.0, 0.0]))
    return nn.Sequential(nn.Flatten(), lin).eval()


def images_of(labels: list[int], seed: int = 0) -> torch.Tensor:
    """Dark noisy images [N, 3, 2, 2] whose true class's channel is bright (class 3: all dark)."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 + 0.1 * torch.rand(len(labels), 3, 2, 2, generator=g)
    for i, c in enumerate(labels):
        if c < 3:
            x[i, c] += 0.7
    return x


LABELS = [0, 1, 2, 3, 0, 1, 2]
CFG = AttackConfig(targeted_lambda=10.0, targeted_steps=150, targeted_lr=0.05)


def test_targeted_examples_reach_the_farthest_class_and_stay_in_the_box() -> None:
    model = channel_model()
    x, y = images_of(LABELS), torch.tensor(LABELS)
    with torch.no_grad():
        assert torch.equal(model(x).argmax(1), y)  # the model gets the clean images right
    ex = targeted_examples(model, x, y, DIST, CFG, batch_size=4, progress=False)
    assert ex.x_adv.dtype == torch.uint8 and ex.x_adv.shape == x.shape
    assert torch.equal(ex.targets, farthest_targets(y, DIST))
    assert torch.equal(ex.labels, y)
    assert bool(ex.success.all()) and ex.success_rate == 1.0
    with torch.no_grad():
        assert torch.equal(model(ex.images()).argmax(1), ex.targets)
    # predictable direction: a target among classes 0-2 is reached by brightening its channel
    for i, t in enumerate(ex.targets.tolist()):
        if t < 3:
            assert float(ex.images([i])[0, t].mean()) > float(x[i, t].mean()) + 0.2
    torch.testing.assert_close(ex.l2, (ex.images() - x).flatten(1).norm(dim=1))


def test_success_rate_is_the_fraction_classified_as_the_target() -> None:
    """lambda = 0: x* stays x (to 8 bits), so only images the model already puts in the target succeed."""
    model = channel_model()
    labels = [0, 1, 2, 3]
    x = images_of(labels)
    x[1, 2] += 0.7  # image 1 (label 1, target 2): channel 2 now brighter than channel 1
    x[1, 1] -= 0.2
    cfg = AttackConfig(targeted_lambda=0.0, targeted_steps=5, targeted_lr=0.05)
    ex = targeted_examples(model, x, torch.tensor(labels), DIST, cfg, progress=False)
    assert ex.success.tolist() == [False, True, False, False]
    assert ex.success_rate == 0.25
    assert int((ex.x_adv.int() - (x * 255).round().int()).abs().max()) <= 1


def test_targeted_examples_batched_equals_per_image_and_loader_equals_tensor() -> None:
    model = channel_model()
    x, y = images_of(LABELS, seed=3), torch.tensor(LABELS)
    batched = targeted_examples(model, x, y, DIST, CFG, batch_size=3, progress=False)
    single = targeted_examples(model, x, y, DIST, CFG, batch_size=1, progress=False)
    assert int((batched.x_adv.int() - single.x_adv.int()).abs().max()) <= 1
    assert torch.equal(batched.success, single.success)
    loader = DataLoader(TensorDataset(x, y), batch_size=3, shuffle=False)
    from_loader = targeted_examples(model, loader, None, DIST, CFG, progress=False)
    assert torch.equal(from_loader.x_adv, batched.x_adv)
    assert torch.equal(from_loader.targets, batched.targets)


def test_stop_on_success_still_reaches_every_target() -> None:
    model = channel_model()
    x, y = images_of(LABELS), torch.tensor(LABELS)
    ex = targeted_examples(model, x, y, DIST, CFG, progress=False, stop_on_success=True)
    assert bool(ex.success.all())
    assert int(ex.steps.max()) < CFG.targeted_steps


def test_examples_loader_yields_the_stored_images_with_true_labels() -> None:
    model = channel_model()
    x, y = images_of(LABELS), torch.tensor(LABELS)
    ex = targeted_examples(model, x, y, DIST, CFG, progress=False)
    xs, ys = zip(*ex.loader(batch_size=4))
    assert torch.equal(torch.cat(xs), ex.images())
    assert torch.equal(torch.cat(ys), y)


def test_targeted_examples_bad_input_is_a_consis_error() -> None:
    model = channel_model()
    x, y = images_of(LABELS), torch.tensor(LABELS)
    with pytest.raises(ConsisError, match="labels"):
        targeted_examples(model, x, y[:3], DIST, CFG, progress=False)
    with pytest.raises(ConsisError, match="labels are given twice"):
        targeted_examples(model, DataLoader(TensorDataset(x, y)), y, DIST, CFG, progress=False)


ACTS = torch.tensor(
    [
        [1.0, 5.0],
        [3.0, 5.0],
        [2.0, 0.0],
        [3.0, 4.0],
    ]
)


def test_top_activating_known_answer_with_stable_ties() -> None:
    # unit 0: 3.0 at images 1 and 3 (lower index first), then 2.0; unit 1: 5.0 at 0 and 1, then 4.0
    assert top_activating(ACTS, 3).tolist() == [[1, 3, 2], [0, 1, 3]]
    assert top_activating(ACTS[:, 0], 2).tolist() == [1, 3]


def test_top_activating_among_a_mask_and_fewer_eligible_than_k() -> None:
    among = torch.tensor([True, False, True, False])
    assert top_activating(ACTS, 5, among=among).tolist() == [[2, 0], [0, 2]]


def test_top_activating_property_values_are_the_k_largest() -> None:
    a = torch.rand(50, 7, generator=torch.Generator().manual_seed(0))
    idx = top_activating(a, 5)
    for u in range(7):
        assert torch.equal(a[idx[u], u], a[:, u].sort(descending=True).values[:5])


def test_top_activating_bad_input_is_a_consis_error() -> None:
    with pytest.raises(ConsisError, match="k >= 1"):
        top_activating(ACTS, 0)
    with pytest.raises(ConsisError, match="one flag per image"):
        top_activating(ACTS, 2, among=torch.tensor([True]))


def test_per_class_indices_known_answer() -> None:
    labels = torch.tensor([2, 0, 0, 1, 0, 2, 2, 1, 0])
    assert per_class_indices(labels, 2).tolist() == [0, 1, 2, 3, 5, 7]
    assert per_class_indices(labels, 9).tolist() == list(range(9))


def test_per_class_indices_balances_classes() -> None:
    labels = torch.arange(6).repeat_interleave(10)
    idx = per_class_indices(labels, 3)
    assert torch.bincount(labels[idx]).tolist() == [3] * 6
    with pytest.raises(ConsisError, match="per_class"):
        per_class_indices(labels, 0)


def test_targeted_per_class_reads_the_first_images_of_each_class() -> None:
    model = channel_model()
    labels = [0, 1, 0, 2, 1, 0, 3, 3]
    x, y = images_of(labels), torch.tensor(labels)
    ex, acts = targeted_per_class(model, TensorDataset(x, y), y, 1, DIST, CFG, layer="1", batch_size=2)
    first = [0, 1, 3, 6]  # the first image of classes 0, 1, 2, 3
    ref = targeted_examples(model, x[first], y[first], DIST, CFG, batch_size=2, progress=False, stop_on_success=True)
    assert torch.equal(ex.x_adv, ref.x_adv) and torch.equal(ex.labels, y[first])
    with torch.no_grad():
        assert torch.allclose(acts.acts, model(ex.images()), atol=1e-6)  # layer "1": the logits of the stored images
    assert torch.equal(acts.labels, y[first])


def test_farthest_target_example_reaches_the_farthest_class() -> None:
    model = channel_model()
    x = images_of([1])[0]
    ex = farthest_target_example(model, x, 1, DIST, CFG)
    assert (ex["label"], ex["target"], ex["pred_before"]) == (1, 2, 1)  # row 1's maximum: class 2
    assert ex["pred_after"] == 2 and ex["success"]
    assert ex["l2"] == pytest.approx(float((ex["x_adv"] - x).norm()))
    assert ex["x_adv"].shape == x.shape and float(ex["x_adv"].min()) >= 0.0 and float(ex["x_adv"].max()) <= 1.0
