"""Step 3 of network dissection (Bau et al. 2017): the IoU tally.

Each unit's map is upsampled bilinearly (``align_corners=False``) to the label
resolution ``sh x sw`` and thresholded (``> T_n``), giving the mask ``M_n``. For every
label ``c`` (an image-level label is a whole-image mask)::

    IoU(n, c) = sum |M_n ∩ L_c| / sum |M_n ∪ L_c| = I / (U + A - I)

with ``I = sum |M_n ∩ L_c|`` and ``A = sum |L_c|`` over every image, and ``U``, the
unit's own area ``sum |M_n|``, over the images that the union rule
(:data:`UNION_RULES`) names for ``c``'s primary category
(:mod:`consis_lib.concepts`):

``"images_with_category"`` (default)
    every image that carries a label of the category (pixel- or image-level): the
    sums of Bau et al. 2017 ("Scoring Unit Interpretability"), which run over the
    images with at least one labelled concept of ``c``'s category.
``"mask_meets_category"``
    only the images where ``M_n`` overlaps a label of the category (an image-level
    label: where ``M_n`` is not empty): NetDissect-Lite's ``tally_units_cat``. Its
    union is never larger, so its IoUs are never smaller.

An image counts for the primary categories of the labels it carries, not for the
``index.csv`` columns they sit in: a label listed under a column other than its
primary category (real Broden has such labels) would otherwise have its
intersections counted without the unit's area, and its IoU could exceed 1. A label
with no category has IoU 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from consis_lib.concepts import CATEGORIES, check_primary_rule
from consis_lib.errors import ConsisError

__all__ = ["UNION_RULES", "Tally", "check_union_rule", "label_tables"]

UNION_RULES: tuple[str, ...] = ("images_with_category", "mask_meets_category")
"""Which images add a unit's area to the union (see the module docstring)."""


def check_union_rule(rule: str) -> None:
    """Raise ConsisError unless ``rule`` is one of :data:`UNION_RULES`."""
    if rule not in UNION_RULES:
        raise ConsisError(f"union={rule!r} is not one of {', '.join(UNION_RULES)}; fix DissectConfig.union")


def label_tables(probe: Any, rule: str = "count") -> tuple[np.ndarray, list[str], list[str]]:
    """Per label number: index of its primary category in :data:`CATEGORIES` (-1: none),
    name, and primary category chosen by ``rule`` (``"count"`` or ``"coverage"``).

    Example
    -------
    >>> cat_index, names, cats = label_tables(Broden("runs/probe"), "coverage")
    """
    labels = getattr(probe, "labels", None)
    if labels is None or not {"number", "name", "category"} <= set(labels.columns):
        raise ConsisError("the probe has no label table (number, name, category); load it with consis_lib.data.broden.Broden")
    check_primary_rule(rule)
    if rule == "count":
        primary = labels["category"].tolist()
    elif hasattr(probe, "primary_categories"):
        primary = probe.primary_categories(rule)
    else:
        raise ConsisError("primary categories by coverage need c_<category>.csv files; load the probe with consis_lib.data.broden.Broden")
    size = int(labels["number"].max()) + 1 if len(labels) else 1
    cat_index = np.full(size, -1, dtype=np.int64)
    names, cats = [""] * size, [""] * size
    for num, name, cat in zip(labels["number"], labels["name"], primary):
        if int(num) <= 0:
            continue
        names[int(num)], cats[int(num)] = str(name), str(cat)
        cat_index[int(num)] = CATEGORIES.index(cat) if cat in CATEGORIES else -1
    return cat_index, names, cats


class Tally:
    """Running sums of the IoU's terms over batches of probe images (step 3).

    Parameters
    ----------
    num_units : K.
    cat_index : ``[L]`` per label number, the index of its primary category in
        :data:`CATEGORIES` (-1: none); numbers ``>= L`` in the masks are ignored.
    union : one of :data:`UNION_RULES`.

    Attributes
    ----------
    inter : ``[K, L]`` ``sum |M_n ∩ L_c|``.
    label_area : ``[L]`` ``sum |L_c|``.
    unit_area_cat : ``[K, 6]`` ``sum |M_n|`` over the images the union rule counts
        for each category.

    Example
    -------
    >>> tally = Tally(num_units=1, cat_index=np.array([-1, 0]), union="mask_meets_category")
    >>> tally.add(fmap, items, thresholds)   # fmap [B, 1, h, w], BrodenItems
    >>> tally.iou()                          # [1, 2]
    """

    def __init__(self, num_units: int, cat_index: np.ndarray, union: str = "images_with_category") -> None:
        check_union_rule(union)
        self.union = union
        self.cat_index = np.asarray(cat_index, dtype=np.int64)
        self.num_labels = L = len(self.cat_index)
        known = np.flatnonzero(self.cat_index >= 0)
        self.labelcat = np.zeros((L, len(CATEGORIES)), dtype=bool)  # one-hot primary category
        self.labelcat[known, self.cat_index[known]] = True
        self.inter = np.zeros((num_units, L), dtype=np.float64)
        self.label_area = np.zeros(L, dtype=np.float64)
        self.unit_area_cat = np.zeros((num_units, len(CATEGORIES)), dtype=np.float64)

    def add(self, fmap: torch.Tensor, items: list, thresholds: torch.Tensor) -> None:
        """Tally one batch: ``fmap [B, K, h, w]`` with the batch's BrodenItems.

        Only (image, unit) pairs whose map exceeds the unit's threshold somewhere are
        upsampled: a bilinear upsampling never exceeds the largest input value, so
        the other masks are empty (the shortcut NetDissect-Lite takes as well).
        """
        B, K = fmap.shape[:2]
        planes, scalars, sizes, carried = zip(*(self._read(item, tuple(fmap.shape[2:])) for item in items))
        area = np.zeros((B, K))
        met = np.zeros((B, K, len(CATEGORIES)), dtype=bool) if self.union == "mask_meets_category" else None
        pairs = (fmap.amax(dim=(2, 3)) > thresholds[None, :]).nonzero()  # [N, 2] (image, unit)
        size_list = sorted(set(sizes))
        size_of_image = torch.tensor([size_list.index(sz) for sz in sizes], dtype=torch.long)
        for s_idx, size in enumerate(size_list):
            sel = pairs[size_of_image[pairs[:, 0]] == s_idx]
            if len(sel):
                self._add_masks(fmap, sel, size, thresholds, planes, area, met)
        for b, sc in enumerate(scalars):  # image-level labels: the whole image is the mask
            for s in sc:
                self.inter[:, s] += area[b]
            if met is not None:
                cats = self.cat_index[sc][self.cat_index[sc] >= 0]
                met[b][:, cats] |= area[b][:, None] > 0
        if met is None:
            self.unit_area_cat += area.T @ np.stack(carried)
        else:
            self.unit_area_cat += np.einsum("bk,bkc->kc", area, met)

    def _read(self, item: Any, default_size: tuple[int, int]) -> tuple[np.ndarray, list[int], tuple[int, int], np.ndarray]:
        """One image's pixel labels ``[planes, sh*sw]``, image-level labels, size, and the
        categories it carries ``[6]``; adds its labels' areas to :attr:`label_area`."""
        pixel = {c: np.asarray(v) for c, v in item.pixel_labels.items()}
        shapes = {v.shape[1:] for v in pixel.values() if v.ndim == 3}
        if len(shapes) > 1:
            raise ConsisError(f"label masks of {item.path} have different sizes {sorted(shapes)}; fix the probe's index.csv sh/sw")
        sh, sw = shapes.pop() if shapes else default_size
        planes = [v.reshape(v.shape[0], -1) for c in CATEGORIES if (v := pixel.get(c)) is not None and v.size]
        lab = np.concatenate(planes).astype(np.int64) if planes else np.zeros((0, sh * sw), np.int64)
        lab[lab >= self.num_labels] = 0  # numbers absent from label.csv count as unlabelled
        sc = [s for c in CATEGORIES for s in item.image_labels.get(c, []) if 0 < s < self.num_labels]
        counts = np.bincount(lab.ravel(), minlength=self.num_labels)
        counts[0] = 0
        self.label_area += counts
        for s in sc:
            self.label_area[s] += sh * sw
        present = counts > 0
        present[sc] = True
        return lab, sc, (int(sh), int(sw)), self.labelcat[present].any(axis=0)

    def _add_masks(
        self,
        fmap: torch.Tensor,
        sel: torch.Tensor,
        size: tuple[int, int],
        thresholds: torch.Tensor,
        planes: tuple[np.ndarray, ...],
        area: np.ndarray,
        met: np.ndarray | None,
    ) -> None:
        """Masks of the (image, unit) pairs ``sel`` at label size ``size``: their areas
        into ``area [B, K]``, their intersections into :attr:`inter`, and the
        categories they meet into ``met [B, K, 6]`` (when given)."""
        bi, ki = sel[:, 0], sel[:, 1]
        up = F.interpolate(fmap[bi, ki][:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        mask = (up > thresholds[ki][:, None, None]).reshape(len(sel), -1)  # [N, P]
        bnp, knp = bi.numpy(), ki.numpy()
        area[bnp, knp] = mask.sum(1).double().numpy()
        imgs = set(bnp.tolist())
        depth = max(planes[b].shape[0] for b in imgs)
        if depth == 0:
            return
        stack = np.zeros((len(planes), depth, size[0] * size[1]), np.int64)
        for b in imgs:
            stack[b, : planes[b].shape[0]] = planes[b]
        pair, pix = (t.numpy() for t in mask.nonzero(as_tuple=True))
        labs = stack[bnp[pair], :, pix]  # [M, depth]: label of every masked pixel in every plane
        hit = labs > 0
        K, L = self.inter.shape
        self.inter += np.bincount((knp[pair][:, None] * L + labs)[hit], minlength=K * L).reshape(K, L)
        if met is not None:
            pair_label = np.unique((pair[:, None] * L + labs)[hit])
            p, cat = pair_label // L, self.cat_index[pair_label % L]
            ok = cat >= 0
            met[bnp[p[ok]], knp[p[ok]], cat[ok]] = True

    def iou(self) -> np.ndarray:
        """``[K, L]`` IoU per unit and label number; 0 where the union is empty or the
        label has no category."""
        cats = self.cat_index
        units_cat = self.unit_area_cat[:, np.clip(cats, 0, None)]
        union = np.where(cats[None, :] >= 0, units_cat + self.label_area[None, :] - self.inter, 0.0)
        return np.divide(self.inter, union, out=np.zeros_like(self.inter), where=union > 0)
