"""Attacks: FGSM, iterative least-likely class, Eq. 4 targeted L2 (DESIGN section 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from consis_lib.attacks import (
    attack_mode,
    fgsm,
    least_likely,
    least_likely_target,
    ll_iterations,
    targeted_attack,
    targeted_l2,
)
from consis_lib.config import AttackConfig
from consis_lib.errors import ConsisError
from consis_lib.models import build_model

D, C = 12, 4


def linear_model(seed: int = 0) -> nn.Module:
    """``f(x) = W flatten(x) + b`` with hand-set (seeded) weights, input [B, 3, 2, 2]."""
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(D, C)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(C, D, generator=g))
        lin.bias.copy_(torch.randn(C, generator=g))
    return nn.Sequential(nn.Flatten(), lin)


def ce_input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Analytic grad_x of the batch-mean CE for the linear model: W^T (softmax - onehot) / B."""
    w = model[1].weight.detach().double().numpy()
    b = model[1].bias.detach().double().numpy()
    xf = x.reshape(len(x), -1).double().numpy()
    z = xf @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y.numpy()] -= 1.0
    return (p @ w / len(y)).reshape(x.shape)


def test_fgsm_on_linear_model_is_eps_sign_of_analytic_gradient() -> None:
    model = linear_model()
    g = torch.Generator().manual_seed(1)
    x = 0.3 + 0.4 * torch.rand(5, 3, 2, 2, generator=g)  # eps never reaches the box
    y = torch.tensor([0, 1, 2, 3, 1])
    eps = 0.05
    expected = x.double().numpy() + eps * np.sign(ce_input_grad(model, x, y))
    got = fgsm(model, x, y, eps)
    np.testing.assert_allclose(got.double().numpy(), expected, atol=1e-6)


def test_fgsm_clips_to_the_box() -> None:
    model = linear_model()
    x = torch.zeros(3, 3, 2, 2)
    x[1] = 1.0
    y = torch.tensor([0, 1, 2])
    sign = np.sign(ce_input_grad(model, x, y))
    expected = np.clip(x.numpy() + 0.5 * sign, 0, 1)
    np.testing.assert_allclose(fgsm(model, x, y, 0.5).numpy(), expected, atol=1e-7)


def test_least_likely_target_is_argmin_of_logits() -> None:
    model = linear_model(3)
    x = torch.rand(16, 3, 2, 2, generator=torch.Generator().manual_seed(2))
    w, b = model[1].weight.detach(), model[1].bias.detach()
    logits = x.reshape(16, -1) @ w.T + b
    assert torch.equal(least_likely_target(model, x), logits.argmin(1))


def test_least_likely_one_iteration_on_linear_model() -> None:
    model = linear_model(4)
    x = 0.3 + 0.4 * torch.rand(6, 3, 2, 2, generator=torch.Generator().manual_seed(5))
    target = least_likely_target(model, x)
    step = 1 / 255
    expected = x.double().numpy() - step * np.sign(ce_input_grad(model, x, target))
    got = least_likely(model, x, eps=4 / 255, step=step, iters=1)
    np.testing.assert_allclose(got.double().numpy(), expected, atol=1e-6)


def test_least_likely_raises_target_probability() -> None:
    model = linear_model(6)
    x = torch.rand(32, 3, 2, 2, generator=torch.Generator().manual_seed(7))
    target = least_likely_target(model, x)
    x_adv = least_likely(model, x, eps=16 / 255)
    with torch.no_grad():
        before = model(x).log_softmax(1).gather(1, target[:, None])
        after = model(x_adv).log_softmax(1).gather(1, target[:, None])
    assert bool((after > before).all())


@pytest.mark.parametrize(("eps255", "iters"), [(1, 2), (2, 3), (4, 5), (8, 10), (16, 20), (32, 36)])
def test_ll_iterations_follow_kurakin(eps255: int, iters: int) -> None:
    # min(eps*255 + 4, 1.25 * eps*255), rounded up
    assert ll_iterations(eps255 / 255) == iters


def small_conv() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Dropout(0.5), nn.Linear(4, 3),
    )


@settings(max_examples=25, deadline=None)
@given(
    eps=st.floats(0.0, 0.2),
    seed=st.integers(0, 2**16),
    extreme=st.booleans(),
)
def test_attacks_stay_in_eps_ball_and_box(eps: float, seed: int, extreme: bool) -> None:
    model = small_conv()
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 3, 8, 8, generator=g)
    if extreme:  # many pixels on the box boundary
        x = (x > 0.5).float()
    y = torch.randint(0, 3, (4,), generator=g)
    for x_adv in (fgsm(model, x, y, eps), least_likely(model, x, eps, iters=3)):
        assert x_adv.shape == x.shape
        assert float((x_adv - x).abs().max()) <= eps + 1e-6
        assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0


@pytest.mark.parametrize("training", [True, False])
def test_attacks_restore_mode_and_leave_no_gradients(training: bool) -> None:
    model = small_conv().train(training)
    x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    fgsm(model, x, y, 0.03)
    least_likely(model, x, 0.03, iters=2)
    targeted_l2(model, x, y, lam=1.0, steps=2)
    targeted_attack(model, x, y, lam=1.0, steps=2, stop_on_success=True)
    assert model.training is training
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


def test_fgsm_inside_no_grad_still_works_and_matches() -> None:
    model = linear_model()
    x, y = torch.rand(3, 3, 2, 2), torch.tensor([0, 1, 2])
    ref = fgsm(model, x, y, 0.1)
    with torch.no_grad():
        assert torch.equal(fgsm(model, x, y, 0.1), ref)


def test_fgsm_uses_eval_mode_batchnorm() -> None:
    """Attacks run the model in eval mode: the result does not depend on the batch."""
    model = small_conv().train()
    x, y = torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    whole = fgsm(model, x, y, 0.1)
    # per-image gradients differ from the batch only by the positive factor 1/B
    first = fgsm(model, x[:1], y[:1], 0.1)
    assert torch.equal(whole[:1], first)


def test_targeted_l2_reaches_target_and_lambda_zero_keeps_image() -> None:
    model = linear_model(8)
    x = 0.2 + 0.6 * torch.rand(8, 3, 2, 2, generator=torch.Generator().manual_seed(9))
    target = least_likely_target(model, x)
    x_adv = targeted_l2(model, x, target, lam=20.0, steps=300, lr=0.05)
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    with torch.no_grad():
        hit = (model(x_adv).argmax(1) == target).float().mean()
    assert float(hit) >= 0.75
    same = targeted_l2(model, x, target, lam=0.0, steps=50, lr=0.05)
    assert float((same - x).abs().max()) < 1e-3


def test_attacks_on_small_model_lower_accuracy_direction() -> None:
    """FGSM increases the loss of a real (small) network on its own predictions."""
    torch.manual_seed(0)
    model = build_model("resnet18", 5, width_divisor=16).eval()
    x = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        y = model(x).argmax(1)
        before = nn.functional.cross_entropy(model(x), y)
        after = nn.functional.cross_entropy(model(fgsm(model, x, y, 4 / 255)), y)
    assert float(after) > float(before)


def test_bad_eps_is_a_consis_error() -> None:
    model = linear_model()
    with pytest.raises(ConsisError, match="eps"):
        fgsm(model, torch.rand(1, 3, 2, 2), torch.tensor([0]), 8.0)


def reference_targeted_l2(model: nn.Module, x: torch.Tensor, target: torch.Tensor, lam: float, steps: int, lr: float) -> torch.Tensor:
    """Eq. 4 written the plain way: torch.optim.Adam on w, x* = (tanh(w) + 1) / 2, summed objective."""
    x0 = x.detach().contiguous(memory_format=torch.channels_last)
    w = torch.atanh((x0 * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6)).requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    with attack_mode(model):
        for _ in range(steps):
            xa = (torch.tanh(w) + 1) / 2
            loss = ((xa - x0).flatten(1).pow(2).sum(1) + lam * F.cross_entropy(model(xa), target, reduction="none")).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return ((torch.tanh(w) + 1) / 2).detach()


@pytest.mark.parametrize("make", [linear_model, small_conv])
def test_targeted_l2_equals_the_torch_adam_reference(make) -> None:
    model = make().eval()
    shape = (5, 3, 2, 2) if isinstance(model[0], nn.Flatten) else (5, 3, 8, 8)
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(11))
    target = torch.tensor([0, 1, 2, 1, 0])
    expected = reference_targeted_l2(model, x, target, lam=2.0, steps=25, lr=0.03)
    assert torch.equal(targeted_l2(model, x, target, lam=2.0, steps=25, lr=0.03), expected)


def test_targeted_defaults_come_from_attack_config() -> None:
    model = linear_model(2)
    x = torch.rand(3, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([1, 2, 3])
    cfg = AttackConfig()
    res = targeted_attack(model, x, target)
    assert res.steps.tolist() == [cfg.targeted_steps] * 3
    expected = reference_targeted_l2(model, x, target, cfg.targeted_lambda, cfg.targeted_steps, cfg.targeted_lr)
    assert torch.equal(res.x_adv, expected)


def eq4_input_gradient(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, target: torch.Tensor, lam: float) -> torch.Tensor:
    """Analytic grad of Eq. 4's objective at x* for the linear model: 2 (x* - x) + lam W^T (softmax - onehot)."""
    w, b = model[1].weight.detach().double(), model[1].bias.detach().double()
    xs, x0 = x_adv.reshape(len(x), -1).double(), x.reshape(len(x), -1).double()
    p = torch.softmax(xs @ w.T + b, 1)
    p[torch.arange(len(target)), target] -= 1.0
    return 2 * (xs - x0) + lam * p @ w


def test_targeted_attack_reaches_the_stationary_point_of_eq4() -> None:
    """Inside the box the minimiser of Eq. 4 has zero gradient; the linear model's gradient is analytic."""
    model = linear_model(8)
    x = 0.3 + 0.4 * torch.rand(6, 3, 2, 2, generator=torch.Generator().manual_seed(9))
    target = torch.tensor([0, 1, 2, 3, 0, 1])
    res = targeted_attack(model, x, target, lam=0.5, steps=300, lr=0.02)
    assert float(res.x_adv.min()) > 0.05 and float(res.x_adv.max()) < 0.95  # interior solution
    start = eq4_input_gradient(model, x, x, target, 0.5).norm(dim=1)
    end = eq4_input_gradient(model, x, res.x_adv, target, 0.5).norm(dim=1)
    assert float(start.min()) > 0.5
    assert float(end.max()) < 1e-3


def test_targeted_attack_reports_success_of_its_own_output() -> None:
    model = linear_model(8)
    x = torch.rand(8, 3, 2, 2, generator=torch.Generator().manual_seed(3))
    target = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    res = targeted_attack(model, x, target, lam=0.3, steps=40, lr=0.02)
    with torch.no_grad():
        pred = model(res.x_adv).argmax(1)
    assert torch.equal(res.pred, pred)
    assert torch.equal(res.success, pred == target)
    assert 0 < int(res.success.sum()) < 8  # a weak attack: the flags carry information
    assert res.success_rate == pytest.approx(float((pred == target).float().mean()))
    torch.testing.assert_close(res.l2, (res.x_adv - x).flatten(1).norm(dim=1))


@pytest.mark.parametrize("stop_on_success", [False, True])
def test_targeted_attack_batched_equals_per_image(stop_on_success: bool) -> None:
    model = small_conv().eval()
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    target = torch.tensor([0, 1, 2, 2, 1, 0])
    whole = targeted_attack(model, x, target, lam=20.0, steps=30, lr=0.05, stop_on_success=stop_on_success)
    for i in range(6):
        one = targeted_attack(model, x[i : i + 1], target[i : i + 1], lam=20.0, steps=30, lr=0.05, stop_on_success=stop_on_success)
        torch.testing.assert_close(whole.x_adv[i : i + 1], one.x_adv, atol=1e-5, rtol=0)
        assert whole.steps[i] == one.steps[0]
        assert whole.success[i] == one.success[0]


def test_stop_on_success_returns_the_first_successful_iterate() -> None:
    model = linear_model(5)
    x = 0.2 + 0.6 * torch.rand(8, 3, 2, 2, generator=torch.Generator().manual_seed(6))
    target = least_likely_target(model, x)
    early = targeted_attack(model, x, target, lam=5.0, steps=200, lr=0.02, stop_on_success=True)
    assert bool(early.success.all())
    assert int(early.steps.max()) < 200 and int(early.steps.min()) > 0
    for i, k in enumerate(early.steps.tolist()):
        xi, ti = x[i : i + 1], target[i : i + 1]
        at_k = targeted_attack(model, xi, ti, lam=5.0, steps=k, lr=0.02)
        before = targeted_attack(model, xi, ti, lam=5.0, steps=k - 1, lr=0.02)
        torch.testing.assert_close(early.x_adv[i : i + 1], at_k.x_adv, atol=1e-6, rtol=0)
        assert bool(at_k.success[0]) and not bool(before.success[0])


def test_targeted_bad_input_is_a_consis_error() -> None:
    model = linear_model()
    x = torch.rand(2, 3, 2, 2)
    with pytest.raises(ConsisError, match="one target per image"):
        targeted_attack(model, x, torch.tensor([0]))
    with pytest.raises(ConsisError, match="lr > 0"):
        targeted_attack(model, x, torch.tensor([0, 1]), lr=0.0)
