"""Discrepancy maps: geometry, planted region units, shared passes, highlights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from consis_lib.config import DiscrepancyConfig
from consis_lib.discrepancy import (
    activation_highlight,
    discrepancy_maps,
    highlight,
    occluder_geometry,
    pixel_map,
)
from consis_lib.errors import ConsisError
from consis_lib.hooks import count_hooks


def test_geometry_scales_with_image_size():
    assert occluder_geometry(224) == (11, 3, 72)  # (224 - 11) // 3 + 1
    assert occluder_geometry(32) == (2, 1, 31)
    assert occluder_geometry(64) == (3, 1, 62)
    assert occluder_geometry(448) == (22, 6, 72)


class Counting(nn.Module):
    """unit 0 = ReLU(r - g - b) (red), unit 1 = ReLU(g - r - b) (green); counts forward calls."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, -1, -1], [-1.0, 1, -1]]).view(2, 3, 1, 1))
        self.relu = nn.ReLU()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.relu(self.conv(x)).amax((2, 3))


def planted_images():
    x = torch.zeros(2, 3, 48, 48)
    x[:, 0, 30:32, 12:14] = 1.0  # red 2x2 square at rows 30-31, cols 12-13
    x[:, 1, 8:10, 36:38] = 1.0  # green 2x2 square at rows 8-9, cols 36-37
    return x


def test_planted_units_peak_on_their_regions():
    model = Counting()
    dmap = discrepancy_maps(model, "relu", planted_images(), [0, 1], DiscrepancyConfig(batch_size=500))
    patch, stride, n = occluder_geometry(48)  # 2x2 patches at stride 1
    assert dmap.shape == (2, 2, n, n)
    for unit, (r, c) in enumerate([(30, 12), (8, 36)]):
        m = dmap[0, unit]
        i, j = divmod(int(m.argmax()), n)
        # the peak patch covers the whole 2x2 square
        assert i * stride <= r and r + 1 <= i * stride + patch - 1
        assert j * stride <= c and c + 1 <= j * stride + patch - 1
        assert m.max() > 0.2
        # a patch that leaves any pixel of the square visible changes nothing (max stays 1)
        covering = torch.zeros(n, n, dtype=torch.bool)
        for a in range(n):
            for b in range(n):
                covering[a, b] = a <= r and r + 1 < a + patch and b <= c and c + 1 < b + patch
        assert torch.all(m[~covering] == 0)
    assert torch.equal(dmap[0], dmap[1])  # same image, same random patches
    assert count_hooks(model) == 0


def test_units_share_the_occluded_passes():
    x = planted_images()[:1, :, :32, :32]
    cfg = DiscrepancyConfig(batch_size=100)
    one, two = Counting(), Counting()
    discrepancy_maps(one, "relu", x, [0], cfg)
    discrepancy_maps(two, "relu", x, [0, 1], cfg)
    n = occluder_geometry(32)[2]
    assert one.calls == two.calls == 1 + -(-n * n // 100)


def test_maps_are_seeded_and_batch_size_invariant():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    x = torch.rand(1, 3, 32, 32)
    a = discrepancy_maps(model, "1", x, [0, 3], DiscrepancyConfig(batch_size=64, seed=1))
    b = discrepancy_maps(model, "1", x, [0, 3], DiscrepancyConfig(batch_size=961, seed=1))
    assert torch.allclose(a, b, atol=1e-6)
    c = discrepancy_maps(model, "1", x, [0, 3], DiscrepancyConfig(batch_size=64, seed=2))
    assert not torch.allclose(a, c)


def test_pixel_map_and_highlight():
    # a grid map with one hot position spreads over exactly that patch
    patch, stride, n = occluder_geometry(64)
    d = torch.zeros(n, n)
    d[40, 20] = 1.0
    pm = pixel_map(d, 64)
    assert pm.shape == (64, 64)
    assert torch.all(pm[40 : 40 + patch, 20 : 20 + patch] > 0)
    assert pm.sum() > 0 and torch.all(pm[:30] == 0)
    img = torch.full((3, 64, 64), 0.8)
    shown = highlight(img, d, fraction=0.5, dim=0.25)
    assert shown.shape == (3, 64, 64)
    assert torch.allclose(shown[:, 41, 21], torch.full((3,), 0.8))
    assert torch.allclose(shown[:, 0, 0], torch.full((3,), 0.2))
    with pytest.raises(ConsisError, match="grid"):
        pixel_map(torch.zeros(5, 5), 64)


def test_activation_highlight_is_the_upsampled_map():
    model = Counting()
    x = planted_images()
    amap = activation_highlight(model, "relu", x, [1])
    assert amap.shape == (2, 1, 48, 48)
    assert torch.allclose(amap[0, 0], x[0, 1])  # full resolution layer: the map itself
    down = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU(), nn.MaxPool2d(4))
    assert activation_highlight(down, "2", x, [0, 1]).shape == (2, 2, 48, 48)
    shown = highlight(x[0], amap[0, 0])
    assert shown[1, 8, 36] == 1.0 and shown[0, 30, 12] == pytest.approx(0.25)


def test_bad_input():
    model = Counting()
    with pytest.raises(ConsisError, match="square"):
        discrepancy_maps(model, "relu", torch.rand(1, 3, 8, 10), [0])
    with pytest.raises(ConsisError, match="does not exist"):
        discrepancy_maps(model, "relu", torch.rand(1, 3, 8, 8), [5])
    with pytest.raises(ConsisError, match="no units"):
        discrepancy_maps(model, "relu", torch.rand(1, 3, 8, 8), [])
    assert count_hooks(model) == 0
