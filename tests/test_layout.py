"""The channels_last batch layout (consis_lib.layout)."""

from __future__ import annotations

import torch

from consis_lib.attacks import fgsm
from consis_lib.layout import channels_last
from consis_lib.models import build_model


def test_cpu_batches_become_channels_last_and_keep_their_values():
    x = torch.rand(2, 3, 5, 5)
    y = channels_last(x)
    assert y.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x, y) and y.stride() == (75, 1, 15, 3)
    assert channels_last(y) is y  # already channels_last: no copy
    flat = torch.rand(4, 10)
    assert channels_last(flat) is flat  # not an image batch


def test_attack_result_does_not_depend_on_the_callers_layout():
    torch.manual_seed(0)
    model = build_model("resnet18", 5, width_divisor=16, image_size=16).eval()
    x, y = torch.rand(4, 3, 16, 16), torch.randint(0, 5, (4,))
    a = fgsm(model, x, y, 4 / 255)
    b = fgsm(model, x.contiguous(memory_format=torch.channels_last), y, 4 / 255)
    assert torch.equal(a, b)
    assert (a - x).abs().max() <= 4 / 255 + 1e-6
