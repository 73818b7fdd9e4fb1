"""The one cache folder of consis (WordNet copy, sprites, generated data sets, distances)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$CONSIS_CACHE`` when set (and not empty), else ``~/.cache/consis``."""
    env = os.environ.get("CONSIS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "consis"
