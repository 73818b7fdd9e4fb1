"""Step 4 of network dissection (Bau et al. 2017): the report, and its result type.

Each unit's best concept is the label of largest IoU; the unit is aligned when that
IoU exceeds ``iou_threshold`` (0.04). Per category (all six, :data:`CATEGORIES`),
the ratio is the fraction of the layer's units whose best aligned concept is in it
(Table 2 of the paper); a category with no labels in the probe reports 0 with a note.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from consis_lib.atomic import atomic_write_text
from consis_lib.concepts import CATEGORIES
from consis_lib.config import DissectConfig
from consis_lib.errors import ConsisError

__all__ = ["DissectionResult", "report"]


@dataclass
class DissectionResult:
    """Output of :func:`consis_lib.dissect.dissect`.

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
    meta : the run's passes over the probe, top-k buffer size, and the ``union`` and
        ``primary_category`` rules of the IoU (:mod:`consis_lib.dissect_tally`).
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


def report(
    layer: str,
    iou: np.ndarray,
    names: list[str],
    cats: list[str],
    label_area: np.ndarray,
    thresholds: np.ndarray,
    cfg: DissectConfig,
    **provenance: Any,
) -> DissectionResult:
    """Best concept per unit and per-category ratios from ``iou [K, num_labels]``.

    ``names``, ``cats``: name and primary category per label number; ``label_area``:
    ``sum |L_c|`` per label number (a category whose labels cover nothing gets a note);
    ``provenance``: ``num_images``, ``adversarial``, ``meta``.

    Example
    -------
    >>> res = report("layer4", iou, names, cats, tally.label_area, thr, DissectConfig(), num_images=500)
    """
    table = _unit_table(iou, names, cats, thresholds, cfg.iou_threshold)
    K, aligned, best_cats = len(table), table["aligned"].to_numpy(), table["category"].to_numpy()
    counts = {c: int((aligned & (best_cats == c)).sum()) for c in CATEGORIES}
    label_cats = np.array(cats)
    notes = [
        f"category {c!r} has no labels in the probe; its ratio is reported as 0"
        for c in CATEGORIES
        if label_area[label_cats == c].sum() == 0
    ]
    return DissectionResult(
        layer=layer,
        table=table,
        ratios={c: counts[c] / K if K else 0.0 for c in CATEGORIES},
        counts=counts,
        notes=notes,
        iou=iou,
        label_names=names,
        label_categories=cats,
        thresholds=thresholds,
        quantile=cfg.quantile,
        iou_threshold=cfg.iou_threshold,
        **provenance,
    )


def _unit_table(iou: np.ndarray, names: list[str], cats: list[str], thr: np.ndarray, iou_threshold: float) -> pd.DataFrame:
    """Per unit: best label (0 and ``""`` when every IoU is 0), its IoU, aligned flag, threshold."""
    K = iou.shape[0]
    best = iou.argmax(1) if iou.shape[1] else np.zeros(K, dtype=np.int64)
    best_iou = iou[np.arange(K), best] if iou.shape[1] else np.zeros(K)
    return pd.DataFrame(
        {
            "unit": np.arange(K),
            "concept": [names[b] if best_iou[k] > 0 else "" for k, b in enumerate(best)],
            "category": [cats[b] if best_iou[k] > 0 else "" for k, b in enumerate(best)],
            "iou": best_iou,
            "aligned": best_iou > iou_threshold,
            "label": np.where(best_iou > 0, best, 0),
            "threshold": thr,
        }
    )
