"""A paper-shaped synthetic data set: an ImageNet-layout folder and a Broden-layout probe.

The ``paper`` profile reads ImageNet (ILSVRC-2012) and NetDissect's ``broden1_224``
from local folders (DESIGN section 3). :func:`generate_paper_layout` writes a small
stand-in for both, drawn from the embedded sprites, so that the paper's code path
(torchvision architectures at 224 px, the Broden reader at Broden's geometry) runs
anywhere, without the real data::

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

import csv
import io
import json
import logging
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from consis_lib.cache import cache_root
from consis_lib.config import DataConfig
from consis_lib.data.classes import CLASSES, CuratedClass, classes_for_profile
from consis_lib.data.compose import compose
from consis_lib.data.embedded import SPRITE_SIZE, image_rng, save_png, split_styles
from consis_lib.data.probe import CATEGORIES, COLOUR_NAMES, SCENE_NAMES, encode_labels, nearest_colour
from consis_lib.data.probe_scene import ProbeScene, compose_probe, plan_objects
from consis_lib.data.sprites import load_sprites
from consis_lib.data.textures import MATERIAL_NAMES, TEXTURE_NAMES
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

#: Broden's image and label-mask sides (``broden1_224``)
PROBE_SIZE = 224
MASK_SIZE = 112
#: part names per part level (level 1: halves; level 2: rim and interior)
PART_LEVELS: tuple[tuple[str, str], ...] = (("upper-half", "lower-half"), ("rim", "interior"))
#: width in probe pixels of an object's ``rim`` part
RIM_WIDTH = 6
#: range of the short side of the ImageNet-layout images, in pixels
SHORT_SIDE = (168, 288)
ASPECTS = (1.0, 4 / 3, 3 / 2)
JPEG_QUALITY = 90
#: what image ``i % 3`` of the probe must show, so that every category occurs
REQUIRED = ("scene", "material", "texture")
MAX_ATTEMPTS = 200
_STREAM = 7  # random stream of the probe drawings (the embedded set uses 0-2)
_LAYOUT = "layout.json"

Sprites = dict[str, dict[str, np.ndarray]]
"""``sprites[style][emoji]``: uint8 [64, 64, 4] RGBA, as :func:`~consis_lib.data.sprites.load_sprites` returns them."""


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


def save_jpeg(img: Image.Image, path: Path) -> None:
    """Write a JPEG with fixed settings and no metadata (byte-identical for equal images)."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    path.write_bytes(buf.getvalue())


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


# ----------------------------------------------------------------------------- Broden layout


@dataclass(frozen=True)
class Vocabulary:
    """Label numbers 1.. over the categories in Broden's order (0 is unlabelled).

    ``entries`` holds ``(number, name, category, syns)``; ``number`` maps
    ``(category, name)`` to its number; ``range`` gives each category's first and last.
    """

    entries: tuple[tuple[int, str, str, str], ...]
    number: dict[tuple[str, str], int]
    range: dict[str, tuple[int, int]]


def build_vocabulary(classes: Sequence[CuratedClass]) -> Vocabulary:
    """Every label the probe may use: colours, the classes, parts, materials, scenes, textures."""
    names: dict[str, list[tuple[str, str]]] = {
        "color": [(n, "") for n in COLOUR_NAMES],
        "object": [(c.name, c.synset_name) for c in classes],
        "part": [(p, "") for level in PART_LEVELS for p in level],
        "material": [(m, "") for m in MATERIAL_NAMES],
        "scene": [(s, "") for s in SCENE_NAMES.values()],
        "texture": [(t, "") for t in TEXTURE_NAMES],
    }
    entries, number, ranges = [], {}, {}
    for cat in CATEGORIES:
        first = len(entries) + 1
        for name, syns in names[cat]:
            entries.append((len(entries) + 1, name, cat, syns))
            number[(cat, name)] = len(entries)
        ranges[cat] = (first, len(entries))
    return Vocabulary(tuple(entries), number, ranges)


def _erode(mask: np.ndarray, steps: int) -> np.ndarray:
    """``mask`` eroded ``steps`` times by the 4-neighbourhood (outside the image counts as empty)."""
    out = mask.copy()
    for _ in range(steps):
        pad = np.pad(out, 1)
        out = out & pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    return out


def part_maps(objects: np.ndarray, rim: int = RIM_WIDTH) -> tuple[np.ndarray, np.ndarray]:
    """The two part levels of an object map.

    Parameters
    ----------
    objects : int [H, W]; ``k`` where object ``k`` (1-based) is visible, 0 elsewhere.
    rim : rim width in pixels.

    Returns
    -------
    level1, level2 : int64 [H, W] part indices (0 = none); level 1: 1 = upper half,
        2 = lower half of each object's rows (split at the middle of its extent);
        level 2: 1 = rim (fewer than ``rim`` steps from the edge), 2 = interior.

    Example
    -------
    >>> objects = np.zeros((6, 4), int); objects[1:5, :] = 1
    >>> [m[:, 0].tolist() for m in part_maps(objects, rim=1)]
    [[0, 1, 1, 2, 2, 0], [0, 1, 1, 1, 1, 0]]
    """
    level1 = np.zeros(objects.shape, np.int64)
    level2 = np.zeros(objects.shape, np.int64)
    rows = np.arange(objects.shape[0])[:, None]
    for k in np.unique(objects[objects > 0]):
        mask = objects == k
        used = np.nonzero(mask.any(1))[0]
        upper = mask & (rows * 2 < used[0] + used[-1] + 1)
        level1[mask] = np.where(upper[mask], 1, 2)
        level2[mask] = np.where(_erode(mask, rim)[mask], 2, 1)
    return level1, level2


def probe_labels(scene: ProbeScene, vocab: Vocabulary, classes: Sequence[CuratedClass]) -> dict[str, list[np.ndarray] | int]:
    """The drawn labels of one probe image at :data:`MASK_SIZE`: per category its mask planes, the scene as a number."""
    free = scene.objects == 0
    colours = np.array([vocab.number[("color", n)] for n in COLOUR_NAMES])
    objects = np.array([0] + [vocab.number[("object", classes[o.index].name)] for o in scene.plan])
    maps: dict[str, list[np.ndarray]] = {
        "color": [colours[nearest_colour(scene.image)]],
        "object": [objects[scene.objects]],
        "part": [
            np.array([0] + [vocab.number[("part", p)] for p in names])[level]
            for names, level in zip(PART_LEVELS, part_maps(scene.objects))
        ],
    }
    for cat in ("material", "texture"):
        fills = np.array([vocab.number[(cat, n)] if k == cat else 0 for k, n in scene.fills] or [0])
        maps[cat] = [np.where(free, fills[scene.regions], 0)]
    if scene.water.any():
        maps["material"] = [np.where(scene.water & free, vocab.number[("material", "water")], maps["material"][0])]
    step = PROBE_SIZE // MASK_SIZE
    out: dict[str, list[np.ndarray] | int] = {c: [m[::step, ::step] for m in ms] for c, ms in maps.items()}
    if scene.backdrop:
        out["scene"] = vocab.number[("scene", SCENE_NAMES[scene.backdrop])]
    return out


def _shows(labels: dict[str, list[np.ndarray] | int], category: str) -> bool:
    value = labels.get(category)
    return isinstance(value, int) or (value is not None and any(m.any() for m in value))


def draw_probe_image(
    index: int, seed: int, sprites: list[list[tuple[str, np.ndarray]]], vocab: Vocabulary, classes: Sequence[CuratedClass]
) -> tuple[ProbeScene, dict[str, list[np.ndarray] | int]]:
    """Probe image ``index``: the first drawing ``(seed, index, attempt)`` showing :data:`REQUIRED` ``[index % 3]``."""
    need = REQUIRED[index % len(REQUIRED)]
    for attempt in range(MAX_ATTEMPTS):
        rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM, index, attempt]))
        scene = compose_probe(plan_objects(rng, sprites, []), PROBE_SIZE, rng)
        labels = probe_labels(scene, vocab, classes)
        if _shows(labels, need):
            return scene, labels
    raise ConsisError(f"probe image {index} showed no {need} in {MAX_ATTEMPTS} drawings; pass another --seed")


class LabelTally:
    """Per label: ``frequency`` (images carrying it) and ``coverage`` (summed image fractions);
    per category: the images carrying any of its labels."""

    def __init__(self) -> None:
        self.frequency: dict[int, int] = defaultdict(int)
        self.coverage: dict[int, float] = defaultdict(float)
        self.images: dict[str, int] = defaultdict(int)

    def add(self, category: str, labels: list[np.ndarray] | int) -> None:
        """Count one image's labels of ``category``: mask planes, or one image-level number."""
        if isinstance(labels, int):
            self.frequency[labels] += 1
            self.coverage[labels] += 1.0
        else:
            stacked = np.concatenate([m.ravel() for m in labels])
            numbers, counts = np.unique(stacked[stacked > 0], return_counts=True)
            for n, k in zip(numbers.tolist(), counts.tolist()):
                self.frequency[n] += 1  # a label lies in one plane only
                self.coverage[n] += k / labels[0].size
        self.images[category] += 1


def _write_csv(path: Path, header: Sequence[str], rows: list[list[Any]]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def write_label_tables(root: Path, vocab: Vocabulary, tally: LabelTally) -> None:
    """``label.csv``, ``category.csv`` and ``c_<category>.csv`` from the vocabulary and the tally."""
    freq, cover = tally.frequency, tally.coverage
    _write_csv(
        root / "label.csv",
        ["number", "name", "category", "frequency", "coverage", "syns"],
        [[n, name, f"{cat}({freq[n]})", freq[n], f"{cover[n]:.4f}", syns] for n, name, cat, syns in vocab.entries],
    )
    _write_csv(
        root / "category.csv",
        ["name", "first", "last", "count", "frequency"],
        [[c, *vocab.range[c], sum(e[2] == c for e in vocab.entries), tally.images[c]] for c in CATEGORIES],
    )
    for cat in CATEGORIES:
        entries = [e for e in vocab.entries if e[2] == cat]
        rows: list[list[Any]] = [[0, 0, "-", 0, "0.0000"]]
        rows += [[code, n, name, freq[n], f"{cover[n]:.4f}"] for code, (n, name, _c, _s) in enumerate(entries, 1)]
        _write_csv(root / f"c_{cat}.csv", ["code", "number", "name", "frequency", "coverage"], rows)


def write_probe_image(
    root: Path, stem: str, scene: ProbeScene, labels: dict[str, list[np.ndarray] | int], tally: LabelTally
) -> list[str]:
    """Write one probe image and its masks; returns its ``index.csv`` category cells."""
    save_jpeg(Image.fromarray(scene.image), root / "images" / f"{stem}.jpg")
    cells = []
    for cat in CATEGORIES:
        value = labels.get(cat)
        if value is None or not _shows(labels, cat):
            cells.append("")
            continue
        if isinstance(value, int):
            cells.append(str(value))
        else:
            cells.append(";".join(_write_masks(root, stem, cat, value)))
        tally.add(cat, value)
    return cells


def _write_masks(root: Path, stem: str, category: str, planes: list[np.ndarray]) -> list[str]:
    """Write the non-empty mask planes of one category (``_part_1``, ``_part_2`` when several); returns their paths."""
    suffixes = [f"_{category}"] if len(planes) == 1 else [f"_{category}_{k}" for k in range(1, len(planes) + 1)]
    paths = []
    for suffix, plane in zip(suffixes, planes):
        if plane.any():
            save_png(encode_labels(plane), root / "images" / f"{stem}{suffix}.png")
            paths.append(f"{stem}{suffix}.png")
    return paths


def write_broden(root: Path, cfg: PaperLayoutConfig, classes: Sequence[CuratedClass], sprites: Sprites) -> None:
    """The Broden-layout probe folder (module docstring)."""
    drawings = [[(s, sprites[s][c.emoji]) for s in sprites if c.emoji in sprites[s]] for c in classes]
    vocab = build_vocabulary(classes)
    tally = LabelTally()
    rows = []
    (root / "images" / "paper").mkdir(parents=True)
    for i in tqdm(range(cfg.probe_images), desc="paper-layout probe", unit="img"):
        scene, labels = draw_probe_image(i, cfg.seed, drawings, vocab, classes)
        stem = f"paper/{i:06d}"
        cells = write_probe_image(root, stem, scene, labels, tally)
        split = "val" if i % 5 == 4 else "train"
        rows.append([f"{stem}.jpg", split, PROBE_SIZE, PROBE_SIZE, MASK_SIZE, MASK_SIZE, *cells])
    _write_csv(root / "index.csv", ["image", "split", "ih", "iw", "sh", "sw", *CATEGORIES], rows)
    write_label_tables(root, vocab, tally)


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
