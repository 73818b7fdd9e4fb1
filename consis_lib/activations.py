"""Per-unit activations of one layer over a data set (the input of Eq. 1).

A *unit* (neuron) is one channel of a conv layer. Its activation on an image is
the spatial maximum of the channel's map (DESIGN section 2; the spatial mean is an
option). One pass over a loader gives the ``[N, K]`` activation table, the labels,
the model's predictions and, optionally, the same quantities for adversarial
counterparts of every image, so ``consis`` and ``consis_adv`` come from one pass.

Example
-------
>>> from consis_lib.activations import unit_activations, fgsm_attack
>>> res = unit_activations(model, loader, "layer4", attack=fgsm_attack(8 / 255))
>>> res.acts.shape, res.adv_acts.shape   # [N, K] each
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from consis_lib.errors import ConsisError
from consis_lib.hooks import capture
from consis_lib.layout import channels_last

log = logging.getLogger(__name__)

#: ``attack(model, x, y) -> x_adv``: images in [0, 1] in and out; ``y`` may be
#: ``None`` where the data carry no class labels (the dissection probe).
AttackFn = Callable[[nn.Module, torch.Tensor, "torch.Tensor | None"], torch.Tensor]

REDUCTIONS = ("max", "mean")


@dataclass
class Activations:
    """Result of :func:`unit_activations` (all tensors on the CPU).

    Attributes
    ----------
    acts : Tensor [N, K] float32, ``a_n(x)`` per image and unit.
    labels : Tensor [N] int64, the images' class labels.
    preds : Tensor [N] int64, the model's predicted class per image.
    maps : Tensor [N, K, h, w] or None, the layer's maps (``keep_maps=True``).
    adv_acts : Tensor [N, K] or None, ``a_n(x*)`` of the adversarial counterparts.
    adv_preds : Tensor [N] or None, predictions on the adversarial counterparts.
    adv_maps : Tensor [N, K, h, w] or None, maps of the adversarial counterparts.
    layer : the layer name the activations come from.
    reduce : ``"max"`` or ``"mean"``.
    """

    acts: torch.Tensor
    labels: torch.Tensor
    preds: torch.Tensor
    maps: torch.Tensor | None = None
    adv_acts: torch.Tensor | None = None
    adv_preds: torch.Tensor | None = None
    adv_maps: torch.Tensor | None = None
    layer: str = ""
    reduce: str = "max"

    @property
    def accuracy(self) -> float:
        """Top-1 accuracy on the clean images."""
        return float((self.preds == self.labels).float().mean()) if len(self.labels) else float("nan")

    @property
    def adv_accuracy(self) -> float | None:
        """Top-1 accuracy on the adversarial counterparts (None without an attack)."""
        if self.adv_preds is None:
            return None
        return float((self.adv_preds == self.labels).float().mean()) if len(self.labels) else float("nan")


def reduce_maps(maps: torch.Tensor, reduce: str = "max") -> torch.Tensor:
    """Spatial reduction of feature maps ``[B, K, h, w] -> [B, K]``.

    ``"max"`` is the activation of DESIGN section 2; ``"mean"`` the option.
    A ``[B, K]`` input (a fully connected layer) is returned unchanged.

    Example
    -------
    >>> reduce_maps(torch.arange(8.).view(1, 2, 2, 2))
    tensor([[3., 7.]])
    """
    if reduce not in REDUCTIONS:
        raise ConsisError(f"activation reduce={reduce!r} is not supported; use one of {REDUCTIONS}")
    if maps.dim() == 2:
        return maps
    if maps.dim() != 4:
        raise ConsisError(f"layer output has shape {tuple(maps.shape)}; expected [B, K, h, w] from a conv layer")
    return maps.amax(dim=(2, 3)) if reduce == "max" else maps.mean(dim=(2, 3))


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for an empty model)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _split_batch(batch: object) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        y = batch[1] if len(batch) > 1 else None
        if y is not None and not isinstance(y, torch.Tensor):
            y = torch.as_tensor(y)
        return batch[0], y
    raise ConsisError(
        f"loader yielded {type(batch).__name__}; expected (images [B,3,H,W], labels [B]) batches"
    )


def unit_activations(
    model: nn.Module,
    loader: Iterable,
    layer: str,
    reduce: str = "max",
    device: torch.device | str | None = None,
    keep_maps: bool = False,
    attack: AttackFn | None = None,
    progress: bool = True,
) -> Activations:
    """Activations ``a_n(x)`` of every unit of ``layer`` on every image of ``loader``.

    Parameters
    ----------
    model : the network; inputs are [0, 1] images (normalisation is inside).
    loader : iterable of ``(x [B,3,H,W] in [0,1], y [B])`` batches.
    layer : dotted module name (see :func:`consis_lib.models.metric_layer`).
    reduce : ``"max"`` (spatial max, the default of DESIGN section 2) or ``"mean"``.
    device : where to run; default the model's device. Results come back on the CPU.
    keep_maps : also return the full maps ``[N, K, h, w]`` (memory!).
    attack : optional ``attack(model, x, y) -> x_adv``; when given, the same pass
        also scores the adversarial counterpart of every image (``consis_adv``).
    progress : show a tqdm bar.

    Returns
    -------
    Activations with ``acts [N, K]``, ``labels [N]``, ``preds [N]`` and, with an
    attack, ``adv_acts [N, K]`` and ``adv_preds [N]``.

    The model is put in eval mode for the pass and its mode restored afterwards;
    no hook outlives the call.

    Example
    -------
    >>> res = unit_activations(model, loader, "layer4")
    >>> res.acts.shape
    torch.Size([N, K])
    """
    if reduce not in REDUCTIONS:
        raise ConsisError(f"activation reduce={reduce!r} is not supported; use one of {REDUCTIONS}")
    dev = torch.device(device) if device is not None else model_device(model)
    was_training = model.training
    model.eval()
    acts, labels, preds, maps = [], [], [], []
    adv_acts, adv_preds, adv_maps = [], [], []
    try:
        with capture(model, [layer]) as feats:
            for batch in tqdm(loader, desc=f"activations {layer}", disable=not progress, leave=False):
                x, y = _split_batch(batch)
                x = channels_last(x.to(dev, non_blocking=True))
                if y is None:
                    y = torch.full((x.shape[0],), -1, dtype=torch.long)
                with torch.no_grad():
                    out = model(x)
                fmap = feats[layer]
                acts.append(reduce_maps(fmap, reduce).float().cpu())
                preds.append(out.argmax(1).cpu())
                labels.append(y.cpu().long())
                if keep_maps:
                    maps.append(fmap.float().cpu())
                if attack is not None:
                    x_adv = attack(model, x, y.to(dev))
                    model.eval()
                    with torch.no_grad():
                        out_adv = model(x_adv)
                    fmap = feats[layer]
                    adv_acts.append(reduce_maps(fmap, reduce).float().cpu())
                    adv_preds.append(out_adv.argmax(1).cpu())
                    if keep_maps:
                        adv_maps.append(fmap.float().cpu())
    finally:
        model.train(was_training)
    if not acts:
        raise ConsisError("the loader yielded no images; check the data folder or the split name")
    res = Activations(
        acts=torch.cat(acts),
        labels=torch.cat(labels),
        preds=torch.cat(preds),
        maps=torch.cat(maps) if keep_maps else None,
        adv_acts=torch.cat(adv_acts) if attack is not None else None,
        adv_preds=torch.cat(adv_preds) if attack is not None else None,
        adv_maps=torch.cat(adv_maps) if (keep_maps and attack is not None) else None,
        layer=layer,
        reduce=reduce,
    )
    log.debug("activations of %s: %s", layer, tuple(res.acts.shape))
    return res


def fgsm_attack(eps: float) -> AttackFn:
    """``attack(model, x, y)`` running :func:`consis_lib.attacks.fgsm` with ``eps``.

    Example
    -------
    >>> unit_activations(model, loader, "layer4", attack=fgsm_attack(8 / 255))
    """

    def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        from consis_lib.attacks import fgsm

        if y is None or bool((y < 0).any()):
            raise ConsisError("FGSM needs class labels; the loader yielded none (use least_likely_attack)")
        return fgsm(model, x, y, eps)

    return run


def least_likely_attack(eps: float, step: float = 1.0 / 255.0, iters: int | None = None) -> AttackFn:
    """``attack(model, x, y)`` running the iterative least-likely class attack
    (:func:`consis_lib.attacks.least_likely`); ``y`` is ignored.

    Example
    -------
    >>> dissect(model, layer, probe, cfg, attack=least_likely_attack(8 / 255))
    """

    def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        from consis_lib.attacks import least_likely

        return least_likely(model, x, eps, step=step, iters=iters)

    return run
