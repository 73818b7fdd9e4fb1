"""The data page's examples: contact sheets, a few images per class, one probe image.

* :func:`contact_sheet`: for the embedded set one row per class and one column per
  sprite style; for folder data (ImageNet layout) a few images of a few classes
  read from the folder (:func:`folder_contact_sheet`);
* :func:`class_subset`: a few images of a few classes of a data set, for
  :func:`consis_lib.viz.class_samples` (ImageNet has 1000 classes);
* :func:`probe_example_of`: one probe image with its label masks, drawn by the
  embedded generator or read from a Broden folder.

Example
-------
>>> from consis_lib.config import get_profile
>>> fig = contact_sheet(get_profile("smoke").data)        # doctest: +SKIP
>>> fig.savefig("sheet.png")                              # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from consis_lib.atomic import atomic_path
from consis_lib.cache import cache_root
from consis_lib.config import DataConfig
from consis_lib.data.classes import CuratedClass, classes_for_profile
from consis_lib.data.compose import compose
from consis_lib.data.embedded import SPRITE_SIZE, image_rng
from consis_lib.data.imagefolder import IMAGE_EXTENSIONS, load_image, read_class_names, resize_center_crop
from consis_lib.data.probe import ProbeExample, probe_example
from consis_lib.data.sprite_styles import available_styles
from consis_lib.data.sprites import load_sprites
from consis_lib.errors import ConsisError

__all__ = ["contact_sheet", "folder_contact_sheet", "class_subset", "probe_example_of", "save_figure"]


def _on_grey(sprite: np.ndarray, level: float = 200.0) -> np.ndarray:
    a = sprite[..., 3:4].astype(np.float32) / 255.0
    return (sprite[..., :3] * a + level * (1 - a)).astype(np.uint8)


def contact_sheet(
    cfg: DataConfig,
    classes: Sequence[CuratedClass] | None = None,
    styles: Sequence[str] | None = None,
    composite: bool = False,
    cache_dir: str | Path | None = None,
    cell_inches: float = 0.7,
) -> Figure:
    """Draw every class (rows) in every sprite style (columns); for folder data
    (``cfg.source == "folder"``) :func:`folder_contact_sheet` of ``cfg.root``.

    Parameters
    ----------
    cfg : DataConfig
        Picks the classes (profile, num_classes) and, with ``composite``, the image
        size and seed of the example composites. ``classes``, ``styles`` and
        ``composite`` apply to the embedded set only.
    classes : sequence of CuratedClass, optional
        Override the profile's classes.
    styles : sequence of str
        Columns, default every installed style (:func:`~consis_lib.data.sprite_styles.available_styles`).
    composite : bool
        Show one composited validation-style image per cell instead of the bare sprite.
    cache_dir : path, optional
        Sprite cache, default :func:`~consis_lib.cache.cache_root`.
    cell_inches : float
        Size of one cell in inches.

    Returns
    -------
    matplotlib.figure.Figure
        ``len(classes)`` rows x ``len(styles)`` columns of images, rows labelled
        ``name (wnid)``, columns by style.
    """
    if cfg.source == "folder":
        return folder_contact_sheet(cfg.root, cell_inches=cell_inches)
    classes = list(classes) if classes is not None else classes_for_profile(cfg)
    styles = tuple(styles) if styles is not None else available_styles()
    cache = Path(cache_dir) if cache_dir is not None else cache_root()
    sprites = load_sprites([c.emoji for c in classes], styles, SPRITE_SIZE, cache)
    rows, cols = len(classes), len(styles)
    fig = Figure(figsize=(1.6 + cols * cell_inches, 0.4 + rows * cell_inches))
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, c in enumerate(classes):
        for k, style in enumerate(styles):
            ax = axes[r][k]
            sprite = sprites[style].get(c.emoji)
            if sprite is not None:
                if composite:
                    img = compose(sprite, cfg.image_size, image_rng(cfg.seed, "val", c.wnid, k)).image
                else:
                    img = _on_grey(sprite)
                ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if r == 0:
                ax.set_title(style, fontsize=8)
            if k == 0:
                ax.set_ylabel(f"{c.name}\n{c.wnid}", fontsize=7, rotation=0, ha="right", va="center")
    fig.subplots_adjust(left=1.4 / (1.6 + cols * cell_inches), right=0.99, top=0.97, bottom=0.01, wspace=0.05, hspace=0.05)
    return fig


def _spread(n: int, k: int) -> list[int]:
    """``min(n, k)`` indices spread evenly over ``range(n)``, first and last included."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]


def _first_images(folder: Path, k: int) -> list[Path]:
    """The first ``k`` image files of a class folder, by name."""
    files = sorted(f.name for f in os.scandir(folder) if f.name.lower().endswith(IMAGE_EXTENSIONS) and not f.name.startswith("."))
    return [folder / f for f in files[:k]]


def folder_contact_sheet(
    root: str | Path, split: str = "val", max_classes: int = 12, per_class: int = 6, thumb: int = 96,
    cell_inches: float = 0.9,
) -> Figure:
    """A few images of a few classes of an ImageNet-layout folder, one row per class.

    Parameters
    ----------
    root : folder holding ``<split>/<wnid>/`` image folders.
    split : which split to show.
    max_classes : rows: at most this many classes, spread evenly over the sorted WNIDs.
    per_class : columns: the first images of each class, by file name.
    thumb : pixel side of each image (shorter side resized, centre crop).
    cell_inches : size of one cell in inches.

    Returns
    -------
    matplotlib.figure.Figure
        Rows labelled ``name`` and ``wnid`` (names from ``classes.json`` or WordNet).
    """
    folder = Path(root) / split
    if not folder.is_dir():
        raise ConsisError(f"{folder} does not exist: the data folder needs {split}/<wnid>/ image folders")
    wnids = sorted(d.name for d in os.scandir(folder) if d.is_dir() and not d.name.startswith("."))
    wnids = [wnids[i] for i in _spread(len(wnids), max_classes)]
    rows = [_first_images(folder / w, per_class) for w in wnids]
    if not any(rows):
        raise ConsisError(f"{folder} holds no images in <wnid>/ folders: add images")
    names = read_class_names(Path(root), wnids)
    fig = Figure(figsize=(1.6 + per_class * cell_inches, 0.3 + len(wnids) * cell_inches))
    axes = fig.subplots(len(wnids), per_class, squeeze=False)
    for r, (wnid, name, files) in enumerate(zip(wnids, names, rows)):
        for k, ax in enumerate(axes[r]):
            if k < len(files):
                ax.imshow(np.asarray(resize_center_crop(load_image(files[k]), thumb)))
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        axes[r][0].set_ylabel(f"{name}\n{wnid}", fontsize=7, rotation=0, ha="right", va="center")
    fig.subplots_adjust(left=1.4 / (1.6 + per_class * cell_inches), right=0.99, top=0.99, bottom=0.01, wspace=0.05, hspace=0.05)
    return fig


class _ClassSubset(torch.utils.data.Dataset):
    """Some images of some classes of a labelled data set, relabelled ``0..k-1``."""

    def __init__(self, dataset: Any, indices: list[int], labels: list[int], names: list[str]) -> None:
        self.dataset, self.indices, self.targets, self.names = dataset, indices, labels, names

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.dataset[self.indices[i]][0], self.targets[i]


def class_subset(dataset: Any, max_classes: int = 24, per_class: int = 8) -> torch.utils.data.Dataset:
    """The first ``per_class`` images of at most ``max_classes`` classes (spread evenly).

    Parameters
    ----------
    dataset : a :class:`~consis_lib.data.imagefolder.WnidImageFolder` (``targets``,
        ``names``, items ``(image [3,H,W], label)``).

    Returns
    -------
    A data set with ``targets`` and ``names`` of the chosen classes (labels
    ``0..k-1``, in the original order), for :func:`consis_lib.viz.class_samples`.
    """
    chosen = _spread(len(dataset.names), max_classes)
    new_label = {c: i for i, c in enumerate(chosen)}
    picked: dict[int, list[int]] = {c: [] for c in chosen}
    for i, t in enumerate(dataset.targets):
        if t in picked and len(picked[t]) < per_class:
            picked[t].append(i)
    indices = [i for c in chosen for i in picked[c]]
    labels = [new_label[c] for c in chosen for _ in picked[c]]
    return _ClassSubset(dataset, indices, labels, [dataset.names[c] for c in chosen])


def _broden_example(probe: Any, index: int) -> ProbeExample:
    """Probe image ``index`` of a :class:`~consis_lib.data.broden.Broden` folder with one
    mask per pixel-level category (where several overlap, the first mask's label wins)."""
    item = probe[index]
    masks = {}
    for cat, planes in item.pixel_labels.items():
        mask = np.zeros(planes.shape[1:], np.int64)
        for plane in planes:
            mask = np.where(mask == 0, plane, mask)
        masks[cat] = mask
    scene = item.image_labels.get("scene") or []
    image = (item.image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    names = {int(n): str(m) for n, m in zip(probe.labels["number"], probe.labels["name"])}
    return ProbeExample(image, masks, probe.label_name(scene[0]) if scene else "", names, index)


def probe_example_of(cfg: DataConfig, probe: Any, index: int = 0, cache_dir: str | Path | None = None) -> ProbeExample:
    """Probe image ``index`` with its label masks: drawn by the embedded generator (at
    the probe's own size), or read from the Broden folder of folder data (``probe``,
    a :class:`~consis_lib.data.broden.Broden`)."""
    if cfg.source == "folder":
        return _broden_example(probe, index)
    return probe_example(cfg, index, Path(cache_dir) if cache_dir is not None else None)


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Save a figure atomically (temporary file + rename); the format follows the suffix."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    return path
