"""End-to-end check of the CUDA training path: fit a normal and an Eq. 6 model per arch.

On a GPU, trains each small-scale architecture for a few epochs on a synthetic,
learnable set (class = a colour tint plus noise, 32 px), then fine-tunes it with
Eq. 6, all through :func:`consis_lib.train.fit` (channels_last weights and batches,
autocast, GradScaler where float16). Checks that every epoch's loss is finite, that
the normal model beats chance, and that the checkpoint reloads on the CPU and gives
the CUDA model's predictions. Prints per-arch seconds and accuracies; the last line
is ``gpu_fit_ok=1`` (exit 1 and ``gpu_fit_ok=0`` when a check fails).

Exits with status 2 and a one-line message when CUDA is not available.

Usage: ``python benchmarks/gpu_fit_check.py [--epochs 3] [--per-class 64] [--device cuda]``
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from consis_lib.config import get_profile
from consis_lib.models import ARCHS
from consis_lib.train import fit, load_checkpoint


def tinted(n_per_class: int, classes: int, seed: int, size: int = 32) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    x = 0.5 * torch.rand(len(y), 3, size, size, generator=g)
    x[:, 0] += torch.linspace(0.1, 0.9, classes)[y].view(-1, 1, 1) * 0.5
    return TensorDataset(x.clamp(0, 1), y)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--per-class", type=int, default=64)
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--device", default="cuda", help="cuda (cpu only to try the script itself)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("gpu_fit_check: no CUDA device visible; run this on a machine with an NVIDIA GPU", file=sys.stderr)
        return 2
    base = get_profile("default")
    prof = dataclasses.replace(
        base,
        data=dataclasses.replace(base.data, image_size=32),
        train=dataclasses.replace(base.train, epochs=args.epochs, adv_epochs=1, batch_size=64),
    )
    train_set = tinted(args.per_class, args.classes, seed=0)
    val_set = tinted(args.per_class // 4, args.classes, seed=1)
    data = dict(train_set=train_set, val_set=val_set, device=dev, progress=False)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"device={where} torch={torch.__version__} images={len(train_set)} classes={args.classes}")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ARCHS:
            t0 = time.perf_counter()
            normal = fit(prof, Path(tmp) / arch, arch=arch, **data)
            t1 = time.perf_counter()
            adv = fit(prof, Path(tmp) / f"{arch}-adv", arch=arch, adv=True, init=normal.checkpoint, **data)
            t2 = time.perf_counter()
            logs = normal.history + adv.history
            finite = all(math.isfinite(e["loss"]) for e in logs)
            above_chance = normal.history[-1]["val_acc"] > 2.0 / args.classes
            cpu_model, _ = load_checkpoint(adv.checkpoint)
            x = val_set.tensors[0][:64]
            with torch.no_grad():
                same = bool((cpu_model(x).argmax(1) == adv.model(x.to(dev)).argmax(1).cpu()).float().mean() >= 0.95)
            ok &= finite and above_chance and same
            n, a = normal.history[-1], adv.history[-1]
            print(
                f"{arch}: normal {t1 - t0:.1f}s val {n['val_acc']:.2f} fgsm {n['val_fgsm_acc']:.2f} | "
                f"adv {t2 - t1:.1f}s val {a['val_acc']:.2f} fgsm {a['val_fgsm_acc']:.2f} | "
                f"finite={finite} above_chance={above_chance} cpu_reload_agrees={same}"
            )
    print(f"gpu_fit_ok={int(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
