"""Which of a model's outputs belong to which data set class, and the input convention.

The measures need two things a foreign classifier does not state by itself:

* **Class mapping.** Eq. 1-3 read only the *data set* labels of the activating
  images (WNID class folders, label ``c`` = the ``c``-th sorted WNID). The model's
  output indices matter for the FGSM label of ``consis_adv`` and for accuracy.
  :class:`ClassMap` holds, per data set class, the output indices that count as
  that class: the index whose WNID equals the class WNID, else every output whose
  WNID is a WordNet hyponym of it (the embedded class ``dog`` n02084071 is a
  hypernym of ImageNet's 118 dog breeds), else none.
* **Input convention.** Attacks take and return [0, 1] images (DESIGN section 2);
  a model that expects ``(x - mean) / std`` gets :class:`NormalizedModel` around it.

FGSM label of an image (documented choice): among the outputs mapped to its class,
the one the model scores highest; for a class with no mapped output, the model's
own top prediction (so the attack still moves the image away from what the model
sees). Accuracy is computed only over images whose class has a mapped output.

Example
-------
>>> cmap = class_map(["n01440764", "n02084071"], "imagenet1k", num_outputs=1000)
>>> cmap.targets[0], len(cmap.targets[1])
((0,), 118)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from consis_lib.errors import ConsisError
from consis_lib.models import IMAGENET_MEAN, IMAGENET_STD, Normalize

log = logging.getLogger(__name__)

IMAGENET1K = "imagenet1k"

#: What a model's classes may be given as: ``"imagenet1k"``, a file (JSON mapping
#: or one WNID per line), a list of WNIDs (output ``i`` = ``wnids[i]``), or a
#: mapping WNID -> output index or indices.
ModelClasses = str | Path | Sequence[str] | Mapping[str, int | Sequence[int]] | None


def imagenet1k_wnids() -> list[str]:
    """The 1000 WNIDs of torchvision's ImageNet-1k classes; output ``i`` is entry ``i``.

    The list is the sorted ILSVRC-2012 class folders, shipped as package data.

    Example
    -------
    >>> imagenet1k_wnids()[0]        # tench
    'n01440764'
    """
    text = resources.files("consis_lib.data").joinpath("imagenet1k_wnids.txt").read_text()
    return text.split()


@dataclass(frozen=True)
class ClassMap:
    """Per data set class ``c`` (sorted WNIDs), the model outputs that count as ``c``.

    Attributes
    ----------
    dataset_wnids : the data set's C class WNIDs (label order).
    num_outputs : O, the model's output size.
    targets : per class, a tuple of output indices (empty: not among the model's classes).
    source : where the mapping came from (for the report).
    """

    dataset_wnids: tuple[str, ...]
    num_outputs: int
    targets: tuple[tuple[int, ...], ...]
    source: str

    def mask(self) -> torch.Tensor:
        """Bool ``[C, O]``: ``mask[c, i]`` when output ``i`` counts as class ``c``."""
        m = torch.zeros(len(self.targets), self.num_outputs, dtype=torch.bool)
        for c, idx in enumerate(self.targets):
            m[c, list(idx)] = True
        return m

    @property
    def mapped(self) -> list[bool]:
        """Per class: at least one output is mapped to it."""
        return [bool(t) for t in self.targets]

    @property
    def is_identity(self) -> bool:
        """Output ``c`` is data set class ``c`` for every class, and nothing else."""
        return self.num_outputs == len(self.targets) and all(t == (c,) for c, t in enumerate(self.targets))

    @property
    def needs_logits(self) -> bool:
        """False when every class has exactly one output (the attack label is a lookup)."""
        return any(len(t) != 1 for t in self.targets)

    def attack_labels(self, labels: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        """Output indices ``[B]`` to attack for data set labels ``[B]``.

        The highest-scoring mapped output of the image's class; the model's top
        prediction for a class with no mapped output. ``logits [B, O]`` are needed
        unless every class has exactly one output.
        """
        mask = self.mask().to(labels.device)[labels]
        if logits is None:
            if self.needs_logits:
                raise ConsisError("this class mapping is not one-to-one; pass the model's logits")
            return mask.float().argmax(1)
        mask = torch.where(mask.any(1, keepdim=True), mask, torch.ones_like(mask))
        return logits.masked_fill(~mask, float("-inf")).argmax(1)

    def correct(self, preds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Bool ``[N]``: the predicted output counts as the image's class."""
        return self.mask()[labels.long(), preds.long()]

    def accuracy(self, preds: torch.Tensor, labels: torch.Tensor) -> float | None:
        """Top-1 accuracy over the images whose class has a mapped output (None if none has)."""
        keep = torch.tensor(self.mapped, dtype=torch.bool)[labels.long()]
        if not bool(keep.any()):
            return None
        return float(self.correct(preds, labels)[keep].float().mean())

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "num_outputs": self.num_outputs,
            "classes": {w: list(t) for w, t in zip(self.dataset_wnids, self.targets)},
        }


def _hyponym_wnids(wnid: str) -> set[str]:
    """The WNIDs of every WordNet hyponym (direct or not) of ``wnid``."""
    from consis_lib.wordnet import synset_of, wnid_of

    syn = synset_of(wnid)
    return {wnid_of(s) for s in syn.closure(lambda s: s.hyponyms() + s.instance_hyponyms())}


def _from_wnid_list(dataset_wnids: Sequence[str], model_wnids: Sequence[str], num_outputs: int, source: str) -> ClassMap:
    if len(model_wnids) != num_outputs:
        raise ConsisError(
            f"the model has {num_outputs} outputs but the class list ({source}) has {len(model_wnids)} entries; "
            "pass the class list this model was trained on (--classes FILE)"
        )
    index = {w: i for i, w in enumerate(model_wnids)}
    targets = []
    for w in dataset_wnids:
        if w in index:
            targets.append((index[w],))
            continue
        targets.append(tuple(sorted(index[h] for h in _hyponym_wnids(w) if h in index)))
        n = len(targets[-1])
        log.info("class %s: %s", w, f"{n} hyponym outputs" if n else "no model output (FGSM attacks the prediction)")
    return ClassMap(tuple(dataset_wnids), num_outputs, tuple(targets), source)


def _from_mapping(dataset_wnids: Sequence[str], mapping: Mapping[str, object], num_outputs: int, source: str) -> ClassMap:
    targets = []
    for w in dataset_wnids:
        raw = mapping.get(w, ())
        idx = (raw,) if isinstance(raw, int) else tuple(raw)  # type: ignore[arg-type]
        bad = [i for i in idx if not isinstance(i, int) or not 0 <= i < num_outputs]
        if bad:
            raise ConsisError(
                f"class map {source}: {w} -> {bad} is outside the model's {num_outputs} outputs; use indices 0..{num_outputs - 1}"
            )
        targets.append(tuple(sorted(set(idx))))
    return ClassMap(tuple(dataset_wnids), num_outputs, tuple(targets), source)


def read_class_file(path: str | Path) -> list[str] | dict[str, object]:
    """A model's classes from a file: JSON ``{wnid: index or [indices]}`` or a JSON
    list of WNIDs, else plain text with one WNID per line (line ``i`` = output ``i``)."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConsisError(f"cannot read class file {path}; pass a JSON mapping or a text file of WNIDs") from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConsisError(f"{path} is not valid JSON; write {{\"n02084071\": 3, ...}} or a list of WNIDs") from exc
        if isinstance(data, (list, dict)):
            return data
        raise ConsisError(f"{path} holds {type(data).__name__}; write a JSON object WNID -> index or a list of WNIDs")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def class_map(dataset_wnids: Sequence[str], model_classes: ModelClasses, num_outputs: int) -> ClassMap:
    """Map the data set's classes to a model's outputs.

    Parameters
    ----------
    dataset_wnids : the data set's sorted class WNIDs (label order).
    model_classes : ``"imagenet1k"`` (torchvision's 1000 classes), a file path, a
        list of WNIDs (output ``i`` = ``wnids[i]``), a mapping WNID -> index or
        indices, or None: the identity when the model has one output per data set
        class, ImageNet-1k when it has 1000.
    num_outputs : the model's output size O.

    Returns
    -------
    ClassMap. Raises :class:`ConsisError` when the output size does not fit the classes.
    """
    wnids = list(dataset_wnids)
    if model_classes is None:
        if num_outputs == len(wnids):
            return ClassMap(tuple(wnids), num_outputs, tuple((i,) for i in range(len(wnids))), "identity")
        if num_outputs == 1000:
            model_classes = IMAGENET1K
        else:
            raise ConsisError(
                f"the model has {num_outputs} outputs and the data {len(wnids)} classes; "
                "pass its classes (--classes imagenet1k, or a JSON/text file mapping WNIDs to outputs)"
            )
    if isinstance(model_classes, str) and model_classes == IMAGENET1K:
        return _from_wnid_list(wnids, imagenet1k_wnids(), num_outputs, IMAGENET1K)
    source = "given list"
    if isinstance(model_classes, (str, Path)):
        source, model_classes = str(model_classes), read_class_file(model_classes)
    if isinstance(model_classes, Mapping):
        return _from_mapping(wnids, model_classes, num_outputs, source)
    return _from_wnid_list(wnids, list(model_classes), num_outputs, source)


class NormalizedModel(nn.Module):
    """``net((x - mean) / std)``: a model that takes [0, 1] images.

    Attacks work in pixel space, so the normalisation a network expects goes
    inside it. The wrapped network is the child ``net``; its layer ``L`` is
    ``net.L`` in the wrapper.

    Example
    -------
    >>> wrapped = NormalizedModel(torchvision.models.resnet18())
    >>> torch.equal(wrapped(x), wrapped.net((x - wrapped.normalize.mean) / wrapped.normalize.std))
    True
    """

    def __init__(
        self, net: nn.Module, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
    ) -> None:
        super().__init__()
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ConsisError(f"mean {tuple(mean)} and std {tuple(std)} need one positive std per channel")
        self.normalize = Normalize(tuple(float(m) for m in mean), tuple(float(s) for s in std))
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))
