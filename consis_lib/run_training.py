"""The models of one (architecture, seed) for ``reproduce``: which to train
(:func:`model_plan`: normal, the AT control, Eq. 6 and the study variants) and how
(in this process, or under ``torchrun`` with one process per visible GPU).
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from consis_lib.config import Profile, get_profile
from consis_lib.context import RunPaths
from consis_lib.errors import ConsisError
from consis_lib.settings import settings_between

LOG = logging.getLogger(__name__)


def model_plan(profile: Profile, arch: str, seed: int) -> list[tuple[str, Profile, bool]]:
    """The models of one (arch, seed): ``(name, profile to train it with, adv)`` in training order.

    ``normal`` (cross-entropy); ``at``: the Eq. 6 schedule with beta = 0, the control
    (same code path, :func:`consis_lib.train.eq6_backward`); ``adv``: Eq. 6; then the
    study variants when ``arch`` is the profile's ``study.study_arch`` and ``seed`` its first seed.
    """
    base = dataclasses.replace(profile, train=dataclasses.replace(profile.train, seed=seed))
    plan = [("normal", base, False), ("at", with_train(base, beta=0.0), True), ("adv", base, True)]
    if arch == profile.study.study_arch and seed == profile.study.seeds[0]:
        for v in profile.study.variants:
            variant = with_train(
                base, beta=base.train.beta * v.beta_factor,
                normalize_features=v.normalize_features, stop_gradient_clean=v.stop_gradient_clean,
                finetune_from_normal=v.finetune_from_normal,
            )
            plan.append((v.name, variant, True))
    return plan


def with_train(profile: Profile, **changes: Any) -> Profile:
    """``profile`` with some :class:`~consis_lib.config.TrainConfig` fields replaced."""
    return dataclasses.replace(profile, train=dataclasses.replace(profile.train, **changes))


def gpu_count() -> int:
    """How many CUDA devices this process sees (``CUDA_VISIBLE_DEVICES`` applies)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def train_models(
    profile: Profile, arch: str, seed: int, data_root: Path, paths: RunPaths, device: str | None = None, nproc: int = 1
) -> dict[str, Path]:
    """Train every model of :func:`model_plan` (adversarial ones fine-tune the normal one).

    A checkpoint is reused only when its stored config hash equals this run's
    (``fit(resume=True)`` checks it); any other checkpoint is retrained from the start.
    With ``nproc > 1`` each model is trained by ``consis train`` under torchrun
    (:func:`torchrun_fit`) at a per-GPU batch of the profile's batch size / ``nproc``.

    Returns
    -------
    model name -> its ``model.pt``.
    """
    from consis_lib.train import CHECKPOINT
    from consis_lib.train_cli import on_folder

    if profile.data.source == "folder":
        profile = on_folder(profile, data_root)
    if nproc > 1:
        profile = with_train(profile, batch_size=max(1, profile.train.batch_size // nproc))
    ckpts: dict[str, Path] = {}
    for name, prof, adv in model_plan(profile, arch, seed):
        out = paths.checkpoint_dir(arch, name, seed)
        init = ckpts["normal"] if adv and prof.train.finetune_from_normal else None
        if nproc > 1:
            torchrun_fit(train_argv(prof, arch, adv, data_root, out, init), out, nproc)
        else:
            fit_here(prof, arch, adv, data_root, out, init, device)
        ckpts[name] = out / CHECKPOINT
    return ckpts


def fit_here(
    prof: Profile, arch: str, adv: bool, data_root: Path, out: Path, init: Path | None, device: str | None
) -> None:
    """Train one model in this process, holding ``out``'s lock; a checkpoint of
    another configuration is retrained from the start."""
    from consis_lib.outputs import claim_output_dir, output_lock, write_marker, writer_id
    from consis_lib.train import CHECKPOINT, fit
    from consis_lib.train import LOG as TRAIN_LOG

    files = (CHECKPOINT, TRAIN_LOG)
    kw = dict(arch=arch, adv=adv, data_root=data_root, init=init, device=device, progress=False)
    claim_output_dir(out, "train", writer_id(__name__), expected=files)
    with output_lock(out, "consis reproduce"):
        try:
            fit(prof, out, resume=(out / CHECKPOINT).is_file(), **kw)
        except ConsisError as exc:
            if "another configuration" not in str(exc):
                raise
            LOG.info("%s: config changed, retraining from scratch", out)
            fit(prof, out, resume=False, **kw)
        write_marker(out, "train", writer_id(__name__), expected=files)


_TRAIN_OPTIONS = ("alpha", "beta", "epochs", "adv_epochs", "lr", "adv_lr", "batch_size", "seed", "num_workers")


def train_argv(prof: Profile, arch: str, adv: bool, data_root: Path, out: Path, init: Path | None) -> list[str]:
    """``consis train`` arguments that rebuild ``prof`` exactly: its options, then
    ``--set`` for whatever else differs from the named profile.

    Raises ConsisError when the command line cannot express ``prof`` (checked with
    the command's own parser and :func:`consis_lib.train_cli.train_profile`).
    """
    from consis_lib.cli import build_parser
    from consis_lib.train_cli import train_profile

    base = get_profile(prof.name)
    argv = ["train", "--profile", prof.name, "--arch", arch, "--data", str(data_root), "--out", str(out)]
    for name in _TRAIN_OPTIONS:
        if getattr(prof.train, name) != getattr(base.train, name):
            argv += ["--" + name.replace("_", "-"), repr(getattr(prof.train, name))]
    if prof.attack.eps != base.attack.eps:
        argv += ["--eps", repr(prof.attack.eps)]
    switches = {
        "--adv": adv, "--from-scratch": not prof.train.finetune_from_normal,
        "--normalize-features": prof.train.normalize_features, "--stop-gradient-clean": prof.train.stop_gradient_clean,
        "--no-pretrained": base.model.pretrained and not prof.model.pretrained,
    }
    argv += [flag for flag, on in switches.items() if on]
    argv += ["--weights", prof.model.weights] if prof.model.weights else []
    argv += ["--init", str(init)] if init is not None else []
    want = dataclasses.replace(prof, model=dataclasses.replace(prof.model, arch=arch))
    for setting in settings_between(train_profile(build_parser().parse_args(argv)), want):
        argv += ["--set", setting]
    if train_profile(build_parser().parse_args(argv)) != want:
        raise ConsisError(f"`consis train` options cannot express the configuration of {out}: train it on one GPU")
    return argv


def torchrun_fit(argv: Sequence[str], out: Path, nproc: int) -> None:
    """Run ``consis train`` under torchrun on ``nproc`` processes; a checkpoint in
    ``out`` is resumed, or retrained from the start when its configuration differs."""
    from consis_lib.train import CHECKPOINT

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "consis_lib", *argv]
    resume = (out / CHECKPOINT).is_file()
    proc = subprocess.run(cmd + ["--resume"] * resume, capture_output=True, text=True)
    if proc.returncode != 0 and resume and "another configuration" in proc.stderr:
        LOG.info("%s: config changed, retraining from scratch", out)
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.splitlines()
        reason = next((ln for ln in reversed(lines) if "consis: error:" in ln), lines[-1] if lines else "no output")
        raise ConsisError(f"torchrun training of {out} failed (exit {proc.returncode}): {reason.strip()}")
