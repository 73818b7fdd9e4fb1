"""Writing the Broden format (read by :mod:`consis_lib.data.broden`): label PNGs and
the label tables, shared by the embedded probe and the paper-shaped layout.

Label PNGs store the label number as ``R + 256*G`` (B = 0; 0 = unlabelled).
``label.csv`` gives each label's ``frequency`` (images carrying it) and ``coverage``
(summed over those images: the fraction of the image it covers); ``category.csv``
each category's label range, label count and image count; ``c_<category>.csv`` the
category's codes (code 0 = "-").
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from consis_lib.concepts import BRODEN_COLUMNS as CATEGORIES


def encode_labels(labels: np.ndarray) -> np.ndarray:
    """int ``[h, w]`` label numbers in [0, 65535] -> uint8 ``[h, w, 3]`` with ``R + 256*G`` (B = 0)."""
    labels = np.asarray(labels, np.int64)
    if labels.ndim != 2 or labels.min(initial=0) < 0 or labels.max(initial=0) >= 65536:
        raise ValueError("labels must be a 2-D array of integers in [0, 65535]")
    rgb = np.zeros(labels.shape + (3,), np.uint8)
    rgb[..., 0] = labels % 256
    rgb[..., 1] = labels // 256
    return rgb


def encode_label_png(labels: np.ndarray) -> Image.Image:
    """:func:`encode_labels` as an RGB PIL image, ready to save as a label PNG."""
    return Image.fromarray(encode_labels(labels), mode="RGB")


class LabelTally:
    """Per label: ``freq`` (images carrying it) and ``cover`` (summed image fractions);
    per category: the images carrying any of its labels (Broden's ``label.csv`` and
    ``c_<category>.csv`` columns)."""

    def __init__(self) -> None:
        self.freq: dict[int, int] = defaultdict(int)
        self.cover: dict[int, float] = defaultdict(float)
        self.images: dict[str, int] = defaultdict(int)

    def add(self, cat: str, labels: np.ndarray | list[np.ndarray] | int) -> None:
        """Count one image's labels of ``cat``: a mask, several mask planes (a label lies
        in one plane only), or one image-level number."""
        if isinstance(labels, (int, np.integer)):
            self.freq[int(labels)] += 1
            self.cover[int(labels)] += 1.0
        else:
            planes = labels if isinstance(labels, list) else [labels]
            stacked = np.concatenate([m.ravel() for m in planes])
            nums, counts = np.unique(stacked[stacked > 0], return_counts=True)
            for n, k in zip(nums.tolist(), counts.tolist()):
                self.freq[n] += 1
                self.cover[n] += k / planes[0].size
        self.images[cat] += 1


def write_csv(path: Path, header: Sequence[str], rows: list[list[Any]]) -> None:
    """A CSV with ``\\n`` line ends (byte-identical for equal rows)."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def write_label_tables(root: Path, entries: Sequence[tuple[int, str, str, str]], ranges: Mapping[str, tuple[int, int]], tally: LabelTally) -> None:
    """``label.csv``, ``category.csv`` and ``c_<category>.csv`` from the label vocabulary
    (``(number, name, category, syns)`` entries, each category's first and last number)
    and the tally."""
    freq, cover = tally.freq, tally.cover
    write_csv(
        root / "label.csv",
        ["number", "name", "category", "frequency", "coverage", "syns"],
        [[n, name, f"{cat}({freq[n]})", freq[n], f"{cover[n]:.4f}", syns] for n, name, cat, syns in entries],
    )
    write_csv(
        root / "category.csv",
        ["name", "first", "last", "count", "frequency"],
        [[cat, *ranges[cat], sum(1 for e in entries if e[2] == cat), tally.images[cat]] for cat in CATEGORIES],
    )
    for cat in CATEGORIES:
        rows: list[list[Any]] = [[0, 0, "-", 0, "0.0000"]]
        mine = [e for e in entries if e[2] == cat]
        rows += [[code, n, name, freq[n], f"{cover[n]:.4f}"] for code, (n, name, _c, _s) in enumerate(mine, 1)]
        write_csv(root / f"c_{cat}.csv", ["code", "number", "name", "frequency", "coverage"], rows)
