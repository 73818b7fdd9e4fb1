"""Training data: the datasets of a run, their DataLoaders and the batch augmentation.

A run builds its DataLoaders once (:func:`train_loader`, :func:`eval_loader`): with
``num_workers > 0`` the worker processes persist across epochs, batches are pinned
when the device is CUDA, and iterating never draws from the global RNG (dropout's),
so a resumed run sees the same random numbers as an uninterrupted one. The epoch's
shuffle comes from the sampler (``seed + epoch``), the augmentation from a generator
seeded per epoch; both are independent of the worker count.

Example
-------
>>> train, val, wnids = load_datasets(get_profile("smoke").data)
>>> loader = train_loader(train, batch_size=32, num_workers=0, seed=0, device="cpu")
>>> loader.sampler.set_epoch(0)
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, TensorDataset

from consis_lib.cache import cache_root
from consis_lib.config import DataConfig
from consis_lib.errors import ConsisError

_PRELOAD_MAX_ELEMENTS = 400_000_000  # preload data sets below ~1.6 GB of float32


def load_datasets(
    dcfg: DataConfig, data_root: str | Path | None = None, cache: Path | None = None
) -> tuple[Dataset, Dataset, list[str]]:
    """Train and val datasets (ImageNet layout, WNID folders) and the class WNIDs.

    ``data_root`` overrides the profile; otherwise the embedded set is generated
    (or found) under ``cache`` for ``source="embedded"``, or ``dcfg.root`` is read.
    Images are resized and centre-cropped to ``dcfg.image_size``; at 224 px (the
    paper profile) with torchvision's evaluation transform, the shorter side resized
    to 256 first (:func:`consis_lib.data.imagefolder.resize_for`).
    """
    from consis_lib.data.imagefolder import WnidImageFolder, resize_for

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
    train = WnidImageFolder(root, "train", image_size=size, resize_size=resize_for(size))
    val = WnidImageFolder(root, "val", image_size=size, resize_size=resize_for(size))
    if list(train.wnids) != list(val.wnids):
        raise ConsisError(f"{root}/train and {root}/val hold different class folders: make them match")
    return train, val, list(train.wnids)


def preload(ds: Dataset, num_workers: int) -> Dataset:
    """Materialise a small dataset as a TensorDataset (fast epochs, exact resume)."""
    if isinstance(ds, TensorDataset) or len(ds) == 0:  # type: ignore[arg-type]
        return ds
    x0, _ = ds[0]
    if len(ds) * x0.numel() > _PRELOAD_MAX_ELEMENTS:  # type: ignore[arg-type]
        return ds
    xs, ys = [], []
    for x, y in DataLoader(ds, batch_size=256, num_workers=usable_workers(num_workers)):
        xs.append(x)
        ys.append(torch.as_tensor(y))
    return TensorDataset(torch.cat(xs), torch.cat(ys).long())


def max_label(ds: Dataset) -> int:
    """The largest label of a dataset (its class count less one when all occur)."""
    if isinstance(ds, TensorDataset):
        return int(ds.tensors[1].max())
    targets = getattr(ds, "targets", None)
    if targets is not None:
        return int(max(targets))
    return int(max(int(y) for _, y in ds))  # type: ignore[attr-defined]


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
    return Subset(val_set, [int(i * step) for i in range(limit)])


def usable_workers(num_workers: int) -> int:
    """``num_workers`` capped at the CPU cores this process may use: more workers than
    cores only compete for them. Results do not depend on the count (workers only
    decode; random augmentation runs in the main process)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(0, min(num_workers, cores))


def _loader(ds: Dataset, batch_size: int, num_workers: int, device: str | torch.device, **kw: object) -> DataLoader:
    """A DataLoader with persistent workers, pinned batches for CUDA and its own RNG."""
    num_workers = usable_workers(num_workers)
    return DataLoader(
        ds,
        batch_size=batch_size,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.device(device).type == "cuda",
        generator=torch.Generator(),  # worker seeds; the global RNG stays untouched
        **kw,  # type: ignore[arg-type]
    )


def train_loader(
    ds: Dataset, batch_size: int, num_workers: int, seed: int, device: str | torch.device,
    rank: int = 0, world: int = 1,
) -> DataLoader:
    """The training batches of a run: full batches of a shuffle seeded by ``seed + epoch``.

    Call ``loader.sampler.set_epoch(epoch)`` before each epoch. Under torchrun each
    of the ``world`` processes reads its own share (``rank``) of the shuffle.
    """
    sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=seed)
    loader = _loader(ds, batch_size, num_workers, device, sampler=sampler, drop_last=True)
    if len(loader) == 0:
        raise ConsisError(
            f"the training set ({len(ds)} images) is smaller than one batch of {batch_size}: "  # type: ignore[arg-type]
            "lower batch_size or add images"
        )
    return loader


def eval_loader(ds: Dataset, batch_size: int, num_workers: int, device: str | torch.device) -> DataLoader:
    """The batches of an evaluation set in order (no shuffle, last batch kept)."""
    return _loader(ds, batch_size, num_workers, device)


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
