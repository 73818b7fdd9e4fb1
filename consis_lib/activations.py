"""Per-unit activations of one layer over a data set (the input of Eq. 1), in one streaming pass.

A *unit* (neuron) is one channel of a conv layer. Its activation on an image is
the spatial maximum of the channel's map (DESIGN section 2; the spatial mean is an
option). One pass over a loader gives the ``[N, K]`` activation table, the labels,
the model's predictions and, optionally, the same quantities for adversarial
counterparts of every image, so ``consis`` and ``consis_adv`` come from one pass.
Per-unit top images come from a running merge (:class:`RunningTopK`), and the
maps of the few images a figure shows from a second pass over just those images
(:func:`unit_map`, :func:`layer_maps`).

Memory
------
With ``N`` images, ``K`` units, batches of ``B`` images of ``3 x H x W`` and layer
maps of ``K x h x w``, the peak of :func:`unit_activations` is

* growing with ``N``, the per-unit tables only: ``acts`` and ``adv_acts``
  (float32, ``4 K`` bytes per image each) and ``labels``, ``preds``, ``adv_preds``
  (int64, 24 bytes per image): ``8 K + 24`` bytes per image, held twice for a moment
  while the per-batch pieces are concatenated at the end;
* independent of ``N``: the model's weights; one batch of images (``12 B H W`` bytes
  for ``x``, as many for ``x*`` and for FGSM's input gradient); the layer's maps
  of one batch (``4 B K h w`` bytes) and the forward and backward activations of one
  batch; what the loader prefetches (``num_workers x prefetch_factor`` batches).

Paper scale (ImageNet val, N = 50,000; VGG-16 ``features.29``, K = 512): the tables
take 50,000 x (8 x 512 + 24) bytes = 206 MB (412 MB during the final
concatenation); the images themselves (30 GB as float32) are never all in memory.
:class:`RunningTopK` keeps ``K x (k + B)`` values and indices (12 bytes each).

Example
-------
>>> from consis_lib.activations import unit_activations, fgsm_attack
>>> res = unit_activations(model, loader, "layer4", attack=fgsm_attack(8 / 255))
>>> res.acts.shape, res.adv_acts.shape   # [N, K] each
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from consis_lib.errors import ConsisError
from consis_lib.hooks import capture
from consis_lib.layout import channels_last

log = logging.getLogger(__name__)

#: ``attack(model, x, y) -> x_adv``: images in [0, 1] in and out; ``y`` may be
#: ``None`` where the data carry no class labels (the dissection probe).
AttackFn = Callable[[nn.Module, torch.Tensor, "torch.Tensor | None"], torch.Tensor]

REDUCTIONS = ("max", "mean")


@dataclass
class Activations:
    """Result of :func:`unit_activations` (all tensors on the CPU).

    Attributes
    ----------
    acts : Tensor [N, K] float32, ``a_n(x)`` per image and unit.
    labels : Tensor [N] int64, the images' class labels.
    preds : Tensor [N] int64, the model's predicted class per image.
    adv_acts : Tensor [N, K] or None, ``a_n(x*)`` of the adversarial counterparts.
    adv_preds : Tensor [N] or None, predictions on the adversarial counterparts.
    layer : the layer name the activations come from.
    reduce : ``"max"`` or ``"mean"``.
    """

    acts: torch.Tensor
    labels: torch.Tensor
    preds: torch.Tensor
    adv_acts: torch.Tensor | None = None
    adv_preds: torch.Tensor | None = None
    layer: str = ""
    reduce: str = "max"

    @property
    def accuracy(self) -> float:
        """Top-1 accuracy on the clean images."""
        return float((self.preds == self.labels).float().mean()) if len(self.labels) else float("nan")

    @property
    def adv_accuracy(self) -> float | None:
        """Top-1 accuracy on the adversarial counterparts (None without an attack)."""
        if self.adv_preds is None:
            return None
        return float((self.adv_preds == self.labels).float().mean()) if len(self.labels) else float("nan")

    def state(self) -> dict[str, Any]:
        """The fields as a dict of tensors and strings (``Activations(**state)`` rebuilds it)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def reduce_maps(maps: torch.Tensor, reduce: str = "max") -> torch.Tensor:
    """Spatial reduction of feature maps ``[B, K, h, w] -> [B, K]``.

    ``"max"`` is the activation of DESIGN section 2; ``"mean"`` the option.
    A ``[B, K]`` input (a fully connected layer) is returned unchanged.

    Example
    -------
    >>> reduce_maps(torch.arange(8.).view(1, 2, 2, 2))
    tensor([[3., 7.]])
    """
    if reduce not in REDUCTIONS:
        raise ConsisError(f"activation reduce={reduce!r} is not supported; use one of {REDUCTIONS}")
    if maps.dim() == 2:
        return maps
    if maps.dim() != 4:
        raise ConsisError(f"layer output has shape {tuple(maps.shape)}; expected [B, K, h, w] from a conv layer")
    return maps.amax(dim=(2, 3)) if reduce == "max" else maps.mean(dim=(2, 3))


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for an empty model)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _split_batch(batch: object) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        y = batch[1] if len(batch) > 1 else None
        if y is not None and not isinstance(y, torch.Tensor):
            y = torch.as_tensor(y)
        return batch[0], y
    raise ConsisError(
        f"loader yielded {type(batch).__name__}; expected (images [B,3,H,W], labels [B]) batches"
    )


def _batches(loader: Iterable, dev: torch.device, desc: str, progress: bool) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """``(x on dev in channels_last, y on the CPU; -1 where the data carry no labels)`` per batch."""
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
        x, y = _split_batch(batch)
        x = channels_last(x.to(dev, non_blocking=True))
        yield x, torch.full((x.shape[0],), -1, dtype=torch.long) if y is None else y.cpu().long()


def unit_activations(
    model: nn.Module,
    loader: Iterable,
    layer: str,
    reduce: str = "max",
    device: torch.device | str | None = None,
    attack: AttackFn | None = None,
    progress: bool = True,
) -> Activations:
    """Activations ``a_n(x)`` of every unit of ``layer`` on every image of ``loader``.

    Parameters
    ----------
    model : the network; inputs are [0, 1] images (normalisation is inside).
    loader : iterable of ``(x [B,3,H,W] in [0,1], y [B])`` batches, read once.
    layer : dotted module name (see :func:`consis_lib.models.metric_layer`).
    reduce : ``"max"`` (spatial max, the default of DESIGN section 2) or ``"mean"``.
    device : where to run; default the model's device. Results come back on the CPU.
    attack : optional ``attack(model, x, y) -> x_adv``; when given, the same pass
        also scores the adversarial counterpart of every image (``consis_adv``).
    progress : show a tqdm bar.

    Returns
    -------
    Activations with ``acts [N, K]``, ``labels [N]``, ``preds [N]`` and, with an
    attack, ``adv_acts [N, K]`` and ``adv_preds [N]``. Peak memory: see the module
    docstring (only these tables grow with ``N``).

    The model is put in eval mode for the pass and its mode restored afterwards;
    no hook outlives the call.

    Example
    -------
    >>> res = unit_activations(model, loader, "layer4")
    >>> res.acts.shape
    torch.Size([N, K])
    """
    if reduce not in REDUCTIONS:
        raise ConsisError(f"activation reduce={reduce!r} is not supported; use one of {REDUCTIONS}")
    dev = torch.device(device) if device is not None else model_device(model)
    was_training = model.training
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("acts", "labels", "preds", "adv_acts", "adv_preds")}
    try:
        with capture(model, [layer]) as feats:
            for x, y in _batches(loader, dev, f"activations {layer}", progress):
                with torch.no_grad():
                    out = model(x)
                parts["acts"].append(reduce_maps(feats[layer], reduce).float().cpu())
                parts["preds"].append(out.argmax(1).cpu())
                parts["labels"].append(y)
                if attack is not None:
                    x_adv = attack(model, x, y.to(dev))
                    model.eval()
                    with torch.no_grad():
                        out_adv = model(x_adv)
                    parts["adv_acts"].append(reduce_maps(feats[layer], reduce).float().cpu())
                    parts["adv_preds"].append(out_adv.argmax(1).cpu())
    finally:
        model.train(was_training)
    if not parts["acts"]:
        raise ConsisError("the loader yielded no images; check the data folder or the split name")
    tables = {k: torch.cat(v) if v else None for k, v in parts.items()}
    res = Activations(**tables, layer=layer, reduce=reduce)
    log.debug("activations of %s: %s", layer, tuple(res.acts.shape))
    return res


def transfer_activations(
    source: nn.Module,
    models: Mapping[str, nn.Module],
    loader: Iterable,
    layer: str,
    attack: AttackFn,
    reduce: str = "max",
    device: torch.device | str | None = None,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """``a_n(x*)`` of every model on the *source* model's adversarial images, one pass.

    The shared-set control of ``consis_adv`` (DESIGN section 2): ``x* = attack(source,
    x, y)`` per batch, then each model's activations on the same ``x*``. Only one
    batch of ``x*`` exists at a time; the result is a ``[N, K]`` table per model.

    Example
    -------
    >>> shared = transfer_activations(normal, {"adv": adv}, loader, "layer4", fgsm_attack(8 / 255))
    >>> shared["adv"].shape   # [N, K]
    """
    if not models:
        raise ConsisError("no models to score on the shared adversarial set; pass at least one")
    dev = torch.device(device) if device is not None else model_device(source)
    out: dict[str, list[torch.Tensor]] = {name: [] for name in models}
    for x, y in _batches(loader, dev, f"shared adversarial set {layer}", progress):
        batch = [(attack(source, x, y.to(dev)), y)]
        for name, model in models.items():
            out[name].append(unit_activations(model, batch, layer, reduce=reduce, device=dev, progress=False).acts)
    if not out[next(iter(models))]:
        raise ConsisError("the loader yielded no images; check the data folder or the split name")
    return {name: torch.cat(parts) for name, parts in out.items()}


class RunningTopK:
    """Per unit, the ``k`` largest values of a stream of ``[B, K]`` rows and their row indices.

    Each :meth:`update` merges the kept ``[k, K]`` with the new rows by a stable
    descending sort, so ties keep the earlier row, exactly as a stable sort of the
    whole column would. Memory: ``K x (k + B)`` values and indices, whatever the
    number of rows.

    Example
    -------
    >>> top = RunningTopK(2)
    >>> top.update(torch.tensor([[1.0], [3.0]])); top.update(torch.tensor([[3.0]]))
    >>> top.result()
    (tensor([[1, 2]]), tensor([[3., 3.]]))
    """

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ConsisError(f"top k must be >= 1, got {k}")
        self.k, self.seen = k, 0
        self.values: torch.Tensor | None = None
        self.index: torch.Tensor | None = None

    def update(self, rows: torch.Tensor) -> None:
        """Merge the next rows ``[B, K]`` (row ``i`` of this call is row ``seen + i`` of the stream)."""
        rows = torch.as_tensor(rows)
        if rows.dim() != 2:
            raise ConsisError(f"rows must be [B, K] activations, got shape {tuple(rows.shape)}")
        ids = torch.arange(self.seen, self.seen + rows.shape[0])[:, None].expand_as(rows)
        self.seen += rows.shape[0]
        if self.values is not None:
            rows, ids = torch.cat([self.values, rows]), torch.cat([self.index, ids])
        order = torch.sort(rows, dim=0, descending=True, stable=True).indices[: self.k]
        self.values, self.index = rows.gather(0, order), ids.gather(0, order)

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(index [K, k'], values [K, k'])`` best first, ``k' = min(k, rows seen)``."""
        if self.values is None:
            raise ConsisError("no rows were merged; pass at least one image's activations")
        return self.index.t().contiguous(), self.values.t().contiguous()


def top_k_per_unit(acts: torch.Tensor, k: int, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Each unit's ``k`` top images of an activation table, merged ``chunk`` rows at a time.

    Equal to the first ``k`` rows of ``torch.sort(acts, dim=0, descending=True,
    stable=True)`` (transposed), without sorting all ``N x K`` entries at once.

    Returns
    -------
    ``(index [K, k'], values [K, k'])``, ``k' = min(k, N)``.

    Example
    -------
    >>> top_k_per_unit(torch.tensor([[1.0, 5.0], [3.0, 5.0], [2.0, 0.0]]), 2)[0]
    tensor([[1, 2],
            [0, 1]])
    """
    top = RunningTopK(k)
    for i in range(0, acts.shape[0], chunk):
        top.update(acts[i : i + chunk])
    return top.result()


def layer_maps(model: nn.Module, layer: str, x: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """The maps ``[B, K, h, w]`` (float32, CPU) of ``layer`` on one batch ``x [B, 3, H, W]``.

    Example
    -------
    >>> layer_maps(model, "layer4", x[:8]).shape   # [8, K, h, w]
    """
    dev = torch.device(device) if device is not None else model_device(model)
    was_training = model.training
    model.eval()
    try:
        with capture(model, [layer]) as feats, torch.no_grad():
            model(channels_last(x.to(dev)))
    finally:
        model.train(was_training)
    return feats[layer].float().cpu()


def unit_map(
    model: nn.Module, layer: str, images: torch.Tensor, units: torch.Tensor, device: torch.device | str | None = None, batch: int = 128
) -> torch.Tensor:
    """The map of unit ``units[i]`` on image ``images[i]``: ``[n, h, w]`` (a figure's highlights).

    Only ``batch`` images' full maps exist at a time.

    Example
    -------
    >>> unit_map(model, "layer4", x[:4], torch.tensor([7, 7, 7, 7])).shape   # [4, h, w]
    """
    units = torch.as_tensor(units, dtype=torch.long)
    if len(units) != len(images):
        raise ConsisError(f"{len(units)} units for {len(images)} images; pass one unit per image")
    out = []
    for i in range(0, len(images), batch):
        maps = layer_maps(model, layer, images[i : i + batch], device)
        out.append(maps[torch.arange(maps.shape[0]), units[i : i + batch]])
    return torch.cat(out) if out else torch.empty(0)


def fgsm_attack(eps: float) -> AttackFn:
    """``attack(model, x, y)`` running :func:`consis_lib.attacks.fgsm` with ``eps``.

    Example
    -------
    >>> unit_activations(model, loader, "layer4", attack=fgsm_attack(8 / 255))
    """

    def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        from consis_lib.attacks import fgsm

        if y is None or bool((y < 0).any()):
            raise ConsisError("FGSM needs class labels; the loader yielded none (use least_likely_attack)")
        return fgsm(model, x, y, eps)

    return run


def least_likely_attack(eps: float, step: float = 1.0 / 255.0, iters: int | None = None) -> AttackFn:
    """``attack(model, x, y)`` running the iterative least-likely class attack
    (:func:`consis_lib.attacks.least_likely`); ``y`` is ignored.

    Example
    -------
    >>> dissect(model, layer, probe, cfg, attack=least_likely_attack(8 / 255))
    """

    def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        from consis_lib.attacks import least_likely

        return least_likely(model, x, eps, step=step, iters=iters)

    return run
