"""The numbers of the static neuron explorer: every unit of one model (:class:`ModelUnits`)
and the JSON the page reads (:func:`explorer_data`).

Per unit and model: ``consis(n)`` and ``consis_adv(n)`` (Eq. 3), the dominant
classes of Eq. 1's ``consis(n, c)`` on real and on adversarial images, the best
dissection concepts, and the unit's tiles in the model's sprite.

Example
-------
>>> data = explorer_data([units], ["dog", "wolf"])
>>> data["units"][0]["m"][0]["c"]   # consis(0) of the first model
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from consis_lib.errors import ConsisError

Concept = tuple[str, str, float]  # (concept, category, IoU)


@dataclass(frozen=True, eq=False)
class ModelUnits:
    """Every unit of the metric layer of one model, as the static explorer shows it.

    Attributes
    ----------
    name : the model's name in the run (e.g. ``"normal"``).
    consis, consis_adv : Eq. 3 per unit [K] (NaN where no image activates the unit).
    probs, probs_adv : Eq. 1 ``consis(n, c)`` on real / adversarial images [K, C].
    sprite : the tiles of every unit (:func:`sprite_sheet`): ``top_k`` top real
        images, then ``top_k`` top adversarial images.
    top_k : images per row of a unit.
    thumb : tile side in pixels.
    concepts, concepts_adv : per unit, the best dissection concept above the IoU
        threshold on real / adversarial probe images, or None (empty: no dissection).
    units_per_column : the sprite's layout (:func:`tile_origin`).
    """

    name: str
    consis: np.ndarray
    consis_adv: np.ndarray
    probs: np.ndarray
    probs_adv: np.ndarray
    sprite: Image.Image
    top_k: int
    thumb: int
    concepts: tuple[Concept | None, ...] = ()
    concepts_adv: tuple[Concept | None, ...] = ()
    units_per_column: int = 256

    @property
    def n_units(self) -> int:
        return len(self.consis)


def dominant_classes(probs: Sequence[float], names: Sequence[str], top: int = 3) -> list[tuple[str, float]]:
    """The ``top`` classes with the largest Eq. 1 share ``consis(n, c) > 0``, largest first.

    Example
    -------
    >>> dominant_classes([0.2, 0.0, 0.8], ["dog", "cat", "wolf"], top=3)
    [('wolf', 0.8), ('dog', 0.2)]
    """
    p = np.nan_to_num(np.asarray(probs, float), nan=0.0)
    if p.shape != (len(names),):
        raise ConsisError(f"{p.shape[0]} probabilities for {len(names)} class names; pass one row of Eq. 1 per unit")
    order = np.argsort(-p, kind="stable")[:top]
    return [(str(names[i]), float(p[i])) for i in order if p[i] > 0]


def _num(v: float) -> float | None:
    return round(float(v), 4) if np.isfinite(v) else None


def _concept(c: Concept | None) -> list[Any] | None:
    return None if c is None else [str(c[0]), str(c[1]), round(float(c[2]), 4)]


def _check_models(models: Sequence[ModelUnits], class_names: Sequence[str]) -> None:
    if not models:
        raise ConsisError("the explorer needs at least one model; pass one ModelUnits per model")
    first = models[0]
    for m in models:
        if m.n_units != first.n_units or (m.top_k, m.thumb, m.units_per_column) != (first.top_k, first.thumb, first.units_per_column):
            raise ConsisError(f"model {m.name!r} has another layer size or tile layout than {first.name!r}; build all models with the same settings")
        if m.probs.shape != (m.n_units, len(class_names)) or m.probs_adv.shape != m.probs.shape:
            raise ConsisError(f"model {m.name!r}: Eq. 1 tables must be [{m.n_units}, {len(class_names)}] (units x classes)")
        for concepts in (m.concepts, m.concepts_adv):
            if concepts and len(concepts) != m.n_units:
                raise ConsisError(f"model {m.name!r}: {len(concepts)} concepts for {m.n_units} units; pass one per unit or none")


def explorer_data(models: Sequence[ModelUnits], class_names: Sequence[str], top_classes: int = 3) -> dict[str, Any]:
    """The JSON the explorer's JavaScript reads: one entry per unit, one record per model.

    Each record holds ``c`` = consis(n), ``a`` = consis_adv(n), ``g`` = their gap
    (None when undefined), ``cls`` / ``cls_adv`` = the dominant classes
    ``[[name, consis(n, c)], ...]`` on real / adversarial images, and
    ``concept`` / ``concept_adv`` = ``[concept, category, IoU]`` or None.
    """
    _check_models(models, class_names)
    first = models[0]
    units = []
    for u in range(first.n_units):
        records = []
        for m in models:
            c, a = float(m.consis[u]), float(m.consis_adv[u])
            records.append(
                dict(
                    c=_num(c), a=_num(a), g=_num(c - a),
                    cls=dominant_classes(m.probs[u], class_names, top_classes),
                    cls_adv=dominant_classes(m.probs_adv[u], class_names, top_classes),
                    concept=_concept(m.concepts[u]) if m.concepts else None,
                    concept_adv=_concept(m.concepts_adv[u]) if m.concepts_adv else None,
                )
            )
        units.append(dict(u=u, m=records))
    return dict(
        models=[m.name for m in models], n_units=first.n_units, top_k=first.top_k, thumb=first.thumb,
        upc=first.units_per_column, top_classes=top_classes, units=units,
    )
