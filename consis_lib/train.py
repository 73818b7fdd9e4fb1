"""Training: normal (cross-entropy) and adversarial with the consistent loss (Eq. 6).

Eq. 6::

    L = alpha * CE(f(x), y) + (1 - alpha) * CE(f(x*), y) + beta * d(phi(x), phi(x*))

with ``x*`` the FGSM image of the current model and ``phi`` the metric layer's
features. :func:`fit` reads like the method::

    set up the run (plan, data, starting model, resume)     consis_lib.train_setup
    for each epoch:
        train_one_epoch   (one Eq. 6 step per batch)        consis_lib.train_step
        evaluate          (clean and FGSM accuracy)
        write the checkpoint and the log                    consis_lib.checkpoint

The step (:func:`eq6_backward`, with the collapse guards of the consistent term)
is documented in :mod:`consis_lib.train_step`; the data and its loaders in
:mod:`consis_lib.loaders`. Each epoch's log holds the mean terms (``ce_clean``,
``ce_adv``, ``consistent``), the weighted consistent term ``beta_d`` and each term's
share of the loss (:func:`loss_shares`), the train accuracy, the clean and FGSM
accuracy and the mean metric-layer activation (``feature_mean``) on a validation
subset (:func:`monitoring_subset`), so a collapse of the features shows in the log.

Runs
----
Checkpoints go to ``OUT/model.pt`` after every epoch (atomically: temp file +
``os.replace``) holding the arch, all configs, their hash, the weights, the
optimiser state and the RNG state; ``OUT/log.jsonl`` holds one JSON object per
epoch. ``resume=True`` continues from the checkpoint to the same result as an
uninterrupted run (CPU, same seed). Batches reach the model channels_last
(:mod:`consis_lib.layout`); on CUDA the weights are channels_last too and the model
runs under autocast (bfloat16 where supported, else float16 with a gradient
scaler). Under ``torchrun`` the model is wrapped in DistributedDataParallel with a
distributed sampler; rank 0 evaluates, logs and writes checkpoints.

Example
-------
>>> from consis_lib.config import get_profile
>>> normal = fit(get_profile("smoke"), "runs/smoke/resnet18/normal", arch="resnet18")
>>> adv = fit(get_profile("smoke"), "runs/smoke/resnet18/adv", arch="resnet18", adv=True,
...           init=normal.checkpoint)
>>> adv.history[-1]["val_fgsm_acc"]  # doctest: +SKIP

Command line
------------
``default`` profile on a CPU (the embedded set is generated into the cache)::

    consis train --arch resnet18 --profile default --out runs/default/resnet18/normal
    consis train --arch resnet18 --profile default --adv \\
        --init runs/default/resnet18/normal --out runs/default/resnet18/adv

``paper`` profile (ImageNet in ``data/imagenet/{train,val}/<wnid>/``, or ``--data DIR``).
The normal model is torchvision's pretrained one (``epochs=0``: the command only
evaluates it and writes its checkpoint); the adversarial model fine-tunes it with
Eq. 6 for ``adv_epochs``. On one GPU::

    consis train --arch resnet18 --profile paper --out runs/paper/resnet18/normal
    consis train --arch resnet18 --profile paper --adv --init runs/paper/resnet18/normal \\
        --out runs/paper/resnet18/adv

On several GPUs of one machine (DDP, per-GPU batch = ``--batch-size``)::

    torchrun --standalone --nproc_per_node 8 -m consis_lib train --arch resnet18 \\
        --profile paper --adv --init runs/paper/resnet18/normal --out runs/paper/resnet18/adv

On a shared or busy CPU, ``OMP_NUM_THREADS=1`` is often several times faster.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from consis_lib.attacks import fgsm
from consis_lib.checkpoint import CHECKPOINT, LOG, load_checkpoint, write_checkpoint
from consis_lib.config import Profile
from consis_lib.errors import ConsisError
from consis_lib.hooks import capture
from consis_lib.layout import channels_last
from consis_lib.loaders import augment, eval_loader, load_datasets, monitoring_subset, train_loader
from consis_lib.train_setup import (
    Run, RunSpec, average_buffers, barrier, checkpoint_payload, distributed, plan_run, run_data, start_run,
)
from consis_lib.train_step import StepOptions, clean_backward, consistent_loss, eq6_backward

__all__ = [
    "CHECKPOINT",
    "LOG",
    "FitResult",
    "RunSpec",
    "StepOptions",
    "augment",
    "clean_backward",
    "consistent_loss",
    "eq6_backward",
    "evaluate",
    "fit",
    "load_checkpoint",
    "load_datasets",
    "loss_shares",
    "monitoring_subset",
    "train_one_epoch",
]

log = logging.getLogger(__name__)

_EVAL_BATCH = 256


@dataclass
class FitResult:
    """What :func:`fit` returns: the trained model (unwrapped, eval mode), its
    checkpoint path and the per-epoch log entries."""

    model: nn.Module
    checkpoint: Path
    history: list[dict[str, Any]]


def evaluate(
    model: nn.Module,
    data: Dataset | DataLoader,
    eps: float,
    device: str | torch.device | None = None,
    batch_size: int = _EVAL_BATCH,
    layer: str | None = None,
    num_workers: int = 0,
) -> dict[str, float]:
    """Clean and FGSM accuracy (Table 3) of ``model`` on ``data``.

    Parameters
    ----------
    model : classifier on [0,1] images.
    data : a Dataset of ``(image [3,H,W], label)`` or a DataLoader of batches.
    eps : FGSM budget; 0 skips the attack (``fgsm_acc`` is then NaN).
    layer : optionally also report ``feature_mean``, the mean activation of this layer.

    Returns
    -------
    ``{"clean_acc", "fgsm_acc", "n"}`` (+ ``"feature_mean"``), accuracies in [0, 1].

    Example
    -------
    >>> evaluate(model, val_set, eps=8 / 255)["fgsm_acc"]  # doctest: +SKIP
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    loader = data if isinstance(data, DataLoader) else eval_loader(data, batch_size, num_workers, device)
    was_training = model.training
    model.eval()
    n = clean = adv = 0
    fsum = 0.0
    try:
        for x, y in loader:
            x, y = channels_last(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
            with torch.no_grad(), capture(model, [layer] if layer else []) as feats:
                clean += int((model(x).argmax(1) == y).sum())
                if layer:
                    fsum += float(feats[layer].float().mean()) * len(y)
            if eps > 0:
                x_adv = fgsm(model, x, y, eps)
                with torch.no_grad():
                    adv += int((model(x_adv).argmax(1) == y).sum())
            n += len(y)
    finally:
        model.train(was_training)
    if n == 0:
        raise ConsisError("evaluation set is empty: check the val/ folder of the data")
    out = {"clean_acc": clean / n, "fgsm_acc": adv / n if eps > 0 else math.nan, "n": float(n)}
    if layer:
        out["feature_mean"] = fsum / n
    return out


def loss_shares(entry: dict[str, Any], alpha: float, beta: float) -> dict[str, float]:
    """Each term's share of the Eq. 6 loss from an epoch's mean terms.

    ``alpha*ce_clean``, ``(1-alpha)*ce_adv`` and ``beta*d`` (logged as ``beta_d``)
    divided by their sum, the logged ``loss``; the three shares add up to 1.

    Example
    -------
    >>> loss_shares({"ce_clean": 1.0, "ce_adv": 2.0, "consistent": 0.5}, 0.5, 1.0)["share_consistent"]
    0.25
    """
    terms = {
        "share_ce_clean": alpha * entry["ce_clean"],
        "share_ce_adv": (1.0 - alpha) * entry["ce_adv"],
        "share_consistent": beta * entry["consistent"],
    }
    total = sum(terms.values())
    out = {"beta": beta, "beta_d": beta * entry["consistent"]}
    out.update({k: (v / total if total > 0 else math.nan) for k, v in terms.items()})
    return out


def _lr_at(step: int, total: int, base: float) -> float:
    """Cosine decay from ``base`` to 0 over ``total`` steps."""
    return base * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(1, total)))


def _batch(run: Run, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch on the run's device, augmented when the profile says so, in the model's layout."""
    x = x.to(run.device, non_blocking=True)
    y = y.to(run.device, non_blocking=True)
    if run.plan.train.augment:
        x = augment(x, gen)
    if run.device.type == "cuda":  # the model is channels_last there too
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def _check_finite(run: Run, loss: float, epoch: int, step: int) -> None:
    """A NaN or infinite loss stops the run; the last good checkpoint stays as it is."""
    if math.isfinite(loss):
        return
    path = run.checkpoint
    kept = f"the last good checkpoint {path} is kept" if path.is_file() else "nothing was written"
    raise ConsisError(
        f"loss is {loss} at epoch {epoch + 1} step {step + 1} ({run.plan.model.arch}); {kept}: lower --lr or check the data"
    )


def _optimizer_step(run: Run) -> None:
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()


def _epoch_entry(run: Run, epoch: int, sums: dict[str, float], correct: int, seen: int) -> dict[str, Any]:
    """The epoch's log entry: mean loss terms, their Eq. 6 shares (adversarial run), train accuracy."""
    entry: dict[str, Any] = {"epoch": epoch + 1, "adv": run.plan.adv, "lr": run.plan.lr}
    entry.update({k: v / seen for k, v in sums.items()})
    if run.plan.adv:
        entry.update(loss_shares(entry, run.plan.train.alpha, run.plan.train.beta))
    entry["train_acc"] = correct / seen
    return entry


def train_one_epoch(run: Run, loader: DataLoader, epoch: int, progress: bool = True) -> dict[str, Any]:
    """One epoch of SGD on Eq. 6 (adversarial run) or on cross-entropy; returns its log entry.

    The learning rate decays by a cosine from ``plan.lr`` to 0 over all steps of the
    run; the shuffle is seeded by ``train.seed + epoch``, the augmentation by a
    generator seeded from the seed, the epoch and the rank.
    """
    plan = run.plan
    step_fn = eq6_backward if plan.adv else clean_backward
    gen = torch.Generator().manual_seed(plan.train.seed * 100_003 + epoch * 1_009 + run.rank)
    loader.sampler.set_epoch(epoch)  # type: ignore[union-attr]
    steps = len(loader)
    sums: dict[str, float] = {}
    seen = correct = 0
    run.model.train()
    desc = f"{plan.model.arch}{'-adv' if plan.adv else ''} epoch {epoch + 1}/{plan.epochs}"
    bar = tqdm(loader, desc=desc, disable=not progress or run.rank != 0, leave=False)
    for i, (x, y) in enumerate(bar):
        for group in run.optimizer.param_groups:
            group["lr"] = _lr_at(epoch * steps + i, plan.epochs * steps, plan.lr)
        x, y = _batch(run, x, y, gen)
        run.optimizer.zero_grad(set_to_none=True)
        res = step_fn(run.model, x, y, run.opts, run.scaler)
        loss = float(res["loss"])
        _check_finite(run, loss, epoch, i)
        _optimizer_step(run)
        for k, v in res.items():
            if k != "correct":
                sums[k] = sums.get(k, 0.0) + float(v) * len(y)
        correct += int(res["correct"])
        seen += len(y)
        bar.set_postfix(loss=f"{loss:.3f}")
    return _epoch_entry(run, epoch, sums, correct, seen)


def _validate(run: Run, monitor: DataLoader) -> dict[str, float]:
    """Clean and FGSM accuracy and the metric layer's mean activation on the monitoring subset."""
    ev = evaluate(run.net, monitor, run.plan.attack.eps, device=run.device, layer=run.opts.layer)
    return {"val_acc": ev["clean_acc"], "val_fgsm_acc": ev["fgsm_acc"], "feature_mean": ev["feature_mean"]}


def _end_epoch(run: Run, entry: dict[str, Any], monitor: DataLoader, started: float | None) -> None:
    """Rank 0 validates, logs and checkpoints the epoch (BatchNorm statistics averaged
    over the ranks first); every rank keeps the entry."""
    average_buffers(run.net, run.world)
    if run.rank == 0:
        entry.update(_validate(run, monitor))
        if started is not None:
            entry["seconds"] = time.perf_counter() - started
        run.history.append(entry)
        log.info("%s epoch %d: %s", run.out, entry["epoch"], json.dumps(entry))
        write_checkpoint(run.out, checkpoint_payload(run, entry["epoch"]))
    else:
        run.history.append(entry)
    barrier(run.world)


def fit(
    profile: Profile | str,
    out: str | Path,
    *,
    arch: str | None = None,
    adv: bool = False,
    data_root: str | Path | None = None,
    train_set: Dataset | None = None,
    val_set: Dataset | None = None,
    wnids: list[str] | None = None,
    init: str | Path | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> FitResult:
    """Train a normal model (cross-entropy) or an adversarial one (Eq. 6).

    Parameters
    ----------
    profile : a :class:`~consis_lib.config.Profile` or its name; its ``model``,
        ``train``, ``attack`` and ``data`` parts configure the run (use
        ``dataclasses.replace`` to override fields).
    out : output folder for ``model.pt`` and ``log.jsonl``.
    arch : overrides ``profile.model.arch``.
    adv : train with Eq. 6. With ``train.finetune_from_normal`` the run fine-tunes
        ``init`` (the normal model's checkpoint; at paper scale with pretrained
        weights, torchvision's model) for ``train.adv_epochs`` epochs at ``train.adv_lr``.
    data_root : ImageNet-layout folder (``train/<wnid>``, ``val/<wnid>``); default:
        the profile's data (embedded set generated into the cache).
    train_set, val_set, wnids : datasets of ``(image [3,H,W] in [0,1], label)`` used
        instead of folders (tests, notebooks).
    init : checkpoint to start from (same arch and class count, else ConsisError).
    resume : continue ``out/model.pt`` (same configuration, else ConsisError).
    device : default CUDA (this rank's GPU under torchrun) when available, else CPU.

    Returns
    -------
    :class:`FitResult` with the unwrapped model in eval mode.

    Raises
    ------
    ConsisError : unknown arch, mismatching init/resume checkpoint, NaN loss (the
        last good checkpoint is kept).
    """
    plan = plan_run(profile, arch, adv, init)
    t = plan.train
    with distributed(device) as (rank, world, dev):
        data = run_data(plan, data_root, train_set, val_set, wnids, rank, world)
        run = start_run(plan, data, Path(out), init, resume, dev, rank, world)
        monitor = eval_loader(monitoring_subset(data.val, t.val_images), _EVAL_BATCH, t.num_workers, dev)
        epochs = range(run.start_epoch, plan.epochs)
        if epochs:
            loader = train_loader(data.train, t.batch_size, t.num_workers, t.seed, dev, rank, world)
        for epoch in epochs:
            started = time.perf_counter()
            entry = train_one_epoch(run, loader, epoch, progress)
            _end_epoch(run, entry, monitor, started)
        if plan.epochs == 0 and not resume:
            # Nothing to train (e.g. the paper profile's pretrained normal model):
            # record the starting model and its accuracy as epoch 0.
            _end_epoch(run, {"epoch": 0, "adv": adv, "lr": plan.lr}, monitor, started=None)
        elif not epochs and rank == 0:
            log.info("%s is already trained for %d epochs", run.checkpoint, plan.epochs)
        run.net.eval()
        return FitResult(model=run.net, checkpoint=run.checkpoint, history=run.history)
