"""Eq. 4 targeted examples of a validation set, for the ambiguity figure (Fig. 3/4).

The paper shows, per unit, the real images that activate it most and, below them,
the targeted adversarial images (Eq. 4) that activate it most. The target of each
image is the class that WordNet puts farthest from its true class
(:func:`farthest_targets`), so an adversarial image that fires a unit carries
content of a class unrelated to the one the model now sees.

Pipeline
--------
0. Optionally a class-balanced subset of the validation set (:func:`per_class_indices`).
1. :func:`targeted_examples` runs Eq. 4 (:func:`consis_lib.attacks.targeted_attack`)
   on every validation image, batched, and stores the images as 8-bit pixels.
2. The activations of the stored images come from the usual pass,
   ``unit_activations(model, examples.loader(), layer)``.
3. :func:`top_activating` picks each unit's top images (optionally among the
   successful examples only).

:func:`targeted_per_class` runs steps 0-2 on a data set, reading only the chosen
images, batch by batch; :func:`farthest_target_example` runs Eq. 4 on one image.

Success rate
------------
An example *succeeds* when the model classifies the stored (8-bit) image as its
target: ``argmax f(x*) == y*``. The rate is the fraction of successful examples
among all attacked images. It is measured on the stored images because those are
what the figure shows and what the activations are computed on.

Example
-------
>>> ex = targeted_examples(model, images, labels, distances, profile.attack)
>>> ex.success_rate
>>> acts = unit_activations(model, ex.loader(), "layer4")
>>> top_activating(acts.acts, 4, among=ex.success)    # [K, 4] image indices
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from consis_lib.activations import Activations, _split_batch, model_device
from consis_lib.attacks import attack_mode, targeted_attack
from consis_lib.config import AttackConfig
from consis_lib.errors import ConsisError
from consis_lib.layout import channels_last

log = logging.getLogger(__name__)


def farthest_targets(labels: torch.Tensor | np.ndarray, distances: np.ndarray | torch.Tensor) -> torch.Tensor:
    """The Eq. 4 target of each image: the class farthest in WordNet from its true class.

    ``y*_i = argmax_c d(label_i, c)`` with ``d`` the WordNet distance matrix of Eq. 2.
    Ties go to the lowest class index (the first maximum of the row). The true class
    itself is never chosen when ``C >= 2`` (its distance 0 is the row's minimum as
    long as the classes are distinct synsets).

    Parameters
    ----------
    labels : true labels ``[N]`` in ``[0, C)``.
    distances : ``[C, C]`` WordNet distances (:func:`consis_lib.wordnet.distance_matrix`).

    Returns
    -------
    targets : ``[N]`` int64 tensor.

    Example
    -------
    >>> d = np.array([[0, 2, 5], [2, 0, 3], [5, 3, 0]])
    >>> farthest_targets(torch.tensor([0, 1, 2]), d)
    tensor([2, 2, 0])
    """
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1] or d.shape[0] < 2:
        raise ConsisError(f"distances must be a square [C, C] matrix with C >= 2, got shape {d.shape}; pass distance_matrix(wnids)")
    if not np.isfinite(d).all():
        raise ConsisError("distances contain NaN or inf; pass the finite WordNet distance_matrix(wnids)")
    y = torch.as_tensor(labels).long().reshape(-1)
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= d.shape[0]):
        raise ConsisError(f"labels span [{int(y.min())}, {int(y.max())}] outside [0, {d.shape[0]}); pass the matching distance matrix")
    row_target = torch.from_numpy(np.argmax(d, axis=1)).long()  # argmax returns the first maximum
    return row_target[y]


class _Uint8Images(Dataset):
    """``(x [3, H, W] float in [0, 1], label)`` items read from 8-bit pixels."""

    def __init__(self, pixels: torch.Tensor, labels: torch.Tensor) -> None:
        self.pixels, self.labels = pixels, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pixels[i].float() / 255.0, self.labels[i]


@dataclass(frozen=True)
class TargetedExamples:
    """Eq. 4 examples of an image set (:func:`targeted_examples`); tensors on the CPU.

    Attributes
    ----------
    x_adv : ``[N, 3, H, W]`` uint8, the adversarial images as 8-bit pixels
        (``x* = x_adv / 255``); 4x smaller than float32.
    labels : ``[N]`` int64, true labels of the source images.
    targets : ``[N]`` int64, the targets ``y*`` (WordNet-farthest classes).
    preds : ``[N]`` int64, ``argmax f(x_adv / 255)``.
    success : ``[N]`` bool, ``preds == targets``.
    l2 : ``[N]`` float32, ``||x_adv / 255 - x||_2``.
    steps : ``[N]`` int64, Adam steps each image received.
    """

    x_adv: torch.Tensor
    labels: torch.Tensor
    targets: torch.Tensor
    preds: torch.Tensor
    success: torch.Tensor
    l2: torch.Tensor
    steps: torch.Tensor

    @property
    def success_rate(self) -> float:
        """Fraction of examples with ``argmax f(x*) == y*`` (module docstring; NaN if empty)."""
        return float(self.success.float().mean()) if len(self.success) else float("nan")

    def images(self, index: torch.Tensor | list[int] | None = None) -> torch.Tensor:
        """The examples (all, or those at ``index``) as float ``[n, 3, H, W]`` in [0, 1]."""
        x = self.x_adv if index is None else self.x_adv[torch.as_tensor(index, dtype=torch.long)]
        return x.float() / 255.0

    def loader(self, batch_size: int = 128) -> DataLoader:
        """Unshuffled ``(x [B, 3, H, W] in [0, 1], label [B])`` batches, e.g. for
        :func:`consis_lib.activations.unit_activations`; labels are the true ones."""
        return DataLoader(_Uint8Images(self.x_adv, self.labels), batch_size=batch_size, shuffle=False)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x.detach().float() * 255.0).round_().clamp_(0, 255).to(torch.uint8)


def _batches(
    images: torch.Tensor | Iterable, labels: torch.Tensor | None, batch_size: int
) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(images, torch.Tensor):
        if labels is None or images.dim() != 4 or len(labels) != len(images):
            raise ConsisError(
                f"images {tuple(images.shape)} need [N, 3, H, W] with labels [N]; pass both tensors, or a loader of (x, y) batches and labels=None"
            )
        labels = torch.as_tensor(labels).long()
        return [(images[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    if labels is not None:
        raise ConsisError("labels are given twice; with a loader of (x, y) batches pass labels=None")
    return images


def targeted_examples(
    model: nn.Module,
    images: torch.Tensor | Iterable,
    labels: torch.Tensor | None,
    distances: np.ndarray,
    cfg: AttackConfig,
    batch_size: int = 128,
    progress: bool = True,
    stop_on_success: bool = False,
) -> TargetedExamples:
    """Eq. 4 targeted adversarial example of every image, target = the WordNet-farthest class.

    ``x* = argmin ||x* - x||_2^2 + lambda * CE(f(x*), y*)`` in [0, 1] with
    ``y* = farthest_targets(y, distances)``, solved batched by
    :func:`consis_lib.attacks.targeted_attack` with ``cfg.targeted_lambda``,
    ``cfg.targeted_steps`` and ``cfg.targeted_lr``, on the model's device.

    Parameters
    ----------
    model : classifier on [0,1] images.
    images : images ``[N, 3, H, W]`` in [0, 1] (with ``labels``), or an iterable of
        ``(x [B, 3, H, W], y [B])`` batches (with ``labels=None``; ``batch_size`` unused).
    labels : true labels ``[N]`` for an image tensor, else ``None``.
    distances : ``[C, C]`` WordNet distances between the classes.
    cfg : AttackConfig (the ``targeted_*`` fields).
    batch_size : images per Eq. 4 batch for an image tensor.
    progress : show a tqdm bar.
    stop_on_success : stop each image at its first successful iterate
        (see :func:`~consis_lib.attacks.targeted_attack`); faster, but not the
        minimiser after ``targeted_steps`` iterations.

    Returns
    -------
    TargetedExamples (uint8 images, targets, predictions, success mask, L2 norms);
    ``success`` and ``success_rate`` are measured on the stored 8-bit images.

    Example
    -------
    >>> ex = targeted_examples(model, xs, ys, ctx.distances(), profile.attack, batch_size=128)
    >>> ex.x_adv.shape, ex.success_rate
    """
    if batch_size < 1:
        raise ConsisError(f"batch_size must be >= 1, got {batch_size}")
    dev = model_device(model)
    out: dict[str, list[torch.Tensor]] = {k: [] for k in ("x_adv", "labels", "targets", "preds", "l2", "steps")}
    for batch in tqdm(_batches(images, labels, batch_size), desc="Eq. 4 targeted examples", disable=not progress, leave=False):
        x, y = _split_batch(batch)
        if y is None:
            raise ConsisError("the loader yielded images without labels; Eq. 4 needs (x, y) batches")
        x, y = x.to(dev), y.to(dev).long()
        t = farthest_targets(y.cpu(), distances).to(dev)
        res = targeted_attack(model, x, t, cfg.targeted_lambda, cfg.targeted_steps, cfg.targeted_lr, stop_on_success)
        xq = _to_uint8(res.x_adv)
        xs = xq.float() / 255.0
        with attack_mode(model), torch.no_grad():
            pred = model(channels_last(xs)).argmax(1)
        parts = dict(x_adv=xq, labels=y, targets=t, preds=pred, l2=(xs - x).flatten(1).norm(dim=1), steps=res.steps)
        for k, v in parts.items():
            out[k].append(v.cpu())
    if not out["labels"]:
        raise ConsisError("no images to attack; check the data folder or the split name")
    cat = {k: torch.cat(v) for k, v in out.items()}
    ex = TargetedExamples(success=cat["preds"] == cat["targets"], **cat)
    log.info("Eq. 4 targeted examples: %d images, success rate %.3f", len(ex.labels), ex.success_rate)
    return ex


def per_class_indices(labels: torch.Tensor | np.ndarray, per_class: int) -> torch.Tensor:
    """Indices of the first ``per_class`` images of every class, in ascending order.

    A class-balanced subset of a validation set (whose images are usually sorted by
    class) to attack with Eq. 4 when attacking all of them costs too much; a class
    with fewer images contributes all it has.

    Example
    -------
    >>> per_class_indices(torch.tensor([0, 0, 0, 1, 1, 2]), 2)
    tensor([0, 1, 3, 4, 5])
    """
    if per_class < 1:
        raise ConsisError(f"per_class must be >= 1, got {per_class}")
    y = torch.as_tensor(labels).long().reshape(-1)
    order = torch.argsort(y, stable=True)
    sorted_y = y[order]
    first = torch.searchsorted(sorted_y, sorted_y)  # position of each class's first image
    rank = torch.arange(len(y)) - first
    return order[rank < per_class].sort().values


def top_activating(acts: torch.Tensor, k: int, among: torch.Tensor | None = None) -> torch.Tensor:
    """Indices of the ``k`` images with the largest activation, per unit, best first.

    Ties keep the lower image index first (stable sort). With ``among`` (a bool mask
    over the images, e.g. ``TargetedExamples.success``) only those images compete;
    fewer than ``k`` of them give fewer columns.

    Parameters
    ----------
    acts : ``[N]`` (one unit) or ``[N, K]`` activations ``a_n(x)``.
    k : how many images per unit (>= 1).
    among : optional ``[N]`` bool mask of the eligible images.

    Returns
    -------
    ``[min(k, n)]`` for ``[N]`` input, ``[K, min(k, n)]`` for ``[N, K]``, int64 indices
    into the N images (``n`` = number of eligible images).

    Example
    -------
    >>> top_activating(torch.tensor([[1.0, 5.0], [3.0, 5.0], [2.0, 0.0]]), 2)
    tensor([[1, 2],
            [0, 1]])
    """
    a = torch.as_tensor(acts)
    if a.dim() not in (1, 2) or k < 1:
        raise ConsisError(f"top_activating needs activations [N] or [N, K] and k >= 1, got {tuple(a.shape)} and k={k}")
    idx = torch.arange(a.shape[0])
    if among is not None:
        mask = torch.as_tensor(among, dtype=torch.bool).reshape(-1)
        if mask.shape[0] != a.shape[0]:
            raise ConsisError(f"among has {mask.shape[0]} entries for {a.shape[0]} images; pass one flag per image")
        idx = idx[mask]
        a = a[mask]
    order = torch.argsort(a, dim=0, descending=True, stable=True)[:k]
    return idx[order].t().contiguous() if a.dim() == 2 else idx[order]


def targeted_per_class(
    model: nn.Module,
    dataset: Dataset,
    labels: torch.Tensor,
    per_class: int,
    distances: np.ndarray,
    cfg: AttackConfig,
    layer: str,
    reduce: str = "max",
    batch_size: int = 128,
) -> tuple[TargetedExamples, Activations]:
    """Eq. 4 examples of the first ``per_class`` images of every class, and ``a_n`` on them.

    The images are read from ``dataset`` (``labels [N]`` are its labels, known without
    decoding) ``batch_size`` at a time; each stops at its first successful step
    (``stop_on_success``). Returns ``(examples, activations of the stored images)``.

    Example
    -------
    >>> ex, acts = targeted_per_class(model, val, labels, 4, distances, profile.attack, "layer4")
    >>> top_activating(acts.acts, 4, among=ex.success)
    """
    from torch.utils.data import Subset

    from consis_lib.activations import unit_activations

    chosen = DataLoader(Subset(dataset, per_class_indices(labels, per_class).tolist()), batch_size=batch_size)
    ex = targeted_examples(model, chosen, None, distances, cfg, progress=False, stop_on_success=True)
    acts = unit_activations(model, ex.loader(batch_size), layer, reduce=reduce, progress=False)
    return ex, acts


def farthest_target_example(model: nn.Module, x: torch.Tensor, y: int, distances: np.ndarray, cfg: AttackConfig) -> dict[str, object]:
    """Eq. 4 on one image ``x [3, H, W]`` of class ``y``, target = the class WordNet puts farthest.

    Runs ``cfg.targeted_steps`` Adam steps (no early stop). Returns ``x``, ``x_adv``
    (CPU), class indices ``label``, ``target``, ``pred_before``, ``pred_after``, the
    L2 distance and ``success`` (``pred_after == target``).
    """
    from consis_lib.attacks import targeted_l2

    dev = model_device(model)
    target = int(farthest_targets(torch.tensor([y]), distances)[0])
    xb = x[None].to(dev)
    x_adv = targeted_l2(model, xb, torch.tensor([target], device=dev), cfg.targeted_lambda, cfg.targeted_steps, cfg.targeted_lr)
    with attack_mode(model), torch.no_grad():
        before, after = (int(model(v).argmax(1)) for v in (xb, x_adv))
    x_adv = x_adv[0].cpu()
    return dict(
        x=x, x_adv=x_adv, label=y, target=target, pred_before=before, pred_after=after,
        l2=float((x_adv - x).norm()), success=after == target,
    )
