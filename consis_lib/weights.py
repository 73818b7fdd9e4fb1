"""ImageNet weights for the paper-scale models: torchvision's weights API (its
``$TORCH_HOME`` cache when offline) or a local folder of state_dicts, loaded
strictly; only a classifier head of another class count is replaced, with a warning.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from consis_lib.config import ModelConfig
from consis_lib.errors import ConsisError

log = logging.getLogger(__name__)


def _weights_enum(arch: str) -> Any:
    return {
        "alexnet": torchvision.models.AlexNet_Weights.IMAGENET1K_V1,
        "vgg16": torchvision.models.VGG16_Weights.IMAGENET1K_V1,
        "resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
    }[arch]


def _probe_url(url: str, timeout: float = 10.0) -> None:
    """Raise ``OSError`` quickly when ``url`` cannot be reached (no hang without network)."""
    request = urllib.request.Request(url, method="HEAD")
    with urllib.request.urlopen(request, timeout=timeout):
        pass


def weights_file(arch: str, weights_dir: str | Path) -> Path:
    """The state_dict file of ``arch`` in a ``--weights`` folder.

    The folder holds one ``torch.save(model.state_dict())`` file per architecture of
    torchvision's layout, named ``<arch>.pth`` (``alexnet.pth``, ``vgg16.pth``,
    ``resnet18.pth``) or as torchvision's weights API names its download
    (``resnet18-f37072fd.pth``).
    """
    folder = Path(weights_dir)
    if not folder.is_dir():
        raise ConsisError(f"weights folder {folder} does not exist: pass a folder holding <arch>.pth state_dicts")
    names = (f"{arch}.pth", os.path.basename(_weights_enum(arch).url))
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise ConsisError(f"weights folder {folder} has no {' or '.join(names)}: save torchvision's {arch} state_dict there")


def _read_state_dict(path: Path, mmap: bool = False) -> dict[str, torch.Tensor]:
    """A state_dict file loaded with ``weights_only=True`` (tensors memory-mapped with
    ``mmap`` when the file's format allows it)."""
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError:
            if not mmap:
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)  # a legacy (non-zip) file
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise ConsisError(f"{path} is not a readable state_dict ({type(exc).__name__}): save model.state_dict() there") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConsisError(f"{path} is not a state_dict (a dict of tensors): save model.state_dict() there")
    return state


def pretrained_state_dict(arch: str, weights_dir: str | Path | None = None, mmap: bool = False) -> dict[str, torch.Tensor]:
    """ImageNet weights for ``arch``: from ``weights_dir`` (:func:`weights_file`) when
    given, else torchvision's weights API (cached under ``$TORCH_HOME/hub``).

    Without ``weights_dir`` the cached file is used when present; otherwise the
    download URL is checked with a short timeout first, so that a machine without
    network gets a one-line :class:`ConsisError` instead of a hang.
    """
    if weights_dir is not None:
        return _read_state_dict(weights_file(arch, weights_dir), mmap=mmap)
    weights = _weights_enum(arch)
    filename = os.path.basename(weights.url)
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", filename)
    if os.path.isfile(cached):
        return _read_state_dict(Path(cached), mmap=mmap)
    try:
        _probe_url(weights.url)
        return weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, urllib.error.URLError, RuntimeError) as exc:
        raise ConsisError(
            f"cannot download pretrained {arch} weights to {cached} ({type(exc).__name__}): "
            f"copy {filename} there (set TORCH_HOME to change the folder), pass --weights DIR, or use pretrained=False"
        ) from exc


def head_keys(arch: str) -> tuple[str, str]:
    """``state_dict`` keys of the paper-scale classifier head (the last linear layer)."""
    return ("fc.weight", "fc.bias") if arch == "resnet18" else ("classifier.6.weight", "classifier.6.bias")


def _key_list(keys: set[str]) -> str:
    shown = sorted(keys)[:3]
    return ", ".join(shown) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], arch: str) -> bool:
    """Check ``state`` against ``model``: every key and shape must match, except the
    classifier head (:func:`head_keys`) when the class count differs.

    Returns
    -------
    True when the head's shape differs (the model keeps its fresh head).

    Raises
    ------
    ConsisError : a missing or unexpected key, or another tensor of another shape.
    """
    own = model.state_dict()
    missing, unexpected = set(own) - set(state), set(state) - set(own)
    if missing or unexpected:
        parts = [f"missing {_key_list(missing)}" if missing else "", f"unexpected {_key_list(unexpected)}" if unexpected else ""]
        raise ConsisError(
            f"pretrained weights do not fit torchvision's {arch} ({'; '.join(p for p in parts if p)}): "
            f"pass a state_dict of torchvision's {arch}"
        )
    bad = {k for k in own if own[k].shape != state[k].shape}
    if bad - set(head_keys(arch)):
        k = sorted(bad - set(head_keys(arch)))[0]
        raise ConsisError(
            f"pretrained weights do not fit torchvision's {arch}: {k} is {tuple(state[k].shape)}, "
            f"the model needs {tuple(own[k].shape)}: pass a state_dict of torchvision's {arch}"
        )
    return bool(bad)


def load_pretrained(model: nn.Module, arch: str, weights_dir: str | Path | None = None) -> bool:
    """Load ImageNet weights into a paper-scale ``model`` strictly, except a classifier
    head of another class count, which stays freshly initialised (logged as a WARNING).

    Returns
    -------
    True when the head was replaced.
    """
    state = pretrained_state_dict(arch, weights_dir)
    replaced = check_state_dict(model, state, arch)
    if replaced:
        weight = head_keys(arch)[0]
        log.warning(
            "pretrained %s: classifier head %s replaced (%d -> %d classes) by a freshly initialised one",
            arch, weight.rsplit(".", 1)[0], state[weight].shape[0], model.state_dict()[weight].shape[0],
        )
        state = {**state, **{k: v for k, v in model.state_dict().items() if k in head_keys(arch)}}
    model.load_state_dict(state, strict=True)
    return replaced


def check_pretrained_head(mcfg: ModelConfig, num_classes: int, normal_epochs: int) -> None:
    """Refuse a pretrained model whose classifier head must be replaced (the weights'
    class count differs from ``num_classes``) when the normal model trains 0 epochs:
    its random head would be used as the trained normal model.

    The weights are memory-mapped, not read; their keys and shapes are checked as
    :func:`load_pretrained` will.
    """
    if not (mcfg.pretrained and mcfg.scale == "paper"):
        return
    from consis_lib.models import build_model

    with torch.device("meta"):
        model = build_model(mcfg.arch, num_classes, scale="paper")
    state = pretrained_state_dict(mcfg.arch, mcfg.weights or None, mmap=True)
    if check_state_dict(model, state, mcfg.arch) and normal_epochs == 0:
        have = state[head_keys(mcfg.arch)[0]].shape[0]
        raise ConsisError(
            f"the pretrained {mcfg.arch} has {have} classes, the data {num_classes}, and the normal model trains 0 epochs: "
            "its classifier head would stay random; pass --epochs N (N > 0) or data with the weights' classes"
        )
