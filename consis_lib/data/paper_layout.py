"""A paper-shaped synthetic data set: an ImageNet-layout folder and a Broden-layout probe.

The ``paper`` profile reads ImageNet (ILSVRC-2012) and NetDissect's ``broden1_224``
from local folders (DESIGN section 3). :func:`generate_paper_layout` writes a small
stand-in for both, drawn from the embedded sprites, so that the paper's code path
(torchvision architectures at 224 px, the Broden reader at Broden's geometry) runs
anywhere, without the real data (the probe is written by
:mod:`consis_lib.data.paper_probe`)::

    out/layout.json                   what was generated (seed, sizes, classes)
    out/imagenet/train/<wnid>/<wnid>_<i>.JPEG
    out/imagenet/val/<wnid>/ILSVRC2012_val_<n>.JPEG
    out/broden/index.csv, category.csv, label.csv, c_<category>.csv
    out/broden/images/paper/<i>.jpg   224 x 224 probe images
    out/broden/images/paper/<i>_<category>.png, <i>_part_1.png, <i>_part_2.png

**ImageNet layout.** One curated class per WNID folder (the first ``classes`` of
:func:`~consis_lib.data.classes.classes_for_profile`), ``per_class`` training and
``val_per_class`` (default: as many) validation images per class. Each image is
one sprite composited on a background (:func:`~consis_lib.data.compose.compose`),
resized to a size of its own (short side :data:`SHORT_SIDE`, aspect 1:1, 4:3 or
3:2, landscape or portrait) and saved as JPEG; greyscale composites are saved as
one-channel JPEGs, as ImageNet holds a few. As in the embedded set, the training
split never draws the held-out style family
(:func:`~consis_lib.data.embedded.split_styles`).

**Broden layout.** ``probe_images`` images of :data:`PROBE_SIZE` px composed by the
embedded probe's compositor (:func:`~consis_lib.data.probe_scene.compose_probe`),
with label masks at :data:`MASK_SIZE` px (every second pixel of the drawn labels),
as ``broden1_224`` has them. All six categories occur:

========  ==========================================================  ===========
category  labels                                                      cell
========  ==========================================================  ===========
color     nearest of Broden's 11 colour names per pixel               one mask
object    each sprite's visible mask, named by its class              one mask
part      geometric parts of each visible object mask: its            two masks,
          ``upper-half`` / ``lower-half`` (level 1, split at the      ``;``-joined
          middle row of its extent) and its ``rim`` (within
          :data:`RIM_WIDTH` px of its edge) / ``interior`` (level 2)
material  wood, brick and water regions                               one mask
scene     ``sky-s``, ``sea-s``, ``grass-s`` backdrops                 label number
texture   the regions' texture names                                  one mask
========  ==========================================================  ===========

The two part levels overlap (a pixel is both ``upper-half`` and ``rim``), so they
need two mask files, joined by ``;`` in one ``index.csv`` cell as Broden joins its
part levels. The parts are geometric: the sprites have no annotated semantic parts.
So that a handful of images holds every category, image ``i`` must show a scene
backdrop (``i % 3 == 0``), a material region (``1``) or a texture region (``2``):
its drawing is the first of the draws ``(seed, i, attempt)``, ``attempt = 0, 1, ...``,
that does. Every fifth probe image is in the ``val`` split, the others in ``train``.
``label.csv`` and ``c_<category>.csv`` give per label ``frequency`` (images carrying
it) and ``coverage`` (the summed fraction of each image it covers, 1 for an
image-level label).

Determinism: the same arguments give byte-identical files. The output folder is
written atomically and carries :mod:`consis_lib.outputs`' marker (kind
``paper-layout``); an existing folder is replaced only when this generator wrote it.

Example
-------
>>> layout = generate_paper_layout(Path("data/paper"), PaperLayoutConfig(classes=4))  # doctest: +SKIP
>>> WnidImageFolder(layout.imagenet, "val", image_size=224)                             # doctest: +SKIP
>>> Broden(layout.broden, image_size=224)                                               # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from consis_lib.cache import cache_root
from consis_lib.config import DataConfig
from consis_lib.data.classes import CLASSES, CuratedClass, classes_for_profile
from consis_lib.data.compose import compose
from consis_lib.data.embedded import SPRITE_SIZE, image_rng, split_styles
from consis_lib.data.paper_probe import (
    MASK_SIZE, PART_LEVELS, PROBE_SIZE, REQUIRED, Sprites, part_maps, save_jpeg, write_broden,
)
from consis_lib.data.sprites import load_sprites
from consis_lib.errors import ConsisError
from consis_lib.outputs import atomic_output_dir, check_output_dir, writer_id

__all__ = [
    "PROBE_SIZE",
    "MASK_SIZE",
    "PART_LEVELS",
    "PaperLayoutConfig",
    "PaperLayout",
    "check_config",
    "check_output",
    "part_maps",
    "generate_paper_layout",
]

log = logging.getLogger(__name__)

#: range of the short side of the ImageNet-layout images, in pixels
SHORT_SIDE = (168, 288)
ASPECTS = (1.0, 4 / 3, 3 / 2)
_LAYOUT = "layout.json"

@dataclass(frozen=True)
class PaperLayoutConfig:
    """How large the paper-shaped set is.

    ``classes`` WNID folders with ``per_class`` images in ``train`` and
    ``val_per_class`` in ``val`` (None: ``per_class``); ``probe_images``
    Broden-layout probe images; ``seed`` fixes every pixel.
    """

    classes: int = 4
    per_class: int = 4
    probe_images: int = 12
    seed: int = 0
    val_per_class: int | None = None

    @property
    def val_count(self) -> int:
        """Validation images per class."""
        return self.per_class if self.val_per_class is None else self.val_per_class


@dataclass(frozen=True)
class PaperLayout:
    """The folders of a generated set: ``root``, ``root/imagenet`` and ``root/broden``."""

    root: Path

    @property
    def imagenet(self) -> Path:
        """The ImageNet-layout folder (``train/<wnid>/``, ``val/<wnid>/``)."""
        return self.root / "imagenet"

    @property
    def broden(self) -> Path:
        """The Broden-layout probe folder (``index.csv``, ``images/``)."""
        return self.root / "broden"


def check_config(cfg: PaperLayoutConfig) -> PaperLayoutConfig:
    """Refuse sizes the generator cannot honour, with one line naming the fix."""
    if not 2 <= cfg.classes <= len(CLASSES):
        raise ConsisError(f"--classes {cfg.classes}: pass 2 to {len(CLASSES)} (a classifier needs two classes)")
    if cfg.per_class < 1:
        raise ConsisError(f"--per-class {cfg.per_class}: pass 1 or more images per class")
    if cfg.val_count < 1:
        raise ConsisError(f"--val-per-class {cfg.val_count}: pass 1 or more images per class")
    if cfg.probe_images < len(REQUIRED):
        raise ConsisError(
            f"--probe-images {cfg.probe_images}: pass {len(REQUIRED)} or more, so that all six categories occur"
        )
    if cfg.seed < 0:
        raise ConsisError(f"--seed {cfg.seed} is negative: pass e.g. --seed 0")
    return cfg


def check_output(out: Path) -> Path:
    """Refuse an output folder that is neither new, empty nor an earlier output of this generator."""
    check_output_dir(out, "paper-layout")
    return out


# ----------------------------------------------------------------------------- ImageNet layout


def photo_size(rng: np.random.Generator) -> tuple[int, int]:
    """``(width, height)`` of one image: a random short side, aspect and orientation."""
    short = int(rng.integers(SHORT_SIDE[0], SHORT_SIDE[1] + 1))
    long = int(round(short * ASPECTS[int(rng.integers(len(ASPECTS)))]))
    return (long, short) if rng.uniform() < 0.5 else (short, long)


def draw_photo(sprite: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """One ImageNet-like image: a square composite resized to :func:`photo_size`; greyscale ones in mode ``L``."""
    size = photo_size(rng)
    comp = compose(sprite, max(size), rng)
    img = Image.fromarray(comp.image).resize(size, Image.Resampling.BILINEAR)
    return img.convert("L") if comp.greyscale else img


def photo_jobs(classes: Sequence[CuratedClass], train: int, val: int) -> list[tuple[str, CuratedClass, int, str]]:
    """``(split, class, index, file name)`` of every image, ImageNet's names: ``val`` numbered across classes."""
    jobs = [("train", c, i, f"{c.wnid}_{i}.JPEG") for c in classes for i in range(train)]
    each = [(c, i) for c in classes for i in range(val)]
    return jobs + [("val", c, i, f"ILSVRC2012_val_{k:08d}.JPEG") for k, (c, i) in enumerate(each, start=1)]


def write_imagenet(root: Path, cfg: PaperLayoutConfig, classes: Sequence[CuratedClass], sprites: Sprites) -> None:
    """The ImageNet-layout folder: image ``i`` of a class cycles through the split's styles."""
    styles = split_styles(DataConfig())
    jobs = photo_jobs(classes, cfg.per_class, cfg.val_count)
    for split, c, i, name in tqdm(jobs, desc="paper-layout images", unit="img"):
        drawn = [s for s in styles[split] if c.emoji in sprites[s]]
        if not drawn:
            raise ConsisError(f"no installed sprite style draws {c.name}; run `make setup`")
        sprite = sprites[drawn[(i + int(c.wnid[1:])) % len(drawn)]][c.emoji]
        folder = root / split / c.wnid
        folder.mkdir(parents=True, exist_ok=True)
        save_jpeg(draw_photo(sprite, image_rng(cfg.seed, split, c.wnid, i)), folder / name)


# ----------------------------------------------------------------------------- entry point


def generate_paper_layout(
    out: str | Path, cfg: PaperLayoutConfig = PaperLayoutConfig(), cache_dir: Path | None = None
) -> PaperLayout:
    """Generate the paper-shaped set (module docstring) into ``out``.

    Parameters
    ----------
    out : a new or empty folder, or an earlier output of this generator (replaced
        atomically); anything else is refused before any work.
    cfg : class count, images per class and split, probe images, seed.
    cache_dir : sprite cache; default :func:`consis_lib.cache.cache_root`.

    Returns
    -------
    PaperLayout
        ``imagenet`` for :class:`~consis_lib.data.imagefolder.WnidImageFolder`,
        ``broden`` for :class:`~consis_lib.data.broden.Broden`.

    Example
    -------
    >>> layout = generate_paper_layout(Path(tmp) / "paper", PaperLayoutConfig(classes=2, per_class=1))  # doctest: +SKIP
    >>> sorted(p.name for p in (layout.imagenet / "train").iterdir())                                    # doctest: +SKIP
    ['n02084071', 'n02114100']
    """
    out = Path(out)
    check_config(cfg)
    check_output(out)
    classes = classes_for_profile("full", cfg.classes)
    styles = split_styles(DataConfig())["val"]
    cache = Path(cache_dir) if cache_dir is not None else cache_root()
    sprites = load_sprites([c.emoji for c in classes], styles, SPRITE_SIZE, cache)
    with atomic_output_dir(out, "paper-layout", writer_id(__name__)) as tmp:
        layout = PaperLayout(tmp)
        write_imagenet(layout.imagenet, cfg, classes, sprites)
        write_broden(layout.broden, cfg, classes, sprites)
        meta = {
            "format": "consis-paper-layout",
            "config": asdict(cfg),
            "probe_size": PROBE_SIZE,
            "mask_size": MASK_SIZE,
            "classes": [{"wnid": c.wnid, "synset": c.synset_name, "name": c.name} for c in classes],
        }
        (tmp / _LAYOUT).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    log.info("wrote a paper-shaped set of %d classes and %d probe images to %s", cfg.classes, cfg.probe_images, out)
    return PaperLayout(out)
