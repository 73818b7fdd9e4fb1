"""Static neuron explorer over every unit of the metric layer: one self-contained HTML block.

For every unit ``n`` of the metric layer and every model of an architecture, the
block carries ``consis(n)`` and ``consis_adv(n)`` (Eq. 3), the unit's dominant
classes (the largest ``consis(n, c)`` of Eq. 1) on real and on adversarial (FGSM)
images, its best network-dissection concepts when a dissection was run, and its
top real / top adversarial images. The images of one model are tiles of one
JPEG sprite (square tiles, padded or centre-cropped, never stretched), shown by
CSS ``background-position``; the numbers travel as JSON beside about a hundred
lines of plain JavaScript. Nothing needs a kernel, a widget library or the network, so
the block works the same in Jupyter and in the static book.

In the browser: filter by class or concept name (or a unit index), sort by
consis, consis_adv or their gap in any model, and click a unit to see the same
unit index side by side in every model.

Example
-------
>>> from consis_lib import context, explorer_static
>>> ctx = context.notebook_context("smoke", "resnet18", "runs")
>>> page = explorer_static.static_explorer(ctx)   # display(page) in a notebook
>>> page.size_text()   # smoke profile, ResNet-18: 128 units x 3 models
'1.6 MB (sprites 1.5 MB)'
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from consis_lib.errors import ConsisError

FITS = ("pad", "crop")
SORT_CHOICES = ("gap", "consis", "consis_adv", "unit")
BLANK = (235, 235, 235)  # tile colour where fewer than top_k images activate the unit

Concept = tuple[str, str, float]  # (concept, category, IoU)
LOG = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- tiles and sprites


def square_tile(image: torch.Tensor, heat: torch.Tensor | None = None, size: int = 48, fit: str = "pad") -> np.ndarray:
    """One square thumbnail of an image, highlighted by a unit's map, without distortion.

    Parameters
    ----------
    image : FloatTensor [3, H, W] in [0, 1] (any aspect ratio).
    heat : the unit's map [h, w] (activation or discrepancy map) or None; regions
        where it is low are dimmed (:func:`consis_lib.viz.overlay`).
    size : side of the thumbnail in pixels.
    fit : ``"pad"`` (letterbox the whole image on white) or ``"crop"`` (the centre
        square). The image is never stretched.

    Returns
    -------
    uint8 array [size, size, 3].

    Example
    -------
    >>> square_tile(torch.zeros(3, 8, 16), size=16, fit="pad")[0, 0].tolist()  # padding row
    [255, 255, 255]
    """
    from consis_lib.viz import overlay

    return square(overlay(image, heat), size, fit)


def square(image: np.ndarray, size: int, fit: str = "pad") -> np.ndarray:
    """A uint8 image [H, W, 3] as a square [size, size, 3]: padded on white or centre-cropped, never stretched.

    Example
    -------
    >>> square(np.zeros((2, 4, 3), np.uint8), 4, "pad")[:, 0, 0].tolist()
    [255, 0, 0, 255]
    """
    if fit not in FITS:
        raise ConsisError(f"unknown thumbnail fit {fit!r}; use one of {', '.join(FITS)}")
    if size < 1:
        raise ConsisError(f"thumbnail size must be positive, got {size}")
    img = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    w, h = img.size
    side = max(w, h) if fit == "pad" else min(w, h)
    if fit == "pad":
        canvas = Image.new("RGB", (side, side), (255, 255, 255))
        canvas.paste(img, ((side - w) // 2, (side - h) // 2))
        img = canvas
    else:
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    if side != size:
        img = img.resize((size, size), Image.BILINEAR, reducing_gap=2.0 if side > size else None)
    return np.asarray(img, dtype=np.uint8)


def highlight(images: torch.Tensor, heats: torch.Tensor, strength: float = 0.6) -> np.ndarray:
    """:func:`consis_lib.viz.overlay` for a batch: dim each image where its map is low.

    Parameters
    ----------
    images : [T, 3, H, W] in [0, 1].
    heats : [T, h, w], one map per image (bilinearly resized to H x W, min-max
        scaled per image; a constant map leaves its image unchanged).
    strength : how much low-map regions are dimmed.

    Returns
    -------
    uint8 array [T, H, W, 3], equal to ``overlay`` image by image (up to float rounding).
    """
    size = images.shape[-2:]
    h = torch.nn.functional.interpolate(heats[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    h = h - h.amin(dim=(1, 2), keepdim=True)
    top = h.amax(dim=(1, 2), keepdim=True)
    h = torch.where(top > 0, h / top.clamp_min(torch.finfo(h.dtype).tiny), torch.ones_like(h))
    base = torch.floor(images.float().clamp(0, 1) * 255 + 0.5)
    out = (base * (1.0 - strength * (1.0 - h[:, None]))).clamp(0, 255)
    return out.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def tile_origin(unit: int, slot: int, size: int, per_unit: int, units_per_column: int = 256) -> tuple[int, int]:
    """Top-left pixel ``(x, y)`` of tile ``slot`` of ``unit`` in a sprite of :func:`sprite_sheet`.

    Units run down a column block of ``units_per_column`` rows, each row holding
    the unit's ``per_unit`` tiles; further units start the next column block. The
    explorer's JavaScript computes the same positions.

    Example
    -------
    >>> tile_origin(257, 1, size=32, per_unit=8, units_per_column=256)
    (288, 32)
    """
    block, row = divmod(unit, units_per_column)
    return (block * per_unit + slot) * size, row * size


def sprite_sheet(tiles: Sequence[Sequence[np.ndarray | None]], size: int, units_per_column: int = 256) -> Image.Image:
    """All units' tiles of one model in one image (see :func:`tile_origin` for the layout).

    Parameters
    ----------
    tiles : per unit, its tiles (e.g. top real then top adversarial), each a uint8
        array [size, size, 3] from :func:`square_tile`, or None for a blank tile.
    size : tile side in pixels.
    units_per_column : rows per column block (keeps both sides of the sprite
        within JPEG's and browsers' limits for layers of thousands of units).

    Returns
    -------
    PIL RGB image ``(ceil(K / upc) * per_unit * size, min(K, upc) * size)``.
    """
    per_unit = max((len(t) for t in tiles), default=0)
    if not tiles or per_unit == 0:
        raise ConsisError("sprite_sheet needs at least one unit with one tile; pass the units' thumbnails")
    blocks = math.ceil(len(tiles) / units_per_column)
    sheet = Image.new("RGB", (blocks * per_unit * size, min(len(tiles), units_per_column) * size), BLANK)
    for unit, row in enumerate(tiles):
        for slot, tile in enumerate(row):
            if tile is None:
                continue
            if tile.shape != (size, size, 3):
                raise ConsisError(f"tile of unit {unit} has shape {tile.shape}; expected ({size}, {size}, 3) from square_tile")
            sheet.paste(Image.fromarray(tile), tile_origin(unit, slot, size, per_unit, units_per_column))
    return sheet


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True, eq=False)
class ModelUnits:
    """Every unit of the metric layer of one model, as the static explorer shows it.

    Attributes
    ----------
    name : the model's name in the run (e.g. ``"normal"``).
    consis, consis_adv : Eq. 3 per unit [K] (NaN where no image activates the unit).
    probs, probs_adv : Eq. 1 ``consis(n, c)`` on real / adversarial images [K, C].
    sprite : the tiles of every unit (:func:`sprite_sheet`): ``top_k`` top real
        images, then ``top_k`` top adversarial images.
    top_k : images per row of a unit.
    thumb : tile side in pixels.
    concepts, concepts_adv : per unit, the best dissection concept above the IoU
        threshold on real / adversarial probe images, or None (empty: no dissection).
    units_per_column : the sprite's layout (:func:`tile_origin`).
    """

    name: str
    consis: np.ndarray
    consis_adv: np.ndarray
    probs: np.ndarray
    probs_adv: np.ndarray
    sprite: Image.Image
    top_k: int
    thumb: int
    concepts: tuple[Concept | None, ...] = ()
    concepts_adv: tuple[Concept | None, ...] = ()
    units_per_column: int = 256

    @property
    def n_units(self) -> int:
        return len(self.consis)


def dominant_classes(probs: Sequence[float], names: Sequence[str], top: int = 3) -> list[tuple[str, float]]:
    """The ``top`` classes with the largest Eq. 1 share ``consis(n, c) > 0``, largest first.

    Example
    -------
    >>> dominant_classes([0.2, 0.0, 0.8], ["dog", "cat", "wolf"], top=3)
    [('wolf', 0.8), ('dog', 0.2)]
    """
    p = np.nan_to_num(np.asarray(probs, float), nan=0.0)
    if p.shape != (len(names),):
        raise ConsisError(f"{p.shape[0]} probabilities for {len(names)} class names; pass one row of Eq. 1 per unit")
    order = np.argsort(-p, kind="stable")[:top]
    return [(str(names[i]), float(p[i])) for i in order if p[i] > 0]


def _num(v: float) -> float | None:
    return round(float(v), 4) if np.isfinite(v) else None


def _concept(c: Concept | None) -> list[Any] | None:
    return None if c is None else [str(c[0]), str(c[1]), round(float(c[2]), 4)]


def _check_models(models: Sequence[ModelUnits], class_names: Sequence[str]) -> None:
    if not models:
        raise ConsisError("the explorer needs at least one model; pass one ModelUnits per model")
    first = models[0]
    for m in models:
        if m.n_units != first.n_units or (m.top_k, m.thumb, m.units_per_column) != (first.top_k, first.thumb, first.units_per_column):
            raise ConsisError(f"model {m.name!r} has another layer size or tile layout than {first.name!r}; build all models with the same settings")
        if m.probs.shape != (m.n_units, len(class_names)) or m.probs_adv.shape != m.probs.shape:
            raise ConsisError(f"model {m.name!r}: Eq. 1 tables must be [{m.n_units}, {len(class_names)}] (units x classes)")
        for concepts in (m.concepts, m.concepts_adv):
            if concepts and len(concepts) != m.n_units:
                raise ConsisError(f"model {m.name!r}: {len(concepts)} concepts for {m.n_units} units; pass one per unit or none")


def explorer_data(models: Sequence[ModelUnits], class_names: Sequence[str], top_classes: int = 3) -> dict[str, Any]:
    """The JSON the explorer's JavaScript reads: one entry per unit, one record per model.

    Each record holds ``c`` = consis(n), ``a`` = consis_adv(n), ``g`` = their gap
    (None when undefined), ``cls`` / ``cls_adv`` = the dominant classes
    ``[[name, consis(n, c)], ...]`` on real / adversarial images, and
    ``concept`` / ``concept_adv`` = ``[concept, category, IoU]`` or None.
    """
    _check_models(models, class_names)
    first = models[0]
    units = []
    for u in range(first.n_units):
        records = []
        for m in models:
            c, a = float(m.consis[u]), float(m.consis_adv[u])
            records.append(
                dict(
                    c=_num(c), a=_num(a), g=_num(c - a),
                    cls=dominant_classes(m.probs[u], class_names, top_classes),
                    cls_adv=dominant_classes(m.probs_adv[u], class_names, top_classes),
                    concept=_concept(m.concepts[u]) if m.concepts else None,
                    concept_adv=_concept(m.concepts_adv[u]) if m.concepts_adv else None,
                )
            )
        units.append(dict(u=u, m=records))
    return dict(
        models=[m.name for m in models], n_units=first.n_units, top_k=first.top_k, thumb=first.thumb,
        upc=first.units_per_column, top_classes=top_classes, units=units,
    )


# ----------------------------------------------------------------------------- HTML


@dataclass(frozen=True, repr=False)
class ExplorerPage:
    """The explorer as one HTML block; displays itself in Jupyter (``_repr_html_``).

    Attributes
    ----------
    html : the block (markup, CSS, JSON data, inline JavaScript, base64 sprites).
    sprite_bytes : bytes of all base64-encoded sprites inside ``html``.
    n_units, models : what the explorer covers.
    """

    html: str
    sprite_bytes: int
    n_units: int
    models: tuple[str, ...]

    @property
    def n_bytes(self) -> int:
        """Size of the block in bytes (UTF-8), i.e. what it adds to a page."""
        return len(self.html.encode("utf-8"))

    def size_text(self) -> str:
        """E.g. ``'1.9 MB (sprites 1.8 MB)'`` (MB = 10^6 bytes)."""
        return f"{self.n_bytes / 1e6:.1f} MB (sprites {self.sprite_bytes / 1e6:.1f} MB)"

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:  # the plain-text output of a notebook cell: short, never the whole block
        return f"ExplorerPage({self.n_units} units x {len(self.models)} models: {', '.join(self.models)}; {self.size_text()})"


_CSS = """
#{uid} {{ font-size: 0.9em; margin: 0.5em 0 1em 0; }}
#{uid} .cx-controls {{ display: flex; flex-wrap: wrap; gap: 0.4em 1em; align-items: center; margin-bottom: 0.4em; }}
#{uid} .cx-controls input {{ width: 16em; }}
#{uid} .cx-list-box {{ max-height: 24em; overflow-y: auto; border: 1px solid rgba(128,128,128,0.4); }}
#{uid} table.cx-list {{ border-collapse: collapse; width: 100%; margin: 0; }}
#{uid} .cx-list th, #{uid} .cx-list td {{ padding: 2px 6px; text-align: left; vertical-align: top; border-bottom: 1px solid rgba(128,128,128,0.2); }}
#{uid} .cx-list thead th {{ position: sticky; top: 0; background: rgba(200,200,200,0.95); color: #222; }}
#{uid} .cx-list tbody tr {{ cursor: pointer; }}
#{uid} .cx-list tbody tr:hover {{ background: rgba(100,150,255,0.12); }}
#{uid} .cx-list tbody tr.cx-selected {{ background: rgba(100,150,255,0.3); }}
#{uid} .cx-small {{ font-size: 0.85em; opacity: 0.85; }}
#{uid} .cx-detail {{ display: flex; flex-wrap: wrap; gap: 0.8em; margin-top: 0.6em; }}
#{uid} .cx-detail-title {{ flex: 1 1 100%; font-weight: bold; }}
#{uid} .cx-card {{ flex: 0 1 auto; border: 1px solid rgba(128,128,128,0.4); border-radius: 4px; padding: 0.4em 0.6em; max-width: {card}px; }}
#{uid} .cx-tiles {{ display: flex; gap: 2px; margin: 2px 0; align-items: center; }}
#{uid} .cx-tiles span {{ width: 2.2em; font-size: 0.8em; }}
#{uid} .cx-tile {{ width: {thumb}px; height: {thumb}px; flex: none; background-repeat: no-repeat; }}
"""

# The explorer's behaviour; runs inside a function where ROOT_ID names its block.
_JS = r"""
var root = document.getElementById(ROOT_ID);
if (!root || root.getAttribute("data-ready")) { return; }
root.setAttribute("data-ready", "1");
var data = JSON.parse(root.querySelector("script.cx-data").textContent);
var filter = root.querySelector(".cx-filter"), where = root.querySelector(".cx-where");
var sortKey = root.querySelector(".cx-sort"), sortModel = root.querySelector(".cx-sort-model");
var tbody = root.querySelector(".cx-list tbody"), count = root.querySelector(".cx-count");
var detail = root.querySelector(".cx-detail");
var selected = null, shown = [];
function el(tag, cls, text) {
  var e = document.createElement(tag);
  if (cls) { e.className = cls; }
  if (text !== undefined) { e.textContent = text; }
  return e;
}
function fmt(v) { return v === null ? "n/a" : v.toFixed(3); }
function names(list) { return list.map(function (c) { return c[0]; }); }
function words(r) {
  var w = names(r.cls).concat(names(r.cls_adv));
  [r.concept, r.concept_adv].forEach(function (c) { if (c) { w.push(c[0], c[1]); } });
  return w.join("\n").toLowerCase();
}
data.units.forEach(function (u) { u.text = u.m.map(words); });
function matches(u, query, model) {
  if (!query) { return true; }
  if (/^\d+$/.test(query) && Number(query) === u.u) { return true; }
  for (var i = 0; i < u.text.length; i++) {
    if ((model === "" || Number(model) === i) && u.text[i].indexOf(query) >= 0) { return true; }
  }
  return false;
}
function key(u) {
  var r = u.m[Number(sortModel.value)], k = sortKey.value;
  if (k === "unit") { return -u.u; }
  var v = k === "consis" ? r.c : (k === "consis_adv" ? r.a : r.g);
  return v === null ? -Infinity : v;
}
function order(a, b) {
  var ka = key(a), kb = key(b);
  if (ka !== kb) { return kb > ka ? 1 : -1; }
  return a.u - b.u;
}
function classText(list) {
  return list.length ? list.map(function (c) { return c[0] + " " + Math.round(100 * c[1]) + "%"; }).join(", ") : "none";
}
function conceptText(c) { return c ? c[0] + " (" + c[1] + ", IoU " + c[2].toFixed(3) + ")" : "none above the IoU threshold"; }
function tiles(i, unit, first) {
  var row = el("div", "cx-tiles"), per = 2 * data.top_k;
  row.appendChild(el("span", "", first ? "adv." : "real"));
  var block = Math.floor(unit / data.upc), line = unit % data.upc;
  for (var s = first; s < first + data.top_k; s++) {
    var t = el("div", "cx-tile cx-sprite-" + i);
    t.style.backgroundPosition = -((block * per + s) * data.thumb) + "px " + -(line * data.thumb) + "px";
    row.appendChild(t);
  }
  return row;
}
function card(u, i) {
  var r = u.m[i], c = el("div", "cx-card");
  c.setAttribute("data-model", data.models[i]);
  c.appendChild(el("b", "", data.models[i]));
  c.appendChild(el("div", "cx-num", "consis " + fmt(r.c) + " / adv " + fmt(r.a)));
  c.appendChild(el("div", "cx-num cx-small", "gap " + fmt(r.g)));
  if (r.c === null) { c.appendChild(el("div", "cx-small", "no real image activates this unit")); }
  c.appendChild(tiles(i, u.u, 0));
  c.appendChild(tiles(i, u.u, data.top_k));
  c.appendChild(el("div", "cx-small", "real: " + classText(r.cls)));
  c.appendChild(el("div", "cx-small", "adversarial: " + classText(r.cls_adv)));
  if (r.concept || r.concept_adv) {
    c.appendChild(el("div", "cx-small", "concept: " + conceptText(r.concept)));
    c.appendChild(el("div", "cx-small", "concept (adversarial): " + conceptText(r.concept_adv)));
  }
  return c;
}
function show(u) {
  detail.textContent = "";
  Array.prototype.forEach.call(tbody.children, function (tr) {
    tr.className = u && Number(tr.getAttribute("data-unit")) === u.u ? "cx-selected" : "";
  });
  if (!u) { detail.appendChild(el("p", "cx-small", "No unit matches the filter.")); return; }
  detail.setAttribute("data-unit", u.u);
  detail.appendChild(el("div", "cx-detail-title", "Unit " + u.u + " in each model"));
  u.m.forEach(function (_r, i) { detail.appendChild(card(u, i)); });
}
function select(u) { selected = u; show(u); }
function row(u) {
  var tr = el("tr");
  tr.tabIndex = 0;
  tr.setAttribute("data-unit", u.u);
  tr.appendChild(el("td", "cx-num", String(u.u)));
  u.m.forEach(function (r) {
    var td = el("td");
    td.appendChild(el("div", "cx-num", fmt(r.c) + " / " + fmt(r.a)));
    var top = r.cls.length ? r.cls[0][0] : "-", topAdv = r.cls_adv.length ? r.cls_adv[0][0] : "-";
    td.appendChild(el("div", "cx-small", top + " \u2192 " + topAdv + (r.concept ? "; " + r.concept[0] : "")));
    tr.appendChild(td);
  });
  tr.addEventListener("click", function () { select(u); });
  tr.addEventListener("keydown", function (e) { if (e.key === "Enter") { select(u); } });
  return tr;
}
function render() {
  var query = filter.value.trim().toLowerCase(), model = where.value;
  shown = data.units.filter(function (u) { return matches(u, query, model); }).sort(order);
  tbody.textContent = "";
  shown.forEach(function (u) { tbody.appendChild(row(u)); });
  count.textContent = shown.length + " of " + data.n_units + " units";
  if (shown.indexOf(selected) < 0) { selected = shown.length ? shown[0] : null; }
  show(selected);
}
[filter].forEach(function (e) { e.addEventListener("input", render); });
[where, sortKey, sortModel].forEach(function (e) { e.addEventListener("change", render); });
render();
"""


def _sprite_css(uid: str, models: Sequence[ModelUnits], quality: int) -> tuple[str, int]:
    from consis_lib.viz import jpeg_bytes

    rules, total = [], 0
    for i, m in enumerate(models):
        b64 = base64.b64encode(jpeg_bytes(m.sprite, quality=quality)).decode("ascii")
        total += len(b64)
        rules.append(f"#{uid} .cx-sprite-{i} {{ background-image: url(data:image/jpeg;base64,{b64}); }}")
    return "\n".join(rules), total


def explorer_html(
    models: Sequence[ModelUnits],
    class_names: Sequence[str],
    layer: str = "",
    top_classes: int = 3,
    quality: int = 80,
    highlight: str = "the unit's activation map",
) -> ExplorerPage:
    """Assemble the self-contained explorer block (see the module docstring).

    Parameters
    ----------
    models : one :class:`ModelUnits` per model of the architecture (2 or more, any names).
    class_names : names of the classes, aligned with the Eq. 1 tables.
    layer : the metric layer's name (shown in the header).
    top_classes : dominant classes listed (and searched) per unit and image kind.
    quality : JPEG quality of the sprites.
    highlight : what the bright regions of the tiles are (shown under the tiles).

    Returns
    -------
    :class:`ExplorerPage`; its header states its own size.
    """
    data = explorer_data(models, class_names, top_classes)
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    uid = "consis-explorer-" + hashlib.sha1(payload.encode("utf-8")).hexdigest()[:10]
    sprites, sprite_bytes = _sprite_css(uid, models, quality)
    options = "".join(f'<option value="{i}">{_esc(m.name)}</option>' for i, m in enumerate(models))
    sorts = "".join(f'<option value="{k}">{k}</option>' for k in SORT_CHOICES)
    head = "".join(f"<th>{_esc(m.name)}<br><span class='cx-small'>consis / consis_adv<br>top class: real \u2192 adv.</span></th>" for m in models)
    body = (
        f'<div id="{uid}" class="consis-explorer">'
        f"<style>{_CSS.format(uid=uid, thumb=data['thumb'], card=data['top_k'] * (data['thumb'] + 2) + 60)}\n{sprites}</style>"
        f'<p class="cx-about">All {data["n_units"]} units of the metric layer {_esc(layer)} in '
        f"{len(models)} models ({_esc(', '.join(m.name for m in models))}). Filter by a class or concept name "
        f"(each unit's {top_classes} dominant classes on real and on adversarial images and its dissection "
        "concepts) or by a unit index; sort by consis, consis_adv or their gap in any model; "
        "click a unit to see it side by side in every model. "
        "This explorer is self-contained: no kernel, no network; it adds {size} to the page.</p>"
        '<div class="cx-controls">'
        '<label>filter <input class="cx-filter" type="search" placeholder="class or concept, e.g. dog"></label>'
        f'<label>in <select class="cx-where"><option value="">any model</option>{options}</select></label>'
        f'<label>sort by <select class="cx-sort">{sorts}</select></label>'
        f'<label>of <select class="cx-sort-model">{options}</select></label>'
        '<span class="cx-count"></span></div>'
        f'<div class="cx-list-box"><table class="cx-list"><thead><tr><th>unit</th>{head}</tr></thead>'
        "<tbody></tbody></table></div>"
        '<div class="cx-detail"></div>'
        f'<p class="cx-small">Tiles: top row the {data["top_k"]} validation images with the highest a_n(x); '
        f"bottom row the {data['top_k']} FGSM images with the highest a_n(x*); bright regions: {_esc(highlight)}.</p>"
        f'<script type="application/json" class="cx-data">{_script_safe(payload)}</script>'
        f"<script>(function(){{var ROOT_ID={json.dumps(uid)};\n{_JS}\n}})();</script>"
        "</div>"
    )
    size = len(body.encode("utf-8"))
    text = f"{size / 1e6:.1f} MB (sprites {sprite_bytes / 1e6:.1f} MB)"
    return ExplorerPage(body.replace("{size}", text, 1), sprite_bytes, data["n_units"], tuple(m.name for m in models))


def _esc(text: str) -> str:
    import html

    return html.escape(str(text))


def _script_safe(payload: str) -> str:
    """JSON inside ``<script>``: a ``</`` would close the element early."""
    return payload.replace("</", "<\\/")


# ----------------------------------------------------------------------------- from a run


def _top_images(acts: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per unit the ``top_k`` images by ``a_n`` (stable order) and whether they activate it (``a_n > 0``)."""
    vals, idx = torch.sort(acts, dim=0, descending=True, stable=True)
    return idx[:top_k].T, vals[:top_k].T > 0


def unit_maps(model: torch.nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor, device: torch.device, batch: int = 128) -> torch.Tensor:
    """The maps ``[n, K, h, w]`` of ``layer`` on a few images ``x [n, 3, H, W]`` (labels ``y [n]``).

    Used for the highlights of the top images only, so that no pass over the
    whole data set has to keep every map.
    """
    from consis_lib.activations import unit_activations

    loader = [(x[i : i + batch], y[i : i + batch]) for i in range(0, len(x), batch)]
    return unit_activations(model, loader, layer, device=device, keep_maps=True, progress=False).maps


def _fgsm(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, device: torch.device, batch: int = 128) -> torch.Tensor:
    from consis_lib.attacks import fgsm

    return torch.cat([fgsm(model, x[i : i + batch].to(device), y[i : i + batch].to(device), eps).cpu() for i in range(0, len(x), batch)])


def _tiles(
    images: torch.Tensor, maps: torch.Tensor, idx: torch.Tensor, active: torch.Tensor, thumb: int, fit: str
) -> list[list[np.ndarray | None]]:
    """Per unit ``u`` the tiles of its top images ``idx[u]`` (None where the image does not activate it).

    ``images`` and ``maps`` are indexed by position among ``idx``'s sorted unique values.
    """
    _, inv = torch.unique(idx, return_inverse=True)
    units = torch.arange(idx.shape[0])[:, None].expand_as(idx)
    pos, unit = inv[active], units[active]
    lit = highlight(images[pos], maps[pos, unit]) if len(pos) else []
    tiles = iter(square(t, thumb, fit) for t in lit)
    return [[next(tiles) if bool(a) else None for a in row] for row in active]


def _concepts(ctx: Any, name: str, images: str, n_units: int) -> tuple[Concept | None, ...]:
    """Per unit the best concept above the IoU threshold of the run's measures (empty when not dissected)."""
    try:
        dis = ctx.dissection_summary()
    except ConsisError:
        return ()
    rows = dis.get(name, {}).get(images, {}).get("units", [])
    if not rows:
        return ()
    threshold = float(dis.get("iou_threshold", 0.0))
    best: dict[int, Concept] = {}
    for u, concept, category, iou in rows:
        if concept is not None and iou is not None and float(iou) > threshold:
            best[int(u)] = (str(concept), str(category), float(iou))
    return tuple(best.get(u) for u in range(n_units))


def model_units(ctx: Any, name: str, top_k: int = 4, thumb: int = 40, fit: str = "pad") -> ModelUnits:
    """Every unit of one model of an arch context, with its sprite of top images.

    Parameters
    ----------
    ctx : :class:`consis_lib.context.ArchContext` (trained models, val data; the
        dissection concepts come from the run's measures when they exist).
    name : the model (one of the run's models).
    top_k : top real and top adversarial images per unit.
    thumb : tile side in pixels; a multiple of 8 keeps JPEG blocks inside a tile.
    fit : ``"pad"`` or ``"crop"`` for non-square images (:func:`square_tile`).

    One pass of the val set (shared with :meth:`ArchContext.unit_consistency`),
    then FGSM and the maps of only the top images.
    """
    from consis_lib.consistency import label_distributions

    if thumb % 8 or top_k < 1:
        raise ConsisError(f"thumb={thumb}, top_k={top_k}: use a thumbnail side that is a multiple of 8 and top_k >= 1")
    acts = ctx.activations(name)
    consis, consis_adv = ctx.unit_consistency(name)
    metric, C = ctx.profile.metric, len(ctx.class_names())
    probs = label_distributions(acts.acts, acts.labels, C, metric.top_fraction, metric.min_top).numpy()
    probs_adv = label_distributions(acts.adv_acts, acts.labels, C, metric.top_fraction, metric.min_top).numpy()
    images, labels = ctx.tensors("val")
    model = ctx.model(name)
    real_idx, real_on = _top_images(acts.acts, top_k)
    adv_idx, adv_on = _top_images(acts.adv_acts, top_k)
    ur, ua = torch.unique(real_idx), torch.unique(adv_idx)
    real_maps = unit_maps(model, ctx.layer, images[ur], labels[ur], ctx.device)
    x_adv = _fgsm(model, images[ua], labels[ua], ctx.profile.attack.eps, ctx.device)
    adv_maps = unit_maps(model, ctx.layer, x_adv, labels[ua], ctx.device)
    real = _tiles(images[ur], real_maps, real_idx, real_on, thumb, fit)
    adv = _tiles(x_adv, adv_maps, adv_idx, adv_on, thumb, fit)
    return ModelUnits(
        name=name, consis=np.asarray(consis, float), consis_adv=np.asarray(consis_adv, float), probs=probs, probs_adv=probs_adv,
        sprite=sprite_sheet([r + a for r, a in zip(real, adv)], thumb), top_k=top_k, thumb=thumb,
        concepts=_concepts(ctx, name, "real", len(consis)), concepts_adv=_concepts(ctx, name, "adversarial", len(consis)),
    )


def static_explorer(
    ctx: Any, models: Sequence[str] | None = None, top_k: int = 4, thumb: int = 40, fit: str = "pad", top_classes: int = 3
) -> ExplorerPage:
    """The static explorer over every unit of every model of an arch context.

    Parameters
    ----------
    ctx : :class:`consis_lib.context.ArchContext`.
    models : the models to show, in order; default every model of the run
        (:data:`consis_lib.results.MODELS`).
    top_k, thumb, fit : see :func:`model_units`.
    top_classes : dominant classes per unit shown and searched.

    Example
    -------
    >>> page = static_explorer(ctx)  # the notebook displays it; page.size_text() for the prose
    """
    from consis_lib.results import MODELS

    names = tuple(models) if models is not None else tuple(MODELS)
    units = []
    for n in names:  # logged, not a progress bar: a bar would be stored as a widget in the executed page
        LOG.info("explorer: rendering every unit of model %s", n)
        units.append(model_units(ctx, n, top_k, thumb, fit))
    return explorer_html(units, ctx.class_names(), layer=ctx.layer, top_classes=top_classes)
