"""The Broden-layout half of :mod:`consis_lib.data.paper_layout`: a probe at
``broden1_224``'s geometry (224 px images, 112 px label masks) with all six concept
categories; parts are geometric regions of each object (halves on level 1, rim and
interior on level 2, so a part cell lists two mask files joined by ``;``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from consis_lib.concepts import BRODEN_COLUMNS as CATEGORIES
from consis_lib.data.classes import CuratedClass
from consis_lib.data.embedded import save_png
from consis_lib.data.broden_write import LabelTally, encode_labels, write_csv, write_label_tables
from consis_lib.data.probe import COLOUR_NAMES, SCENE_NAMES, nearest_colour
from consis_lib.data.probe_scene import ProbeScene, compose_probe, plan_objects
from consis_lib.data.textures import MATERIAL_NAMES, TEXTURE_NAMES
from consis_lib.errors import ConsisError

if TYPE_CHECKING:
    from consis_lib.data.paper_layout import PaperLayoutConfig

#: Broden's image and label-mask sides (``broden1_224``)
PROBE_SIZE = 224
MASK_SIZE = 112
#: part names per part level (level 1: halves; level 2: rim and interior)
PART_LEVELS: tuple[tuple[str, str], ...] = (("upper-half", "lower-half"), ("rim", "interior"))
#: width in probe pixels of an object's ``rim`` part
RIM_WIDTH = 6
JPEG_QUALITY = 90
#: what image ``i % 3`` of the probe must show, so that every category occurs
REQUIRED = ("scene", "material", "texture")
MAX_ATTEMPTS = 200
_STREAM = 7  # random stream of the probe drawings (the embedded set uses 0-2)

Sprites = dict[str, dict[str, np.ndarray]]
"""``sprites[style][emoji]``: uint8 [64, 64, 4] RGBA, as :func:`~consis_lib.data.sprites.load_sprites` returns them."""


def save_jpeg(img: Image.Image, path: Path) -> None:
    """Write a JPEG with fixed settings and no metadata (byte-identical for equal images)."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    path.write_bytes(buf.getvalue())


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
    write_csv(root / "index.csv", ["image", "split", "ih", "iw", "sh", "sw", *CATEGORIES], rows)
    write_label_tables(root, vocab.entries, vocab.range, tally)
