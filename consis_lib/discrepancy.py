"""Discrepancy maps (Zhou et al. 2015), used for the highlighted regions of Fig. 3/4.

For an image ``x`` and unit ``n``, a small patch of random pixels is pasted at every
position of a dense grid; the map holds the drop of the unit's activation
``a_n(x) - a_n(x with the patch at (i, j))``. Where the drop is large, the unit
looks. DESIGN section 2: an 11x11 patch at stride 3 for 224 px images, both scaled
with the image size (32 px: 2x2 at stride 1). All units of the layer share the
occluded forward passes, so asking for more units costs nothing extra.

The cheap alternative, the unit's activation map upsampled to the image, is the
separately named :func:`activation_highlight`; it is never substituted silently.

Example
-------
>>> dmap = discrepancy_maps(model, "layer4", images, units=[3, 17], cfg=DiscrepancyConfig())
>>> dmap.shape                                  # [B, 2, H', W']
>>> shown = highlight(images[0], dmap[0, 0])    # [3, H, W] in [0, 1]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from consis_lib.activations import layer_maps, model_device, reduce_maps
from consis_lib.config import DiscrepancyConfig
from consis_lib.errors import ConsisError
from consis_lib.hooks import capture
from consis_lib.layout import channels_last


def occluder_geometry(image_size: int, cfg: DiscrepancyConfig = DiscrepancyConfig()) -> tuple[int, int, int]:
    """Patch size, stride and grid positions per axis for ``image_size`` px images.

    ``patch = max(1, round(patch_at_224 * S / 224))``, ``stride = max(1,
    round(stride_at_224 * S / 224))``, ``positions = (S - patch) // stride + 1``.

    Example
    -------
    >>> occluder_geometry(224)
    (11, 3, 72)
    >>> occluder_geometry(32)
    (2, 1, 31)
    """
    if image_size < 1:
        raise ConsisError(f"image size {image_size} must be positive")
    patch = max(1, round(cfg.patch_at_224 * image_size / 224))
    stride = max(1, round(cfg.stride_at_224 * image_size / 224))
    patch = min(patch, image_size)
    return patch, stride, (image_size - patch) // stride + 1


def _check_images(images: torch.Tensor) -> torch.Tensor:
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4 or images.shape[1] != 3:
        raise ConsisError(f"images must be [B, 3, H, W] in [0, 1], got shape {tuple(images.shape)}")
    if images.shape[2] != images.shape[3]:
        raise ConsisError(f"discrepancy maps need square images, got {tuple(images.shape[2:])}; crop them first")
    return images


def _unit_acts(model: nn.Module, layer: str, x: torch.Tensor, units: torch.Tensor, reduce: str) -> torch.Tensor:
    with capture(model, [layer]) as feats, torch.no_grad():
        model(channels_last(x))
    acts = reduce_maps(feats[layer], reduce)
    if int(units.max()) >= acts.shape[1]:
        raise ConsisError(f"unit {int(units.max())} does not exist; layer {layer!r} has {acts.shape[1]} units")
    return acts[:, units].float()


def discrepancy_maps(
    model: nn.Module,
    layer: str,
    images: torch.Tensor,
    units: Sequence[int],
    cfg: DiscrepancyConfig = DiscrepancyConfig(),
    reduce: str = "max",
    device: torch.device | str | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Activation drop of each unit for a random-pixel patch at every grid position.

    Parameters
    ----------
    model : the network ([0, 1] images in).
    layer : dotted conv layer name.
    images : [B, 3, S, S] in [0, 1] (or one image [3, S, S]).
    units : the U unit indices to map.
    cfg : DiscrepancyConfig (patch and stride at 224 px, batch size, seed of the
        random patches; the same random patches are used for every image).
    reduce : the unit activation (``"max"`` as in the metric, or ``"mean"``).
    device : where to run (default the model's device).
    progress : show a tqdm bar over images.

    Returns
    -------
    Tensor [B, U, P, P] float32 on the CPU, ``P`` = grid positions per axis
    (:func:`occluder_geometry`); entry ``(i, j)`` is the drop for the patch whose
    top-left corner is at ``(i * stride, j * stride)``.

    Example
    -------
    >>> discrepancy_maps(model, "layer4", x, [0, 5]).shape
    torch.Size([B, 2, 31, 31])
    """
    images = _check_images(images)
    if len(units) == 0:
        raise ConsisError("no units given; pass the indices of the units to map")
    dev = torch.device(device) if device is not None else model_device(model)
    unit_idx = torch.as_tensor(list(units), dtype=torch.long)
    B, _, S, _ = images.shape
    patch, stride, n = occluder_geometry(S, cfg)
    starts = torch.arange(n) * stride
    pos_y, pos_x = torch.meshgrid(starts, starts, indexing="ij")
    pos_y, pos_x = pos_y.reshape(-1), pos_x.reshape(-1)  # [n*n]
    gen = torch.Generator().manual_seed(cfg.seed)
    noise = torch.rand(n * n, patch, patch, 3, generator=gen)  # one random patch per position
    off = torch.arange(patch)
    rows = (pos_y[:, None, None] + off[None, :, None]).expand(-1, patch, patch)  # [n*n, p, p]
    cols = (pos_x[:, None, None] + off[None, None, :]).expand(-1, patch, patch)
    chunk = max(1, int(cfg.batch_size))
    was_training = model.training
    model.eval()
    out = torch.empty(B, len(unit_idx), n * n)
    try:
        base = torch.cat(
            [_unit_acts(model, layer, images[i : i + chunk].to(dev), unit_idx, reduce).cpu() for i in range(0, B, chunk)]
        )  # [B, U]
        for b in tqdm(range(B), desc="discrepancy maps", disable=not progress, leave=False):
            img = images[b].permute(1, 2, 0)  # [S, S, 3]
            for s in range(0, n * n, chunk):
                e = min(n * n, s + chunk)
                occ = img.expand(e - s, S, S, 3).clone()
                which = torch.arange(e - s)[:, None, None].expand(-1, patch, patch)
                occ[which, rows[s:e], cols[s:e]] = noise[s:e].to(occ.dtype)
                x = occ.permute(0, 3, 1, 2).contiguous().to(dev)
                out[b, :, s:e] = (base[b][:, None] - _unit_acts(model, layer, x, unit_idx, reduce).cpu().t())
    finally:
        model.train(was_training)
    return out.reshape(B, len(unit_idx), n, n)


def pixel_map(dmap: torch.Tensor, image_size: int, cfg: DiscrepancyConfig = DiscrepancyConfig()) -> torch.Tensor:
    """Spread grid drops back to pixels: each pixel gets the mean drop of the patches covering it.

    Parameters
    ----------
    dmap : [..., P, P] discrepancy map(s) from :func:`discrepancy_maps`.
    image_size : S, the images' side.

    Returns
    -------
    Tensor [..., S, S] (0 where no patch covers a pixel).

    Example
    -------
    >>> pixel_map(dmap[0, 0], 32).shape
    torch.Size([32, 32])
    """
    patch, stride, n = occluder_geometry(image_size, cfg)
    if dmap.shape[-2:] != (n, n):
        raise ConsisError(f"map is {tuple(dmap.shape[-2:])} but {image_size} px images give a {n}x{n} grid; pass the right image_size")
    lead = dmap.shape[:-2]
    d = dmap.reshape(-1, 1, n * n).float()
    cols = d.expand(-1, patch * patch, -1)
    summed = F.fold(cols, (image_size, image_size), patch, stride=stride)
    cover = F.fold(torch.ones_like(cols[:1]), (image_size, image_size), patch, stride=stride)
    return (summed / cover.clamp(min=1)).reshape(*lead, image_size, image_size)


def highlight(
    image: torch.Tensor,
    dmap: torch.Tensor,
    cfg: DiscrepancyConfig = DiscrepancyConfig(),
    fraction: float = 0.2,
    dim: float = 0.25,
) -> torch.Tensor:
    """The image with the unit's region kept bright and the rest dimmed, for display.

    Parameters
    ----------
    image : [3, S, S] in [0, 1].
    dmap : [P, P] discrepancy map (grid positions; spread with :func:`pixel_map`) or
        [S, S] pixel map (e.g. from :func:`activation_highlight`).
    fraction : the top ``fraction`` of positive pixels form the region.
    dim : brightness kept outside the region.

    Returns
    -------
    Tensor [3, S, S] in [0, 1].

    Example
    -------
    >>> shown = highlight(x[0], discrepancy_maps(model, "layer4", x[:1], [7])[0, 0])
    """
    if image.dim() != 3 or image.shape[0] != 3:
        raise ConsisError(f"image must be [3, S, S], got {tuple(image.shape)}")
    S = image.shape[-1]
    pm = dmap.float() if dmap.shape[-2:] == image.shape[-2:] else pixel_map(dmap, S, cfg)
    pm = pm.reshape(S, S).cpu()
    positive = pm[pm > 0]
    if positive.numel() == 0:
        return image.cpu() * dim
    thr = torch.quantile(positive, 1.0 - fraction) if positive.numel() > 1 else positive[0]
    region = ((pm >= thr) & (pm > 0)).float()
    return (image.cpu() * (dim + (1.0 - dim) * region)).clamp(0, 1)


def activation_highlight(
    model: nn.Module,
    layer: str,
    images: torch.Tensor,
    units: Sequence[int],
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The fast option: unit activation maps upsampled (bilinear) to the image size.

    Not a discrepancy map (no occlusion): it shows where the unit fires, cheaply.

    Returns
    -------
    Tensor [B, U, H, W] on the CPU.

    Example
    -------
    >>> amap = activation_highlight(model, "layer4", x, [7])
    >>> shown = highlight(x[0], amap[0, 0])
    """
    images = _check_images(images)
    fmap = layer_maps(model, layer, images, device)
    if fmap.dim() != 4:
        raise ConsisError(f"layer {layer!r} outputs shape {tuple(fmap.shape)}; activation maps need a conv layer")
    idx = torch.as_tensor(list(units), dtype=torch.long)
    if len(idx) == 0 or int(idx.max()) >= fmap.shape[1]:
        raise ConsisError(f"units {list(units)} invalid; layer {layer!r} has {fmap.shape[1]} units")
    return F.interpolate(fmap[:, idx], size=images.shape[-2:], mode="bilinear", align_corners=False)
