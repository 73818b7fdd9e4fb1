"""The static neuron explorer as one self-contained HTML block (:func:`explorer_html`).

The block carries the explorer's JSON (:func:`consis_lib.explorer_units.explorer_data`),
one base64 JPEG sprite per model, CSS and about a hundred lines of plain
JavaScript: nothing needs a kernel, a widget library or the network, so the block
works the same in Jupyter and in the static book. In the browser: filter by class
or concept name (or a unit index), sort by consis, consis_adv or their gap in any
model, and click a unit to see the same unit index side by side in every model.

Example
-------
>>> page = explorer_html([normal_units, adv_units], class_names, layer="layer4")
>>> page.size_text()
'1.6 MB (sprites 1.5 MB)'
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from consis_lib.explorer_units import ModelUnits, explorer_data

SORT_CHOICES = ("gap", "consis", "consis_adv", "unit")


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
