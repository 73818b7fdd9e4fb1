"""One pass of per-unit activations (spatial max / mean), with and without an attack."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from consis_lib.activations import reduce_maps, unit_activations
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
    res = unit_activations(model, loader, "1", keep_maps=True, progress=False)
    expected = torch.stack([x[:, 0].amax((1, 2)), (x[:, 1] - x[:, 2]).clamp(min=0).amax((1, 2))], 1)
    assert torch.allclose(res.acts, expected, atol=1e-6)
    assert torch.equal(res.labels, y)
    assert res.maps.shape == (10, 2, 6, 6)
    assert torch.allclose(res.maps.amax((2, 3)), res.acts)
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
