"""Static neuron explorer over every unit of the metric layer, built from a run.

For every unit ``n`` of the metric layer and every model of an architecture, the
explorer shows ``consis(n)`` and ``consis_adv(n)`` (Eq. 3), the unit's dominant
classes (Eq. 1) on real and on adversarial (FGSM) images, its best dissection
concepts when a dissection was run, and its top real / top adversarial images,
highlighted by the unit's activation map. The parts live in
:mod:`consis_lib.explorer_tiles` (thumbnails, sprites), :mod:`consis_lib.explorer_units`
(the numbers and their JSON) and :mod:`consis_lib.explorer_page` (the HTML block);
this module gathers them from an arch context.

Memory: the top images come from the cached activation table by a running merge
(:func:`consis_lib.activations.top_k_per_unit`); a second pass reads only those
images from the data set, ``batch`` at a time, and keeps only their tiles
(``K x 2 top_k`` tiles of ``thumb^2 x 3`` bytes).

Example
-------
>>> from consis_lib import context, explorer_static
>>> ctx = context.notebook_context("smoke", "resnet18", "runs")
>>> page = explorer_static.static_explorer(ctx)   # display(page) in a notebook
>>> page.size_text()   # smoke profile, ResNet-18: 128 units x 3 models
'1.6 MB (sprites 1.5 MB)'
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from consis_lib.activations import AttackFn, fgsm_attack, layer_maps, top_k_per_unit
from consis_lib.errors import ConsisError
from consis_lib.explorer_page import SORT_CHOICES, ExplorerPage, explorer_html
from consis_lib.explorer_tiles import BLANK, FITS, highlight, square, square_tile, sprite_sheet, tile_origin
from consis_lib.explorer_units import Concept, ModelUnits, dominant_classes, explorer_data

__all__ = [
    "BLANK", "FITS", "SORT_CHOICES", "Concept", "ExplorerPage", "ModelUnits", "dominant_classes", "explorer_data",
    "explorer_html", "highlight", "model_units", "sprite_sheet", "square", "square_tile", "static_explorer",
    "tile_origin", "unit_tiles",
]

LOG = logging.getLogger(__name__)

Tile = np.ndarray | None


def _chunk_pairs(idx: torch.Tensor, active: torch.Tensor, chunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The (unit, slot) pairs of ``idx [K, k]`` whose image is in ``chunk`` (sorted), and the image's position there."""
    unit, slot = torch.nonzero(active & torch.isin(idx, chunk), as_tuple=True)
    return unit, slot, torch.searchsorted(chunk, idx[unit, slot])


def unit_tiles(
    model: torch.nn.Module,
    layer: str,
    acts: torch.Tensor,
    images_at: Callable[[torch.Tensor], torch.Tensor],
    labels: torch.Tensor,
    top_k: int,
    thumb: int,
    fit: str = "pad",
    attack: AttackFn | None = None,
    device: torch.device | str | None = None,
    batch: int = 128,
) -> list[list[Tile]]:
    """Per unit, the tiles of its ``top_k`` images by ``acts [N, K]``, highlighted by its map.

    Parameters
    ----------
    model, layer : the network and its metric layer.
    acts : the activation table ``a_n`` the images are ranked by (real or adversarial).
    images_at : ``images_at(index [n]) -> [n, 3, H, W]`` in [0, 1], the data set's
        images at those indices (only the top images are ever read).
    labels : ``[N]`` labels (for the attack).
    attack : applied to the read images first (the adversarial row: FGSM images).
    batch : images read, attacked and mapped at a time.

    Returns
    -------
    ``[K][k]`` uint8 tiles ``[thumb, thumb, 3]``, None where the image does not
    activate the unit (``a_n <= 0``).
    """
    idx, values = top_k_per_unit(acts, top_k)
    active = values > 0
    tiles: list[list[Tile]] = [[None] * idx.shape[1] for _ in range(idx.shape[0])]
    wanted = torch.unique(idx[active])
    for start in range(0, len(wanted), batch):
        chunk = wanted[start : start + batch]
        x = images_at(chunk)
        if attack is not None:
            dev = x.device if device is None else torch.device(device)
            x = attack(model, x.to(dev), labels[chunk].to(dev)).cpu()
        unit, slot, pos = _chunk_pairs(idx, active, chunk)
        maps = layer_maps(model, layer, x, device)
        lit = highlight(x[pos], maps[pos, unit])
        for u, s, tile in zip(unit.tolist(), slot.tolist(), lit):
            tiles[u][s] = square(tile, thumb, fit)
    return tiles


def _concepts(ctx: Any, name: str, images: str, n_units: int) -> tuple[Concept | None, ...]:
    """Per unit the best concept above the IoU threshold of the run's measures (empty when not dissected)."""
    try:
        dis = ctx.dissection_summary()
    except ConsisError:
        return ()
    rows = dis.get(name, {}).get(images, {}).get("units", [])
    if not rows:
        return ()
    threshold = float(dis.get("iou_threshold", 0.0))
    best: dict[int, Concept] = {}
    for u, concept, category, iou in rows:
        if concept is not None and iou is not None and float(iou) > threshold:
            best[int(u)] = (str(concept), str(category), float(iou))
    return tuple(best.get(u) for u in range(n_units))


def model_units(ctx: Any, name: str, top_k: int = 4, thumb: int = 40, fit: str = "pad") -> ModelUnits:
    """Every unit of one model of an arch context, with its sprite of top images.

    Parameters
    ----------
    ctx : :class:`consis_lib.context.ArchContext` (trained models, val data; the
        dissection concepts come from the run's measures when they exist).
    name : the model (one of the run's models).
    top_k : top real and top adversarial images per unit.
    thumb : tile side in pixels; a multiple of 8 keeps JPEG blocks inside a tile.
    fit : ``"pad"`` or ``"crop"`` for non-square images (:func:`square_tile`).

    The activation table is the context's cached pass (shared with
    :meth:`~consis_lib.context.ArchContext.unit_consistency`); then FGSM and the
    maps of only the top images (:func:`unit_tiles`).
    """
    from consis_lib.consistency import label_distributions

    if thumb % 8 or top_k < 1:
        raise ConsisError(f"thumb={thumb}, top_k={top_k}: use a thumbnail side that is a multiple of 8 and top_k >= 1")
    acts = ctx.activations(name)
    consis, consis_adv = ctx.unit_consistency(name)
    metric, C = ctx.profile.metric, len(ctx.class_names())
    probs = label_distributions(acts.acts, acts.labels, C, metric.top_fraction, metric.min_top).numpy()
    probs_adv = label_distributions(acts.adv_acts, acts.labels, C, metric.top_fraction, metric.min_top).numpy()
    model, labels = ctx.model(name), ctx.labels("val")
    common = dict(images_at=ctx.images, labels=labels, top_k=top_k, thumb=thumb, fit=fit, device=ctx.device)
    real = unit_tiles(model, ctx.layer, acts.acts, **common)
    adv = unit_tiles(model, ctx.layer, acts.adv_acts, attack=fgsm_attack(ctx.profile.attack.eps), **common)
    return ModelUnits(
        name=name, consis=np.asarray(consis, float), consis_adv=np.asarray(consis_adv, float), probs=probs, probs_adv=probs_adv,
        sprite=sprite_sheet([r + a for r, a in zip(real, adv)], thumb), top_k=top_k, thumb=thumb,
        concepts=_concepts(ctx, name, "real", len(consis)), concepts_adv=_concepts(ctx, name, "adversarial", len(consis)),
    )


def static_explorer(
    ctx: Any, models: Sequence[str] | None = None, top_k: int = 4, thumb: int = 40, fit: str = "pad", top_classes: int = 3
) -> ExplorerPage:
    """The static explorer over every unit of every model of an arch context.

    Parameters
    ----------
    ctx : :class:`consis_lib.context.ArchContext`.
    models : the models to show, in order; default every model of the run
        (:data:`consis_lib.results.MODELS`).
    top_k, thumb, fit : see :func:`model_units`.
    top_classes : dominant classes per unit shown and searched.

    Example
    -------
    >>> page = static_explorer(ctx)  # the notebook displays it; page.size_text() for the prose
    """
    from consis_lib.results import MODELS

    names = tuple(models) if models is not None else tuple(MODELS)
    units = []
    for n in names:  # logged, not a progress bar: a bar would be stored as a widget in the executed page
        LOG.info("explorer: rendering every unit of model %s", n)
        units.append(model_units(ctx, n, top_k, thumb, fit))
    return explorer_html(units, ctx.class_names(), layer=ctx.layer, top_classes=top_classes)
