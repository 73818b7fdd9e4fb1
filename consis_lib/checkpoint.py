"""Training checkpoints: ``OUT/model.pt`` and the epoch log ``OUT/log.jsonl``.

A checkpoint holds the arch, all configs, their hash, the weights, the optimiser
state, the RNG state and the epoch log; it is written atomically (temp file +
``os.replace``) after every epoch and read with ``torch.load(weights_only=True)``.

Example
-------
>>> model, meta = load_checkpoint("runs/default/resnet18/adv")
>>> meta["arch"], meta["epoch"]
('resnet18', 4)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from consis_lib.atomic import atomic_path, atomic_write_text
from consis_lib.errors import ConsisError
from consis_lib.models import build_model

CHECKPOINT = "model.pt"
LOG = "log.jsonl"


def _atomic_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def write_checkpoint(out: Path, payload: dict[str, Any]) -> None:
    """Write ``out/model.pt`` and ``out/log.jsonl`` (from ``payload["history"]``) atomically."""
    _atomic_save(payload, out / CHECKPOINT)
    atomic_write_text(out / LOG, "".join(json.dumps(h) + "\n" for h in payload["history"]))


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict at ``path`` (``DIR/model.pt`` or ``DIR``); ConsisError if unreadable."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise ConsisError(f"no checkpoint at {path}: train one with `consis train ... --out NEW_DIR`")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise ConsisError(f"{path} is not a readable consis checkpoint ({exc.__class__.__name__}): retrain it") from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "arch" not in ckpt:
        raise ConsisError(f"{path} is not a consis checkpoint (no arch/state_dict): retrain it")
    return ckpt


def load_checkpoint(
    path: str | Path,
    map_location: Any = "cpu",
    arch: str | None = None,
    num_classes: int | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint written by :func:`consis_lib.train.fit`.

    Parameters
    ----------
    path : ``DIR/model.pt`` or ``DIR``.
    map_location : passed to ``torch.load`` (loaded with ``weights_only=True``).
    arch, num_classes : when given, a checkpoint of another arch or class count is
        refused with a :class:`ConsisError`.

    Returns
    -------
    ``(model in eval mode, meta)``; meta holds ``arch``, ``scale``, ``num_classes``,
    ``image_size``, ``wnids``, ``adv``, ``epoch``, ``config``, ``config_hash``, ``history``.

    Example
    -------
    >>> model, meta = load_checkpoint("runs/default/resnet18/adv")
    >>> meta["arch"], meta["adv"]
    ('resnet18', True)
    """
    ckpt = read_checkpoint(path, map_location)
    if arch is not None and ckpt["arch"] != arch:
        raise ConsisError(
            f"{path} holds a {ckpt['arch']} checkpoint, not {arch}: pass a {arch} checkpoint or --arch {ckpt['arch']}"
        )
    if num_classes is not None and ckpt["num_classes"] != num_classes:
        raise ConsisError(
            f"{path} was trained for {ckpt['num_classes']} classes, the data has {num_classes}: "
            "use a checkpoint trained on the same classes"
        )
    model = build_model(
        ckpt["arch"],
        ckpt["num_classes"],
        scale=ckpt["scale"],
        width_divisor=ckpt["width_divisor"],
        image_size=ckpt["image_size"],
    )
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise ConsisError(f"{path}: weights do not fit {ckpt['arch']} ({str(exc).splitlines()[0]}): retrain it") from exc
    model.eval()
    meta = {k: v for k, v in ckpt.items() if k not in ("state_dict", "optimizer", "rng", "scaler")}
    return model, meta
