"""The embedded probe set for network dissection, written in the Broden format.

Each probe image (:mod:`consis_lib.data.probe_scene`) is either 1-3 Voronoi regions,
each one texture, one material or one flat colour (:mod:`consis_lib.data.textures`),
or a scene backdrop; on top lie 2-5 small objects (a few percent of the image each),
half of them drawn from the profile's classes and half from other classes of the
curated table.  Because the generator knows what it drew, it labels only that:

========  ==========================================================  =============
category  labels                                                      granularity
========  ==========================================================  =============
color     nearest of Broden's 11 colour names (:data:`COLOUR_NAMES`,  every pixel
          ``red-c`` style) to the pixel's RGB value (:data:`COLOURS`);
          flat-colour regions make large uniform segments
object    each sprite's alpha mask (the topmost sprite where they     pixels
          overlap), named by the class's WordNet lemma
texture   the region's DTD texture name (``striped``, ``grid``, ...),  region pixels
          where no object covers it
material  ``wood``, ``brick``, ``water`` regions (drawn as such), and  region pixels
          the ``sea`` backdrop's water, where no object covers them
scene     ``sky-s``, ``sea-s``, ``grass-s`` for the scene backdrops     image
part      none: emoji sprites have no annotated parts, so Table 2's   --
          part column is 0 by construction
========  ==========================================================  =============

Objects of classes outside the profile are drawn in the colour sprite styles
(:data:`EXTRA_STYLES`) only: rendering the outline styles of every curated class
would take minutes on a fresh cache.  The label vocabulary lists the object classes
that occur in the probe; colour, texture, material and scene names are listed
whether they occur or not.

Folder layout (as NetDissect's ``broden1_224``)::

    index.csv     image,split,ih,iw,sh,sw,color,object,part,material,scene,texture
    category.csv  name,first,last,count,frequency
    label.csv     number,name,category,frequency,coverage,syns
    c_<cat>.csv   code,number,name,frequency,coverage      (code 0 = "-")
    images/probe/000000.png, 000000_color.png, 000000_object.png, ...
    probe.csv     image,backdrop,regions,objects (what each probe image shows)

Label PNGs store the label number as ``R + 256*G`` (B = 0; 0 = unlabelled) at full
image resolution (``sh = ih``).  ``frequency`` counts images carrying the label;
``coverage`` sums, over those images, the fraction of the image the label covers.

Example
-------
>>> from consis_lib.config import get_profile
>>> root = generate_probe(get_profile("smoke").data, Path("data/probe"))   # doctest: +SKIP
>>> ex = probe_example(get_profile("smoke").data, 0)                       # doctest: +SKIP
>>> sorted(ex.masks), ex.scene                                             # doctest: +SKIP
(['color', 'material', 'object', 'part', 'texture'], '')
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import numpy as np
from tqdm.auto import tqdm

from consis_lib.cache import cache_root
from consis_lib.concepts import BRODEN_COLUMNS as CATEGORIES  # index.csv column order
from consis_lib.config import DataConfig, config_hash
from consis_lib.data.classes import CuratedClass, classes_for_profile
from consis_lib.data.compose import SCENES
from consis_lib.data.embedded import (
    SPLITS,
    SPRITE_SIZE,
    atomic_output_dir,
    save_png,
)
from consis_lib.data.broden_write import LabelTally, encode_labels, write_csv, write_label_tables
from consis_lib.data.probe_scene import ProbeScene, compose_probe, plan_objects
from consis_lib.data.sprite_styles import available_styles
from consis_lib.data.sprites import load_sprites
from consis_lib.data.textures import COLOURS, MATERIAL_NAMES, TEXTURE_NAMES
from consis_lib.errors import ConsisError

__all__ = [
    "COLOURS",
    "COLOUR_NAMES",
    "CATEGORIES",
    "PROBE_VERSION",
    "EXTRA_STYLES",
    "ProbeExample",
    "nearest_colour",
    "probe_rng",
    "generate_probe",
    "probe_example",
    "prepare_probe",
]

log = logging.getLogger(__name__)

#: bump when the probe's output changes for the same config (keys the cache folder)
PROBE_VERSION = 2
#: sprite styles of the objects whose class is not one of the profile's
EXTRA_STYLES = ("twemoji", "openmoji", "noto")
#: extra (non-profile) classes per profile class, spread over the curated table
EXTRA_PER_CLASS = 2
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


def probe_rng(seed: int, index: int) -> np.random.Generator:
    """The random generator of probe image ``index``, a function of ``(seed, index)`` only."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), SPLITS["probe"], int(index)]))


class _Vocabulary:
    """Label numbers: 1.. over categories in Broden's order; 0 is "-" (unlabelled)."""

    def __init__(self, object_names: list[tuple[str, str]]) -> None:
        names: dict[str, list[tuple[str, str]]] = {
            "color": [(n, "") for n in COLOUR_NAMES],
            "object": object_names,
            "part": [],
            "material": [(m, m) for m in MATERIAL_NAMES],
            "scene": [(SCENE_NAMES[s], "") for s in SCENES],
            "texture": [(t, "") for t in TEXTURE_NAMES],
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
        self.colours = np.array([self.number[("color", c)] for c in COLOUR_NAMES])


def _object_names(classes: list[CuratedClass]) -> list[tuple[str, str]]:
    from consis_lib.wordnet import load_wordnet

    wn = load_wordnet()
    lemmas = [wn.synset(c.synset_name).lemma_names() for c in classes]
    first = [lm[0].lower() for lm in lemmas]
    out = []
    for c, lm, f in zip(classes, lemmas, first):
        name = f if first.count(f) == 1 else c.synset_name  # e.g. the two kinds of mouse
        out.append((name, ";".join(lm)))
    return out


def _extra_classes(cfg: DataConfig, profile: list[CuratedClass]) -> list[CuratedClass]:
    """``EXTRA_PER_CLASS`` per profile class of the other curated classes, evenly spaced."""
    chosen = {c.wnid for c in profile}
    rest = [c for c in classes_for_profile(cfg.profile, 0) if c.wnid not in chosen]
    m = min(len(rest), EXTRA_PER_CLASS * len(profile))
    if m == 0:
        return []
    return [rest[i] for i in np.unique(np.linspace(0, len(rest) - 1, m).round().astype(int))]


class _ProbeDrawer:
    """Everything one probe needs: classes, sprites, per-image object plans, vocabulary."""

    def __init__(self, cfg: DataConfig, cache_dir: Path | None) -> None:
        if cfg.probe_images <= 0:
            raise ConsisError(f"probe_images={cfg.probe_images}; a probe needs at least one image")
        if cfg.probe_size < 8:
            raise ConsisError(f"probe_size={cfg.probe_size} is too small; use 8 px or more")
        self.cfg = cfg
        profile = classes_for_profile(cfg)
        self.groups = (profile, _extra_classes(cfg, profile))
        cache = Path(cache_dir) if cache_dir is not None else cache_root()
        styles = available_styles()
        extra_styles = tuple(s for s in styles if s in EXTRA_STYLES) or styles
        self.sprites = tuple(
            self._drawings(classes, st, cache) for classes, st in zip(self.groups, (styles, extra_styles))
        )
        plans = [plan_objects(probe_rng(cfg.seed, i), *self.sprites) for i in range(cfg.probe_images)]
        both = _object_names(profile + self.groups[1])  # names unique across both groups
        names = (both[: len(profile)], both[len(profile) :])
        used = sorted({(o.group, o.index) for plan in plans for o in plan})
        self.vocab = _Vocabulary([names[g][i] for g, i in used])
        self.object_number = {gi: self.vocab.number[("object", names[gi[0]][gi[1]][0])] for gi in used}

    @staticmethod
    def _drawings(classes: list[CuratedClass], styles: tuple[str, ...], cache: Path) -> list[list[tuple[str, np.ndarray]]]:
        sprites = load_sprites([c.emoji for c in classes], styles, SPRITE_SIZE, cache)
        return [[(s, sprites[s][c.emoji]) for s in styles if c.emoji in sprites[s]] for c in classes]

    def scene(self, index: int) -> ProbeScene:
        """Image ``index``: the plan replays the generator's first draws, then the drawing continues."""
        rng = probe_rng(self.cfg.seed, index)
        plan = plan_objects(rng, *self.sprites)
        return compose_probe(plan, self.cfg.probe_size, rng)

    def labels(self, scene: ProbeScene) -> dict[str, np.ndarray | int]:
        """Label numbers per category: int64 [H, W] maps (0 = none), the scene as one number."""
        v = self.vocab
        free = scene.objects == 0
        out: dict[str, np.ndarray | int] = {"color": v.colours[nearest_colour(scene.image)]}
        lut = np.array([0] + [self.object_number[(o.group, o.index)] for o in scene.plan], np.int64)
        out["object"] = lut[scene.objects]
        for cat in ("texture", "material"):
            lut = np.array([v.number[(cat, n)] if k == cat else 0 for k, n in scene.fills] or [0], np.int64)
            out[cat] = np.where(free, lut[scene.regions], 0)
        if scene.water.any():
            out["material"] = np.where(scene.water & free, v.number[("material", "water")], out["material"])
        if scene.backdrop:
            out["scene"] = v.number[("scene", SCENE_NAMES[scene.backdrop])]
        return out

    def describe(self, scene: ProbeScene) -> list[str]:
        """``probe.csv`` cells: backdrop, region fills, objects as ``wnid/style``."""
        objects = ";".join(f"{self.groups[o.group][o.index].wnid}/{o.style}" for o in scene.plan)
        return [scene.backdrop, ";".join(f"{k}:{n}" for k, n in scene.fills), objects]


def _write_image(tmp: Path, stem: str, scene: ProbeScene, labels: dict[str, np.ndarray | int], tally: LabelTally) -> list[str]:
    """Write the image and its label PNGs; returns the index.csv category cells."""
    save_png(scene.image, tmp / "images" / f"{stem}.png")
    cells = {cat: "" for cat in CATEGORIES}
    for cat, lab in labels.items():
        if isinstance(lab, (int, np.integer)):
            cells[cat] = str(int(lab))
        elif lab.any():
            save_png(encode_labels(lab), tmp / "images" / f"{stem}_{cat}.png")
            cells[cat] = f"{stem}_{cat}.png"
        else:
            continue
        tally.add(cat, lab)
    return [cells[c] for c in CATEGORIES]


def generate_probe(cfg: DataConfig, out: Path, cache_dir: Path | None = None) -> Path:
    """Generate the embedded Broden-format probe set (DESIGN section 3).

    Parameters
    ----------
    cfg : DataConfig
        ``probe_images`` images of side ``probe_size``; objects of the profile's
        classes (every sprite style) and of as many again other curated classes
        (:data:`EXTRA_STYLES`), seeded by ``seed`` (image ``i`` depends on
        ``(seed, i)`` only, :func:`probe_rng`).
    out : Path
        Destination folder, written atomically (temporary folder + rename).
    cache_dir : Path, optional
        Sprite cache; default :func:`consis_lib.cache.cache_root`.

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
    drawer = _ProbeDrawer(cfg, cache_dir)
    size = cfg.probe_size
    tally = LabelTally()
    index_rows, meta_rows = [], []
    with atomic_output_dir(out, "index.csv") as tmp:
        (tmp / "images" / "probe").mkdir(parents=True)
        t0 = time.perf_counter()
        for i in tqdm(range(cfg.probe_images), desc="probe images", unit="img"):
            scene = drawer.scene(i)
            stem = f"probe/{i:06d}"
            cells = _write_image(tmp, stem, scene, drawer.labels(scene), tally)
            index_rows.append([f"{stem}.png", "train", size, size, size, size, *cells])
            meta_rows.append([f"{stem}.png", *drawer.describe(scene)])
        elapsed = time.perf_counter() - t0
        write_csv(tmp / "index.csv", ["image", "split", "ih", "iw", "sh", "sw", *CATEGORIES], index_rows)
        write_csv(tmp / "probe.csv", ["image", "backdrop", "regions", "objects"], meta_rows)
        write_label_tables(tmp, drawer.vocab.entries, drawer.vocab.range, tally)
    log.info("wrote %d probe images to %s (%.0f images/s)", cfg.probe_images, out, cfg.probe_images / max(elapsed, 1e-9))
    return out


@dataclass(frozen=True)
class ProbeExample:
    """One probe image with its label masks, as :func:`generate_probe` writes them.

    Attributes
    ----------
    image : uint8 [H, W, 3]
    masks : category -> int64 [H, W] label numbers (0 = unlabelled) for the
        pixel-level categories ``color``, ``object``, ``part`` (all 0), ``material``
        and ``texture``.
    scene : the image-level scene label (``"sea-s"``) or ``""``.
    names : label number -> name (``{3: "green-c", ...}``) for every label of the probe.
    index : the image's number in the probe.
    """

    image: np.ndarray
    masks: dict[str, np.ndarray]
    scene: str
    names: dict[int, str]
    index: int


def probe_example(cfg: DataConfig, index: int = 0, cache_dir: Path | None = None) -> ProbeExample:
    """Image ``index`` of the probe ``cfg`` generates, with its label masks, drawn in memory.

    Parameters
    ----------
    cfg : DataConfig
        As for :func:`generate_probe` (the same numbers and pixels as the written probe).
    index : int
        Which image, ``0 <= index < cfg.probe_images``.
    cache_dir : Path, optional
        Sprite cache; default :func:`consis_lib.cache.cache_root`.

    Returns
    -------
    ProbeExample
    """
    if not 0 <= index < cfg.probe_images:
        raise ConsisError(f"index={index} is outside the probe; choose 0..{cfg.probe_images - 1}")
    drawer = _ProbeDrawer(cfg, cache_dir)
    scene = drawer.scene(index)
    labels = drawer.labels(scene)
    names = {n: name for n, name, _c, _s in drawer.vocab.entries}
    empty = np.zeros(scene.objects.shape, np.int64)
    masks = {c: np.asarray(labels.get(c, empty), np.int64) for c in CATEGORIES if c != "scene"}
    scene_number = labels.get("scene")
    return ProbeExample(scene.image, masks, names[int(scene_number)] if scene_number else "", names, index)


def prepare_probe(cfg: DataConfig, cache_dir: Path | None = None) -> Path:
    """The Broden folder a data config names, generating the embedded probe when needed.

    Parameters
    ----------
    cfg : DataConfig
        ``source="embedded"``: ``cache_dir/probe-v<PROBE_VERSION>-<config_hash(cfg)>``,
        generated when absent (atomically, so an existing folder is complete).
        ``source="folder"``: ``cfg.probe_root`` must hold a Broden ``index.csv``.
    cache_dir : Path, optional
        Default :func:`consis_lib.cache.cache_root`.
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
    cache = Path(cache_dir) if cache_dir is not None else cache_root()
    root = cache / f"probe-v{PROBE_VERSION}-{config_hash(cfg)}"
    if not (root / "index.csv").is_file():
        generate_probe(cfg, root, cache)
    return root
