"""Adversarial attacks on [0,1] images: FGSM, iterative least-likely class, Eq. 4 targeted L2.

All attacks are batched, run on the device of ``x``, put the model in eval mode
while they run and restore its previous train/eval mode afterwards, and leave no
gradients on the model's parameters (``p.grad`` is untouched). Images go in and
come out in [0, 1]; normalisation lives inside the model (DESIGN section 2).

Example
-------
>>> model = build_model("resnet18", num_classes=10).eval()
>>> x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
>>> x_adv = fgsm(model, x, y, eps=8 / 255)
>>> bool((x_adv - x).abs().max() <= 8 / 255 + 1e-6)
True
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from consis_lib.errors import ConsisError
from consis_lib.layout import channels_last


@contextmanager
def attack_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode, frozen parameters and grad mode on inside the block; the previous state after it.

    Freezing the parameters (``requires_grad=False``) keeps their ``.grad`` untouched
    and spares autograd the bookkeeping for weight gradients.
    """
    was_training = model.training
    params = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    for p in params:
        p.requires_grad_(False)
    try:
        with torch.enable_grad():
            yield model
    finally:
        for p in params:
            p.requires_grad_(True)
        model.train(was_training)


def _check_eps(eps: float) -> None:
    if not 0.0 <= eps <= 1.0:
        raise ConsisError(f"eps must be in [0, 1] (pixel units, e.g. 8/255), got {eps}")


def fgsm_from_grad(x: torch.Tensor, grad: torch.Tensor, eps: float) -> torch.Tensor:
    """FGSM step from a precomputed input gradient: ``clip(x + eps*sign(grad), 0, 1)``.

    Shapes: ``x`` and ``grad`` ``[B, 3, H, W]``; returns a detached tensor of the same shape.
    """
    return (x.detach() + eps * grad.sign()).clamp_(0.0, 1.0)


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Non-targeted Fast Gradient Sign Method (Goodfellow et al. 2015).

    ``x* = clip(x + eps * sign(grad_x CE(f(x), y)), 0, 1)`` with the batch-mean
    cross-entropy (the attack behind ``consis_adv``, DESIGN section 2).

    Parameters
    ----------
    model : classifier taking [0,1] images ``[B, 3, H, W]`` -> logits ``[B, C]``.
    x : images ``[B, 3, H, W]`` in [0, 1].
    y : true labels ``[B]`` (int64).
    eps : L-infinity budget in pixel units (e.g. ``8/255``).

    Returns
    -------
    x_adv : ``[B, 3, H, W]`` in [0, 1] with ``|x_adv - x|_inf <= eps``, detached.

    Example
    -------
    >>> x_adv = fgsm(model, x, y, eps=2 / 255)
    """
    _check_eps(eps)
    with attack_mode(model):
        xg = channels_last(x.detach()).requires_grad_(True)
        loss = F.cross_entropy(model(xg), y)
        (grad,) = torch.autograd.grad(loss, xg)
    return fgsm_from_grad(x, grad, eps)


def least_likely_target(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The least-likely class ``y_LL = argmin_c f(x)_c`` per image, ``[B]`` int64."""
    with attack_mode(model), torch.no_grad():
        return model(channels_last(x)).argmin(dim=1)


def ll_iterations(eps: float) -> int:
    """Kurakin et al.'s iteration count ``min(eps*255 + 4, 1.25*eps*255)``, rounded up, >= 1."""
    e = eps * 255.0
    return max(1, math.ceil(min(e + 4.0, 1.25 * e) - 1e-6))


def least_likely(
    model: nn.Module,
    x: torch.Tensor,
    eps: float,
    step: float = 1.0 / 255.0,
    iters: int | None = None,
) -> torch.Tensor:
    """Iterative least-likely class method (Kurakin et al. 2017).

    ``y_LL = argmin f(x)``; ``x_{t+1} = clip_{x,eps}(x_t - step * sign(grad CE(f(x_t), y_LL)))``,
    also clipped to [0, 1]; ``iters`` defaults to :func:`ll_iterations` (``eps``).
    Used for the dissection of adversarial images (Table 2).

    Parameters
    ----------
    model : classifier on [0,1] images.
    x : images ``[B, 3, H, W]`` in [0, 1].
    eps : L-infinity budget (pixel units).
    step : per-iteration step (default 1/255).
    iters : number of iterations (default per Kurakin et al.).

    Returns
    -------
    x_adv : ``[B, 3, H, W]`` in [0, 1], ``|x_adv - x|_inf <= eps``, detached.

    Example
    -------
    >>> x_adv = least_likely(model, x, eps=4 / 255)
    """
    _check_eps(eps)
    n = ll_iterations(eps) if iters is None else int(iters)
    x0 = channels_last(x.detach())
    lo, hi = (x0 - eps).clamp(min=0.0), (x0 + eps).clamp(max=1.0)
    with attack_mode(model):
        with torch.no_grad():
            target = model(x0).argmin(dim=1)
        xt = x0.clone()
        for _ in range(n):
            xt.requires_grad_(True)
            loss = F.cross_entropy(model(xt), target)
            (grad,) = torch.autograd.grad(loss, xt)
            xt = torch.minimum(torch.maximum(xt.detach() - step * grad.sign(), lo), hi)
    return xt.detach()


def targeted_l2(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    lam: float = 1.0,
    steps: int = 200,
    lr: float = 0.01,
) -> torch.Tensor:
    """Eq. 4: ``argmin_{x*} ||x* - x||_2^2 + lam * CE(f(x*), y*)`` in the box [0, 1].

    Solved by Adam on ``w`` with ``x* = (tanh(w) + 1) / 2`` (always inside the box),
    per image (the objective is summed over the batch so images do not interact).

    Parameters
    ----------
    model : classifier on [0,1] images.
    x : images ``[B, 3, H, W]`` in [0, 1].
    target : target classes ``y*`` ``[B]``.
    lam : weight of the classification term (larger: more likely to reach the target).
    steps : Adam iterations.
    lr : Adam learning rate on ``w``.

    Returns
    -------
    x_adv : ``[B, 3, H, W]`` in [0, 1], detached.

    Example
    -------
    >>> x_adv = targeted_l2(model, x, target=torch.full((4,), 3), lam=10.0, steps=100)
    """
    if steps < 0 or lam < 0:
        raise ConsisError(f"targeted_l2 needs steps >= 0 and lam >= 0, got steps={steps}, lam={lam}")
    x0 = channels_last(x.detach())
    w = torch.atanh((x0 * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6)).requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    with attack_mode(model):
        for _ in range(steps):
            xa = (torch.tanh(w) + 1) / 2
            dist = (xa - x0).flatten(1).pow(2).sum(1)
            ce = F.cross_entropy(model(xa), target, reduction="none")
            loss = (dist + lam * ce).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return ((torch.tanh(w) + 1) / 2).detach()
