"""``consis measure``: score a layer of your own model, and the files it writes.

Writes into ``--out``:

``measure.json``
    settings, class mapping, the full consistency report (Eq. 1-3, ``consis_adv``,
    controls, common scale, sweeps), top images per unit and, with ``--probe``,
    the dissection summary;
``units.csv``
    one row per unit (the report's per-unit columns, the top class of Eq. 1, the
    top images and the dissection concept);
``report.html``
    a standalone page: summary, Fig. 5-style histograms (embedded PNG), the unit
    table and a static explorer (top images per unit as embedded JPEG thumbnails).

Example
-------
``consis measure --model torchvision:resnet18 --layer layer4 --data DIR --out runs/measure``
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from consis_lib.atomic import atomic_write_text
from consis_lib.errors import ConsisError

log = logging.getLogger(__name__)

EXPLORER_UNITS = 32


def units_table(res: Any, names: list[str], paths: list[str]) -> pd.DataFrame:
    """Per-unit rows: the report's columns, the top class of Eq. 1, top images, concept."""
    table = res.report.units_frame()
    table.insert(3, "gap", table["consis"] - table["consis_adv"])
    probs = np.nan_to_num(res.label_probs, nan=-1.0)
    best = probs.argmax(1)
    table["top_class"] = [names[c] if probs[k, c] >= 0 else "" for k, c in enumerate(best)]
    table["top_class_share"] = [float(probs[k, c]) if probs[k, c] >= 0 else np.nan for k, c in enumerate(best)]
    table["top_images"] = [";".join(paths[i] for i in row) for row in res.top_images]
    table["top_images_adv"] = [";".join(paths[i] for i in row) for row in res.top_images_adv]
    if res.dissection is not None:
        d = res.dissection.table.set_index("unit")
        table["concept"] = [d.at[k, "concept"] if d.at[k, "aligned"] else "" for k in table["unit"]]
        table["iou"] = [float(d.at[k, "iou"]) for k in table["unit"]]
    return table


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _thumb(data: Any, index: int, size: int = 72) -> str:
    from PIL import Image

    from consis_lib.viz import jpeg_bytes

    x = data[index][0]
    arr = (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    img = Image.fromarray(arr).resize((size, size), Image.BILINEAR)
    return base64.b64encode(jpeg_bytes(img, quality=80)).decode()


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return "" if not np.isfinite(v) else f"{v:.4f}"
    return html.escape(str(v))


def _summary_rows(res: Any, info: dict[str, Any]) -> list[tuple[str, str]]:
    rep = res.report
    rows = [(k, str(v)) for k, v in info.items()]
    rows += [("images / classes / units", f"{rep.num_images} / {rep.num_classes} / {rep.num_units}"),
             ("class mapping", res.class_map.source),
             ("clean accuracy (mapped classes)", _fmt(rep.accuracy) if rep.accuracy is not None else "n/a"),
             ("FGSM accuracy (mapped classes)", _fmt(rep.adv_accuracy) if rep.adv_accuracy is not None else "n/a"),
             ("attack success rate", _fmt(rep.attack_success_rate) if rep.attack_success_rate is not None else "n/a")]
    for label, ci in (("mean consis", rep.mean), ("mean consis_adv", rep.mean_adv), ("consis - consis_adv", rep.diff)):
        if ci is not None:
            rows.append((label, f"{_fmt(ci.mean)} [{_fmt(ci.low)}, {_fmt(ci.high)}] over {ci.units} units"))
    for side, st in rep.stats.items():
        ci = st.means["lift_u"]
        rows.append((f"lift over the permutation baseline ({side})", f"{_fmt(ci.mean)} [{_fmt(ci.low)}, {_fmt(ci.high)}]"))
    return rows


def _explorer(res: Any, table: pd.DataFrame, data: Any, n_units: int) -> str:
    from consis_lib.explorer import interesting_units

    units = interesting_units(table["consis"].tolist(), table["consis_adv"].tolist(), n=n_units)
    parts = []
    for k in units:
        row = table.iloc[k]
        real = "".join(f'<img src="data:image/jpeg;base64,{_thumb(data, int(i))}" title="{html.escape(data.wnids[data.samples[int(i)][1]])}">'
                       for i in res.top_images[k])
        adv = "".join(f'<img src="data:image/jpeg;base64,{_thumb(data, int(i))}">' for i in res.top_images_adv[k])
        concept = f", concept {html.escape(str(row['concept']))}" if "concept" in table and row["concept"] else ""
        parts.append(
            f"<details><summary>unit {k}: consis {_fmt(row['consis'])}, consis_adv {_fmt(row['consis_adv'])}, "
            f"top class {html.escape(str(row['top_class']))} ({_fmt(row['top_class_share'])}){concept}</summary>"
            f"<p>top real images: {real}</p><p>source images of the top FGSM activations: {adv}</p></details>"
        )
    return "\n".join(parts)


def render_html(res: Any, table: pd.DataFrame, data: Any, info: dict[str, Any], n_units: int = EXPLORER_UNITS) -> str:
    """The standalone report page (no external files, no scripts)."""
    from consis_lib.viz import consis_histograms

    rep = res.report
    fig = consis_histograms({str(info.get("model", "model")): (rep.consis, rep.consis_adv or [])})
    cols = [c for c in ("unit", "consis", "consis_adv", "gap", "lift", "consis_adv_success", "top_class",
                        "top_class_share", "concept", "iou") if c in table]
    head = "".join(f"<th>{c}</th>" for c in cols)
    body = "\n".join("<tr>" + "".join(f"<td>{_fmt(r[c])}</td>" for c in cols) + "</tr>" for _, r in table.iterrows())
    summary = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in _summary_rows(res, info))
    dissection = ""
    if res.dissection is not None:
        ratios = ", ".join(f"{c} {v:.1%}" for c, v in res.dissection.ratios.items())
        dissection = f"<h2>Dissection</h2><p>Units aligned per category (IoU &gt; {res.dissection.iou_threshold}): {ratios}</p>"
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>consis measure: {html.escape(res.layer)}</title>
<style>body{{font-family:sans-serif;max-width:70em;margin:auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:90%}}img{{margin:2px}}</style></head><body>
<h1>Neuron consistency of layer {html.escape(res.layer)}</h1>
<p>consis(n) (Eq. 1-3 of Dong et al.) on the real images and consis_adv(n) on their FGSM counterparts.</p>
<table>{summary}</table>
<h2>Distributions over units (Fig. 5)</h2><img src="data:image/png;base64,{_png(fig)}">
{dissection}
<h2>Explorer</h2>{_explorer(res, table, data, n_units)}
<h2>Units</h2><table><tr>{head}</tr>
{body}</table></body></html>"""


def write_outputs(res: Any, data: Any, out: str | Path, info: dict[str, Any], n_units: int = EXPLORER_UNITS) -> dict[str, Path]:
    """Write ``measure.json``, ``units.csv`` and ``report.html`` into ``out`` (each atomically)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [str(p.relative_to(data.root)) if p.is_relative_to(data.root) else str(p) for p, _ in data.samples]
    table = units_table(res, list(data.names), paths)
    payload = {
        "info": info,
        "settings": res.settings,
        "class_map": res.class_map.to_dict(),
        "report": res.report.to_dict(),
        "top_images": [[paths[i] for i in row] for row in res.top_images],
        "top_images_adv": [[paths[i] for i in row] for row in res.top_images_adv],
        "dissection": None if res.dissection is None else {
            "ratios": res.dissection.ratios, "counts": res.dissection.counts, "notes": res.dissection.notes,
            "table": res.dissection.table.astype(object).where(res.dissection.table.notna(), None).to_dict(orient="list"),
        },
    }
    return {
        "json": atomic_write_text(out / "measure.json", json.dumps(payload, indent=1, default=str)),
        "csv": atomic_write_text(out / "units.csv", table.to_csv(index=False)),
        "html": atomic_write_text(out / "report.html", render_html(res, table, data, info, n_units)),
    }


# --------------------------------------------------------------------------- command line


def parse_eps(text: str) -> float:
    """``"2/255"`` or ``"0.0078"`` -> float in [0, 1]."""
    try:
        value = float(Fraction(text))
    except (ValueError, ZeroDivisionError) as exc:
        raise ConsisError(f"--eps {text!r} is not a number; pass e.g. 2/255 or 0.0078") from exc
    if not 0.0 <= value <= 1.0:
        raise ConsisError(f"--eps {text} is outside [0, 1]; images are in [0, 1], pass e.g. 2/255")
    return value


def parse_normalize(text: str) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``imagenet`` -> ImageNet mean/std, ``none`` -> None ([0, 1] input), ``M,M,M/S,S,S``."""
    from consis_lib.models import IMAGENET_MEAN, IMAGENET_STD

    if text == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD
    if text == "none":
        return None
    try:
        mean, std = (tuple(float(v) for v in part.split(",")) for part in text.split("/"))
    except ValueError as exc:
        raise ConsisError(f"--normalize {text!r}: pass imagenet, none or MEAN,MEAN,MEAN/STD,STD,STD") from exc
    return mean, std


def _run(args: argparse.Namespace) -> int:
    import dataclasses

    from consis_lib.checks import output_location
    from consis_lib.config import DissectConfig, MetricConfig
    from consis_lib.measure import image_folder, load_model, measure

    output_location(args.out)
    loaded = load_model(args.model, arch=args.arch, weights=args.weights, trust_pickle=args.trust_pickle)
    norm = (loaded.mean, loaded.std) if args.normalize == "auto" else parse_normalize(args.normalize)
    mean, std = norm if norm is not None else (None, None)
    size = args.image_size or loaded.image_size
    data = image_folder(args.data, size, crop=loaded.crop)
    metric = loaded.metric or MetricConfig()
    if args.bootstrap is not None:
        metric = dataclasses.replace(metric, bootstrap=args.bootstrap, sweep_bootstrap=min(args.bootstrap, metric.sweep_bootstrap))
    probe = None
    if args.probe is not None:
        from consis_lib.data.broden import Broden

        probe = Broden(args.probe, image_size=size)
    eps = parse_eps(args.eps) if args.eps is not None else (loaded.eps if loaded.eps is not None else 2.0 / 255.0)
    seed = args.seed if args.seed is not None else (loaded.seed or 0)
    batch = args.batch_size or loaded.batch_size or 64
    res = measure(loaded.model, args.layer, data, classes=args.classes or loaded.classes, mean=mean, std=std, eps=eps,
                  metric=metric, seed=seed, batch_size=batch, probe=probe,
                  dissect_cfg=DissectConfig(batch_size=batch), top_k=args.top_k, device=args.device)
    info = {"model": args.model, "kind": loaded.kind, "layer": args.layer, "data": str(args.data), "image_size": size,
            "normalize": "none" if mean is None else f"{mean}/{std}", "eps": eps}
    files = write_outputs(res, data, args.out, info)
    log.info("wrote %s", ", ".join(str(p) for p in files.values()))
    return 0


def add_cli(sub: Any) -> None:
    """Register ``consis measure``."""
    p = sub.add_parser("measure", help="score a layer of your own model: consistency, consis_adv, dissection",
                       description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="torchvision:NAME, or a .pt file (consis checkpoint, state_dict with --arch, full model)")
    p.add_argument("--layer", required=True, help="a name from model.named_modules() with [B, K, h, w] output, e.g. layer4")
    p.add_argument("--data", required=True, type=Path, help="ImageNet-layout folder: DIR/val/<wnid>/ or DIR/<wnid>/")
    p.add_argument("--out", required=True, type=Path, help="output folder for measure.json, units.csv, report.html")
    p.add_argument("--probe", type=Path, default=None, help="Broden-format folder to dissect on (optional)")
    p.add_argument("--eps", default=None, help="FGSM eps in [0,1], e.g. 2/255 (default: the checkpoint's, else 2/255)")
    p.add_argument("--arch", default=None, help="torchvision architecture of a state_dict file, e.g. resnet50")
    p.add_argument("--weights", choices=("none", "default"), default="none",
                   help="torchvision:NAME weights: none (random) or default (torchvision's, from the $TORCH_HOME cache)")
    p.add_argument("--trust-pickle", action="store_true", help="allow loading a full pickled model (runs code from the file)")
    p.add_argument("--classes", default=None, help="the model's classes: imagenet1k, or a JSON/text file mapping WNIDs to outputs")
    p.add_argument("--normalize", default="auto", help="input convention: auto, imagenet, none ([0,1]) or M,M,M/S,S,S")
    p.add_argument("--image-size", type=int, default=None, help="input size (default 224 via 256 resize + crop; a checkpoint's own)")
    p.add_argument("--batch-size", type=int, default=None, help="images per batch (default: a checkpoint's profile, else 64)")
    p.add_argument("--bootstrap", type=int, default=None, help="bootstrap replicates of the layer means (default: the metric config's)")
    p.add_argument("--top-k", type=int, default=4, help="top images kept per unit")
    p.add_argument("--seed", type=int, default=None, help="bootstrap seed (default: the checkpoint's profile, else 0)")
    p.add_argument("--device", default=None, help="e.g. cpu or cuda (default: cpu)")
    p.set_defaults(func=_run)
