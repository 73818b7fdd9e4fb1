"""Bring your own model: consistency (Eq. 1-3), ``consis_adv`` and dissection of any layer.

:func:`measure` scores one layer of any PyTorch image classifier on an
ImageNet-layout folder of WNID classes with the library's own functions:
:func:`~consis_lib.activations.unit_activations` with FGSM
(:func:`~consis_lib.activations.fgsm_attack`) for ``a_n(x)`` and ``a_n(x*)``,
:func:`~consis_lib.consistency.consistency_report` for Eq. 1-3 with bootstrap
CIs, and optionally :func:`~consis_lib.dissect.dissect` on a Broden-format probe.
Class mapping and input normalisation: :mod:`consis_lib.classmap`.

The report carries the controls of the consistency pages (DESIGN section 1):
the attack success rate, ``consis_adv`` over the successful adversarial images
only, and the common scale (unbiased Eq. 3, permutation baseline, lift). The
shared-adversarial-set control compares several models and is not computed for one.

Example
-------
>>> ds = image_folder("data/imagenet", image_size=224, crop=True)
>>> res = measure(torchvision.models.resnet50(weights="DEFAULT"), "layer4", ds,
...               classes="imagenet1k", mean=IMAGENET_MEAN, std=IMAGENET_STD, eps=2 / 255)
>>> res.report.mean.mean, res.report.mean_adv.mean
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from consis_lib.activations import Activations, AttackFn, fgsm_attack, model_device, unit_activations
from consis_lib.classmap import ClassMap, ModelClasses, NormalizedModel, class_map
from consis_lib.config import DissectConfig, MetricConfig
from consis_lib.consistency import ConsistencyReport, consistency_report, label_distributions
from consis_lib.errors import ConsisError
from consis_lib.hooks import capture

log = logging.getLogger(__name__)


@dataclass
class MeasureResult:
    """What :func:`measure` returns.

    Attributes
    ----------
    layer : the measured layer (the name in the user's model).
    report : Eq. 1-3 report: per-unit ``consis``/``consis_adv`` [K], layer means with
        bootstrap CIs, sweeps, the controls, clean and FGSM accuracy (over mapped classes).
    class_map : data set class -> model outputs.
    label_probs : [K, C] Eq. 1 distributions on the real images.
    top_images, top_images_adv : [K, top_k] data set indices of the images with the
        highest ``a_n(x)`` and ``a_n(x*)``.
    dissection : :class:`~consis_lib.dissect.DissectionResult` or None.
    settings : eps, seed, batch size, metric config, number of images.
    """

    layer: str
    report: ConsistencyReport
    class_map: ClassMap
    label_probs: np.ndarray
    top_images: np.ndarray
    top_images_adv: np.ndarray
    dissection: Any = None
    settings: dict[str, Any] = field(default_factory=dict)


def _close(name: str, names: list[str]) -> str:
    near = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    return f" (did you mean {', '.join(near)}?)" if near else ""


def check_layer_name(model: nn.Module, layer: str) -> None:
    """Raise :class:`ConsisError` naming close candidates when ``layer`` is no submodule path."""
    names = [n for n, _ in model.named_modules() if n]
    if layer not in names:
        raise ConsisError(
            f"the model has no layer {layer!r}{_close(layer, names)}; pass a name from model.named_modules()"
        )


def conv_layers(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the submodules whose output on ``x`` is ``[B, K, h, w]`` (units with a map)."""
    names = [n for n, _ in model.named_modules() if n]
    with torch.no_grad(), capture(model, names) as feats:
        model(x)
    return [n for n in names if isinstance(feats.get(n), torch.Tensor) and feats[n].dim() == 4]


def inspect_model(model: nn.Module, layer: str, x: torch.Tensor) -> tuple[int, tuple[int, ...]]:
    """Output size O and the layer's output shape on one batch ``x`` (validated).

    Raises :class:`ConsisError` for an unknown layer, a layer without channel and
    spatial axes (listing the layers that qualify) or a model that returns no ``[B, O]`` logits.
    """
    check_layer_name(model, layer)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), capture(model, [layer]) as feats:
            out = model(x)
        fmap = feats.get(layer)
        if not isinstance(fmap, torch.Tensor) or fmap.dim() != 4:
            shape = tuple(fmap.shape) if isinstance(fmap, torch.Tensor) else type(fmap).__name__
            good = conv_layers(model, x)
            raise ConsisError(
                f"layer {layer!r} outputs {shape}, not [B, K, h, w]; pass a layer with channel and spatial axes, "
                f"e.g. {', '.join(good[-6:]) or 'a Conv2d or its block'}"
            )
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise ConsisError("the model must return logits [B, num_classes]; wrap it so that forward returns them")
    return int(out.shape[1]), tuple(fmap.shape[1:])


def mapped_fgsm(eps: float, cmap: ClassMap) -> AttackFn:
    """FGSM (``fgsm_attack(eps)``) whose label is the class map's output for each image.

    With a one-to-one map the label is a lookup (for the identity map: the data set
    label itself); otherwise the mapped output the model scores highest, or the
    model's prediction for a class without mapped outputs (:meth:`ClassMap.attack_labels`).
    """
    base = fgsm_attack(eps)

    def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if y is None:
            raise ConsisError("FGSM needs class labels; measure a labelled image folder")
        logits = None
        if cmap.needs_logits:
            with torch.no_grad():
                logits = model(x)
        return base(model, x, cmap.attack_labels(y, logits))

    return run


def attack_success(cmap: ClassMap, acts: Activations) -> torch.Tensor:
    """[N] bool: FGSM fooled the model on the image.

    For a class with mapped outputs: the adversarial prediction is none of them
    (for the identity map this is ``adv_preds != labels``, the library's default);
    for a class without: the adversarial prediction differs from the clean one.
    """
    mapped = torch.tensor(cmap.mapped, dtype=torch.bool)[acts.labels]
    wrong = ~cmap.correct(acts.adv_preds, acts.labels)
    return torch.where(mapped, wrong, acts.adv_preds != acts.preds)


def _top(acts: torch.Tensor, k: int) -> np.ndarray:
    order = torch.sort(acts.t(), dim=1, descending=True, stable=True).indices
    return order[:, :k].numpy()


def _checked_model(
    model: nn.Module | Callable[[], nn.Module], layer: str, data: Any, classes: ModelClasses,
    mean: tuple[float, ...] | None, std: tuple[float, ...] | None, device: torch.device | str | None,
) -> tuple[nn.Module, str, Any]:
    """The model to run (normalising its input when ``mean`` is given), the hooked layer's
    path in it and the class map of ``data`` to its outputs; checked on one image."""
    net = model if isinstance(model, nn.Module) else model()
    if device is not None:
        net = net.to(device)
    wrapped, hooked = (NormalizedModel(net, mean, std), f"net.{layer}") if mean is not None else (net, layer)
    check_layer_name(net, layer)
    if len(data) == 0:
        raise ConsisError("the image folder holds no images; pass a folder of WNID class folders with images")
    x0 = data[0][0][None].to(model_device(wrapped))
    num_outputs, shape = inspect_model(wrapped, hooked, x0)
    cmap = class_map(data.wnids, classes, num_outputs)
    log.info("layer %s: %d units of %dx%d; %d outputs (%s)", layer, shape[0], shape[1], shape[2], num_outputs, cmap.source)
    return wrapped, hooked, cmap


def measure(
    model: nn.Module | Callable[[], nn.Module],
    layer: str,
    data: Any,
    *,
    classes: ModelClasses = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    eps: float = 2.0 / 255.0,
    metric: MetricConfig = MetricConfig(),
    seed: int = 0,
    batch_size: int = 64,
    probe: Any = None,
    dissect_cfg: DissectConfig = DissectConfig(),
    top_k: int = 4,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> MeasureResult:
    """Score ``layer`` of ``model``: Eq. 1-3, ``consis_adv`` (FGSM), controls, dissection.

    Parameters
    ----------
    model : a classifier returning logits ``[B, O]``, or a factory building one.
    layer : any ``model.get_submodule`` path with output ``[B, K, h, w]`` (e.g. ``"layer4"``).
    data : a :class:`~consis_lib.data.imagefolder.WnidImageFolder` (images in [0, 1],
        labels = sorted WNIDs), see :func:`image_folder`.
    classes : the model's classes (:func:`consis_lib.classmap.class_map`).
    mean, std : the input normalisation the model expects; None when it takes [0, 1]
        images. The model is wrapped in :class:`~consis_lib.classmap.NormalizedModel`.
    eps : FGSM step in [0, 1] pixel units.
    metric : top fraction, ``min_top``, sigma, sweeps and bootstrap of Eq. 1-3.
    seed : seeds the bootstrap and the permutation baseline.
    batch_size : images per batch (unshuffled, in data set order).
    probe : optional Broden-format probe (:class:`~consis_lib.data.broden.Broden`) to dissect on.
    top_k : images kept per unit for the explorer.
    device : default: the model's device.

    Returns
    -------
    MeasureResult.

    Example
    -------
    >>> res = measure(torchvision.models.resnet18(), "layer4", image_folder(root, 224, crop=True),
    ...               classes="imagenet1k", mean=IMAGENET_MEAN, std=IMAGENET_STD)
    """
    from consis_lib.wordnet import distance_matrix

    wrapped, hooked, cmap = _checked_model(model, layer, data, classes, mean, std, device)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    acts = unit_activations(wrapped, loader, hooked, reduce=metric.activation, device=device,
                            attack=mapped_fgsm(eps, cmap), progress=progress)
    acts.layer = layer
    dist = distance_matrix(data.wnids)
    identity = cmap.is_identity
    report = consistency_report(acts, dist, metric, seed=seed, adv_success=None if identity else attack_success(cmap, acts))
    if not identity:
        report.accuracy = cmap.accuracy(acts.preds, acts.labels)
        report.adv_accuracy = cmap.accuracy(acts.adv_preds, acts.labels)
    dissection = None
    if probe is not None:
        from consis_lib.dissect import dissect

        dissection = dissect(wrapped, hooked, probe, dissect_cfg, device=device, progress=progress)
        dissection.layer = layer
    return MeasureResult(
        layer=layer,
        report=report,
        class_map=cmap,
        label_probs=label_distributions(acts.acts, acts.labels, len(data.wnids), metric.top_fraction, metric.min_top).numpy(),
        top_images=_top(acts.acts, top_k),
        top_images_adv=_top(acts.adv_acts, top_k),
        dissection=dissection,
        settings={"eps": eps, "seed": seed, "batch_size": batch_size, "num_images": len(data),
                  "metric": {k: getattr(metric, k) for k in metric.__dataclass_fields__}},
    )


def image_folder(path: str | Path, image_size: int, crop: bool = False) -> Any:
    """The labelled images of ``path/val/<wnid>/`` (or ``path/<wnid>/``) at ``image_size``.

    ``crop=True`` is torchvision's evaluation convention: shorter side resized to
    ``image_size * 8/7`` (256 for 224), then the centre ``image_size`` square;
    otherwise the shorter side is resized to ``image_size`` and the centre cropped.
    """
    from consis_lib.data.imagefolder import WnidImageFolder
    from consis_lib.wordnet import is_wnid

    path = Path(path)
    if not path.is_dir():
        raise ConsisError(f"data folder {path} does not exist; pass an ImageNet-layout folder (DIR/val/<wnid>/ or DIR/<wnid>/)")
    root, split = (path, "val") if (path / "val").is_dir() else (path.parent, path.name)
    if split != "val" and not any(is_wnid(p.name) for p in path.iterdir() if p.is_dir()):
        raise ConsisError(f"{path} holds neither val/ nor WNID class folders; pass DIR with DIR/val/<wnid>/ or DIR/<wnid>/")
    if crop:
        return WnidImageFolder(root, split, image_size=image_size, resize_size=round(image_size * 8 / 7))
    return WnidImageFolder(root, split, image_size=image_size)


# --------------------------------------------------------------------------- loading models


@dataclass
class LoadedModel:
    """A model read from a ``--model`` spec, with the conventions it comes with.

    ``mean``/``std`` None: the model takes [0, 1] images. ``crop``: torchvision's
    resize-then-centre-crop. ``eps``, ``metric``, ``seed``, ``batch_size``: what the
    book's consistency page uses for a consis checkpoint (its profile's metric
    config, bootstrap seed and batch size, the checkpoint's FGSM eps); None: the
    caller's defaults.
    """

    model: nn.Module
    kind: str
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    image_size: int
    crop: bool
    classes: ModelClasses = None
    eps: float | None = None
    metric: MetricConfig | None = None
    seed: int | None = None
    batch_size: int | None = None


def torchvision_model(name: str, weights: str = "none", **kwargs: Any) -> nn.Module:
    """torchvision's classification model ``name``; ``weights="default"`` loads its
    DEFAULT weights from the ``$TORCH_HOME`` cache (never downloads: a missing file
    is a :class:`ConsisError` naming where to put it)."""
    import os

    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    if name not in names:
        raise ConsisError(f"torchvision has no classification model {name!r}{_close(name, names)}; see torchvision.models.list_models()")
    if weights == "none":
        return torchvision.models.get_model(name, weights=None, **kwargs)
    if weights != "default":
        raise ConsisError(f"--weights {weights!r} is unknown; use 'none' (random) or 'default' (torchvision's weights)")
    w = torchvision.models.get_model_weights(name).DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(w.url)
    if not cached.is_file():
        raise ConsisError(f"{name} weights are not cached at {cached}; copy {cached.name} there (TORCH_HOME sets the folder) or pass --weights none")
    return torchvision.models.get_model(name, weights=w, **kwargs)


def _from_consis_checkpoint(path: Path) -> LoadedModel:
    from consis_lib.config import PROFILES, get_profile
    from consis_lib.train import load_checkpoint

    model, meta = load_checkpoint(path)
    cfg = meta.get("config", {})
    profile = cfg.get("data", {}).get("profile")
    prof = get_profile(profile) if profile in PROFILES else None
    return LoadedModel(model, "consis", None, None, int(meta["image_size"]), False, list(meta.get("wnids") or []) or None,
                       eps=cfg.get("attack", {}).get("eps"), metric=prof.metric if prof else None,
                       seed=prof.train.seed if prof else None, batch_size=prof.dissect.batch_size if prof else None)


def _from_state_dict(path: Path, state: dict[str, Any], arch: str | None) -> nn.Module:
    if arch is None:
        raise ConsisError(f"{path} holds a state_dict; pass --arch NAME (the torchvision architecture it was saved from, e.g. resnet50)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    last = [v for k, v in state.items() if k.endswith("weight") and v.dim() >= 1]
    if not last:
        raise ConsisError(f"{path} holds no weight tensors; pass a state_dict, a full model or a consis checkpoint")
    model = torchvision_model(arch, num_classes=int(last[-1].shape[0]))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise ConsisError(f"{path} does not fit torchvision {arch} ({detail[:160]}); pass the --arch it was saved from") from exc
    return model


def load_model(spec: str, arch: str | None = None, weights: str = "none", trust_pickle: bool = False) -> LoadedModel:
    """Read a ``--model`` spec: ``torchvision:NAME``, or a file holding a consis
    checkpoint, a ``state_dict`` (with ``arch``, a torchvision name) or a full pickled
    model (only with ``trust_pickle``: ``torch.load(weights_only=True)`` cannot read it,
    and unpickling runs code from the file).

    Example
    -------
    >>> load_model("torchvision:resnet18").image_size
    224
    """
    from consis_lib.models import IMAGENET_MEAN, IMAGENET_STD

    tv = dict(mean=IMAGENET_MEAN, std=IMAGENET_STD, image_size=224, crop=True)
    if spec.startswith("torchvision:"):
        model = torchvision_model(spec.split(":", 1)[1], weights)
        return LoadedModel(model, "torchvision", **tv)
    path = Path(spec)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise ConsisError(f"no model file {path}; pass torchvision:NAME or a .pt file (consis checkpoint, state_dict or model)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not weights only"
        if not trust_pickle:
            raise ConsisError(
                f"{path} is a pickled model that weights_only loading refuses; pass --trust-pickle if you trust its source, "
                "or save model.state_dict() and pass --arch"
            ) from exc
        obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, nn.Module):
        return LoadedModel(obj.eval(), "pickle", **tv)
    if isinstance(obj, dict) and "arch" in obj and "state_dict" in obj:
        return _from_consis_checkpoint(path)
    if isinstance(obj, dict) and set(obj) & {"state_dict", "model"} and len(obj) <= 3:
        obj = obj.get("state_dict", obj.get("model"))
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return LoadedModel(_from_state_dict(path, obj, arch).eval(), "state_dict", **tv)
    raise ConsisError(f"{path} holds {type(obj).__name__}, not a model, a state_dict or a consis checkpoint; save model.state_dict()")

