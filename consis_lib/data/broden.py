"""Broden-format reader (Bau et al. 2017): the real ``broden1_224`` and the embedded probe.

Layout (one folder)::

    index.csv      image,split,ih,iw,sh,sw,color,object,part,material,scene,texture
    category.csv   name,first,last,count,frequency
    label.csv      number,name,category,frequency,coverage,syns   (category "color(289)")
    c_<cat>.csv    code,number,name,frequency,coverage            (optional)
    images/...     the images and the label PNGs named in index.csv

Each category cell of ``index.csv`` is empty or ``;``-separated tokens: a PNG path
relative to ``images/`` (a pixel-level mask whose label number is ``R + 256*G``,
0 = unlabelled) or an integer label number (an image-level label covering the whole
image, as Broden uses for scenes and textures). Network dissection (DESIGN section 2)
compares thresholded unit maps with these masks.

Example
-------
>>> probe = Broden("data/broden1_224", image_size=224, max_images=100)
>>> item = probe[0]
>>> item.image.shape, item.pixel_labels["color"].shape   # [3,224,224], [L,112,112]
>>> loader = torch.utils.data.DataLoader(probe, batch_size=32, collate_fn=collate_broden)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from consis_lib.concepts import (
    BRODEN_COLUMNS,
    CATEGORIES,
    check_primary_rule,
    parse_category_cell,
    primary_by_count,
    primary_by_coverage,
)
from consis_lib.data.imagefolder import load_image, to_tensor
from consis_lib.errors import ConsisError

log = logging.getLogger(__name__)

INDEX_COLUMNS = ("image", "split", "ih", "iw", "sh", "sw") + BRODEN_COLUMNS

_FIX = (
    "point the probe root at a Broden folder (NetDissect's broden1_224) or create one "
    "into a new folder with `consis data probe --profile PROFILE --out NEW_DIR`"
)


@dataclass
class BrodenItem:
    """One probe image with its labels.

    Attributes
    ----------
    image : FloatTensor ``[3, H, W]`` in [0, 1] (``H = W = image_size`` when given).
    pixel_labels : category -> int32 array ``[L, sh, sw]`` of label numbers, one
        slice per mask PNG (L may be 0); 0 = unlabelled.
    image_labels : category -> label numbers that cover the whole image.
    path : the image file.
    index : row of the dataset.
    """

    image: torch.Tensor
    pixel_labels: dict[str, np.ndarray]
    image_labels: dict[str, list[int]]
    path: Path
    index: int = -1


@dataclass
class BrodenBatch:
    """A collated batch: ``images [B, 3, H, W]`` plus per-item label dicts."""

    images: torch.Tensor
    pixel_labels: list[dict[str, np.ndarray]]
    image_labels: list[dict[str, list[int]]]
    paths: list[Path]
    indices: list[int]

    def __len__(self) -> int:
        return len(self.paths)


def collate_broden(items: list[BrodenItem]) -> BrodenBatch:
    """``DataLoader`` ``collate_fn`` for :class:`Broden` (labels vary in count per image).

    Example
    -------
    >>> batch = collate_broden([probe[0], probe[1]])
    >>> batch.images.shape   # [2, 3, H, W]
    """
    if not items:
        raise ValueError("collate_broden needs at least one item")
    return BrodenBatch(
        images=torch.stack([it.image for it in items]),
        pixel_labels=[it.pixel_labels for it in items],
        image_labels=[it.image_labels for it in items],
        paths=[it.path for it in items],
        indices=[it.index for it in items],
    )


def decode_label_png(path: str | Path) -> np.ndarray:
    """Label PNG -> int32 ``[h, w]`` label numbers ``R + 256*G`` (0 = unlabelled)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            rgb = np.asarray(img.convert("RGB"))
    except FileNotFoundError as exc:
        raise ConsisError(f"label mask {path} is missing; restore it or {_FIX}") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ConsisError(f"cannot read label mask {path} (corrupt); restore it or {_FIX}") from exc
    return rgb[:, :, 0].astype(np.int32) | (rgb[:, :, 1].astype(np.int32) << 8)


def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise ConsisError(f"Broden file {path} is missing; {_FIX}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ConsisError(f"cannot parse {path}: {exc}; {_FIX}") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ConsisError(f"{path} lacks column(s) {', '.join(missing)}; {_FIX}")
    return df


class Broden(Dataset):
    """Broden-format probe set (real ``broden1_224``/``broden1_227`` or the embedded probe).

    Parameters
    ----------
    root : the Broden folder (holding ``index.csv`` and ``images/``).
    split : ``"train"``, ``"val"`` or None for every row.
    image_size : resize images to ``image_size x image_size`` (labels stay at ``sh x sw``).
    max_images : keep only the first N rows of the selection.
    check_files : stat every referenced image and mask up front so a missing file is
        reported before a long run (one ``stat`` per file).
    label_cache_mb : keep decoded label masks in memory up to this many MiB (0: none).
        A probe is dissected several times (real and adversarial images, normal and
        adversarial models) and decoding the mask PNGs is most of dissection's cost
        beyond inference; the embedded probe's masks take about 13 MiB. Cached masks
        are read-only arrays.

    Attributes
    ----------
    labels : DataFrame ``number, name, category``; ``category`` is each label's primary
        category by count (:meth:`primary_categories` offers NetDissect-Lite's choice).
    categories : categories present (``category.csv``), in ``index.csv``'s column order.
    category_counts : category -> number of labels in it.
    category_codes : category -> ``c_<category>.csv`` DataFrame (when present).
    index : the selected ``index.csv`` rows.

    Example
    -------
    >>> probe = Broden("runs/probe", split="train")
    >>> item = probe[0]
    >>> item.pixel_labels["object"]   # int32 [L, sh, sw]
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        image_size: int | None = None,
        max_images: int | None = None,
        check_files: bool = True,
        label_cache_mb: float = 512,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.image_size = image_size
        if label_cache_mb < 0:
            raise ConsisError(f"label_cache_mb must be >= 0, got {label_cache_mb!r}")
        self._label_budget = int(label_cache_mb * 2**20)
        self._label_cache: dict[int, dict[str, np.ndarray]] = {}
        self._label_cached_bytes = 0
        if not self.root.is_dir():
            raise ConsisError(f"Broden folder {self.root} does not exist; {_FIX}")
        if image_size is not None and not (
            isinstance(image_size, Integral) and image_size > 0
        ):
            raise ConsisError(f"image_size must be a positive int, got {image_size!r}")
        if max_images is not None and max_images < 0:
            raise ConsisError(f"max_images must be >= 0, got {max_images!r}")

        index_path = self.root / "index.csv"
        index = _read_csv(index_path, INDEX_COLUMNS)
        if split is not None:
            index = index[index["split"] == split]
            if index.empty:
                splits = sorted(set(_read_csv(index_path, ("split",))["split"]))
                raise ConsisError(
                    f"{index_path} has no rows with split {split!r}; use one of {splits} or None"
                )
        if max_images is not None:
            index = index.iloc[:max_images]
        self.index = index.reset_index(drop=True)
        self._rows = self._parse_index(index_path)

        cat_df = self._read_categories()
        self.labels = self._read_label_table()
        self.category_counts: dict[str, int] = {c: self._category_count(cat_df, c) for c in self.categories}

        if check_files:
            self.check_files()
        log.debug("Broden %s: %d images, categories %s", self.root, len(self), self.categories)

    def _read_categories(self) -> pd.DataFrame:
        """``category.csv`` (returned) and the ``c_<category>.csv`` code tables present."""
        cat_df = _read_csv(self.root / "category.csv", ("name",))
        present = set(cat_df["name"])
        unknown = present - set(CATEGORIES)
        if unknown:
            raise ConsisError(
                f"{self.root / 'category.csv'} names unknown categories {sorted(unknown)}; "
                f"Broden's are {', '.join(BRODEN_COLUMNS)}"
            )
        self.categories: tuple[str, ...] = tuple(c for c in BRODEN_COLUMNS if c in present)
        self._category_order: tuple[str, ...] = tuple(dict.fromkeys(cat_df["name"]))
        self.category_codes: dict[str, pd.DataFrame] = {}
        for c in self.categories:
            p = self.root / f"c_{c}.csv"
            if p.is_file():
                df = _read_csv(p, ("code", "number", "name"))
                self.category_codes[c] = df.astype({"code": int, "number": int})
        return cat_df

    def _read_label_table(self) -> pd.DataFrame:
        """``label.csv`` as number, name and primary category (by count, :meth:`primary_categories`)."""
        label_path = self.root / "label.csv"
        lab = _read_csv(label_path, ("number", "name", "category"))
        try:
            numbers = lab["number"].astype(int)
        except ValueError as exc:
            raise ConsisError(f"{label_path} has a non-integer label number; {_FIX}") from exc
        return pd.DataFrame(
            {
                "number": numbers.to_numpy(),
                "name": lab["name"].to_numpy(),
                "category": [
                    primary_by_count(parse_category_cell(c, f"{label_path} row {i + 2}"))
                    for i, c in enumerate(lab["category"])
                ],
            }
        )

    def _category_count(self, cat_df: pd.DataFrame, category: str) -> int:
        """Labels of ``category``: ``category.csv``'s count, else its code table, else label.csv."""
        row = cat_df[cat_df["name"] == category].iloc[0]
        if "count" in cat_df.columns and str(row["count"]).strip().isdigit():
            return int(row["count"])
        if category in self.category_codes:
            return int((self.category_codes[category]["code"] != 0).sum())
        return int((self.labels["category"] == category).sum())

    def _parse_index(self, index_path: Path) -> list[tuple[Path, int, int, dict, dict]]:
        """Per row: image path, sh, sw, masks per category, image labels per category."""
        rows = []
        images = self.root / "images"
        for i, r in enumerate(self.index.itertuples(index=False)):
            rec = r._asdict()
            where = f"{index_path} row {i + 2} ({rec['image']})"
            try:
                sh, sw = int(rec["sh"]), int(rec["sw"])
            except ValueError as exc:
                raise ConsisError(f"{where}: sh/sw must be integers; {_FIX}") from exc
            masks: dict[str, list[Path]] = {}
            numbers: dict[str, list[int]] = {}
            for c in CATEGORIES:
                masks[c], numbers[c] = [], []
                for token in str(rec[c]).split(";"):
                    token = token.strip()
                    if not token:
                        continue
                    if token.isdigit():
                        numbers[c].append(int(token))
                    else:
                        masks[c].append(images / token)
            rows.append((images / rec["image"], sh, sw, masks, numbers))
        return rows

    def check_files(self) -> None:
        """Raise ConsisError naming the first image or mask of the selection that is missing."""
        index_path = self.root / "index.csv"
        for i, (image, _sh, _sw, masks, _n) in enumerate(self._rows):
            for p in [image] + [m for c in CATEGORIES for m in masks[c]]:
                if not p.is_file():
                    raise ConsisError(
                        f"{p} is missing (named in {index_path}, row {i + 2}); "
                        f"restore it, or {_FIX}"
                    )

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i: int) -> BrodenItem:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        image_path, sh, sw, masks, numbers = self._rows[i]
        img = load_image(image_path)
        if self.image_size is not None and img.size != (self.image_size, self.image_size):
            img = img.resize((self.image_size, self.image_size), Image.BILINEAR)
        pixel = self._label_cache.get(i)
        if pixel is None:
            pixel = self._read_masks(masks, sh, sw)
            size = sum(a.nbytes for a in pixel.values())
            if self._label_cached_bytes + size <= self._label_budget:
                for a in pixel.values():
                    a.flags.writeable = False
                self._label_cache[i] = pixel
                self._label_cached_bytes += size
        return BrodenItem(
            image=to_tensor(img),
            pixel_labels=dict(pixel),
            image_labels={c: list(numbers[c]) for c in CATEGORIES},
            path=image_path,
            index=i,
        )

    def _read_masks(self, masks: dict[str, list[Path]], sh: int, sw: int) -> dict[str, np.ndarray]:
        """Decode the label masks of one image; a mask that is not ``sh x sw`` is refused."""
        pixel: dict[str, np.ndarray] = {}
        for c in CATEGORIES:
            planes = []
            for m in masks[c]:
                lab = decode_label_png(m)
                if lab.shape != (sh, sw):
                    raise ConsisError(
                        f"label mask {m} is {lab.shape[1]}x{lab.shape[0]} but {self.root / 'index.csv'} says "
                        f"sh x sw = {sh}x{sw}; fix the mask or its row (masks are never stretched)"
                    )
                planes.append(lab.astype(np.int32, copy=False))
            pixel[c] = np.stack(planes) if planes else np.zeros((0, sh, sw), dtype=np.int32)
        return pixel

    def primary_categories(self, rule: str = "count") -> list[str]:
        """Primary category of each row of :attr:`labels`, by ``rule`` (one of
        :data:`~consis_lib.concepts.PRIMARY_RULES`): ``"count"`` is ``labels.category``;
        ``"coverage"`` reads ``c_<category>.csv`` (NetDissect-Lite's choice).

        Example
        -------
        >>> probe.primary_categories("coverage")[:2]   # ['color', 'part']
        """
        check_primary_rule(rule)
        if rule == "count":
            return self.labels["category"].tolist()
        coverage = self._coverage()
        out = []
        for num, name, by_count in zip(self.labels["number"], self.labels["name"], self.labels["category"]):
            if int(num) not in coverage and by_count:
                raise ConsisError(f"label {num} ({name}) is in no c_<category>.csv of {self.root}; "
                                  "add it there or use DissectConfig(primary_category='count')")
            out.append(primary_by_coverage(coverage.get(int(num), {})))
        return out

    def _coverage(self) -> dict[int, dict[str, float]]:
        """Label number -> {category: coverage} from every ``c_<category>.csv``, in ``category.csv``'s order."""
        coverage: dict[int, dict[str, float]] = {}
        for c in self._category_order:
            path = self.root / f"c_{c}.csv"
            df = self.category_codes.get(c)
            if df is None or "coverage" not in df.columns:
                raise ConsisError(f"{path} with a coverage column is needed to choose primary categories "
                                  "by coverage; restore it or use DissectConfig(primary_category='count')")
            try:
                values = df["coverage"].astype(float)
            except ValueError as exc:
                raise ConsisError(f"{path} has a non-numeric coverage; {_FIX}") from exc
            for num, cov in zip(df["number"], values):
                if num > 0:
                    coverage.setdefault(int(num), {})[c] = float(cov)
        return coverage

    def label_name(self, number: int) -> str:
        """Name of label ``number`` (e.g. ``"red-c"``)."""
        hit = self.labels.loc[self.labels["number"] == number, "name"]
        if hit.empty:
            raise KeyError(f"no label number {number} in {self.root / 'label.csv'}")
        return str(hit.iloc[0])

    def __repr__(self) -> str:
        return f"Broden(root={str(self.root)!r}, split={self.split!r}, images={len(self)})"
