"""ImageNet-layout reader: ``root/<split>/<wnid>/*.png|jpg`` -> (image in [0,1], label).

One loader serves the embedded image set (``consis data embedded``) and a local
ImageNet (ILSVRC-2012) folder whose validation images are sorted into WNID folders.
Class folders must be WordNet 3.0 noun WNIDs; their synsets give the class distances
of Eq. 2 (:func:`consis_lib.wordnet.distance_matrix`).

Each image is resized so that its shorter side is ``resize_size`` and the centre
``image_size`` square is cropped. The training pipeline (:func:`resize_for`) uses
torchvision's ImageNet evaluation transform at the paper's 224 px (shorter side 256,
centre crop 224) and resizes the small profiles' images (32, 64 px) straight to
``image_size``. A JPEG is decoded at the smallest of libjpeg's scales (1/1, 1/2,
1/4, 1/8) whose shorter side is still at least ``resize_size`` (PIL's
``Image.draft``), which saves most of the decoding time of large photographs; after
the resize the pixels stay within a few grey levels of a full decode's (under one
on average for a smooth photograph-like image).

Example
-------
>>> ds = WnidImageFolder("data/embedded", "train", image_size=32)
>>> x, y = ds[0]
>>> x.shape, ds.wnids[y]
(torch.Size([3, 32, 32]), 'n02084071')
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from numbers import Integral
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from consis_lib.errors import ConsisError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
"""Accepted image suffixes (compared case-insensitively, so ``.JPEG`` is accepted)."""

_FIX_IMAGE = "replace it with a readable image or move it out of the data folder"
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


def _to_rgb(img: Image.Image, path: Path) -> Image.Image:
    """RGB with 8 bits per channel; 16-bit greyscale is scaled (65535 -> 255), not clipped."""
    if img.mode in _SIXTEEN_BIT or (img.mode == "I" and img.format == "PNG"):
        arr = np.asarray(img, dtype=np.float64) / 257.0
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L").convert("RGB")
    if img.mode in ("I", "F"):
        raise ConsisError(
            f"image {path} has {img.mode}-mode (32-bit) pixels of unknown range; convert it to 8-bit RGB"
        )
    return img.convert("RGB")


def _draft(img: Image.Image, min_side: int) -> None:
    """Let a JPEG decode at the smallest libjpeg scale whose shorter side stays >= ``min_side``.

    PIL picks the largest reduction ``s`` in (8, 4, 2, 1) with ``s <= W / w`` and
    ``s <= H / h`` for the requested ``(w, h)``; asking for the size the image would
    have with its shorter side at ``min_side`` keeps both sides at least that large.
    Other formats ignore the request.
    """
    w, h = img.size
    scale = min_side / min(w, h)
    if scale < 1.0:
        img.draft(None, (math.ceil(w * scale), math.ceil(h * scale)))


def load_image(path: str | Path, min_side: int | None = None) -> Image.Image:
    """Open an image file fully as 8-bit RGB; an unreadable file raises ConsisError naming it.

    16-bit greyscale PNGs are scaled to 8 bits (``v / 257``, rounded) rather than
    clipped; an image beyond PIL's decompression-bomb limit is refused. With
    ``min_side``, a JPEG is decoded at a reduced scale whose shorter side is still at
    least ``min_side`` pixels (for a later resize to that size).
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            if min_side is not None:
                _draft(img, min_side)
            img.load()
            loaded = img.copy()
            loaded.format = img.format
    except FileNotFoundError as exc:
        raise ConsisError(f"image file {path} is missing; {_FIX_IMAGE}") from exc
    except Image.DecompressionBombError as exc:
        raise ConsisError(
            f"image {path} is too large to decode safely ({exc}); downscale it or {_FIX_IMAGE}"
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ConsisError(
            f"cannot read image {path} (corrupt or not an image); {_FIX_IMAGE}"
        ) from exc
    return _to_rgb(loaded, path)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB image -> FloatTensor ``[3, H, W]`` in [0, 1]."""
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def resize_for(image_size: int) -> int:
    """The shorter side an image is resized to before its centre ``image_size`` crop.

    torchvision's ImageNet evaluation transform at the paper's scale (224 px and
    up): ``round(image_size * 8 / 7)``, 256 for 224. Smaller sizes (the embedded
    profiles' 32 and 64 px) are resized straight to ``image_size``.

    Example
    -------
    >>> resize_for(224), resize_for(32)
    (256, 32)
    """
    return round(image_size * 8 / 7) if image_size >= 224 else image_size


def resize_center_crop(img: Image.Image, size: int, resize: int | None = None) -> Image.Image:
    """Resize so the shorter side is ``resize`` (default ``size``; bilinear), then crop the
    centre ``size`` square."""
    resize = size if resize is None else resize
    w, h = img.size
    if (w, h) == (size, size) and resize == size:
        return img
    scale = resize / min(w, h)
    nw, nh = max(resize, round(w * scale)), max(resize, round(h * scale))
    img = img.resize((nw, nh), Image.BILINEAR, reducing_gap=None)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def read_class_names(root: Path, wnids: Sequence[str]) -> list[str]:
    """Human names for ``wnids``: from ``root/classes.json`` if present, else the synset lemma.

    ``classes.json`` may be a list of objects with ``wnid`` and ``name`` keys, or an
    object mapping WNID to a name or to an object with a ``name`` key.
    """
    table: dict[str, str] = {}
    path = root / "classes.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConsisError(
                f"{path} is not valid JSON; fix it, or move it out of {root} (it is optional)"
            ) from exc
        if isinstance(data, dict) and isinstance(data.get("classes"), list):
            data = data["classes"]
        if isinstance(data, list):
            for row in data:
                if isinstance(row, dict) and "wnid" in row and "name" in row:
                    table[str(row["wnid"])] = str(row["name"])
        elif isinstance(data, dict):
            for key, val in data.items():
                if isinstance(val, dict) and "name" in val:
                    table[key] = str(val["name"])
                elif isinstance(val, str):
                    table[key] = val
    names = []
    for w in wnids:
        if w in table:
            names.append(table[w])
        else:
            from consis_lib.wordnet import synset_of

            names.append(synset_of(w).lemma_names()[0].replace("_", " "))
    return names


def _image_files(folder: Path) -> list[Path]:
    """Sorted image files of a class folder; a symbolic link to nothing is refused."""
    files = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_EXTENSIONS or p.name.startswith("."):
            continue
        if p.is_symlink() and not p.exists():
            raise ConsisError(
                f"{p} is a symbolic link to {os.readlink(p)}, which does not exist; "
                "restore the target or move the link out of the data folder"
            )
        if p.is_file():
            files.append(p)
    return files


class WnidImageFolder(Dataset):
    """Images in WNID-named class folders, ImageNet style.

    Parameters
    ----------
    root : folder holding ``<split>/<wnid>/*.{png,jpg,jpeg,JPEG}`` (and optionally
        ``classes.json`` with class names).
    split : sub-folder, e.g. ``"train"`` or ``"val"``.
    image_size : when given, resize the shorter side to ``resize_size`` and crop the
        centre ``image_size`` square.
    resize_size : the shorter side before the crop (default ``image_size``;
        torchvision's evaluation transform for 224 px is 256, see :func:`resize_for`).
        JPEGs are decoded at a reduced scale still at least this large.
    transform : optional callable applied to the ``[3, H, W]`` tensor (e.g. a random
        flip for training).

    Attributes
    ----------
    wnids : sorted class WNIDs; label ``i`` is ``wnids[i]``.
    names : human-readable class names, aligned with ``wnids``.
    samples : ``(path, label)`` per image, sorted by class then file name.
    targets : labels of ``samples``.

    Items
    -----
    ``(image FloatTensor [3, H, W] in [0, 1], label int)``.

    Raises
    ------
    ConsisError
        Missing folder, a class folder that is not a WNID or not a WordNet 3.0 noun, a
        class folder without images, a symbolic link to a missing file; a corrupt,
        oversized or 32-bit image when it is read (see :meth:`verify`).

    Example
    -------
    >>> ds = WnidImageFolder("data/imagenet", "val", image_size=224)
    >>> loader = torch.utils.data.DataLoader(ds, batch_size=64)
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        image_size: int | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        resize_size: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.image_size = image_size
        self.resize_size = image_size if resize_size is None else resize_size
        self.transform = transform
        for name, value in (("image_size", image_size), ("resize_size", resize_size)):
            if value is not None and not (isinstance(value, Integral) and value > 0):
                raise ConsisError(f"{name} must be a positive int, got {value!r}")
        if image_size is not None and self.resize_size < image_size:
            raise ConsisError(f"resize_size {resize_size} is smaller than image_size {image_size}: the crop would not fit")
        folder = self.root / split
        if not folder.is_dir():
            raise ConsisError(
                f"image folder {folder} does not exist; point the data root at an ImageNet-layout "
                "folder (<split>/<wnid>/*.JPEG), or generate the embedded set into a new folder "
                "with `consis data embedded --profile PROFILE --out NEW_DIR`"
            )
        from consis_lib.wordnet import check_noun_wnid, is_wnid

        class_dirs = sorted(
            p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        if not class_dirs:
            raise ConsisError(
                f"{folder} has no class folders; images must sit in <wnid> sub-folders "
                "(sort ImageNet's flat validation images into WNID folders first)"
            )
        for d in class_dirs:
            if not is_wnid(d.name):
                raise ConsisError(
                    f"class folder {d} is not a WordNet ID; rename it to its noun WNID "
                    "(e.g. n02084071) or move it out of the split folder"
                )
            try:
                check_noun_wnid(d.name)
            except ConsisError as exc:
                raise ConsisError(f"class folder {d}: {exc}") from exc
        self.wnids: list[str] = [d.name for d in class_dirs]
        self.samples: list[tuple[Path, int]] = []
        for label, d in enumerate(class_dirs):
            files = _image_files(d)
            if not files:
                raise ConsisError(
                    f"class folder {d} has no .png/.jpg/.jpeg images; add images or move it out of the split folder"
                )
            self.samples.extend((p, label) for p in files)
        self.targets: list[int] = [label for _, label in self.samples]
        self.names: list[str] = read_class_names(self.root, self.wnids)
        log.debug("%s: %d images in %d classes", folder, len(self.samples), len(self.wnids))

    @property
    def num_classes(self) -> int:
        """Number of classes ``C``."""
        return len(self.wnids)

    @property
    def class_to_idx(self) -> dict[str, int]:
        """WNID -> label (torchvision's ImageFolder name for the same map)."""
        return {w: i for i, w in enumerate(self.wnids)}

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> torch.Tensor:
        """The image of sample ``index`` as ``[3, H, W]`` in [0, 1], before ``transform``."""
        path = self.samples[index][0]
        if self.image_size is None:
            return to_tensor(load_image(path))
        img = load_image(path, min_side=self.resize_size)
        return to_tensor(resize_center_crop(img, self.image_size, self.resize_size))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.load(index)
        if self.transform is not None:
            x = self.transform(x)
        return x, self.samples[index][1]

    def verify(self) -> None:
        """Decode every image once; raise ConsisError naming the first unreadable file."""
        for path, _ in self.samples:
            load_image(path)

    def __repr__(self) -> str:
        return (
            f"WnidImageFolder(root={str(self.root)!r}, split={self.split!r}, "
            f"classes={len(self.wnids)}, images={len(self.samples)})"
        )
