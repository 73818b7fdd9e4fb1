"""Training: normal (cross-entropy) and adversarial with the consistent loss (Eq. 6).

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
:class:`~consis_lib.config.TrainConfig` for the share of the loss it targets). Each
epoch's log holds the mean terms (``ce_clean``, ``ce_adv``, ``consistent``), the
weighted consistent term ``beta_d`` and each term's share of the loss
(:func:`loss_shares`), and the mean metric-layer activation on the validation set
(``feature_mean``), so a collapse of the features towards zero (the trivial
minimiser of a raw ``d``) shows in the log. Three guards are options, each a
``TrainConfig`` field, and the book's ablation shows what each changes:

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

Runs
----
Checkpoints go to ``OUT/model.pt`` after every epoch (atomically: temp file +
``os.replace``) holding the arch, all configs, their hash, the weights, the
optimiser state and the RNG state; ``OUT/log.jsonl`` holds one JSON object per
epoch (loss, train accuracy, clean and FGSM validation accuracy). ``resume=True``
continues from the checkpoint to the same result as an uninterrupted run (CPU,
same seed). Batches reach the model channels_last (:mod:`consis_lib.layout`); on
CUDA the weights are channels_last too and the model runs under autocast (bfloat16
where supported, else float16 with a gradient scaler). Under ``torchrun`` the model is
wrapped in DistributedDataParallel with a DistributedSampler; rank 0 evaluates,
logs and writes checkpoints.

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

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from consis_lib.atomic import atomic_path, atomic_write_text
from consis_lib.attacks import fgsm, fgsm_from_grad
from consis_lib.cache import cache_root
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
from consis_lib.hooks import capture
from consis_lib.layout import channels_last
from consis_lib.models import ARCHS, build_model, metric_layer

log = logging.getLogger(__name__)

CHECKPOINT = "model.pt"
LOG = "log.jsonl"
_PRELOAD_MAX_ELEMENTS = 400_000_000  # preload data sets below ~1.6 GB of float32


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a training run; its hash keys the checkpoint."""

    model: ModelConfig
    train: TrainConfig
    attack: AttackConfig
    data: DataConfig
    adv: bool
    init_hash: str = ""


@dataclass
class FitResult:
    """What :func:`fit` returns: the trained model (unwrapped, eval mode), its
    checkpoint path and the per-epoch log entries."""

    model: nn.Module
    checkpoint: Path
    history: list[dict[str, Any]]


# --------------------------------------------------------------------------- losses


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


def _unwrap(model: nn.Module) -> nn.Module:
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
    net = _unwrap(model)
    keep_graph = not opts.stop_gradient_clean and opts.beta > 0
    x = channels_last(x.detach())
    xg = x.detach().requires_grad_(True)
    with capture(net, [opts.layer], detach=False) as feats:
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


# --------------------------------------------------------------------------- evaluation


def evaluate(
    model: nn.Module,
    data: Dataset | DataLoader,
    eps: float,
    device: str | torch.device | None = None,
    batch_size: int = 256,
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
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=batch_size, num_workers=num_workers)
    was_training = model.training
    model.eval()
    n = clean = adv = 0
    fsum = 0.0
    try:
        for x, y in loader:
            x, y = channels_last(x.to(device)), y.to(device)
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


# --------------------------------------------------------------------------- data


def load_datasets(
    dcfg: DataConfig, data_root: str | Path | None = None, cache: Path | None = None
) -> tuple[Dataset, Dataset, list[str]]:
    """Train and val datasets (ImageNet layout, WNID folders) and the class WNIDs.

    ``data_root`` overrides the profile; otherwise the embedded set is generated
    (or found) under ``cache`` for ``source="embedded"``, or ``dcfg.root`` is read.
    """
    from consis_lib.data.imagefolder import WnidImageFolder

    if data_root is None:
        if dcfg.source == "embedded":
            from consis_lib.data.embedded import prepare_dataset

            data_root = prepare_dataset(dcfg, cache or cache_root())
        else:
            data_root = dcfg.root
    root = Path(data_root)
    if not (root / "train").is_dir():
        raise ConsisError(f"no train/ folder in {root}: pass --data DIR holding train/<wnid>/ and val/<wnid>/")
    size = dcfg.image_size
    train = WnidImageFolder(root, "train", image_size=size)
    val = WnidImageFolder(root, "val", image_size=size)
    if list(train.wnids) != list(val.wnids):
        raise ConsisError(f"{root}/train and {root}/val hold different class folders: make them match")
    return train, val, list(train.wnids)


def _preload(ds: Dataset, num_workers: int) -> Dataset:
    """Materialise a small dataset as a TensorDataset (fast epochs, exact resume)."""
    if isinstance(ds, TensorDataset) or len(ds) == 0:  # type: ignore[arg-type]
        return ds
    x0, _ = ds[0]
    if len(ds) * x0.numel() > _PRELOAD_MAX_ELEMENTS:  # type: ignore[arg-type]
        return ds
    xs, ys = [], []
    for x, y in DataLoader(ds, batch_size=256, num_workers=num_workers):
        xs.append(x)
        ys.append(torch.as_tensor(y))
    return TensorDataset(torch.cat(xs), torch.cat(ys).long())


def _max_label(ds: Dataset) -> int:
    if isinstance(ds, TensorDataset):
        return int(ds.tensors[1].max())
    targets = getattr(ds, "targets", None)
    if targets is not None:
        return int(max(targets))
    return int(max(int(y) for _, y in ds))  # type: ignore[attr-defined]


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and translation by up to H/8 pixels (reflect padding).

    ``x`` ``[B, 3, H, W]``; the randomness comes only from ``generator`` (on CPU), so
    a run is reproducible and resumable.
    """
    b, _, h, w = x.shape
    p = max(1, h // 8)
    flip = torch.rand(b, generator=generator) < 0.5
    oy = torch.randint(0, 2 * p + 1, (b,), generator=generator)
    ox = torch.randint(0, 2 * p + 1, (b,), generator=generator)
    dev = x.device
    x = torch.where(flip.to(dev).view(b, 1, 1, 1), x.flip(3), x)
    xp = F.pad(x, (p, p, p, p), mode="reflect")
    rows = (torch.arange(h).view(1, h) + oy.view(b, 1)).to(dev)
    cols = (torch.arange(w).view(1, w) + ox.view(b, 1)).to(dev)
    bi = torch.arange(b, device=dev).view(b, 1, 1)
    out = xp.permute(0, 2, 3, 1)[bi, rows.view(b, h, 1), cols.view(b, 1, w)]
    return out.permute(0, 3, 1, 2).contiguous()


# --------------------------------------------------------------------------- checkpoints


def _atomic_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
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
    """Rebuild the model of a checkpoint written by :func:`fit`.

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
    ckpt = _read_checkpoint(path, map_location)
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


# --------------------------------------------------------------------------- fit


@contextmanager
def _distributed(device: torch.device | None) -> Iterator[tuple[int, int, torch.device]]:
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
    if device is None:
        if torch.cuda.is_available():
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        else:
            device = torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda":
        if device.index is None:  # plain "cuda": this rank's GPU
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    try:
        yield rank, world, device
    finally:
        if started:
            dist.destroy_process_group()


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


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


def monitoring_subset(val_set: Dataset, limit: int) -> Dataset:
    """Every k-th validation image, at most ``limit`` of them (0: all), for the
    per-epoch log; the tables are measured on the whole validation set afterwards.

    Example
    -------
    >>> len(monitoring_subset(TensorDataset(torch.zeros(10, 1)), 4))
    4
    """
    n = len(val_set)  # type: ignore[arg-type]
    if limit <= 0 or n <= limit:
        return val_set
    step = n / limit
    return torch.utils.data.Subset(val_set, [int(i * step) for i in range(limit)])


def _lr_at(step: int, total: int, base: float) -> float:
    """Cosine decay from ``base`` to 0 over ``total`` steps."""
    return base * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(1, total)))


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
    prof = get_profile(profile) if isinstance(profile, str) else profile
    mcfg = prof.model if arch is None else dataclasses.replace(prof.model, arch=arch)
    if mcfg.arch not in ARCHS:
        raise ConsisError(f"unknown arch {mcfg.arch!r}: choose one of {', '.join(ARCHS)}")
    tcfg, acfg, dcfg = prof.train, prof.attack, prof.data
    out = Path(out)
    finetune = adv and tcfg.finetune_from_normal
    pretrained_init = finetune and init is None and mcfg.pretrained and mcfg.scale == "paper"
    if finetune and init is None and not pretrained_init:
        raise ConsisError(
            "adversarial fine-tuning needs the normal model: pass --init DIR/model.pt of a normal run "
            "(or set TrainConfig.finetune_from_normal=False to train Eq. 6 from scratch)"
        )
    epochs = tcfg.adv_epochs if finetune else tcfg.epochs
    base_lr = tcfg.adv_lr if finetune else tcfg.lr

    with _distributed(device) as (rank, world, dev):
        if train_set is None or val_set is None:
            if rank == 0 or world == 1:
                tr, va, wn = load_datasets(dcfg, data_root)
            _barrier(world)
            if rank != 0:
                tr, va, wn = load_datasets(dcfg, data_root)
            train_set = train_set or tr
            val_set = val_set or va
            wnids = wnids or wn
        train_set = _preload(train_set, tcfg.num_workers)
        val_set = _preload(val_set, tcfg.num_workers)
        x0, _ = train_set[0]
        image_size = int(x0.shape[-1])
        num_classes = len(wnids) if wnids else max(_max_label(train_set), _max_label(val_set)) + 1

        # Model and its starting point.
        init_hash = ""
        if init is not None:
            init_model, init_meta = load_checkpoint(init, arch=mcfg.arch, num_classes=num_classes)
            if init_meta["scale"] != mcfg.scale:
                raise ConsisError(f"{init} is a {init_meta['scale']}-scale model, the profile wants {mcfg.scale}")
            model = init_model
            init_hash = str(init_meta.get("config_hash", ""))
        else:
            torch.manual_seed(tcfg.seed)
            model = build_model(
                mcfg.arch,
                num_classes,
                scale=mcfg.scale,
                width_divisor=mcfg.width_divisor,
                image_size=image_size,
                pretrained=mcfg.pretrained and (pretrained_init or not adv),
            )
        spec = RunSpec(mcfg, tcfg, acfg, dcfg, adv, init_hash)
        run_hash = config_hash(spec)
        layer = metric_layer(mcfg.arch, mcfg.scale)
        model.to(dev)
        if dev.type == "cuda":
            model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(
            model.parameters(), lr=base_lr, momentum=tcfg.momentum, weight_decay=tcfg.weight_decay
        )
        amp_dtype = None
        scaler = None
        if dev.type == "cuda":
            amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            if amp_dtype == torch.float16:
                scaler = torch.amp.GradScaler("cuda")

        history: list[dict[str, Any]] = []
        start_epoch = 0
        ckpt_path = out / CHECKPOINT
        if resume and ckpt_path.is_file():
            ckpt = _read_checkpoint(ckpt_path)
            if ckpt.get("config_hash") != run_hash:
                raise ConsisError(
                    f"{ckpt_path} was written by another configuration (hash {ckpt.get('config_hash')} != {run_hash}): "
                    "rerun without --resume or use the same options"
                )
            model.load_state_dict(ckpt["state_dict"])
            optimizer.load_state_dict(ckpt["optimizer"])
            torch.set_rng_state(ckpt["rng"])
            history = list(ckpt["history"])
            start_epoch = int(ckpt["epoch"])
            log.info("resuming %s from epoch %d", ckpt_path, start_epoch)
        else:
            if resume:
                log.info("no checkpoint at %s to resume: starting afresh", ckpt_path)
            torch.manual_seed(tcfg.seed + 1)

        net = model
        if world > 1:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[dev.index] if dev.type == "cuda" else None
            )
        opts = StepOptions(
            alpha=tcfg.alpha,
            beta=tcfg.beta,
            eps=acfg.eps,
            layer=layer,
            normalize_features=tcfg.normalize_features,
            stop_gradient_clean=tcfg.stop_gradient_clean,
            amp_dtype=amp_dtype,
        )
        if world > 1:
            sampler: Any = torch.utils.data.DistributedSampler(
                train_set, num_replicas=world, rank=rank, shuffle=True, seed=tcfg.seed
            )
        else:
            sampler = None
        steps_per_epoch = None
        step_fn = eq6_backward if adv else clean_backward

        monitor = monitoring_subset(val_set, tcfg.val_images)

        def validate() -> dict[str, float]:
            ev = evaluate(net, monitor, acfg.eps, device=dev, layer=layer, num_workers=tcfg.num_workers)
            return {"val_acc": ev["clean_acc"], "val_fgsm_acc": ev["fgsm_acc"], "feature_mean": ev["feature_mean"]}

        def save(epoch_done: int) -> None:
            payload = {
                "format": 1,
                "arch": mcfg.arch,
                "scale": mcfg.scale,
                "width_divisor": mcfg.width_divisor,
                "image_size": image_size,
                "num_classes": num_classes,
                "wnids": list(wnids) if wnids else [],
                "adv": adv,
                "epoch": epoch_done,
                "epochs": epochs,
                "layer": layer,
                "config": to_dict(spec),
                "config_hash": run_hash,
                "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "rng": torch.get_rng_state(),
                "history": history,
            }
            _atomic_save(payload, ckpt_path)
            atomic_write_text(out / LOG, "".join(json.dumps(h) + "\n" for h in history))

        for epoch in range(start_epoch, epochs):
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(tcfg.seed * 100_003 + epoch * 1_009 + rank)
            if sampler is not None:
                sampler.set_epoch(epoch)
                loader = DataLoader(train_set, batch_size=tcfg.batch_size, sampler=sampler, drop_last=True,
                                    num_workers=tcfg.num_workers)
            else:
                loader = DataLoader(train_set, batch_size=tcfg.batch_size, shuffle=True, generator=gen,
                                    drop_last=True, num_workers=tcfg.num_workers)
            steps_per_epoch = len(loader)
            if steps_per_epoch == 0:
                raise ConsisError(
                    f"the training set ({len(train_set)} images) is smaller than one batch of {tcfg.batch_size}: "  # type: ignore[arg-type]
                    "lower batch_size or add images"
                )
            total_steps = epochs * steps_per_epoch
            model.train()
            sums: dict[str, float] = {}
            seen = correct = 0
            bar = tqdm(loader, desc=f"{mcfg.arch}{'-adv' if adv else ''} epoch {epoch + 1}/{epochs}",
                       disable=not progress or rank != 0, leave=False)
            for i, (x, y) in enumerate(bar):
                lr = _lr_at(epoch * steps_per_epoch + i, total_steps, base_lr)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                x = x.to(dev, non_blocking=True)
                y = y.to(dev, non_blocking=True)
                if tcfg.augment:
                    x = augment(x, gen)
                if dev.type == "cuda":  # the model is channels_last there too
                    x = x.contiguous(memory_format=torch.channels_last)
                optimizer.zero_grad(set_to_none=True)
                res = step_fn(model, x, y, opts, scaler)
                loss = float(res["loss"])
                if not math.isfinite(loss):
                    kept = f"the last good checkpoint {ckpt_path} is kept" if ckpt_path.is_file() else "nothing was written"
                    raise ConsisError(
                        f"loss is {loss} at epoch {epoch + 1} step {i + 1} ({mcfg.arch}); {kept}: lower --lr or check the data"
                    )
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                for k, v in res.items():
                    if k != "correct":
                        sums[k] = sums.get(k, 0.0) + float(v) * len(y)
                correct += int(res["correct"])
                seen += len(y)
                bar.set_postfix(loss=f"{loss:.3f}")
            entry: dict[str, Any] = {"epoch": epoch + 1, "adv": adv, "lr": base_lr}
            entry.update({k: v / seen for k, v in sums.items()})
            if adv:
                entry.update(loss_shares(entry, tcfg.alpha, tcfg.beta))
            entry["train_acc"] = correct / seen
            if rank == 0:
                entry.update(validate())
                entry["seconds"] = time.perf_counter() - t0
                history.append(entry)
                log.info("%s epoch %d: %s", out, epoch + 1, json.dumps(entry))
                save(epoch + 1)
            else:
                history.append(entry)
            _barrier(world)

        if epochs == 0 and not resume:
            # Nothing to train (e.g. the paper profile's pretrained normal model):
            # record the starting model and its accuracy as epoch 0.
            if rank == 0:
                entry = {"epoch": 0, "adv": adv, "lr": base_lr, **validate()}
                history.append(entry)
                save(0)
            _barrier(world)
        elif start_epoch >= epochs and rank == 0:
            log.info("%s is already trained for %d epochs", ckpt_path, epochs)
        net.eval()
        return FitResult(model=net, checkpoint=ckpt_path, history=history)

