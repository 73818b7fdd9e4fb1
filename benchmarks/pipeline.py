"""Does the input pipeline keep the GPU fed? Eq. 6 fine-tuning read from JPEG files vs in memory.

End-to-end: paper-scale Eq. 6 fine-tuning (:func:`consis_lib.train.train_one_epoch`,
one :func:`consis_lib.train.eq6_backward` step per batch) reading JPEG files from an
ImageNet-layout folder through the project's training DataLoader
(:func:`consis_lib.loaders.train_loader`: persistent workers, as many as the paper
profile configures, pinned batches on CUDA, resize 256 / centre crop 224 with
drafted JPEG decoding). Model only: the same epoch loop, model and step on the same
batches already on the device. Both are timed alternately in one run after a
warm-up epoch; the last line is ``pipeline_over_model=R``, the end-to-end images/s
over the model-only images/s (median of adjacent pairs). Goal: R >= 0.8 on one
NVIDIA GPU with 16 CPU cores (defaults below). On a CPU the model is so slow that
R is near 1 whatever the pipeline does.

The images are generated into a temporary folder: smooth random colour fields with
grain, 300-500 px a side (about ImageNet's sizes), spread over a few ImageNet
classes. The model is torchvision's architecture at random weights, 1000 classes.

Usage: ``python benchmarks/pipeline.py [--device cuda] [--arch resnet18] [--batches 20]
[--batch-size 128] [--workers 8] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from consis_lib.config import Profile, get_profile
from consis_lib.loaders import load_datasets, train_loader
from consis_lib.train import train_one_epoch
from consis_lib.train_setup import Run, RunData, distributed, plan_run, start_run

WNIDS = ("n01440764", "n02102040", "n02979186", "n03000684")  # tench, springer, cassette player, chain saw


def write_jpegs(root: Path, images: int, seed: int = 0) -> None:
    """``root/{train,val}/<wnid>/*.JPEG``: ``images`` training images, one val image per class."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", images), ("val", len(WNIDS))):
        for i in range(n):
            folder = root / split / WNIDS[i % len(WNIDS)]
            folder.mkdir(parents=True, exist_ok=True)
            w, h = (int(v) for v in rng.integers(300, 501, 2))
            coarse = rng.integers(0, 256, (h // 32 + 2, w // 32 + 2, 3), dtype=np.uint8)
            field = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BILINEAR), np.float32)
            grain = rng.normal(0.0, 6.0, (h, w, 3)).astype(np.float32)
            Image.fromarray((field + grain).clip(0, 255).astype(np.uint8)).save(folder / f"{i:06d}.JPEG", quality=90)


def paper_profile(arch: str, batch_size: int, workers: int) -> Profile:
    """The paper profile for Eq. 6 at random weights (no pretrained model to fine-tune)."""
    base = get_profile("paper")
    train = dataclasses.replace(base.train, batch_size=batch_size, num_workers=workers, epochs=1,
                                finetune_from_normal=False)
    model = dataclasses.replace(base.model, arch=arch, pretrained=False)
    return dataclasses.replace(base, train=train, model=model)


class InMemory:
    """Batches already on the device, iterated like the training DataLoader."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.batches = batches
        self.sampler = SimpleNamespace(set_epoch=lambda epoch: None)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(self.batches)


def timed_epoch(run: Run, loader: object, epoch: int) -> float:
    """Seconds of one :func:`train_one_epoch` over ``loader``."""
    sync = torch.cuda.synchronize if run.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    train_one_epoch(run, loader, epoch, progress=False)  # type: ignore[arg-type]
    sync()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--batches", type=int, default=20, help="batches per timed epoch")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=get_profile("paper").train.num_workers)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    prof = paper_profile(args.arch, args.batch_size, args.workers)
    plan = plan_run(prof, None, adv=True, init=None)
    with tempfile.TemporaryDirectory() as tmp, distributed(args.device) as (_, _, dev):
        root = Path(tmp) / "imagenet"
        write_jpegs(root, args.batches * args.batch_size)
        train, val, wnids = load_datasets(dataclasses.replace(prof.data, root=str(root)))
        run = start_run(plan, RunData(train, val, wnids, 224, 1000), Path(tmp) / "run", None, False, dev)
        loader = train_loader(train, args.batch_size, args.workers, seed=0, device=dev)
        kept = [(x.to(dev), y.to(dev)) for x, y in loader]  # also starts the workers
        memory = InMemory(kept)
        timed_epoch(run, memory, 0)  # warm-up of the model side
        pipe, model, ratios = [], [], []
        for i in range(args.repeats):  # adjacent pairs, alternating which runs first
            if i % 2 == 0:
                p = timed_epoch(run, loader, 2 * i + 1)
                m = timed_epoch(run, memory, 2 * i + 2)
            else:
                m = timed_epoch(run, memory, 2 * i + 1)
                p = timed_epoch(run, loader, 2 * i + 2)
            pipe.append(p)
            model.append(m)
            ratios.append(m / p)
    n = args.batches * args.batch_size
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu threads={torch.get_num_threads()}"
    print(f"arch={args.arch} batch={args.batch_size} batches={args.batches} workers={args.workers} "
          f"cpus={os.cpu_count()} device={where} torch={torch.__version__}")
    print(f"pipeline_img_per_s={n / statistics.median(pipe):.3g} model_img_per_s={n / statistics.median(model):.3g}")
    print(f"pipeline_over_model={statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
