"""The embedded probe set for network dissection, written in the Broden format.

The same compositor as the image set (:mod:`consis_lib.data.compose`) draws each probe
image; because the generator knows what it drew, it labels only what it knows:

========  ==========================================================  =============
category  labels                                                      granularity
========  ==========================================================  =============
color     nearest of Broden's 11 colour names (:data:`COLOUR_NAMES`,  every pixel
          ``red-c`` style) to the pixel's RGB value (:data:`COLOURS`)
object    the sprite's alpha mask, named by the class's WordNet lemma  pixels
texture   the background pattern's DTD name (``striped``, ...),       background
          on the pixels the sprite does not cover                     pixels
scene     ``sky-s``, ``sea-s``, ``grass-s`` for the scene-like         image
          backdrops only
material  ``water``: the sea backdrop's water pixels                  pixels
part      none: emoji sprites have no annotated parts                 --
========  ==========================================================  =============

Folder layout (as NetDissect's ``broden1_224``)::

    index.csv     image,split,ih,iw,sh,sw,color,object,part,material,scene,texture
    category.csv  name,first,last,count,frequency
    label.csv     number,name,category,frequency,coverage,syns
    c_<cat>.csv   code,number,name,frequency,coverage      (code 0 = "-")
    images/probe/000000.png, 000000_color.png, 000000_object.png, ...
    probe.csv     image,wnid,style,background (what each probe image shows)

Label PNGs store the label number as ``R + 256*G`` (B = 0; 0 = unlabelled) at full
image resolution (``sh = ih``).  ``frequency`` counts images carrying the label;
``coverage`` sums, over those images, the fraction of the image the label covers.

Example
-------
>>> from consis_lib.config import get_profile
>>> root = generate_probe(get_profile("smoke").data, Path("data/probe"))   # doctest: +SKIP
"""

from __future__ import annotations

import csv
import logging
import time
from collections import defaultdict
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np
from tqdm.auto import tqdm

from consis_lib.config import DataConfig, config_hash
from consis_lib.data.classes import classes_for_profile
from consis_lib.data.compose import SCENES, TEXTURE_LABELS, compose
from consis_lib.data.embedded import (
    SPRITE_SIZE,
    atomic_output_dir,
    default_cache_dir,
    image_rng,
    save_png,
)
from consis_lib.data.sprites import available_styles, load_sprites
from consis_lib.errors import ConsisError

__all__ = [
    "COLOURS",
    "COLOUR_NAMES",
    "CATEGORIES",
    "nearest_colour",
    "encode_labels",
    "generate_probe",
    "prepare_probe",
]

log = logging.getLogger(__name__)

CATEGORIES = ("color", "object", "part", "material", "scene", "texture")

#: Prototype RGB value of each of Broden's 11 colour names (alphabetical, as in Broden).
COLOURS: Mapping[str, tuple[int, int, int]] = MappingProxyType({
    "black": (20, 20, 20),
    "blue": (40, 80, 210),
    "brown": (130, 80, 40),
    "green": (50, 160, 50),
    "grey": (128, 128, 128),
    "orange": (245, 140, 30),
    "pink": (245, 160, 195),
    "purple": (130, 50, 160),
    "red": (210, 30, 30),
    "white": (240, 240, 240),
    "yellow": (240, 220, 40),
})
COLOUR_NAMES: tuple[str, ...] = tuple(f"{c}-c" for c in COLOURS)
SCENE_NAMES: Mapping[str, str] = MappingProxyType({s: f"{s}-s" for s in SCENES})


def nearest_colour(image: np.ndarray) -> np.ndarray:
    """Index (0..10, into :data:`COLOUR_NAMES`) of each pixel's nearest colour prototype.

    Parameters
    ----------
    image : uint8 [H, W, 3]

    Returns
    -------
    np.ndarray int64 [H, W]
        Argmin over prototypes of the squared RGB distance (first on ties).

    Examples
    --------
    >>> nearest_colour(np.array([[[255, 0, 0], [0, 0, 0]]], np.uint8)).tolist()
    [[8, 0]]
    """
    protos = np.asarray(list(COLOURS.values()), np.int64)
    pixels = image.reshape(-1, 3).astype(np.int64)
    # |x - p|^2 = |x|^2 - 2 x.p + |p|^2; |x|^2 is the same for every prototype (exact ints)
    d = (protos**2).sum(1) - 2 * pixels @ protos.T
    return d.argmin(-1).reshape(image.shape[:2])


def encode_labels(labels: np.ndarray) -> np.ndarray:
    """int [H, W] label numbers -> uint8 [H, W, 3] with ``R + 256*G`` (B = 0)."""
    labels = np.asarray(labels, np.int64)
    rgb = np.zeros(labels.shape + (3,), np.uint8)
    rgb[..., 0] = labels % 256
    rgb[..., 1] = labels // 256
    return rgb


class _Vocabulary:
    """Label numbers: 1.. over categories in Broden's order; 0 is "-" (unlabelled)."""

    def __init__(self, object_names: list[tuple[str, str]]) -> None:
        names: dict[str, list[tuple[str, str]]] = {
            "color": [(n, "") for n in COLOUR_NAMES],
            "object": object_names,
            "part": [],
            "material": [("water", "water")],
            "scene": [(SCENE_NAMES[s], "") for s in SCENES],
            "texture": sorted({(t, "") for t in TEXTURE_LABELS.values() if t is not None}),
        }
        self.entries: list[tuple[int, str, str, str]] = []  # number, name, category, syns
        self.number: dict[tuple[str, str], int] = {}
        self.range: dict[str, tuple[int, int]] = {}
        n = 1
        for cat in CATEGORIES:
            first = n
            for name, syns in names[cat]:
                self.entries.append((n, name, cat, syns))
                self.number[(cat, name)] = n
                n += 1
            self.range[cat] = (first, n - 1) if n > first else (0, 0)


def _object_names(classes: list[Any]) -> list[tuple[str, str]]:
    from consis_lib.wordnet import load_wordnet

    wn = load_wordnet()
    lemmas = [wn.synset(c.synset_name).lemma_names() for c in classes]
    first = [lm[0].lower() for lm in lemmas]
    out = []
    for c, lm, f in zip(classes, lemmas, first):
        name = f if first.count(f) == 1 else c.synset_name  # e.g. the two kinds of mouse
        out.append((name, ";".join(lm)))
    return out


def generate_probe(cfg: DataConfig, out: Path, cache_dir: Path | None = None) -> Path:
    """Generate the embedded Broden-format probe set (DESIGN section 3).

    Parameters
    ----------
    cfg : DataConfig
        ``probe_images`` images of side ``probe_size`` over the profile's classes,
        every sprite style, seeded by ``seed``.
    out : Path
        Destination folder, written atomically (temporary folder + rename).
    cache_dir : Path, optional
        Sprite cache; default :func:`consis_lib.data.embedded.default_cache_dir`.

    Returns
    -------
    Path
        ``out``; readable by :class:`consis_lib.data.broden.Broden`.

    Examples
    --------
    >>> cfg = DataConfig(profile="smoke", probe_images=8, probe_size=32)
    >>> root = generate_probe(cfg, Path(tmp) / "probe")   # doctest: +SKIP
    >>> (root / "index.csv").read_text().splitlines()[0]  # doctest: +SKIP
    'image,split,ih,iw,sh,sw,color,object,part,material,scene,texture'
    """
    out = Path(out)
    if cfg.probe_images <= 0:
        raise ConsisError(f"probe_images={cfg.probe_images}; a probe needs at least one image")
    if cfg.probe_size < 8:
        raise ConsisError(f"probe_size={cfg.probe_size} is too small; use 8 px or more")
    classes = classes_for_profile(cfg)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    styles = available_styles()
    sprites = load_sprites([c.emoji for c in classes], styles, SPRITE_SIZE, cache)
    objects = _object_names(classes)
    vocab = _Vocabulary(objects)
    size = cfg.probe_size
    freq: dict[int, int] = defaultdict(int)
    cover: dict[int, float] = defaultdict(float)
    cat_images: dict[str, int] = defaultdict(int)
    index_rows, meta_rows = [], []
    colour_numbers = np.array([vocab.number[("color", n)] for n in COLOUR_NAMES])

    def tally(cat: str, labels: np.ndarray | int) -> None:
        if isinstance(labels, (int, np.integer)):
            freq[int(labels)] += 1
            cover[int(labels)] += 1.0
        else:
            nums, counts = np.unique(labels[labels > 0], return_counts=True)
            for n, k in zip(nums.tolist(), counts.tolist()):
                freq[n] += 1
                cover[n] += k / labels.size
        cat_images[cat] += 1

    with atomic_output_dir(out, "index.csv") as tmp:
        folder = tmp / "images" / "probe"
        folder.mkdir(parents=True)
        t0 = time.perf_counter()
        for i in tqdm(range(cfg.probe_images), desc="probe images", unit="img"):
            c = classes[i % len(classes)]
            style = styles[(i // len(classes)) % len(styles)]
            comp = compose(sprites[style][c.emoji], size, image_rng(cfg.seed, "probe", c.wnid, i))
            stem = f"probe/{i:06d}"
            save_png(comp.image, tmp / "images" / f"{stem}.png")
            cells = {cat: "" for cat in CATEGORIES}

            colour = colour_numbers[nearest_colour(comp.image)]
            save_png(encode_labels(colour), tmp / "images" / f"{stem}_color.png")
            cells["color"] = f"{stem}_color.png"
            tally("color", colour)

            obj = np.where(comp.mask, vocab.number[("object", objects[classes.index(c)][0])], 0)
            if obj.any():
                save_png(encode_labels(obj), tmp / "images" / f"{stem}_object.png")
                cells["object"] = f"{stem}_object.png"
                tally("object", obj)

            tex_name = TEXTURE_LABELS.get(comp.background)
            if tex_name is not None:
                tex = np.where(~comp.mask, vocab.number[("texture", tex_name)], 0)
                save_png(encode_labels(tex), tmp / "images" / f"{stem}_texture.png")
                cells["texture"] = f"{stem}_texture.png"
                tally("texture", tex)

            if comp.background in SCENE_NAMES:
                num = vocab.number[("scene", SCENE_NAMES[comp.background])]
                cells["scene"] = str(num)
                tally("scene", num)

            water = comp.water & ~comp.mask
            if water.any():
                mat = np.where(water, vocab.number[("material", "water")], 0)
                save_png(encode_labels(mat), tmp / "images" / f"{stem}_material.png")
                cells["material"] = f"{stem}_material.png"
                tally("material", mat)

            index_rows.append([f"{stem}.png", "train", size, size, size, size] + [cells[k] for k in CATEGORIES])
            meta_rows.append([f"{stem}.png", c.wnid, style, comp.background])
        elapsed = time.perf_counter() - t0

        def write(name: str, header: list[str], rows: list[list[Any]]) -> None:
            with open(tmp / name, "w", newline="") as fh:
                w = csv.writer(fh, lineterminator="\n")
                w.writerow(header)
                w.writerows(rows)

        write("index.csv", ["image", "split", "ih", "iw", "sh", "sw", *CATEGORIES], index_rows)
        write("probe.csv", ["image", "wnid", "style", "background"], meta_rows)
        write(
            "label.csv",
            ["number", "name", "category", "frequency", "coverage", "syns"],
            [
                [n, name, f"{cat}({freq[n]})", freq[n], f"{cover[n]:.4f}", syns]
                for n, name, cat, syns in vocab.entries
            ],
        )
        write(
            "category.csv",
            ["name", "first", "last", "count", "frequency"],
            [
                [cat, *vocab.range[cat], sum(1 for e in vocab.entries if e[2] == cat), cat_images[cat]]
                for cat in CATEGORIES
            ],
        )
        for cat in CATEGORIES:
            rows: list[list[Any]] = [[0, 0, "-", 0, "0.0000"]]
            code = 1
            for n, name, ecat, _syns in vocab.entries:
                if ecat == cat:
                    rows.append([code, n, name, freq[n], f"{cover[n]:.4f}"])
                    code += 1
            write(f"c_{cat}.csv", ["code", "number", "name", "frequency", "coverage"], rows)
    log.info(
        "wrote %d probe images to %s (%.0f images/s)",
        cfg.probe_images,
        out,
        cfg.probe_images / max(elapsed, 1e-9),
    )
    return out


def prepare_probe(cfg: DataConfig, cache_dir: Path | None = None) -> Path:
    """The Broden folder a data config names, generating the embedded probe when needed.

    Parameters
    ----------
    cfg : DataConfig
        ``source="embedded"``: ``cache_dir/probe-<config_hash(cfg)>``, generated when
        absent (atomically, so an existing folder is complete).  ``source="folder"``:
        ``cfg.probe_root`` must hold a Broden ``index.csv``.
    cache_dir : Path, optional
        Default :func:`consis_lib.data.embedded.default_cache_dir`.
    """
    if cfg.source == "folder":
        root = Path(cfg.probe_root)
        if not (root / "index.csv").is_file():
            raise ConsisError(
                f"{root / 'index.csv'} is missing; point DataConfig.probe_root at a Broden folder "
                "(NetDissect's broden1_224) or use source='embedded'"
            )
        return root
    if cfg.source != "embedded":
        raise ConsisError(f"DataConfig.source={cfg.source!r} is unknown; use 'embedded' or 'folder'")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root = cache / f"probe-{config_hash(cfg)}"
    if not (root / "index.csv").is_file():
        generate_probe(cfg, root, cache)
    return root
