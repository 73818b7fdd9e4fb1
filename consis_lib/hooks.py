"""Feature capture through forward hooks, only as context managers.

Example
-------
>>> with capture(model, ["layer4"]) as feats:
...     model(x)
>>> feats["layer4"].shape  # [B, K, H, W]

No hook outlives the ``with`` block, even when the body raises.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn


def get_module(model: nn.Module, name: str) -> nn.Module:
    """Return the submodule called ``name`` (dotted path), with a clear error."""
    modules = dict(model.named_modules())
    if name not in modules:
        known = ", ".join(n for n in modules if n)[:400]
        raise KeyError(f"model has no layer {name!r}; layers include: {known}")
    return modules[name]


@contextmanager
def capture(
    model: nn.Module, layers: Sequence[str], detach: bool = True
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of ``layers`` on every forward pass inside the block.

    Parameters
    ----------
    model : the network.
    layers : dotted module names (e.g. ``"features.29"``, ``"layer4"``).
    detach : store detached tensors (True) or keep the graph (False, for losses
        such as the consistent term of Eq. 6).

    Yields
    ------
    dict mapping layer name -> the latest output tensor ``[B, K, H, W]``.
    """
    store: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for name in layers:
            module = get_module(model, name)

            def hook(_m: nn.Module, _i: object, out: torch.Tensor, name: str = name) -> None:
                store[name] = out.detach() if detach else out

            handles.append(module.register_forward_hook(hook))
        yield store
    finally:
        for h in handles:
            h.remove()


def count_hooks(model: nn.Module) -> int:
    """Number of forward hooks registered anywhere in ``model`` (tests assert 0)."""
    return sum(len(m._forward_hooks) for m in model.modules())
