"""The embedded WordNet-labelled image set: generated offline, deterministic, ImageNet layout.

:func:`generate_embedded` writes::

    out/train/<wnid>/<wnid>_00000.png ...
    out/val/<wnid>/<wnid>_00000.png ...
    out/classes.json   profile, seed, styles per split, and per class: wnid, synset,
                       name, definition, group, emoji
    out/images.csv     path,split,wnid,style,family,background,greyscale  (one row per image)

Each image is one curated concept (:mod:`consis_lib.data.classes`) drawn by one sprite
style (:mod:`consis_lib.data.sprites`) composited on a random background
(:mod:`consis_lib.data.compose`).  Styles cycle through the images of a class, so every
class is balanced over styles.  The training split never sees the style family named
by ``DataConfig.holdout_family`` (default ``"noto"``); the validation split draws every
family with fresh random composites, so per-style validation accuracy (styles are
recorded in ``images.csv``) separates generalisation to new renderings of seen art
from generalisation to unseen art.

Determinism: image ``i`` of class ``wnid`` in ``split`` is drawn from a random
generator seeded by ``(seed, split, wnid, i)`` only, and PNGs are written with fixed
settings and no metadata, so the same seed gives byte-identical files whatever the
class subset.  Atomicity: everything is written into a temporary sibling folder that
is renamed into place at the end; an interrupted run leaves no ``out`` folder.
Ownership: ``out`` carries :mod:`consis_lib.outputs`' marker with a manifest (names,
sizes, SHA-256); an existing ``out`` is replaced only when it carries that marker
(any other folder is refused, never deleted), and a cached set is checked against
its manifest on use (:func:`prepare_dataset`).

Example
-------
>>> from consis_lib.config import get_profile
>>> from consis_lib.data.embedded import generate_embedded
>>> root = generate_embedded(get_profile("smoke").data, Path("data/smoke"))   # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from consis_lib.cache import cache_root
from consis_lib.config import DataConfig, config_hash, to_dict
from consis_lib.data.classes import CuratedClass, classes_for_profile
from consis_lib.data.compose import compose
from consis_lib.data.sprite_styles import STYLE_INFO, STYLES, available_styles, style_family
from consis_lib.data.sprites import load_sprites
from consis_lib.errors import ConsisError
from consis_lib.outputs import (
    MARKER,
    atomic_output_dir,
    check_output_dir,
    read_marker,
    verify_manifest,
    write_marker,
    writer_id,
)

__all__ = [
    "GENERATOR_VERSION",
    "SPLITS",
    "split_styles",
    "image_rng",
    "generate_embedded",
    "prepare_dataset",
    "atomic_output_dir",
    "save_png",
]

log = logging.getLogger(__name__)

#: bump when the generator's output changes for the same config (keys caches)
GENERATOR_VERSION = 1
SPLITS: Mapping[str, int] = MappingProxyType({"train": 0, "val": 1, "probe": 2})
SPRITE_SIZE = 64


def split_styles(cfg: DataConfig, styles: Sequence[str] | None = None) -> dict[str, tuple[str, ...]]:
    """The sprite styles each split draws.

    ``train`` excludes the style family ``cfg.holdout_family``; ``val`` uses every style.
    ``styles`` defaults to the installed ones (:func:`~consis_lib.data.sprite_styles.available_styles`);
    when a font is missing the set is smaller (a warning says which) and, if the
    held-out family itself is missing, nothing is held out.

    Examples
    --------
    >>> split_styles(DataConfig(), STYLES)["train"]
    ('twemoji', 'openmoji', 'openmoji-line', 'symbola')
    """
    families = {style_family(s) for s in STYLES}
    if cfg.holdout_family and cfg.holdout_family not in families:
        raise ConsisError(
            f"holdout_family={cfg.holdout_family!r} is not a sprite family; "
            f"choose one of {', '.join(sorted(families))} or '' for none"
        )
    if styles is None:
        styles = available_styles()
        if styles != STYLES:
            log.warning(
                "sprite styles %s are not installed (run `make setup`); using %s",
                ", ".join(s for s in STYLES if s not in styles),
                ", ".join(styles),
            )
    styles = tuple(styles)
    if len({style_family(s) for s in styles}) < 2:
        raise ConsisError("fewer than two sprite style families are installed; run `make setup`")
    train = tuple(s for s in styles if style_family(s) != cfg.holdout_family)
    return {"train": train, "val": styles}


def image_rng(seed: int, split: str, wnid: str, index: int) -> np.random.Generator:
    """The random generator of one image, a function of ``(seed, split, wnid, index)`` only."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), SPLITS[split], int(wnid[1:]), index]))


def save_png(array: np.ndarray, path: Path) -> None:
    """Write an image array as PNG with fixed settings (byte-identical for equal arrays)."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=6)
    path.write_bytes(buf.getvalue())


def _class_records(classes: Sequence[CuratedClass]) -> list[dict[str, Any]]:
    from consis_lib.wordnet import load_wordnet

    wn = load_wordnet()
    out = []
    for c in classes:
        syn = wn.synset(c.synset_name)
        out.append(
            {
                "wnid": c.wnid,
                "synset": c.synset_name,
                "name": c.name,
                "lemma": syn.lemmas()[0].name(),
                "definition": syn.definition(),
                "group": c.group,
                "emoji": c.emoji,
            }
        )
    return out


def _jobs(
    cfg: DataConfig, classes: Sequence[CuratedClass], styles: dict[str, tuple[str, ...]]
) -> Iterator[tuple[str, CuratedClass, int, str]]:
    counts = {"train": cfg.train_per_class, "val": cfg.val_per_class}
    for split in ("train", "val"):
        st = styles[split]
        for c in classes:
            for i in range(counts[split]):
                # cycle styles, offset per class (by its WNID, not its position)
                yield split, c, i, st[(i + int(c.wnid[1:])) % len(st)]


def generate_embedded(cfg: DataConfig, out: Path, cache_dir: Path | None = None) -> Path:
    """Generate the embedded image set for a data config (DESIGN section 3).

    Parameters
    ----------
    cfg : DataConfig
        ``profile``/``num_classes`` pick the classes, ``train_per_class``,
        ``val_per_class``, ``image_size``, ``seed`` and ``holdout_family`` shape it.
    out : Path
        Destination folder (replaced atomically if it holds an earlier generated set).
    cache_dir : Path, optional
        Where rendered sprites are cached; default :func:`consis_lib.cache.cache_root`.

    Returns
    -------
    Path
        ``out``, holding ``train/<wnid>/*.png``, ``val/<wnid>/*.png`` (uint8 RGB,
        ``image_size`` square), ``classes.json`` and ``images.csv``.

    Examples
    --------
    >>> from consis_lib.config import DataConfig
    >>> cfg = DataConfig(profile="smoke", num_classes=2, train_per_class=2, val_per_class=1)
    >>> root = generate_embedded(cfg, Path(tmp) / "emb")   # doctest: +SKIP
    >>> sorted(p.name for p in (root / "train").iterdir())  # doctest: +SKIP
    ['n02084071', 'n02114100']
    """
    out = Path(out)
    if cfg.image_size < 8:
        raise ConsisError(f"image_size={cfg.image_size} is too small; use 8 px or more")
    check_output_dir(out, "embedded")  # before any work
    classes = classes_for_profile(cfg)
    styles = split_styles(cfg)
    cache = Path(cache_dir) if cache_dir is not None else cache_root()
    sprites = load_sprites([c.emoji for c in classes], styles["val"], SPRITE_SIZE, cache)
    for style in styles["val"]:
        lacking = [c.name for c in classes if c.emoji not in sprites[style]]
        if lacking:
            raise ConsisError(
                f"style {style} lacks sprites for {', '.join(lacking)}; reinstall its source package"
            )
    records = _class_records(classes)
    total = len(classes) * (cfg.train_per_class + cfg.val_per_class)
    with atomic_output_dir(out, "embedded", writer_id(__name__)) as tmp:
        for split in ("train", "val"):
            for c in classes:
                (tmp / split / c.wnid).mkdir(parents=True, exist_ok=True)
        rows = []
        t0 = time.perf_counter()
        for split, c, i, style in tqdm(
            _jobs(cfg, classes, styles), total=total, desc="embedded images", unit="img"
        ):
            comp = compose(sprites[style][c.emoji], cfg.image_size, image_rng(cfg.seed, split, c.wnid, i))
            rel = f"{split}/{c.wnid}/{c.wnid}_{i:05d}.png"
            save_png(comp.image, tmp / rel)
            rows.append([rel, split, c.wnid, style, style_family(style), comp.background, int(comp.greyscale)])
        elapsed = time.perf_counter() - t0
        with open(tmp / "images.csv", "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["path", "split", "wnid", "style", "family", "background", "greyscale"])
            w.writerows(rows)
        meta = {
            "format": "consis-embedded",
            "generator_version": GENERATOR_VERSION,
            "config": to_dict(cfg),
            "config_hash": config_hash(cfg),
            "image_size": cfg.image_size,
            "holdout_family": cfg.holdout_family,
            "split_styles": {k: list(v) for k, v in styles.items()},
            "styles": {s: {"family": i.family, "source": i.source, "licence": i.licence} for s, i in STYLE_INFO.items()},
            "classes": records,
        }
        (tmp / "classes.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    log.info(
        "wrote %d images of %d classes to %s (%.0f images/s)", total, len(classes), out, total / max(elapsed, 1e-9)
    )
    return out


def _cache_problem(root: Path, cfg: DataConfig) -> str | None:
    """Why a cached set cannot be used as it is (None: it can).

    Checks the generator version and config hash in ``classes.json`` and every file
    of the manifest (:data:`~consis_lib.outputs.MARKER`) by size: one ``stat`` per file.
    """
    try:
        meta = json.loads((root / "classes.json").read_text())
    except (OSError, ValueError):
        return f"{root / 'classes.json'} is missing or damaged"
    if meta.get("generator_version") != GENERATOR_VERSION or meta.get("config_hash") != config_hash(cfg):
        return f"{root} was made by another generator version or config"
    if read_marker(root) is None:
        _adopt(root)
    return verify_manifest(root)


def _adopt(root: Path) -> None:
    """Mark a cached set written before outputs carried a manifest, when it is complete.

    Every image listed in its ``images.csv`` must exist, and nothing else may lie in
    the folder; otherwise it stays unmarked (and is not replaced).
    """
    with open(root / "images.csv", newline="") as fh:
        listed = {row["path"] for row in csv.DictReader(fh)} | {"classes.json", "images.csv"}
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    if present == listed:
        write_marker(root, "embedded", writer_id(__name__))
        log.info("%s: added the manifest %s", root, MARKER)


def prepare_dataset(cfg: DataConfig, cache_dir: Path | None = None) -> Path:
    """The image folder a data config names, generating the embedded set when needed.

    Parameters
    ----------
    cfg : DataConfig
        ``source="embedded"``: the set lives in ``cache_dir/embedded-<config_hash(cfg)>``
        and is generated when absent (generation is atomic, so an existing folder is
        complete).  ``source="folder"``: ``cfg.root`` must hold ``train/`` and ``val/``.
    cache_dir : Path, optional
        Default :func:`consis_lib.cache.cache_root`.

    Returns
    -------
    Path
        A folder with ``train/<wnid>/`` and ``val/<wnid>/``.
    """
    if cfg.source == "folder":
        root = Path(cfg.root)
        if not root.is_dir():
            raise ConsisError(
                f"image folder {root} does not exist; point DataConfig.root at an ImageNet-layout "
                "folder (train/<wnid>/, val/<wnid>/) or use source='embedded'"
            )
        for split in ("train", "val"):
            if not (root / split).is_dir():
                raise ConsisError(f"{root / split} is missing; an ImageNet-layout folder needs train/ and val/")
        return root
    if cfg.source != "embedded":
        raise ConsisError(f"DataConfig.source={cfg.source!r} is unknown; use 'embedded' or 'folder'")
    cache = Path(cache_dir) if cache_dir is not None else cache_root()
    root = cache / f"embedded-{config_hash(cfg)}"
    if not root.exists():
        return generate_embedded(cfg, root, cache)
    problem = _cache_problem(root, cfg)
    if problem is not None:
        log.warning("cached embedded set %s is incomplete (%s); generating it again", root, problem)
        generate_embedded(cfg, root, cache)
    return root
