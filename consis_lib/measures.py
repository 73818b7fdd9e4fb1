"""The numbers behind Tables 1-3 and the claims scorecard for one (architecture, seed).

For every model of the seed (``normal``, ``at``, ``adv``; see
:func:`consis_lib.run_training.model_plan`) one pass over the validation images gives
``a_n(x)`` on real images and on the model's own FGSM images (Eq. 1-3: consis,
consis_adv), and the controls for attack success (DESIGN section 2):

* ``attack_success``: the share of FGSM images the model misclassifies;
* ``consis_adv_success``: consis_adv with the activating images ranked among the
  *successful* adversarial images only;
* ``consis_adv_shared``: consis_adv on one shared adversarial set, the normal
  model's FGSM images, fed to every model.

Dissection (Table 2) runs on the probe's real and iterative least-likely-class
images for the three main models. Study variants (beta sweep, ablation) get the
consistency and accuracy numbers only.

The result is saved as ``runs/<profile>/<arch>/seed<k>/measures.json`` with the
identity of what it was computed from (config hash, checkpoint hashes, data),
which :func:`consis_lib.results.load_results` checks before anything is published.

Example
-------
>>> ctx = ArchContext(get_profile("smoke"), "resnet18", "runs", seed=1)
>>> m = measure_seed(ctx)
>>> m["models"]["adv"]["attack_success"]  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from consis_lib.config import config_hash, to_dict
from consis_lib.consistency import label_distributions, num_top
from consis_lib.consistency_stats import chance_corrected, label_counts
from consis_lib.results import MODELS, save_json

LOG = logging.getLogger(__name__)

MEASURES = "measures.json"
FORMAT = 2


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (the identity of a checkpoint)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_identity(ctx: Any, models: list[str]) -> dict[str, Any]:
    """What the measures of ``ctx``'s seed are computed from: profile, arch, seed,
    the profile's config hash, the data config hash and each checkpoint's SHA-256."""
    ckpts = {m: file_sha256(ctx.paths.checkpoint_dir(ctx.arch, m, ctx.seed) / "model.pt") for m in models}
    return {
        "format": FORMAT,
        "profile": ctx.profile.name,
        "arch": ctx.arch,
        "seed": ctx.seed,
        "config_hash": config_hash(ctx.profile),
        "data_hash": config_hash(ctx.profile.data),
        "checkpoints": ckpts,
    }


def _listed(values: torch.Tensor) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, float)]


def unit_stats(acts: torch.Tensor, labels: torch.Tensor, A: np.ndarray, metric: Any) -> dict[str, list[float | None]]:
    """Per-unit Eq. 1-3 on one image set, on the common scale.

    ``consis`` (plug-in p^T A p over the activating images), ``consis_u`` (the
    unbiased pair form), ``baseline`` (the plug-in's permutation baseline: labels
    shuffled among the evaluated images, same m) and ``lift = consis / baseline``
    (:func:`consis_lib.consistency_stats.chance_corrected`). A unit activated by
    fewer than ``metric.min_activating`` images is None everywhere.
    """
    K, C = int(acts.shape[1]), A.shape[0]
    if len(labels) < metric.min_top:
        return {k: [None] * K for k in ("consis", "consis_u", "baseline", "lift")}
    m = num_top(len(labels), metric.top_fraction, metric.min_top)
    n = ((acts > 0).sum(0).clamp(max=m)).to(torch.float64)
    P = label_distributions(acts, labels, C, metric.top_fraction, metric.min_top, min_activating=metric.min_activating)
    At = torch.as_tensor(A, dtype=torch.float64)
    stats = chance_corrected(P, n, label_counts(labels, C), At, metric.min_activating)
    return {k: _listed(stats[k]) for k in ("consis", "consis_u", "baseline", "lift")}


def image_set_columns(prefix: str, stats: dict[str, list[float | None]]) -> dict[str, list[float | None]]:
    """``consis_adv``, ``consis_u_adv``, ... from :func:`unit_stats` of one image set."""
    return {("consis" + prefix if k == "consis" else f"{k}{prefix}"): v for k, v in stats.items()}


def model_measures(ctx: Any, name: str, A: np.ndarray, shared_acts: torch.Tensor) -> dict[str, Any]:
    """Consistency with its attack-success controls and per-image accuracy of one model;
    ``shared_acts`` are its activations on the normal model's FGSM images (the shared set)."""
    acts = ctx.activations(name)
    metric = ctx.profile.metric
    labels = acts.labels
    success = acts.adv_preds != labels
    out: dict[str, Any] = {}
    out.update(image_set_columns("", unit_stats(acts.acts, labels, A, metric)))
    out.update(image_set_columns("_adv", unit_stats(acts.adv_acts, labels, A, metric)))
    out.update(image_set_columns("_adv_success", unit_stats(acts.adv_acts[success], labels[success], A, metric)))
    out.update(image_set_columns("_adv_shared", unit_stats(shared_acts, labels, A, metric)))
    return {
        **out,
        "attack_success": float(success.float().mean()),
        "successful_images": int(success.sum()),
        "clean_correct": (acts.preds == labels).int().tolist(),
        "fgsm_correct": (acts.adv_preds == labels).int().tolist(),
        "train": last_log_entry(ctx, name),
    }


def last_log_entry(ctx: Any, name: str) -> dict[str, Any]:
    """The last epoch's log entry of a model (loss-term shares, ``feature_mean``)."""
    f = ctx.paths.checkpoint_dir(ctx.arch, name, ctx.seed) / "log.jsonl"
    lines = [ln for ln in f.read_text().splitlines() if ln.strip()]
    return json.loads(lines[-1]) if lines else {}


def dissection_measures(ctx: Any, name: str) -> dict[str, Any]:
    """Per-unit best concepts of one model on real and least-likely-class probe images."""
    out = {}
    for images in ("real", "adversarial"):
        table = ctx.dissect(name, adversarial=images == "adversarial").table[["unit", "concept", "category", "iou"]]
        out[images] = {"units": table.astype(object).where(table.notna(), None).values.tolist()}
    return out


def measure_seed(ctx: Any, variants: tuple[str, ...] = ()) -> dict[str, Any]:
    """All measures of ``ctx``'s (arch, seed): the three main models and ``variants``.

    Returns the JSON-ready dict that :func:`save_measures` writes.
    """
    from consis_lib.wordnet import correlation_matrix

    A = correlation_matrix(ctx.distances(), ctx.profile.metric.sigma)
    names = list(MODELS) + list(variants)
    shared = ctx.shared_activations(names)
    out: dict[str, Any] = {
        "identity": run_identity(ctx, names),
        "eps": ctx.profile.attack.eps,
        "layer": ctx.layer,
        "metric": to_dict(ctx.profile.metric),
        "iou_threshold": ctx.profile.dissect.iou_threshold,
        "models": {},
    }
    for name in names:
        LOG.info("measuring %s seed %d %s", ctx.arch, ctx.seed, name)
        entry = model_measures(ctx, name, A, shared[name])
        if name in MODELS:
            entry["dissection"] = dissection_measures(ctx, name)
        out["models"][name] = entry
    return out


def save_measures(ctx: Any, measures: dict[str, Any]) -> Path:
    """Write ``measures.json`` into the seed's folder (atomic)."""
    return save_json(measures, ctx.out / MEASURES)
