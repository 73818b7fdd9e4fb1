"""Network dissection (Bau et al. 2017) for Table 2, exact and bounded.

The method reads as NetDissect-Lite's four steps, one module each:

1. feature extraction (here): one pass of the model over the Broden probe captures
   the layer's maps ``[B, K, h, w]`` (optionally of adversarial versions of the
   probe images, e.g. iterative least-likely class).
2. quantile threshold (:mod:`consis_lib.dissect_quantile`): per unit, ``T_n`` =
   numpy's exact ``linear`` quantile at ``1 - quantile`` (default 0.995) of the
   unit's activations over every spatial position of every probe image.
3. tally (:mod:`consis_lib.dissect_tally`): each unit's map is upsampled
   bilinearly to the label resolution and thresholded (``> T_n``);
   ``IoU(n, c) = sum |M_n ∩ L_c| / sum |M_n ∪ L_c|`` (image-level labels are
   whole-image masks).
4. report (:mod:`consis_lib.dissect_report`): each unit's best concept (largest
   IoU), aligned when IoU > ``iou_threshold`` (0.04); per category, the fraction of
   units whose best aligned concept is in it.

What the default does, and the NetDissect-Lite option
-----------------------------------------------------
The intersections and the label areas are summed over every probe image. The
unit's own area enters the union of label ``c`` in every image that carries a label
(pixel- or image-level) of ``c``'s primary category, whether or not the unit's mask
touches it (``DissectConfig.union = "images_with_category"``): the sums Bau et al.
2017 describe. A label's primary category is the one with the largest count in its
``label.csv`` cell, e.g. ``object`` for ``object(12);part(3)``
(``DissectConfig.primary_category = "count"``).

NetDissect-Lite's code differs in both: it adds the unit's area only in the images
where the mask meets a label of that category (``union = "mask_meets_category"``; a
smaller union, so IoUs at least as large), and it takes the category whose
``c_<category>.csv`` gives the label the largest coverage
(``primary_category = "coverage"``). The defaults stay those of the paper's text and
of ``label.csv``, which every Broden folder has; on the embedded probe every label
has one category, so the two category rules agree there.

Example
-------
>>> probe = Broden("runs/probe", image_size=32)
>>> res = dissect(model, "layer4", probe, DissectConfig())
>>> lite = dissect(model, "layer4", probe, DissectConfig(union="mask_meets_category", primary_category="coverage"))
>>> res.table.head(), res.ratios["color"]
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from functools import partial

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from consis_lib.activations import AttackFn, model_device
from consis_lib.concepts import CATEGORIES, check_primary_rule
from consis_lib.config import DissectConfig
from consis_lib.dissect_quantile import TopQuantile
from consis_lib.dissect_report import DissectionResult, report
from consis_lib.dissect_tally import Tally, check_union_rule, label_tables
from consis_lib.errors import ConsisError
from consis_lib.hooks import capture
from consis_lib.layout import channels_last
from consis_lib.loaders import usable_workers

__all__ = ["CATEGORIES", "DissectionResult", "TopQuantile", "check_config", "dissect"]

log = logging.getLogger(__name__)

Batches = Iterable[tuple[torch.Tensor, list]]


def check_config(cfg: DissectConfig) -> None:
    """Raise ConsisError naming the field when ``cfg.union`` or ``cfg.primary_category``
    is not one of its rules (before any model pass)."""
    check_union_rule(cfg.union)
    check_primary_rule(cfg.primary_category)


# --------------------------------------------------------------------------- step 1


def _as_list(items: list) -> list:
    return items


def _batches(probe: Dataset, cfg: DissectConfig) -> DataLoader:
    workers = usable_workers(cfg.num_workers)
    return DataLoader(probe, batch_size=cfg.batch_size, shuffle=False, num_workers=workers, collate_fn=_as_list)


def _features(
    model: nn.Module, layer: str, items: list, attack: AttackFn | None, dev: torch.device
) -> torch.Tensor:
    x = channels_last(torch.stack([it.image for it in items]).to(dev))
    if attack is not None:
        x = attack(model, x, None)
        model.eval()
    with capture(model, [layer]) as feats, torch.no_grad():
        model(x)
    fmap = feats[layer]
    if fmap.dim() != 4:
        raise ConsisError(f"layer {layer!r} outputs shape {tuple(fmap.shape)}; dissection needs a conv layer [B, K, h, w]")
    fmap = fmap.float().cpu()
    if torch.isnan(fmap).any():
        raise ConsisError(f"layer {layer!r} produced NaN activations; check the model weights and the probe images")
    return fmap


def _loop(
    model: nn.Module, layer: str, loader: DataLoader, attack: AttackFn | None, dev: torch.device, progress: bool, desc: str
) -> Iterator[tuple[torch.Tensor, list]]:
    for items in tqdm(loader, desc=desc, disable=not progress, leave=False):
        yield _features(model, layer, items, attack, dev), items


def _item_bytes(items: list) -> int:
    return sum(int(np.asarray(v).nbytes) for it in items for v in it.pixel_labels.values()) + 64 * len(items)


# --------------------------------------------------------------------------- steps 2 and 3


def _threshold_pass(batches: Batches, num_images: int, cfg: DissectConfig) -> tuple[TopQuantile, list | None]:
    """The exact per-unit quantile over one pass; the maps and labels are kept for the
    tally while they fit in ``cfg.cache_mb`` (else None: the tally makes a second pass)."""
    tq: TopQuantile | None = None
    cache: list | None = []
    budget, used = cfg.cache_mb * 2**20, 0
    for fmap, items in batches:
        K = fmap.shape[1]
        if tq is None:
            tq = TopQuantile(K, num_images * fmap.shape[2] * fmap.shape[3], cfg.quantile)
        tq.update(fmap.transpose(0, 1).reshape(K, -1))
        if cache is not None:
            used += fmap.numel() * 4 + _item_bytes(items)
            if used > budget:
                log.info("dissection cache over %d MiB; the tally makes a second pass", cfg.cache_mb)
                cache = None
            else:
                cache.append((fmap, items))
    assert tq is not None  # the probe is not empty
    return tq, cache


def _tally(batches: Batches, thr: np.ndarray, cat_index: np.ndarray, cfg: DissectConfig, layer: str) -> Tally:
    """Step 3 over ``batches`` with the thresholds ``thr [K]``."""
    thr_t = torch.from_numpy(thr).float()
    tally: Tally | None = None
    for fmap, items in batches:
        if tally is None:
            if len(thr) != fmap.shape[1]:
                raise ConsisError(f"{len(thr)} thresholds given but layer {layer!r} has {fmap.shape[1]} units")
            tally = Tally(fmap.shape[1], cat_index, cfg.union)
        tally.add(fmap, items, thr_t)
    assert tally is not None  # the probe is not empty
    return tally


# --------------------------------------------------------------------------- entry point


def dissect(
    model: nn.Module,
    layer: str,
    probe: Dataset,
    cfg: DissectConfig = DissectConfig(),
    attack: AttackFn | None = None,
    device: torch.device | str | None = None,
    thresholds: np.ndarray | None = None,
    progress: bool = True,
) -> DissectionResult:
    """Dissect ``layer`` of ``model`` on a Broden-format probe (Bau et al. 2017; Table 2).

    Parameters
    ----------
    model : the network; [0, 1] images in (normalisation inside).
    layer : dotted name of a conv layer (output ``[B, K, h, w]``).
    probe : :class:`consis_lib.data.broden.Broden` (items with ``image [3, H, W]``,
        ``pixel_labels`` ``{category: int [L, sh, sw]}``, ``image_labels``; a
        ``labels`` DataFrame ``number, name, category``).
    cfg : DissectConfig (quantile 0.005, iou_threshold 0.04, the union and
        primary-category rules, batch_size, cache_mb).
    attack : optional ``attack(model, x, None) -> x_adv`` applied to every probe
        batch (e.g. :func:`consis_lib.activations.least_likely_attack`); the
        dissection then runs on the adversarial images, thresholds included. When
        the cache overflows, the second pass attacks again: use a deterministic
        attack (the least-likely method is).
    device : where the model runs (default: the model's device).
    thresholds : fixed ``[K]`` thresholds instead of the probe's own quantiles
        (e.g. the real images' thresholds for an adversarial run).
    progress : show tqdm bars.

    Returns
    -------
    DissectionResult with the per-unit table and the per-category ratios.

    Example
    -------
    >>> res = dissect(model, "layer4", probe, DissectConfig(), attack=least_likely_attack(8 / 255))
    >>> res.ratios                    # {"color": 0.12, "object": 0.31, ...}
    """
    check_config(cfg)
    if len(probe) == 0:
        raise ConsisError("the probe has no images; point it at a Broden folder with images")
    cat_index, names, cats = label_tables(probe, cfg.primary_category)
    dev = torch.device(device) if device is not None else model_device(model)
    batches = partial(_loop, model, layer, _batches(probe, cfg), attack, dev, progress)
    was_training = model.training
    model.eval()
    tq: TopQuantile | None = None
    cache: list | None = None
    try:
        if thresholds is None:  # pass 1 thresholds; the tally reads the cache or makes pass 2
            tq, cache = _threshold_pass(batches(f"dissect {layer}"), len(probe), cfg)
            thr = tq.thresholds()
            tally = _tally(cache if cache is not None else batches(f"tally {layer}"), thr, cat_index, cfg, layer)
        else:
            thr = np.asarray(thresholds, dtype=np.float64).reshape(-1)
            tally = _tally(batches(f"dissect {layer}"), thr, cat_index, cfg, layer)
    finally:
        model.train(was_training)
    meta = {
        "passes": 2 if tq is not None and cache is None else 1,
        "positions_per_unit": tq.total if tq is not None else None,
        "kept_per_unit": tq.k if tq is not None else None,
        "union": cfg.union,
        "primary_category": cfg.primary_category,
    }
    return report(
        layer, tally.iou(), names, cats, tally.label_area, thr, cfg,
        num_images=len(probe), adversarial=attack is not None, meta=meta,
    )
