"""Accuracy under FGSM over a grid of eps (the performance page's curve; Table 3 at one eps).

``x* = clip(x + eps * sign(grad_x CE(f(x), y)), 0, 1)`` (DESIGN section 2) per
batch; eps 0 scores the clean images. One pass over the loader serves every model
and eps, so each image is read once.

Example
-------
>>> curves = fgsm_accuracy({"normal": normal, "adv": adv}, loader, [0, 2 / 255, 8 / 255])
>>> curves["adv"]["0.031373"]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

from consis_lib.activations import _split_batch, model_device
from consis_lib.errors import ConsisError


def eps_key(eps: float) -> str:
    """The curve's key of an eps: six decimals, e.g. ``"0.031373"`` for 8/255."""
    return f"{eps:.6f}"


def fgsm_accuracy(
    models: Mapping[str, nn.Module], loader: Iterable, eps_values: Sequence[float], device: torch.device | str | None = None
) -> dict[str, dict[str, float]]:
    """Top-1 accuracy of each model on the FGSM images of every eps: ``{model: {eps_key: acc}}``.

    Parameters
    ----------
    models : name -> classifier on [0, 1] images (each attacked with its own gradient).
    loader : ``(x [B, 3, H, W], y [B])`` batches, read once.
    eps_values : the eps grid (0 = clean images), in pixel units.
    device : where to run (default: the first model's device).
    """
    if not models:
        raise ConsisError("no models to evaluate; pass at least one")
    from consis_lib.attacks import fgsm

    grid = sorted(set(float(e) for e in eps_values))
    dev = torch.device(device) if device is not None else model_device(next(iter(models.values())))
    correct = {name: dict.fromkeys(grid, 0) for name in models}
    seen = 0
    for batch in loader:
        x, y = _split_batch(batch)
        x, y = x.to(dev), y.to(dev)
        seen += len(y)
        for name, model in models.items():
            for e in grid:
                xa = fgsm(model, x, y, e) if e > 0 else x
                with torch.no_grad():
                    correct[name][e] += int((model(xa).argmax(1) == y).sum())
    if seen == 0:
        raise ConsisError("the loader yielded no images; check the data folder or the split name")
    return {name: {eps_key(e): c / seen for e, c in counts.items()} for name, counts in correct.items()}
