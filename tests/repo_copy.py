"""A fresh root holding what ``consis reproduce`` reads (notebooks, book, configuration)."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def repository_copy(root: Path) -> Path:
    """Copy the notebook templates, the book sources and the book configuration into
    ``root`` (a new folder), with the widget JavaScript linked in; returns ``root``."""
    root.mkdir()
    for name in ("_config.yml", "_toc.yml", "notebooks", "book"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, symlinks=True, ignore=shutil.ignore_patterns("_build", "runs"))
        else:
            shutil.copy(src, root / name)
    (root / "node_modules").symlink_to(REPO / "node_modules")
    return root
