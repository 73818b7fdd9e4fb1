"""The book's name and colour of each model kind and image set, shared by its figures and tables."""

from __future__ import annotations

from collections.abc import Mapping

from consis_lib.results import MODEL_LABELS

MODEL_COLORS: Mapping[str, str] = {"normal": "#0173B2", "at": "#DE8F05", "adv": "#029E73"}
"""One colour per model kind across the book (seaborn's colour-blind palette):
``normal``, ``at`` (AT, beta = 0) and ``adv`` (Eq. 6); labels in ``results.MODEL_LABELS``."""

IMAGE_COLORS: Mapping[str, str] = {"real": "#4D4D4D", "adversarial": "#D55E00"}
"""Real images and their adversarial counterparts, wherever both are drawn."""


def model_kind(name: str) -> str | None:
    """The model kind (``normal``/``at``/``adv``) a run name or label denotes, if any.

    Accepts the kinds, their labels (``"Eq. 6"``, ``"AT (beta = 0)"``) and Fig. 5
    names (``"ResNet-18-Adv"``). Example: ``model_kind("VGG-16-Adv") == "adv"``.
    """
    name = str(name)
    if name in MODEL_COLORS:
        return name
    by_label = {v: k for k, v in MODEL_LABELS.items()}
    if name in by_label:
        return by_label[name]
    low = name.lower()
    return "adv" if low.endswith("-adv") else ("at" if low.endswith("-at") else None)


def model_color(name: str) -> str | None:
    """The book's colour of a model (see :func:`model_kind`); None for other names."""
    kind = model_kind(name)
    return MODEL_COLORS[kind] if kind else None


def model_label(name: str) -> str:
    """The book's label of a model kind (``"adv"`` -> ``"Eq. 6"``, ``"at"`` -> ``"AT (beta = 0)"``); other names unchanged."""
    return MODEL_LABELS.get(str(name), str(name))
