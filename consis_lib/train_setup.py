"""Set-up of a training run (:func:`consis_lib.train.fit`), one named part each.

:func:`plan_run` resolves the profile (arch, schedule, starting point);
:func:`distributed` starts torch.distributed under torchrun and picks the device;
:func:`run_data` reads the datasets (rank 0 first, so the embedded set is generated
once); :func:`starting_model` builds the model or loads ``init``; :func:`start_run`
adds the optimiser and AMP (CUDA: channels_last weights and autocast, bfloat16
where supported, else float16 with a gradient scaler), restores ``OUT/model.pt``
when resuming and wraps the model in DistributedDataParallel under torchrun.

Example
-------
>>> plan = plan_run("smoke", "resnet18", adv=False, init=None)
>>> with distributed("cpu") as (rank, world, dev):
...     run = start_run(plan, run_data(plan, None, None, None, None, rank, world), Path("out"),
...                     init=None, resume=False, device=dev, rank=rank, world=world)
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from consis_lib.checkpoint import CHECKPOINT, load_checkpoint, read_checkpoint
from consis_lib.config import (
    AttackConfig,
    DataConfig,
    ModelConfig,
    Profile,
    TrainConfig,
    config_hash,
    get_profile,
    to_dict,
)
from consis_lib.errors import ConsisError
from consis_lib.loaders import load_datasets, max_label, preload
from consis_lib.models import ARCHS, build_model, metric_layer
from consis_lib.train_step import StepOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a training run; its hash keys the checkpoint."""

    model: ModelConfig
    train: TrainConfig
    attack: AttackConfig
    data: DataConfig
    adv: bool
    init_hash: str = ""


@dataclass(frozen=True)
class Plan:
    """A run's resolved configuration: the profile's parts, its schedule and starting point.

    ``epochs`` and ``lr`` are the fine-tuning ones (``adv_epochs``, ``adv_lr``) for an
    Eq. 6 run that fine-tunes the normal model; ``pretrained_init``: that normal model
    is torchvision's pretrained one (paper scale, no ``init``).
    """

    model: ModelConfig
    train: TrainConfig
    attack: AttackConfig
    data: DataConfig
    adv: bool
    pretrained_init: bool
    epochs: int
    lr: float


def plan_run(profile: Profile | str, arch: str | None, adv: bool, init: str | Path | None) -> Plan:
    """Resolve ``profile`` (or its name) for one run; ConsisError for an unknown arch or a missing init."""
    prof = get_profile(profile) if isinstance(profile, str) else profile
    mcfg = prof.model if arch is None else dataclasses.replace(prof.model, arch=arch)
    if mcfg.arch not in ARCHS:
        raise ConsisError(f"unknown arch {mcfg.arch!r}: choose one of {', '.join(ARCHS)}")
    tcfg = prof.train
    finetune = adv and tcfg.finetune_from_normal
    pretrained_init = finetune and init is None and mcfg.pretrained and mcfg.scale == "paper"
    if finetune and init is None and not pretrained_init:
        raise ConsisError(
            "adversarial fine-tuning needs the normal model: pass --init DIR/model.pt of a normal run "
            "(or set TrainConfig.finetune_from_normal=False to train Eq. 6 from scratch)"
        )
    epochs = tcfg.adv_epochs if finetune else tcfg.epochs
    lr = tcfg.adv_lr if finetune else tcfg.lr
    return Plan(mcfg, tcfg, prof.attack, prof.data, adv, pretrained_init, epochs, lr)


@contextmanager
def distributed(device: str | torch.device | None) -> Iterator[tuple[int, int, torch.device]]:
    """Initialise torch.distributed when started by torchrun; yields (rank, world, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    started = False
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and device is None else "gloo"
        if device is not None and torch.device(device).type == "cuda":
            backend = "nccl"
        dist.init_process_group(backend=backend)
        started = True
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    try:
        yield rank, world, _device(device)
    finally:
        if started:
            dist.destroy_process_group()


def _device(device: str | torch.device | None) -> torch.device:
    """``device``, by default this rank's GPU when CUDA is available, else the CPU."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda":
        if device.index is None:  # plain "cuda": this rank's GPU
            device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    return device


def barrier(world: int) -> None:
    """Wait for every torchrun process (nothing to wait for in a single process)."""
    if world > 1:
        dist.barrier()


def average_buffers(module: nn.Module, world: int) -> None:
    """Average the floating-point buffers (BatchNorm running statistics) over the
    torchrun processes, so the checkpoint holds statistics of every rank's data,
    not rank 0's alone (DDP broadcasts rank 0's buffers before each forward)."""
    if world > 1:
        for buffer in module.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer.div_(world)


@dataclass(frozen=True)
class RunData:
    """The datasets of a run (items ``(image [3, H, W] in [0, 1], label)``) and what they imply."""

    train: Dataset
    val: Dataset
    wnids: list[str]
    image_size: int
    num_classes: int


def run_data(
    plan: Plan,
    data_root: str | Path | None,
    train_set: Dataset | None,
    val_set: Dataset | None,
    wnids: list[str] | None,
    rank: int,
    world: int,
) -> RunData:
    """The given datasets, else the profile's (or ``data_root``'s) folders; small ones preloaded."""
    if train_set is None or val_set is None:
        if rank == 0:
            tr, va, wn = load_datasets(plan.data, data_root)
        barrier(world)
        if rank != 0:
            tr, va, wn = load_datasets(plan.data, data_root)
        train_set, val_set, wnids = train_set or tr, val_set or va, wnids or wn
    train_set = preload(train_set, plan.train.num_workers)
    val_set = preload(val_set, plan.train.num_workers)
    image_size = int(train_set[0][0].shape[-1])
    num_classes = len(wnids) if wnids else max(max_label(train_set), max_label(val_set)) + 1
    return RunData(train_set, val_set, list(wnids or []), image_size, num_classes)


def starting_model(plan: Plan, data: RunData, init: str | Path | None) -> tuple[nn.Module, str]:
    """The model to train and the config hash of its ``init`` checkpoint ("" when built here).

    Built from seed ``train.seed`` (with ImageNet weights, torchvision's or those of
    ``model.weights``, for a pretrained normal model or a fine-tuning that starts
    from it), or loaded from
    ``init`` (same arch, class count and scale, else ConsisError).
    """
    mcfg = plan.model
    if init is not None:
        model, meta = load_checkpoint(init, arch=mcfg.arch, num_classes=data.num_classes)
        if meta["scale"] != mcfg.scale:
            raise ConsisError(f"{init} is a {meta['scale']}-scale model, the profile wants {mcfg.scale}")
        return model, str(meta.get("config_hash", ""))
    torch.manual_seed(plan.train.seed)
    model = build_model(
        mcfg.arch,
        data.num_classes,
        scale=mcfg.scale,
        width_divisor=mcfg.width_divisor,
        image_size=data.image_size,
        pretrained=mcfg.pretrained and (plan.pretrained_init or not plan.adv),
        weights=mcfg.weights or None,
    )
    return model, ""


@dataclass
class Run:
    """A training run in progress: the plan, its data and model, the optimiser and the log."""

    plan: Plan
    out: Path
    data: RunData
    spec: RunSpec
    net: nn.Module  # the model itself
    model: nn.Module  # ``net``, or its DistributedDataParallel wrapper under torchrun
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    opts: StepOptions
    device: torch.device
    rank: int = 0
    world: int = 1
    history: list[dict[str, Any]] = field(default_factory=list)
    start_epoch: int = 0

    @property
    def checkpoint(self) -> Path:
        """``OUT/model.pt``."""
        return self.out / CHECKPOINT

    @property
    def config_hash(self) -> str:
        """The hash of :attr:`spec` that keys the checkpoint."""
        return config_hash(self.spec)


def _amp(device: torch.device) -> tuple[torch.dtype | None, torch.amp.GradScaler | None]:
    """Autocast dtype and gradient scaler: bfloat16 (or float16 + scaler) on CUDA, none on CPU."""
    if device.type != "cuda":
        return None, None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, None
    return torch.float16, torch.amp.GradScaler("cuda")


def _step_options(plan: Plan, amp_dtype: torch.dtype | None) -> StepOptions:
    t = plan.train
    return StepOptions(
        alpha=t.alpha,
        beta=t.beta,
        eps=plan.attack.eps,
        layer=metric_layer(plan.model.arch, plan.model.scale),
        normalize_features=t.normalize_features,
        stop_gradient_clean=t.stop_gradient_clean,
        amp_dtype=amp_dtype,
    )


def start_run(
    plan: Plan,
    data: RunData,
    out: Path,
    init: str | Path | None,
    resume: bool,
    device: torch.device,
    rank: int = 0,
    world: int = 1,
) -> Run:
    """The starting model on ``device`` with its optimiser and AMP settings, restored
    from ``out/model.pt`` when resuming, wrapped in DistributedDataParallel under torchrun."""
    net, init_hash = starting_model(plan, data, init)
    net.to(device)
    if device.type == "cuda":
        net.to(memory_format=torch.channels_last)
    t = plan.train
    optimizer = torch.optim.SGD(net.parameters(), lr=plan.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    amp_dtype, scaler = _amp(device)
    spec = RunSpec(plan.model, t, plan.attack, plan.data, plan.adv, init_hash)
    run = Run(plan, out, data, spec, net, net, optimizer, scaler, _step_options(plan, amp_dtype), device, rank, world)
    restore_or_seed(run, resume)
    if world > 1:
        run.model = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    return run


# seeds of the torchrun ranks' training RNG (dropout) lie this far apart; rank 0's is
# the single-process seed
_RANK_STRIDE = 1_000_003


def restore_or_seed(run: Run, resume: bool) -> None:
    """Resume from ``OUT/model.pt`` (weights, optimiser, RNG, log; same config hash, else
    ConsisError), or seed the training RNG with ``train.seed + 1`` (other torchrun
    ranks: their own seed, so their dropout masks differ from rank 0's)."""
    path = run.checkpoint
    if not (resume and path.is_file()):
        if resume:
            log.info("no checkpoint at %s to resume: starting afresh", path)
        torch.manual_seed(run.plan.train.seed + 1 + _RANK_STRIDE * run.rank)
        return
    ckpt = read_checkpoint(path)
    if ckpt.get("config_hash") != run.config_hash:
        raise ConsisError(
            f"{path} was written by another configuration (hash {ckpt.get('config_hash')} != {run.config_hash}): "
            "rerun without --resume or use the same options"
        )
    run.net.load_state_dict(ckpt["state_dict"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    torch.set_rng_state(ckpt["rng"])  # rank 0's: the other ranks move on to their own stream
    if run.rank:
        torch.manual_seed(int(torch.randint(0, 2**62, (1,))) + _RANK_STRIDE * run.rank)
    run.history = list(ckpt["history"])
    run.start_epoch = int(ckpt["epoch"])
    log.info("resuming %s from epoch %d", path, run.start_epoch)


def checkpoint_payload(run: Run, epoch_done: int) -> dict[str, Any]:
    """What ``OUT/model.pt`` holds after ``epoch_done`` epochs (see :mod:`consis_lib.checkpoint`)."""
    m = run.plan.model
    return {
        "format": 1,
        "arch": m.arch,
        "scale": m.scale,
        "width_divisor": m.width_divisor,
        "image_size": run.data.image_size,
        "num_classes": run.data.num_classes,
        "wnids": run.data.wnids,
        "adv": run.plan.adv,
        "epoch": epoch_done,
        "epochs": run.plan.epochs,
        "layer": run.opts.layer,
        "config": to_dict(run.spec),
        "config_hash": run.config_hash,
        "state_dict": {k: v.detach().cpu() for k, v in run.net.state_dict().items()},
        "optimizer": run.optimizer.state_dict(),
        "rng": torch.get_rng_state(),
        "history": run.history,
    }
