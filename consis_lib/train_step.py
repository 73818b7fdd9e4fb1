"""One training step: cross-entropy, or the consistent loss of Eq. 6.

Eq. 6::

    L = alpha * CE(f(x), y) + (1 - alpha) * CE(f(x*), y) + beta * d(phi(x), phi(x*))

with ``x*`` the FGSM image of the *current* model (eps from the profile's
:class:`~consis_lib.config.AttackConfig`), ``phi`` the metric layer's features
(:func:`consis_lib.models.metric_layer`, captured with
:func:`consis_lib.hooks.capture` ``(detach=False)``) and ``d`` the mean squared error.

One Eq. 6 step reuses the clean forward pass twice: a single backward pass of
``alpha * CE(f(x), y)`` yields both the parameter gradients of the clean term and the
input gradient that FGSM needs (its sign does not depend on the factor alpha > 0).
A second forward/backward on ``x*`` adds the adversarial and consistent terms. So a
step costs two forward and two backward passes, about twice a clean step
(``benchmarks/adv_step.py`` measures the ratio).

Strength and collapse guards
----------------------------
The default is the paper's raw form: ``d`` = MSE of the raw features with the
gradient through both sides, fine-tuned from the normal model, beta = 8 (see
:class:`~consis_lib.config.TrainConfig` for the share of the loss it targets). A
collapse of the features towards zero (the trivial minimiser of a raw ``d``) shows
in the training log (``feature_mean``, the loss shares). Three guards are options,
each a ``TrainConfig`` field, and the book's ablation shows what each changes:

* ``normalize_features=True``: ``d`` compares per-image L2-normalised feature
  vectors, ``mean_b ||u_b - v_b||^2`` with ``u = phi(x)/||phi(x)||``, which is
  scale-free, so shrinking the features no longer lowers it;
* ``stop_gradient_clean=True``: the clean features are a fixed target (the
  consistent term pulls ``phi(x*)`` towards ``phi(x)``, never both towards 0);
* ``finetune_from_normal=True`` (default): the adversarial model is the normal
  model fine-tuned for ``adv_epochs`` with ``adv_lr``, as the paper does at
  ImageNet scale; ``False`` trains Eq. 6 from scratch for ``epochs``.

Beta = 0 gives the AT control (adversarial training alone) through the same
:func:`eq6_backward`.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from consis_lib.attacks import fgsm_from_grad
from consis_lib.errors import ConsisError
from consis_lib.hooks import capture
from consis_lib.layout import channels_last


def consistent_loss(
    f_clean: torch.Tensor,
    f_adv: torch.Tensor,
    normalize: bool = False,
    stop_gradient: bool = True,
) -> torch.Tensor:
    """The consistent (feature-matching) term ``d(phi(x), phi(x*))`` of Eq. 5/6.

    Parameters
    ----------
    f_clean, f_adv : features ``[B, K, h, w]`` (or ``[B, D]``) of the clean and
        adversarial images.
    normalize : compare per-image L2-normalised vectors, ``mean_b ||u_b - v_b||^2``
        (scale-free; guards against collapse). Otherwise the plain mean squared error
        over all ``n`` elements, whose gradient w.r.t. ``f_adv`` is ``2 (a - b) / n``.
    stop_gradient : treat the clean features as a constant target.

    Returns
    -------
    scalar tensor.

    Example
    -------
    >>> a, b = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])
    >>> consistent_loss(b, a)  # (1 + 4) / 2
    tensor(2.5000)
    """
    if f_clean.shape != f_adv.shape:
        raise ConsisError(f"feature shapes differ: {tuple(f_clean.shape)} vs {tuple(f_adv.shape)}")
    target = f_clean.detach() if stop_gradient else f_clean
    a, b = f_adv.float(), target.float()
    if normalize:
        a = F.normalize(a.flatten(1), dim=1)
        b = F.normalize(b.flatten(1), dim=1)
        return (a - b).pow(2).sum(1).mean()
    return F.mse_loss(a, b)


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel wrapper (else ``model`` itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _no_sync(model: nn.Module) -> Any:
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    return nullcontext()


@dataclass(frozen=True)
class StepOptions:
    """Per-step settings shared by :func:`clean_backward` and :func:`eq6_backward`."""

    alpha: float = 0.5
    beta: float = 0.01
    eps: float = 8.0 / 255.0
    layer: str = "layer4"
    normalize_features: bool = True
    stop_gradient_clean: bool = True
    amp_dtype: torch.dtype | None = None


def _autocast(x: torch.Tensor, dtype: torch.dtype | None) -> Any:
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=x.device.type, dtype=dtype)


def _scaled(loss: torch.Tensor, scaler: Any) -> torch.Tensor:
    return scaler.scale(loss) if scaler is not None else loss


def clean_backward(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    opts: StepOptions = StepOptions(),
    scaler: Any = None,
) -> dict[str, float | torch.Tensor]:
    """Forward + backward of ``CE(f(x), y)``; gradients accumulate in ``p.grad``.

    Shapes: ``x`` ``[B, 3, H, W]`` in [0,1], ``y`` ``[B]``. Returns detached
    ``loss`` and the number of ``correct`` predictions (0-dim tensors).
    """
    x = channels_last(x)
    with _autocast(x, opts.amp_dtype):
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
    _scaled(loss, scaler).backward()
    return {"loss": loss.detach(), "correct": (logits.argmax(1) == y).sum()}


def eq6_backward(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    opts: StepOptions = StepOptions(),
    scaler: Any = None,
) -> dict[str, float | torch.Tensor]:
    """Forward + backward of Eq. 6, reusing the clean pass for FGSM; grads accumulate.

    ``L = alpha*CE(f(x), y) + (1-alpha)*CE(f(x*), y) + beta*d(phi(x), phi(x*))`` with
    ``x* = clip(x + eps*sign(grad_x CE(f(x), y)), 0, 1)`` computed from the same
    backward pass that produces the clean term's parameter gradients.

    Parameters
    ----------
    model : the network (possibly wrapped in DistributedDataParallel), train mode.
    x : clean images ``[B, 3, H, W]`` in [0, 1]; ``y`` labels ``[B]``.
    opts : alpha, beta, eps, metric layer name and the feature-distance options.
    scaler : a ``torch.amp.GradScaler`` for float16 autocast, else None.

    Returns
    -------
    dict of detached 0-dim tensors: ``loss`` (total), ``ce_clean``, ``ce_adv``,
    ``consistent``, ``correct`` (clean predictions).

    Example
    -------
    >>> out = eq6_backward(model, x, y, StepOptions(layer=metric_layer("resnet18")))
    >>> optimizer.step()
    """
    if not 0.0 <= opts.alpha <= 1.0:
        raise ConsisError(f"alpha must be in [0, 1], got {opts.alpha}")
    keep_graph = not opts.stop_gradient_clean and opts.beta > 0
    x = channels_last(x.detach())
    xg = x.detach().requires_grad_(True)
    with capture(unwrap(model), [opts.layer], detach=False) as feats:
        with _no_sync(model):
            with _autocast(x, opts.amp_dtype):
                logits = model(xg)
                ce_clean = F.cross_entropy(logits.float(), y)
            f_clean = feats[opts.layer]
            if opts.alpha > 0:
                _scaled(opts.alpha * ce_clean, scaler).backward(retain_graph=keep_graph)
                grad = xg.grad
            else:
                (grad,) = torch.autograd.grad(ce_clean, xg, retain_graph=keep_graph)
        if scaler is not None:  # a float16 overflow step is skipped by the scaler; keep x* finite
            grad = torch.nan_to_num(grad, nan=0.0)
        x_adv = fgsm_from_grad(x, grad, opts.eps)
        with _autocast(x, opts.amp_dtype):
            logits_adv = model(x_adv)
            ce_adv = F.cross_entropy(logits_adv.float(), y)
        cons = consistent_loss(
            f_clean if keep_graph else f_clean.detach(),
            feats[opts.layer],
            normalize=opts.normalize_features,
            stop_gradient=opts.stop_gradient_clean,
        )
        rest = (1.0 - opts.alpha) * ce_adv + opts.beta * cons
        _scaled(rest, scaler).backward()
    total = opts.alpha * ce_clean.detach() + rest.detach()
    return {
        "loss": total,
        "ce_clean": ce_clean.detach(),
        "ce_adv": ce_adv.detach(),
        "consistent": cons.detach(),
        "correct": (logits.detach().argmax(1) == y).sum(),
    }
