"""One streaming pass of per-unit activations (spatial max / mean), with and without an attack;
running top-k, the maps of a few images, and the pass's memory against the number of images."""

from __future__ import annotations

import subprocess
import sys
import weakref

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from consis_lib.activations import (
    RunningTopK,
    fgsm_attack,
    layer_maps,
    reduce_maps,
    top_k_per_unit,
    transfer_activations,
    unit_activations,
    unit_map,
)
from consis_lib.errors import ConsisError
from consis_lib.hooks import count_hooks


def tiny_model() -> nn.Module:
    """conv 1x1 with hand-set weights: unit 0 = red, unit 1 = green - blue; then ReLU and a head."""
    conv = nn.Conv2d(3, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, -1.0]]).view(2, 3, 1, 1))
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))


def make_loader(n=10, size=6, batch=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return x, y, DataLoader(TensorDataset(x, y), batch_size=batch)


def test_reduce_maps_known_answer():
    maps = torch.arange(8.0).view(1, 2, 2, 2)
    assert torch.equal(reduce_maps(maps, "max"), torch.tensor([[3.0, 7.0]]))
    assert torch.equal(reduce_maps(maps, "mean"), torch.tensor([[1.5, 5.5]]))
    with pytest.raises(ConsisError, match="reduce"):
        reduce_maps(maps, "median")


def test_acts_are_spatial_max_of_the_hand_set_filters():
    x, y, loader = make_loader()
    model = tiny_model().train()
    res = unit_activations(model, loader, "1", progress=False)
    expected = torch.stack([x[:, 0].amax((1, 2)), (x[:, 1] - x[:, 2]).clamp(min=0).amax((1, 2))], 1)
    assert torch.allclose(res.acts, expected, atol=1e-6)
    assert torch.equal(res.labels, y)
    maps = layer_maps(model, "1", x)
    assert maps.shape == (10, 2, 6, 6) and model.training  # mode restored
    assert torch.allclose(maps.amax((2, 3)), res.acts)
    with torch.no_grad():
        assert torch.equal(res.preds, model.eval()(x).argmax(1))
    assert res.adv_acts is None and res.adv_accuracy is None
    assert count_hooks(model) == 0


def test_mean_reduction_and_mode_restored():
    x, _, loader = make_loader()
    model = tiny_model().train()
    res = unit_activations(model, loader, "1", reduce="mean", progress=False)
    assert torch.allclose(res.acts[:, 0], x[:, 0].mean((1, 2)), atol=1e-6)
    assert model.training
    model.eval()
    unit_activations(model, loader, "1", progress=False)
    assert not model.training


def test_attack_scores_adversarial_counterparts_in_the_same_pass():
    x, y, loader = make_loader()
    model = tiny_model()
    seen = []

    def invert(m, xb, yb):
        seen.append(yb.clone())
        return 1.0 - xb

    res = unit_activations(model, loader, "1", attack=invert, progress=False)
    assert torch.equal(torch.cat(seen), y)  # the attack gets the source labels
    ref = unit_activations(model, DataLoader(TensorDataset(1.0 - x, y), batch_size=3), "1", progress=False)
    assert torch.allclose(res.adv_acts, ref.acts, atol=1e-6)
    assert torch.equal(res.adv_preds, ref.preds)
    assert res.adv_accuracy == pytest.approx(float((ref.preds == y).float().mean()))


def test_no_hook_left_behind_on_error_and_bad_input():
    model = tiny_model()

    def boom(m, xb, yb):
        raise RuntimeError("attack failed")

    _, _, loader = make_loader()
    with pytest.raises(RuntimeError, match="attack failed"):
        unit_activations(model, loader, "1", attack=boom, progress=False)
    assert count_hooks(model) == 0
    with pytest.raises(ConsisError, match="no images"):
        unit_activations(model, [], "1", progress=False)
    with pytest.raises(ConsisError, match="expected"):
        unit_activations(model, [{"x": 1}], "1", progress=False)
    with pytest.raises(KeyError, match="no layer"):
        unit_activations(model, loader, "layer9", progress=False)
    assert count_hooks(model) == 0


def test_end_to_end_with_project_model_and_attacks(tmp_path):
    """Real small ResNet-18, FGSM through fgsm_attack, then the consistency report."""
    import numpy as np

    from consis_lib.activations import fgsm_attack, least_likely_attack
    from consis_lib.config import MetricConfig
    from consis_lib.consistency import consistency_report
    from consis_lib.models import build_model, metric_layer

    torch.manual_seed(0)
    model = build_model("resnet18", 4, image_size=32)
    layer = metric_layer("resnet18")
    x = torch.rand(24, 3, 32, 32)
    y = torch.randint(0, 4, (24,))
    loader = DataLoader(TensorDataset(x, y), batch_size=12)
    res = unit_activations(model, loader, layer, attack=fgsm_attack(8 / 255), progress=False)
    assert res.acts.shape == res.adv_acts.shape and res.acts.shape[0] == 24
    assert not torch.allclose(res.acts, res.adv_acts)
    d = np.array([[0, 2, 4, 4], [2, 0, 4, 4], [4, 4, 0, 2], [4, 4, 2, 0]])
    rep = consistency_report(res, d, MetricConfig(min_top=5, bootstrap=20, sweep_bootstrap=10))
    assert len(rep.consis) == res.acts.shape[1] and rep.mean_adv is not None
    assert rep.to_json()
    with pytest.raises(ConsisError, match="labels"):
        fgsm_attack(8 / 255)(model, x[:2], None)
    x_ll = least_likely_attack(4 / 255, iters=2)(model, x[:2], None)
    assert (x_ll - x[:2]).abs().max() <= 4 / 255 + 1e-6
    assert count_hooks(model) == 0


def test_unit_map_is_each_images_own_units_channel():
    x, _, _ = make_loader()
    model = tiny_model()
    got = unit_map(model, "1", x[:3], torch.tensor([0, 1, 0]), batch=2)
    expected = torch.stack([x[0, 0], (x[1, 1] - x[1, 2]).clamp(min=0), x[2, 0]])
    assert torch.allclose(got, expected, atol=1e-6)
    with pytest.raises(ConsisError, match="one unit per image"):
        unit_map(model, "1", x[:3], torch.tensor([0]))
    assert count_hooks(model) == 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 3), min_size=3, max_size=3), min_size=1, max_size=30),
    st.integers(1, 6),
    st.integers(1, 7),
)
def test_running_top_k_equals_a_stable_sort_of_the_whole_table(rows, k, chunk):
    acts = torch.tensor(rows, dtype=torch.float32)  # few distinct values: many ties
    idx, vals = top_k_per_unit(acts, k, chunk=chunk)
    order = torch.sort(acts, dim=0, descending=True, stable=True)
    assert torch.equal(idx, order.indices[:k].T) and torch.equal(vals, order.values[:k].T)


def test_running_top_k_known_answer_and_errors():
    top = RunningTopK(2)
    top.update(torch.tensor([[1.0, 5.0], [3.0, 5.0]]))
    top.update(torch.tensor([[3.0, 0.0]]))
    idx, vals = top.result()
    assert idx.tolist() == [[1, 2], [0, 1]] and vals.tolist() == [[3.0, 3.0], [5.0, 5.0]]
    with pytest.raises(ConsisError, match="no rows"):
        RunningTopK(2).result()
    with pytest.raises(ConsisError, match=">= 1"):
        RunningTopK(0)


def test_transfer_activations_score_every_model_on_the_source_models_images():
    x, y, loader = make_loader(n=9, batch=4)
    source, other = tiny_model(), tiny_model()
    with torch.no_grad():
        other[0].weight.mul_(-1.0)
    shared = transfer_activations(source, {"source": source, "other": other}, loader, "1", fgsm_attack(0.1), progress=False)
    x_adv = torch.cat([fgsm_attack(0.1)(source, xb, yb) for xb, yb in loader])
    ref = DataLoader(TensorDataset(x_adv, y), batch_size=4)
    for name, model in (("source", source), ("other", other)):
        assert torch.equal(shared[name], unit_activations(model, ref, "1", progress=False).acts)
    with pytest.raises(ConsisError, match="no models"):
        transfer_activations(source, {}, loader, "1", fgsm_attack(0.1))


# ----------------------------------------------------------------------------- memory against N


class Synthetic(Dataset):
    """``n`` images made from their index on demand; records how many are alive at once."""

    def __init__(self, n: int, size: int = 16) -> None:
        self.n, self.size, self.alive, self.most = n, size, 0, 0

    def __len__(self) -> int:
        return self.n

    def _freed(self) -> None:
        self.alive -= 1

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.rand(3, self.size, self.size, generator=torch.Generator().manual_seed(i))
        self.alive += 1
        self.most = max(self.most, self.alive)
        weakref.finalize(x, self._freed)
        return x, i % 3


@pytest.mark.parametrize("n", [64, 256])
def test_no_image_outlives_its_batch(n):
    data = Synthetic(n)
    res = unit_activations(tiny_model(), DataLoader(data, batch_size=8), "1", attack=fgsm_attack(0.1), progress=False)
    assert res.acts.shape == (n, 2) and data.most <= 8 and data.alive == 0


_PEAK = """
import resource, sys, torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from consis_lib.activations import fgsm_attack, unit_activations

class Synthetic(Dataset):
    def __init__(self, n): self.n = n
    def __len__(self): return self.n
    def __getitem__(self, i):
        return torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(i)), i % 3

torch.set_num_threads(1)
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8, 3))
run = lambda n: unit_activations(model, DataLoader(Synthetic(n), batch_size=32), "1", attack=fgsm_attack(8 / 255), progress=False)
run(64)  # first-call allocations (kernels, allocator arenas)
scale = 1 if sys.platform == "darwin" else 1024
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
res = run(int(sys.argv[1]))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
print(after - before, after)
"""


def _peak_growth(n: int) -> int:
    """Bytes by which the streaming pass over ``n`` synthetic 64 px images raised the process's peak RSS."""
    out = subprocess.run([sys.executable, "-c", _PEAK, str(n)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


@pytest.mark.skipif(sys.platform == "win32", reason="peak RSS from the resource module")
def test_peak_memory_beyond_the_unit_tables_does_not_grow_with_n():
    """The pass over 4N images peaks no higher than over N, up to the larger [N, K] tables.

    Holding the images would add 3N x 3 x 64 x 64 x 4 bytes (74 MB here); the tables
    of 8 units add 3N x (8 x 8 + 24) bytes, twice during the final concatenation.
    """
    n = 500
    small, large = _peak_growth(n), _peak_growth(4 * n)
    tables = 2 * 3 * n * (8 * 8 + 24)
    images = 3 * n * 3 * 64 * 64 * 4
    assert large - small <= tables + 8 * 2**20, (small, large)
    assert large - small < images / 8
