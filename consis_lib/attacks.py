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
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from consis_lib.config import AttackConfig
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


@dataclass(frozen=True)
class TargetedResult:
    """Outcome of the Eq. 4 attack (:func:`targeted_attack`), all tensors detached on ``x``'s device.

    Attributes
    ----------
    x_adv : ``[B, 3, H, W]`` float in [0, 1], the adversarial images ``x*``.
    target : ``[B]`` int64, the target classes ``y*``.
    pred : ``[B]`` int64, ``argmax f(x*)``.
    success : ``[B]`` bool, ``pred == target`` (the attack reached its target).
    l2 : ``[B]`` float, ``||x* - x||_2`` per image.
    steps : ``[B]`` int64, Adam steps applied to each image (fewer than asked when
        the image stopped early on success).
    """

    x_adv: torch.Tensor
    target: torch.Tensor
    pred: torch.Tensor
    success: torch.Tensor
    l2: torch.Tensor
    steps: torch.Tensor

    @property
    def success_rate(self) -> float:
        """Fraction of images with ``argmax f(x*) == y*`` (NaN for an empty batch)."""
        return float(self.success.float().mean()) if len(self.success) else float("nan")


def _to_box(w: torch.Tensor) -> torch.Tensor:
    """``x* = (tanh(w) + 1) / 2``: the parametrisation that keeps Eq. 4's x* inside [0, 1]."""
    return (torch.tanh(w) + 1) / 2


class _Adam:
    """Adam (Kingma & Ba 2015) on one tensor whose rows can be dropped between steps.

    The update is torch.optim.Adam's (defaults betas (0.9, 0.999), eps 1e-8, no weight
    decay) in the same order of operations, so a run without dropped rows gives the
    same iterates; rows are images, which never interact.
    """

    def __init__(self, w: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.w, self.lr, self.betas, self.eps, self.t = w, lr, betas, eps, 0
        self.m, self.v = torch.zeros_like(w), torch.zeros_like(w)

    def step(self, grad: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.t += 1
        self.m.lerp_(grad, 1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (self.v.sqrt() / (1 - b2**self.t) ** 0.5).add_(self.eps)
        self.w.addcdiv_(self.m, denom, value=-self.lr / (1 - b1**self.t))

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` (a bool mask over the first dimension)."""
        self.w, self.m, self.v = self.w[rows], self.m[rows], self.v[rows]


def targeted_attack(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    lam: float = AttackConfig.targeted_lambda,
    steps: int = AttackConfig.targeted_steps,
    lr: float = AttackConfig.targeted_lr,
    stop_on_success: bool = False,
) -> TargetedResult:
    """Eq. 4: ``argmin_{x*} ||x* - x||_2^2 + lam * CE(f(x*), y*)`` in the box [0, 1], batched.

    Solved by Adam on ``w`` with ``x* = (tanh(w) + 1) / 2`` (always inside the box).
    Each image has its own target ``y*``; the objective is summed over the batch and
    Adam's update is element-wise, so the images do not interact: a batch gives each
    image's own result (up to float rounding of batched convolutions). The defaults
    are :class:`~consis_lib.config.AttackConfig`'s.

    Parameters
    ----------
    model : classifier on [0,1] images (run in eval mode, see :func:`attack_mode`).
    x : images ``[B, 3, H, W]`` in [0, 1].
    target : target classes ``y*`` ``[B]`` (int64), one per image.
    lam : weight ``lambda`` of the classification term (larger: more likely to reach the target).
    steps : Adam iterations (the most any image gets).
    lr : Adam learning rate on ``w``.
    stop_on_success : freeze an image at the first iterate whose prediction is its
        target (that iterate is returned) and stop computing on it; the batch ends
        when every image has stopped. Saves time; the result is then the first
        successful iterate rather than the minimiser after ``steps`` iterations.

    Returns
    -------
    TargetedResult with ``x_adv [B, 3, H, W]``, ``pred``, ``success = pred == target``
    (measured on the returned ``x_adv``), ``l2`` and ``steps`` per image.

    Example
    -------
    >>> res = targeted_attack(model, x, target=torch.full((4,), 3), lam=10.0, steps=100)
    >>> res.x_adv.shape, res.success_rate
    """
    _check_targeted(x, target, lam, steps, lr)
    x0 = channels_last(x.detach())
    target = target.to(x0.device).long()
    w = torch.atanh((x0 * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6))
    w_final, taken = w.clone(), torch.zeros(len(x0), dtype=torch.long, device=x0.device)
    opt, active, x_act, t_act = _Adam(w, lr), torch.arange(len(x0), device=x0.device), x0, target
    with attack_mode(model):
        for _ in range(steps):
            wg = opt.w.detach().requires_grad_(True)
            xa = channels_last(_to_box(wg))
            logits = model(xa)
            loss = (xa - x_act).flatten(1).pow(2).sum(1) + lam * F.cross_entropy(logits, t_act, reduction="none")
            keep = logits.argmax(1) != t_act if stop_on_success else None
            if keep is not None:
                w_final[active[~keep]] = opt.w[~keep]
                if not bool(keep.any()):
                    active = active[:0]
                    break
            (grad,) = torch.autograd.grad(loss.sum() if keep is None else loss[keep].sum(), wg)
            if keep is not None and not bool(keep.all()):
                grad, active, x_act, t_act = grad[keep], active[keep], x_act[keep], t_act[keep]
                opt.keep(keep)
            opt.step(grad)
            taken[active] += 1
        w_final[active] = opt.w
    return _targeted_result(model, x0, _to_box(w_final), target, taken)


def _check_targeted(x: torch.Tensor, target: torch.Tensor, lam: float, steps: int, lr: float) -> None:
    if steps < 0 or lam < 0 or lr <= 0:
        raise ConsisError(
            f"Eq. 4 needs steps >= 0, lam >= 0 and lr > 0, got steps={steps}, lam={lam}, lr={lr}; fix AttackConfig.targeted_*"
        )
    if x.dim() != 4 or target.shape != (x.shape[0],):
        raise ConsisError(
            f"Eq. 4 needs images [B, 3, H, W] and one target per image [B], got {tuple(x.shape)} and {tuple(target.shape)}"
        )


def _targeted_result(
    model: nn.Module, x0: torch.Tensor, x_adv: torch.Tensor, target: torch.Tensor, taken: torch.Tensor
) -> TargetedResult:
    x_adv = x_adv.detach()
    with attack_mode(model), torch.no_grad():
        pred = model(channels_last(x_adv)).argmax(1)
    l2 = (x_adv - x0).flatten(1).norm(dim=1)
    return TargetedResult(x_adv=x_adv, target=target, pred=pred, success=pred == target, l2=l2, steps=taken)


def targeted_l2(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    lam: float = AttackConfig.targeted_lambda,
    steps: int = AttackConfig.targeted_steps,
    lr: float = AttackConfig.targeted_lr,
) -> torch.Tensor:
    """Eq. 4 images only: ``targeted_attack(model, x, target, lam, steps, lr).x_adv``.

    Parameters and defaults as :func:`targeted_attack` (all ``steps`` iterations,
    no early stop).

    Returns
    -------
    x_adv : ``[B, 3, H, W]`` in [0, 1], detached.

    Example
    -------
    >>> x_adv = targeted_l2(model, x, target=torch.full((4,), 3), lam=10.0, steps=100)
    """
    return targeted_attack(model, x, target, lam, steps, lr).x_adv
