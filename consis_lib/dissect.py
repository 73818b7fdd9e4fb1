"""Network dissection (Bau et al. 2017) with NetDissect-Lite semantics, exact and bounded.

The method reads as its four steps:

1. ``feature extraction``: one pass of the model over the Broden probe captures
   the layer's maps ``[B, K, h, w]`` (optionally of adversarial versions of the
   probe images, e.g. iterative least-likely class).
2. ``quantile threshold``: per unit, ``T_n`` = numpy's exact ``linear`` quantile at
   ``1 - quantile`` (default 0.995) of the unit's activations over every spatial
   position of every probe image. NetDissect-Lite estimates the same linear-
   interpolated quantile from a random sample (``QuantileVector``); here
   :class:`TopQuantile` keeps only the largest ``k = N - floor((N-1)(1-q))`` values
   per unit in a streaming top-k merge (``O(q * positions)`` memory per unit), which
   is all the interpolation reads, so the result equals ``numpy.quantile`` exactly.
3. ``tally``: each unit's map is upsampled bilinearly (``align_corners=False``) to
   the label resolution ``sh x sw`` and thresholded (``> T_n``);
   ``IoU(n, c) = sum |M_n ∩ L_c| / sum |M_n ∪ L_c|`` where both sums run over the
   images that carry labels of ``c``'s category (a non-zero pixel label or an
   image-level label; image-level labels count as whole-image masks).
4. ``report``: each unit's best concept (largest IoU); aligned when IoU >
   ``iou_threshold`` (0.04); per category, the fraction of units whose best aligned
   concept is in it (all six Broden categories; a category absent from the probe
   reports 0 with a note).

Example
-------
>>> probe = Broden("runs/probe", image_size=32)
>>> res = dissect(model, "layer4", probe, DissectConfig())
>>> res.table.head(), res.ratios["color"]
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from consis_lib.atomic import atomic_write_text
from consis_lib.activations import AttackFn, model_device
from consis_lib.config import DissectConfig
from consis_lib.errors import ConsisError
from consis_lib.hooks import capture
from consis_lib.layout import channels_last

log = logging.getLogger(__name__)

CATEGORIES = ("color", "object", "part", "material", "scene", "texture")


# --------------------------------------------------------------------------- step 2


class TopQuantile:
    """Exact streaming ``numpy.quantile(values, 1 - quantile, method="linear")`` per unit.

    Parameters
    ----------
    num_units : K.
    total : N, the number of values each unit will receive (all positions of all images).
    quantile : the top fraction (0.005 in NetDissect).

    Only the ``k = N - floor((N-1) * (1-quantile))`` largest values per unit are kept
    (the two order statistics the linear interpolation reads are among them).

    Example
    -------
    >>> tq = TopQuantile(num_units=2, total=6, quantile=0.5)
    >>> tq.update(torch.tensor([[1., 2, 3], [6, 5, 4]])); tq.update(torch.tensor([[4., 5, 6], [3, 2, 1]]))
    >>> tq.thresholds()          # numpy.quantile(..., 0.5) per row
    array([3.5, 3.5])
    """

    def __init__(self, num_units: int, total: int, quantile: float) -> None:
        if not 0.0 <= quantile < 1.0:
            raise ConsisError(f"quantile={quantile} must be in [0, 1); fix DissectConfig.quantile")
        if total < 1:
            raise ConsisError("no activation values to threshold; the probe is empty")
        self.total = int(total)
        self.p = 1.0 - float(quantile)
        self.virtual = (self.total - 1) * self.p  # numpy's virtual index for "linear"
        self.lo = min(int(math.floor(self.virtual)), self.total - 1)
        self.k = self.total - self.lo
        self.seen = 0
        self.top = torch.empty(num_units, 0)

    def update(self, values: torch.Tensor) -> None:
        """Merge ``values [K, M]`` (any M) into the running top-k."""
        values = values.detach().float().cpu()
        self.seen += values.shape[1]
        if self.seen > self.total:
            raise ConsisError(f"TopQuantile got {self.seen} values per unit but expected {self.total}")
        merged = torch.cat([self.top, values], dim=1)
        if merged.shape[1] > self.k:
            merged = merged.topk(self.k, dim=1, sorted=False).values
        self.top = merged

    def thresholds(self) -> np.ndarray:
        """``[K]`` thresholds (float32 values held as float64); equal to
        ``numpy.quantile(all_values, 1 - quantile)`` on the float32 activations."""
        if self.seen != self.total:
            raise ConsisError(f"TopQuantile got {self.seen} values per unit but expected {self.total}")
        desc = self.top.sort(dim=1, descending=True).values  # float32
        a = desc[:, self.k - 1]  # ascending rank lo
        b = desc[:, self.k - 2] if self.k >= 2 else a  # ascending rank lo + 1
        if self.virtual >= self.total - 1:  # numpy takes the maximum
            return desc[:, 0].double().numpy()
        # numpy's lerp, in the data's float32 precision as numpy.quantile does for a
        # float32 array and a Python-float quantile
        gamma = self.virtual - self.lo
        a32, b32 = a.numpy(), b.numpy()
        diff = b32 - a32
        out = b32 - diff * (1 - gamma) if gamma >= 0.5 else a32 + diff * gamma
        return out.astype(np.float64)


# --------------------------------------------------------------------------- results


@dataclass
class DissectionResult:
    """Output of :func:`dissect`.

    Attributes
    ----------
    layer : the dissected layer.
    table : tidy per-unit DataFrame ``unit, concept, category, iou, aligned, label, threshold``.
    ratios : category -> fraction of the layer's units aligned with a concept of it
        (all six Broden categories).
    counts : category -> number of aligned units.
    notes : remarks such as categories absent from the probe.
    iou : ``[K, num_labels]`` IoU of every unit with every label number (column = number).
    label_names : name per label number (``""`` where unused).
    label_categories : primary category per label number.
    thresholds : ``[K]`` per-unit activation thresholds ``T_n``.
    num_images, quantile, iou_threshold, adversarial : provenance.
    """

    layer: str
    table: pd.DataFrame
    ratios: dict[str, float]
    counts: dict[str, int]
    notes: list[str]
    iou: np.ndarray
    label_names: list[str]
    label_categories: list[str]
    thresholds: np.ndarray
    num_images: int
    quantile: float
    iou_threshold: float
    adversarial: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def top_concepts(self, unit: int, n: int = 3) -> pd.DataFrame:
        """The ``n`` labels with the highest IoU for ``unit``: ``concept, category, iou``."""
        order = np.argsort(-self.iou[unit], kind="stable")[:n]
        return pd.DataFrame(
            {
                "concept": [self.label_names[i] for i in order],
                "category": [self.label_categories[i] for i in order],
                "iou": self.iou[unit, order],
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the IoU matrix is kept, as nested lists)."""
        return {
            "layer": self.layer,
            "table": self.table.to_dict(orient="list"),
            "ratios": self.ratios,
            "counts": self.counts,
            "notes": self.notes,
            "iou": self.iou.round(8).tolist(),
            "label_names": self.label_names,
            "label_categories": self.label_categories,
            "thresholds": self.thresholds.tolist(),
            "num_images": self.num_images,
            "quantile": self.quantile,
            "iou_threshold": self.iou_threshold,
            "adversarial": self.adversarial,
            "meta": self.meta,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)

    def save(self, path: str | Path) -> Path:
        """Write the JSON atomically (temp file + rename)."""
        return atomic_write_text(path, self.to_json())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DissectionResult:
        d = dict(d)
        d["table"] = pd.DataFrame(d["table"])
        d["iou"] = np.asarray(d["iou"], dtype=np.float64).reshape(len(d["thresholds"]), -1)
        d["thresholds"] = np.asarray(d["thresholds"], dtype=np.float64)
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> DissectionResult:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConsisError(f"cannot read dissection result {path}: {exc}; rerun the dissection") from exc


# --------------------------------------------------------------------------- helpers


def _as_list(items: list) -> list:
    return items


def _batches(probe: Dataset, cfg: DissectConfig) -> DataLoader:
    return DataLoader(probe, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers, collate_fn=_as_list)


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


def _label_tables(probe: Any) -> tuple[np.ndarray, list[str], list[str]]:
    labels = getattr(probe, "labels", None)
    if labels is None or not {"number", "name", "category"} <= set(labels.columns):
        raise ConsisError("the probe has no label table (number, name, category); load it with consis_lib.data.broden.Broden")
    size = int(labels["number"].max()) + 1 if len(labels) else 1
    cat_index = np.full(size, -1, dtype=np.int64)
    names, cats = [""] * size, [""] * size
    for num, name, cat in zip(labels["number"], labels["name"], labels["category"]):
        if int(num) <= 0:
            continue
        names[int(num)] = str(name)
        cats[int(num)] = str(cat)
        cat_index[int(num)] = CATEGORIES.index(cat) if cat in CATEGORIES else -1
    return cat_index, names, cats


class _Tally:
    """Running sums of the IoU numerators and denominators (step 3)."""

    def __init__(self, num_units: int, num_labels: int) -> None:
        self.inter = np.zeros((num_units, num_labels), dtype=np.float64)  # sum |M_n ∩ L_c|
        self.label_area = np.zeros(num_labels, dtype=np.float64)  # sum |L_c|
        self.unit_area_cat = np.zeros((num_units, len(CATEGORIES)), dtype=np.float64)  # sum |M_n| over images of cat
        self.num_labels = num_labels

    def _clip(self, labels: np.ndarray) -> np.ndarray:
        # label numbers absent from label.csv are ignored (treated as unlabelled)
        return np.where(labels < self.num_labels, labels, 0)

    def add(self, fmap: torch.Tensor, items: list, thresholds: torch.Tensor) -> None:
        """Tally one batch: ``fmap [B, K, h, w]`` with the batch's BrodenItems.

        Only (image, unit) pairs whose map exceeds the unit's threshold somewhere are
        upsampled: a bilinear upsampling never exceeds the largest input value, so
        the other masks are empty (the shortcut NetDissect-Lite takes as well).
        """
        B, K = fmap.shape[:2]
        L = self.num_labels
        has_cat = np.zeros((B, len(CATEGORIES)))
        scalars: list[list[int]] = []
        planes: list[np.ndarray] = []  # per image [L_i, P_i]
        sizes: list[tuple[int, int]] = []
        for i, item in enumerate(items):
            pixel = {c: np.asarray(v) for c, v in item.pixel_labels.items()}
            shapes = {v.shape[1:] for v in pixel.values() if v.ndim == 3}
            if len(shapes) > 1:
                raise ConsisError(f"label masks of {item.path} have different sizes {sorted(shapes)}; fix the probe's index.csv sh/sw")
            sh, sw = shapes.pop() if shapes else tuple(fmap.shape[2:])
            sizes.append((int(sh), int(sw)))
            img_planes, img_scalars = [], []
            for ci, c in enumerate(CATEGORIES):
                lab = self._clip(pixel[c].reshape(pixel[c].shape[0], -1)) if c in pixel and pixel[c].size else None
                sc = [s for s in item.image_labels.get(c, []) if 0 < s < L]
                has_pixels = lab is not None and bool((lab > 0).any())
                has_cat[i, ci] = float(has_pixels or bool(sc))
                if has_pixels:
                    img_planes.append(lab)
                img_scalars.extend(sc)
                for s in sc:
                    self.label_area[s] += sh * sw
            lab = np.concatenate(img_planes) if img_planes else np.zeros((0, sh * sw), np.int64)
            if lab.size:
                counts = np.bincount(lab.ravel(), minlength=L)
                counts[0] = 0
                self.label_area += counts
            planes.append(lab)
            scalars.append(img_scalars)

        area = np.zeros((B, K))
        pairs = (fmap.amax(dim=(2, 3)) > thresholds[None, :]).nonzero()  # [N, 2] (image, unit)
        size_list = sorted(set(sizes))
        size_of_image = torch.tensor([size_list.index(sz) for sz in sizes], dtype=torch.long)
        for s_idx, size in enumerate(size_list):
            sel = pairs[size_of_image[pairs[:, 0]] == s_idx]
            if len(sel) == 0:
                continue
            bi, ki = sel[:, 0], sel[:, 1]
            up = F.interpolate(fmap[bi, ki][:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
            mask = (up > thresholds[ki][:, None, None]).reshape(len(sel), -1)  # [N, P]
            area[bi.numpy(), ki.numpy()] = mask.sum(1).double().numpy()
            # label of every masked pixel in every plane of its image -> (unit, label) counts
            imgs = torch.unique(bi).tolist()
            depth = max(planes[b].shape[0] for b in imgs)
            if depth == 0:
                continue
            stack = np.zeros((B, depth, size[0] * size[1]), np.int64)
            for b in imgs:
                stack[b, : planes[b].shape[0]] = planes[b]
            pair_idx, pix = mask.nonzero(as_tuple=True)
            bnp, knp = bi.numpy()[pair_idx.numpy()], ki.numpy()[pair_idx.numpy()]
            labs = stack[bnp, :, pix.numpy()]  # [M, depth]
            keys = (knp[:, None] * L + labs)[labs > 0]
            self.inter += np.bincount(keys, minlength=K * L).reshape(K, L)
        self.unit_area_cat += area.T @ has_cat
        for b, sc in enumerate(scalars):  # image-level labels: the whole image is the mask
            for s in sc:
                self.inter[:, s] += area[b]

    def iou(self, cat_index: np.ndarray) -> np.ndarray:
        cats = cat_index[: self.num_labels]
        units_cat = np.where(cats[None, :] >= 0, self.unit_area_cat[:, np.clip(cats, 0, None)], 0.0)
        union = units_cat + self.label_area[None, :] - self.inter
        return np.divide(self.inter, union, out=np.zeros_like(self.inter), where=union > 0)


def _loop(model: nn.Module, layer: str, loader: DataLoader, attack: AttackFn | None, dev: torch.device, desc: str, progress: bool) -> Iterator[tuple[torch.Tensor, list]]:
    for items in tqdm(loader, desc=desc, disable=not progress, leave=False):
        yield _features(model, layer, items, attack, dev), items


def _item_bytes(items: list) -> int:
    return sum(int(np.asarray(v).nbytes) for it in items for v in it.pixel_labels.values()) + 64 * len(items)


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
    cfg : DissectConfig (quantile 0.005, iou_threshold 0.04, batch_size, cache_mb).
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
    if len(probe) == 0:
        raise ConsisError("the probe has no images; point it at a Broden folder with images")
    cat_index, names, cats = _label_tables(probe)
    dev = torch.device(device) if device is not None else model_device(model)
    was_training = model.training
    model.eval()
    loader = _batches(probe, cfg)
    fixed = thresholds is not None
    thr = np.asarray(thresholds, dtype=np.float64).reshape(-1) if fixed else np.zeros(0)
    # with fixed thresholds the tally runs in the only pass; otherwise the maps and
    # labels are cached for the tally while they fit in cfg.cache_mb
    cache: list[tuple[torch.Tensor, list]] | None = None if fixed else []
    budget, used = cfg.cache_mb * 2**20, 0
    tq: TopQuantile | None = None
    tally: _Tally | None = None
    try:
        for fmap, items in _loop(model, layer, loader, attack, dev, f"dissect {layer}", progress):
            K = fmap.shape[1]
            if fixed:
                if thr.shape[0] != K:
                    raise ConsisError(f"{thr.shape[0]} thresholds given but layer {layer!r} has {K} units")
                tally = tally or _Tally(K, len(names))
                tally.add(fmap, items, torch.from_numpy(thr).float())
                continue
            if tq is None:
                tq = TopQuantile(K, len(probe) * fmap.shape[2] * fmap.shape[3], cfg.quantile)
            tq.update(fmap.transpose(0, 1).reshape(K, -1))
            if cache is not None:
                used += fmap.numel() * 4 + _item_bytes(items)
                if used > budget:
                    log.info("dissection cache over %d MiB; the tally makes a second pass", cfg.cache_mb)
                    cache = None
                else:
                    cache.append((fmap, items))
        if not fixed:
            assert tq is not None
            thr = tq.thresholds()
            tally = _Tally(tq.top.shape[0], len(names))
            thr_t = torch.from_numpy(thr).float()
            source = cache if cache is not None else _loop(model, layer, loader, attack, dev, f"tally {layer}", progress)
            for fmap, items in source:
                tally.add(fmap, items, thr_t)
    finally:
        model.train(was_training)
    assert tally is not None
    iou = tally.iou(cat_index)
    res = _report(layer, iou, names, cats, tally, np.asarray(thr, dtype=np.float64), len(probe), cfg, attack is not None)
    res.meta = {
        "passes": 1 if (fixed or cache is not None) else 2,
        "positions_per_unit": tq.total if tq is not None else None,
        "kept_per_unit": tq.k if tq is not None else None,
    }
    return res


def _report(
    layer: str,
    iou: np.ndarray,
    names: list[str],
    cats: list[str],
    tally: _Tally,
    thr: np.ndarray,
    num_images: int,
    cfg: DissectConfig,
    adversarial: bool,
) -> DissectionResult:
    K = iou.shape[0]
    best = iou.argmax(1) if iou.shape[1] else np.zeros(K, dtype=np.int64)
    best_iou = iou[np.arange(K), best] if iou.shape[1] else np.zeros(K)
    aligned = best_iou > cfg.iou_threshold
    table = pd.DataFrame(
        {
            "unit": np.arange(K),
            "concept": [names[b] if best_iou[k] > 0 else "" for k, b in enumerate(best)],
            "category": [cats[b] if best_iou[k] > 0 else "" for k, b in enumerate(best)],
            "iou": best_iou,
            "aligned": aligned,
            "label": np.where(best_iou > 0, best, 0),
            "threshold": thr,
        }
    )
    counts, ratios, notes = {}, {}, []
    label_cats = np.array(cats)
    for c in CATEGORIES:
        counts[c] = int((aligned & (table["category"].to_numpy() == c)).sum())
        ratios[c] = counts[c] / K if K else 0.0
        in_cat = label_cats == c
        if not in_cat.any() or tally.label_area[in_cat].sum() == 0:
            notes.append(f"category {c!r} has no labels in the probe; its ratio is reported as 0")
    return DissectionResult(
        layer=layer,
        table=table,
        ratios=ratios,
        counts=counts,
        notes=notes,
        iou=iou,
        label_names=names,
        label_categories=cats,
        thresholds=thr,
        num_images=num_images,
        quantile=cfg.quantile,
        iou_threshold=cfg.iou_threshold,
        adversarial=adversarial,
    )
