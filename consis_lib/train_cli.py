"""``consis train``: every argument, input and output checked before training starts.

Before a single batch is trained the command checks, each failing with one line:

* the numbers (``--batch-size``, ``--epochs``, ``--lr``, ``--eps``, ... in range and
  finite) and that ``--device`` exists on this machine;
* the data: the class folders (WNIDs) it will train on, read without loading images;
* ``--init``: a readable consis checkpoint of the same arch, scale, image size and
  classes (the WNIDs in its meta) holding a *normal* model (Eq. 6 fine-tunes the
  normal model, and a normal run must not start from an adversarial one);
* ``--out``: a folder that is new, empty or an earlier ``consis train`` output
  (:func:`consis_lib.outputs.claim_output_dir`), writable, on a disk with room for a
  checkpoint; and that no other ``consis train`` writes into it (a lock file that is
  released on exit; a lock of a process that no longer runs is taken over);
* pretrained weights (paper scale): torchvision's, or ``--weights DIR`` holding
  ``<arch>.pth`` state_dicts (:func:`consis_lib.weights.weights_file`), whose keys
  and shapes must fit the architecture; a classifier head of another class count
  is replaced (a warning), and refused when the normal model trains 0 epochs.

Only then :func:`consis_lib.train.fit` runs; at the end the output's manifest is
updated. Under ``torchrun`` only rank 0 claims and locks the folder.

A profile that reads local folders (``paper``) is trained on ``--data DIR`` (default:
its own ``DataConfig.root``); the absolute folder is part of the run's configuration
(and of its checkpoint's hash), the probe folder is not (training never reads it).

Examples
--------
``consis train --arch resnet18 --profile smoke --out runs/smoke/resnet18/normal``

On N GPUs of one machine (DDP; one process per GPU, per-GPU batch = ``--batch-size``)::

    torchrun --standalone --nproc_per_node=N -m consis_lib train --arch resnet18 --profile paper \\
        --data IMAGENET_DIR --weights WEIGHTS_DIR --out runs/paper/resnet18/seed0/normal
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
from pathlib import Path
from typing import Any

import torch

from consis_lib import checks
from consis_lib.config import Profile, get_profile
from consis_lib.data.imagefolder import IMAGE_EXTENSIONS
from consis_lib.errors import ConsisError
from consis_lib.settings import apply_settings
from consis_lib.models import ARCHS, build_model
from consis_lib.weights import check_pretrained_head
from consis_lib.outputs import check_output_dir, claim_output_dir, output_lock, write_marker, writer_id
from consis_lib.train import CHECKPOINT, LOG, fit

__all__ = ["add_cli", "train_profile", "on_folder", "data_wnids", "check_init", "check_weights", "checkpoint_bytes", "RESUME_HINT"]

log = logging.getLogger(__name__)

RESUME_HINT = "rerun the same command with --resume to continue from the last saved epoch"
_OUTPUT_FILES = (CHECKPOINT, LOG)


def _validate_numbers(args: argparse.Namespace) -> None:
    """One line for the first argument out of range."""
    ints = {"batch_size": (checks.positive_int, 128), "epochs": (checks.nonnegative_int, 10),
            "adv_epochs": (checks.nonnegative_int, 2), "num_workers": (checks.nonnegative_int, 2),
            "seed": (checks.nonnegative_int, 0)}
    for name, (check, example) in ints.items():
        value = getattr(args, name)
        if value is not None:
            check("--" + name.replace("_", "-"), value, example)
    floats = {"lr": (0.0, None, True), "adv_lr": (0.0, None, True), "eps": (0.0, 1.0, True),
              "alpha": (0.0, 1.0, False), "beta": (0.0, None, False)}
    for name, (low, high, low_open) in floats.items():
        value = getattr(args, name)
        if value is not None:
            checks.finite_float("--" + name.replace("_", "-"), value, low, high, low_open=low_open)


def train_profile(args: argparse.Namespace) -> Profile:
    """The profile named by ``--profile`` with the command line's options applied, then
    its ``--set`` settings (:mod:`consis_lib.settings`)."""
    prof = get_profile(args.profile)
    tr: dict[str, Any] = {}
    for name in ("alpha", "beta", "epochs", "adv_epochs", "lr", "adv_lr", "batch_size", "seed", "num_workers"):
        value = getattr(args, name)
        if value is not None:
            tr[name] = value
    if args.from_scratch:
        tr["finetune_from_normal"] = False
    for flag in ("normalize_features", "stop_gradient_clean"):
        if getattr(args, flag):
            tr[flag] = True
    at = {"eps": args.eps} if args.eps is not None else {}
    prof = dataclasses.replace(
        prof, train=dataclasses.replace(prof.train, **tr), attack=dataclasses.replace(prof.attack, **at)
    )
    model: dict[str, Any] = {"arch": args.arch}
    if args.no_pretrained:
        model["pretrained"] = False
    if args.weights is not None:
        model["weights"] = str(Path(args.weights).resolve())
    prof = apply_settings(dataclasses.replace(prof, model=dataclasses.replace(prof.model, **model)), args.set)
    return on_folder(prof, args.data) if prof.data.source == "folder" else prof


def on_folder(prof: Profile, data: str | Path | None) -> Profile:
    """A folder profile set to train on ``data`` (default: its ``DataConfig.root``).

    The absolute folder becomes ``DataConfig.root``; ``probe_root`` is cleared, as
    training never reads the probe, so moving the probe does not retrain a model.
    """
    root = Path(data if data is not None else prof.data.root).resolve()
    return dataclasses.replace(prof, data=dataclasses.replace(prof.data, root=str(root), probe_root=""))


def data_wnids(prof: Profile, data_root: str | Path | None) -> list[str]:
    """The sorted class WNIDs a run will train on, found without reading any image.

    ``data_root`` (or a ``source="folder"`` profile's root) must hold ``train/<wnid>/``
    and ``val/<wnid>/`` with the same class folders; the embedded set's classes come
    from the class table (the set itself is generated later, when missing).
    """
    dcfg = prof.data
    if data_root is None and dcfg.source == "embedded":
        from consis_lib.data.classes import classes_for_profile

        return sorted(c.wnid for c in classes_for_profile(dcfg))
    root = Path(data_root if data_root is not None else dcfg.root)
    folders = {}
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise ConsisError(f"no {split}/ folder in {root}: pass --data DIR holding train/<wnid>/ and val/<wnid>/")
        folders[split] = sorted(p.name for p in (root / split).iterdir() if p.is_dir() and not p.name.startswith("."))
    if folders["train"] != folders["val"]:
        raise ConsisError(f"{root}/train and {root}/val hold different class folders: make them match")
    return folders["train"]


def _read_meta(path: Path) -> dict[str, Any]:
    """A checkpoint's meta, its tensors memory-mapped (not read)."""
    if not path.is_file():
        raise ConsisError(f"no checkpoint at {path}: pass the folder or model.pt of a `consis train` run")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise ConsisError(f"{path} is not a readable consis checkpoint ({exc.__class__.__name__}): retrain it") from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "arch" not in ckpt:
        raise ConsisError(f"{path} is not a consis checkpoint (no arch/state_dict): retrain it")
    return {k: v for k, v in ckpt.items() if k not in ("state_dict", "optimizer", "rng", "scaler")}


def check_init(init: str | Path, prof: Profile, wnids: list[str]) -> dict[str, Any]:
    """Refuse an ``--init`` checkpoint that does not fit this run; returns its meta.

    It must be a normal (not adversarial) model of ``prof.model``'s arch and scale,
    trained at the data's image size on the same classes (``wnids``, sorted).
    """
    path = Path(init)
    path = path / CHECKPOINT if path.is_dir() else path
    meta = _read_meta(path)
    mcfg = prof.model
    if meta["arch"] != mcfg.arch:
        raise ConsisError(
            f"{path} holds arch {meta['arch']}, not {mcfg.arch}: pass a {mcfg.arch} checkpoint or --arch {meta['arch']}"
        )
    if meta.get("scale") != mcfg.scale:
        raise ConsisError(
            f"{path} is a {meta.get('scale')}-scale model, the profile wants {mcfg.scale}: pass a checkpoint of this profile"
        )
    if meta.get("adv"):
        raise ConsisError(
            f"{path} is an adversarial (Eq. 6) model; --init wants the normal model: pass the normal run's folder"
        )
    if mcfg.scale == "small" and meta.get("image_size") != prof.data.image_size:
        raise ConsisError(
            f"{path} was trained on {meta.get('image_size')} px images, the data has {prof.data.image_size} px: "
            "pass a checkpoint of this profile"
        )
    if int(meta.get("num_classes", -1)) != len(wnids):
        raise ConsisError(
            f"{path} was trained for {meta.get('num_classes')} classes, the data has {len(wnids)}: "
            "pass a checkpoint trained on this data"
        )
    diff = [(a, b) for a, b in zip(meta.get("wnids") or wnids, wnids) if a != b]
    if diff:
        raise ConsisError(
            f"{path} was trained on other classes ({len(diff)} differ, e.g. {diff[0][0]} where the data has {diff[0][1]}): "
            "pass a checkpoint trained on this data"
        )
    return meta


def checkpoint_bytes(prof: Profile, num_classes: int) -> int:
    """About the size of one checkpoint: weights and SGD momentum in float32 (model built on the meta device)."""
    m = prof.model
    with torch.device("meta"):
        model = build_model(m.arch, max(num_classes, 2), scale=m.scale, width_divisor=m.width_divisor,
                            image_size=prof.data.image_size)
    return 2 * 4 * sum(p.numel() for p in model.parameters()) + 2**20


def _train_images(prof: Profile, data_root: str | Path | None) -> int:
    """How many training images a run will see (file names counted, nothing decoded)."""
    dcfg = prof.data
    if data_root is None and dcfg.source == "embedded":
        return dcfg.train_per_class * len(data_wnids(prof, None))
    train = Path(data_root if data_root is not None else dcfg.root) / "train"
    return sum(
        1 for d in os.scandir(train) if d.is_dir() and not d.name.startswith(".")
        for f in os.scandir(d.path) if f.name.lower().endswith(IMAGE_EXTENSIONS)
    )


def _check_run(args: argparse.Namespace) -> Profile:
    """Every check that needs no output folder; returns the run's profile."""
    _validate_numbers(args)
    checks.device_present(args.device)
    prof = train_profile(args)
    tcfg, mcfg = prof.train, prof.model
    if args.adv and tcfg.finetune_from_normal and args.init is None and not (mcfg.pretrained and mcfg.scale == "paper"):
        raise ConsisError(
            "adversarial fine-tuning needs the normal model: pass --init DIR of a normal run (or --from-scratch)"
        )
    wnids = data_wnids(prof, args.data)
    images = _train_images(prof, args.data)
    if images < tcfg.batch_size:
        raise ConsisError(
            f"the training set ({images} images) is smaller than one batch of {tcfg.batch_size}: "
            f"pass --batch-size {max(1, images)} or less, or add images"
        )
    if args.init is not None:
        check_init(args.init, prof, wnids)
    check_weights(args, prof, len(wnids))
    need = checkpoint_bytes(prof, len(wnids))
    checks.output_location(args.out)
    checks.free_space(args.out, int(need * 1.1), "a checkpoint")
    return prof


def check_weights(args: argparse.Namespace, prof: Profile, num_classes: int) -> None:
    """Refuse ``--weights`` where no pretrained model is built, and pretrained weights
    that do not fit (:func:`consis_lib.weights.check_pretrained_head`)."""
    mcfg, tcfg = prof.model, prof.train
    if args.weights is not None and not (mcfg.pretrained and mcfg.scale == "paper"):
        raise ConsisError(
            f"--weights needs pretrained torchvision models: profile {prof.name} builds {mcfg.scale}-scale models"
            + (" and --no-pretrained was given" if args.no_pretrained else "")
            + "; drop --weights"
        )
    pretrained_start = args.init is None and (not args.adv or tcfg.finetune_from_normal)
    if pretrained_start:
        check_pretrained_head(mcfg, num_classes, tcfg.adv_epochs if args.adv else tcfg.epochs)


def _cmd_train(args: argparse.Namespace) -> int:
    prof = _check_run(args)
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 owns the folder
        _fit(args, prof)
        return 0
    out = check_output_dir(args.out, "train")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConsisError(f"cannot create {out}: {exc.strerror or exc}; pass an output folder you can write to") from exc
    with output_lock(out, "consis train"):  # before the marker is touched
        claim_output_dir(out, "train", writer_id(__name__), expected=_OUTPUT_FILES)
        _fit(args, prof)
        write_marker(out, "train", writer_id(__name__), expected=_OUTPUT_FILES)
    return 0


def _fit(args: argparse.Namespace, prof: Profile) -> None:
    res = fit(prof, args.out, arch=args.arch, adv=args.adv, data_root=args.data, init=args.init,
              resume=args.resume, device=args.device)
    if res.history:
        last = res.history[-1]
        logging.getLogger("consis").info(
            "%s: val acc %.3f, FGSM acc %.3f -> %s",
            args.arch, last.get("val_acc", math.nan), last.get("val_fgsm_acc", math.nan), res.checkpoint,
        )


def add_cli(sub: Any) -> None:
    """Register ``consis train`` on the ``consis`` sub-parsers."""
    p = sub.add_parser(
        "train",
        help="train a normal or adversarial (Eq. 6) model",
        description="Train AlexNet/VGG-16/ResNet-18 normally or with Eq. 6 (--adv). "
        "On N GPUs: torchrun --standalone --nproc_per_node=N -m consis_lib train ... "
        "(DDP, one process per GPU, per-GPU batch = --batch-size).",
    )
    p.add_argument("--arch", required=True, choices=ARCHS)
    p.add_argument("--profile", default="default", choices=("smoke", "default", "full", "paper"))
    p.add_argument("--adv", action="store_true", help="Eq. 6 adversarial training with the consistent loss")
    p.add_argument("--data", default=None, help="ImageNet-layout folder (train/<wnid>, val/<wnid>)")
    p.add_argument("--out", required=True, help="output folder (model.pt, log.jsonl): new, empty or an earlier run's")
    p.add_argument("--init", default=None, help="checkpoint to start from (the normal model for --adv)")
    p.add_argument("--resume", action="store_true", help="continue OUT/model.pt")
    p.add_argument("--from-scratch", action="store_true", help="--adv without fine-tuning from a normal model")
    p.add_argument("--no-pretrained", action="store_true", help="paper scale: random initial weights")
    p.add_argument("--weights", default=None,
                   help="paper scale: folder of ImageNet state_dicts named <arch>.pth (default: torchvision's weights API)")
    p.add_argument("--normalize-features", dest="normalize_features", action="store_true",
                   help="Eq. 6: compare L2-normalised features (collapse guard)")
    p.add_argument("--stop-gradient-clean", dest="stop_gradient_clean", action="store_true",
                   help="Eq. 6: the clean features are a fixed target (collapse guard)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA if available)")
    p.add_argument("--alpha", type=float, default=None, help="Eq. 6 weight of the clean loss, in [0, 1]")
    p.add_argument("--beta", type=float, default=None, help="Eq. 6 weight of the consistent term, >= 0")
    p.add_argument("--eps", type=float, default=None, help="FGSM eps in (0, 1] pixel units")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--adv-epochs", dest="adv_epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--adv-lr", dest="adv_lr", type=float, default=None)
    p.add_argument("--batch-size", dest="batch_size", type=int, default=None)
    p.add_argument("--num-workers", dest="num_workers", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="change any other setting of the profile (repeatable), e.g. data.image_size=128")
    p.set_defaults(func=_cmd_train, resume_hint=RESUME_HINT)
