"""This run beside the paper: the direction of each effect the paper reports, and the differences of setting."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from consis_lib.errors import ConsisError
from consis_lib.present.numbers import MISSING, direction, finite_number, percent, sig
from consis_lib.present.tables import index_as_columns, text_frame
from consis_lib.results import CATEGORIES, MODEL_LABELS, arch_label


def _keyed(df: pd.DataFrame | None, levels: Sequence[str]) -> pd.DataFrame | None:
    """``df`` indexed by ``levels`` (taken from its columns or index), model labels
    ("Eq. 6") turned back into model kinds ("adv")."""
    if df is None or df.empty:
        return None
    flat = index_as_columns(df)
    missing = [c for c in levels if c not in flat.columns]
    if missing:
        raise ConsisError(f"the table lacks {missing}; pass the frame of results.table1/table2/table3")
    kinds = {v: k for k, v in MODEL_LABELS.items()}
    return flat.assign(model=[kinds.get(m, m) for m in flat["model"]]).set_index(list(levels))


def _at(df: pd.DataFrame | None, key: tuple, col: str) -> float | None:
    """The finite value of ``df`` at row ``key`` and column ``col``; None when absent."""
    if df is None or df.empty or key not in df.index or col not in df.columns:
        return None
    return finite_number(df.loc[key, col])


def _diff(a: float | None, b: float | None, ratio: bool = False) -> float | None:
    """``a - b``, or ``a / b - 1`` with ``ratio``; None when either is missing."""
    if a is None or b is None or (ratio and b == 0):
        return None
    return a / b - 1.0 if ratio else a - b


def _effect(effect: str, arch: str, paper: float | str | None, run: float | None, fmt: Any, paper_sign: float | None = None) -> dict[str, str]:
    """One row: the effect's value and direction in the paper and in this run."""
    sign = paper_sign if paper_sign is not None else finite_number(paper)
    paper_text = paper if isinstance(paper, str) else (MISSING if paper is None else f"{direction(paper)} {fmt(paper)}")
    run_text = MISSING if run is None else f"{direction(run)} {fmt(run)}"
    same = MISSING if sign is None or run is None else ("yes" if np.sign(sign) == np.sign(run) else "no")
    return {"effect": effect, "arch": arch, "paper": paper_text, "this run": run_text, "same direction": same}


def _totals(t2: pd.DataFrame | None) -> pd.Series | None:
    """% of units aligned with any category, per (arch, model, images)."""
    if t2 is None or t2.empty:
        return None
    return t2[[c for c in CATEGORIES if c in t2.columns]].sum(axis=1)


def effects_vs_paper(
    t1: pd.DataFrame,
    t2: pd.DataFrame | None = None,
    paper_t2: pd.DataFrame | None = None,
    t3: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The direction of each effect the paper reports, in the paper and in this run.

    Parameters
    ----------
    t1 : ``results.table1`` (arch, model as columns or index; columns consis,
        consis_adv and the paper's ``paper_consis``, ``paper_consis_adv``). Models
        may be kinds (``adv``) or labels (``Eq. 6``).
    t2, paper_t2 : ``results.table2`` and ``results.paper_table2`` (index arch,
        model, images; % of units per category); optional.
    t3 : ``results.table3`` (clean_acc, fgsm_acc as fractions); optional. The paper
        gives Table 3's direction in words only (clean accuracy "drops about 10%",
        accuracy under attack improves).

    Returns
    -------
    Display frame: effect, arch, paper, this run, same direction (``yes``/``no``);
    "Eq. 6" is the paper's adversarially trained model (``adv``).
    """
    pct = lambda v: percent(v, scale=100.0, signed=True)  # noqa: E731
    pts = lambda v: sig(v, signed=True) + " points"  # noqa: E731
    num = lambda v: sig(v, signed=True)  # noqa: E731
    t1, t3 = _keyed(t1, ("arch", "model")), _keyed(t3, ("arch", "model"))
    if t1 is None:
        raise ConsisError("Table 1 is empty; run the consistency notebooks first")
    tot = _totals(_keyed(t2, ("arch", "model", "images")))
    ptot = _totals(_keyed(paper_t2, ("arch", "model", "images")))
    rows = []
    for arch in dict.fromkeys(k[0] for k in t1.index):
        n, a = (arch, "normal"), (arch, "adv")
        run, paper = (lambda k, c: _at(t1, k, c)), (lambda k, c: _at(t1, k, "paper_" + c))
        rows.append(_effect("consis_adv - consis, normal net (Table 1)", arch, _diff(paper(n, "consis_adv"), paper(n, "consis")), _diff(run(n, "consis_adv"), run(n, "consis")), num))
        rows.append(_effect("consis_adv, Eq. 6 - normal (Table 1)", arch, _diff(paper(a, "consis_adv"), paper(n, "consis_adv")), _diff(run(a, "consis_adv"), run(n, "consis_adv")), num))
        rows.append(_effect("consis, Eq. 6 vs normal, relative (Table 1)", arch, _diff(paper(a, "consis"), paper(n, "consis"), ratio=True), _diff(run(a, "consis"), run(n, "consis"), ratio=True), pct))
        if (arch, "at") in t1.index:
            rows.append(_effect("consis_adv, Eq. 6 - AT (control; Table 1)", arch, "not in the paper", _diff(run(a, "consis_adv"), run((arch, "at"), "consis_adv")), num))
        if tot is not None:
            g = lambda s, m, im: None if s is None or (arch, m, im) not in s.index else float(s[(arch, m, im)])  # noqa: E731
            drop_n = (_diff(g(ptot, "normal", "adversarial"), g(ptot, "normal", "real")), _diff(g(tot, "normal", "adversarial"), g(tot, "normal", "real")))
            drop_a = (_diff(g(ptot, "adv", "adversarial"), g(ptot, "adv", "real")), _diff(g(tot, "adv", "adversarial"), g(tot, "adv", "real")))
            rows.append(_effect("aligned units, adversarial - real images, normal net (Table 2)", arch, drop_n[0], drop_n[1], pts))
            rows.append(_effect("change of aligned units, Eq. 6 - normal (Table 2)", arch, _diff(drop_a[0], drop_n[0]), _diff(drop_a[1], drop_n[1]), pts))
        if t3 is not None:
            acc = lambda m, c: None if _at(t3, (arch, m), c) is None else 100 * _at(t3, (arch, m), c)  # noqa: E731
            rows.append(_effect("clean accuracy, Eq. 6 - normal (Table 3)", arch, "↓ about 10 points", _diff(acc("adv", "clean_acc"), acc("normal", "clean_acc")), pts, paper_sign=-1.0))
            rows.append(_effect("FGSM accuracy, Eq. 6 - normal (Table 3)", arch, "↑ (no value in the text)", _diff(acc("adv", "fgsm_acc"), acc("normal", "fgsm_acc")), pts, paper_sign=1.0))
    return text_frame(rows)


_PAPER_SETTING = {
    "images": "ImageNet (ILSVRC-2012) photographs",
    "classes": "1000",
    "image size": "224 px crops (standard for these networks)",
    "training images": "about 1.28 million",
    "evaluation images": "the 50,000 ImageNet validation images",
    "networks": "AlexNet, VGG-16, ResNet-18 (full size)",
    "dissection probe": "Broden (63,305 images, six categories including parts)",
    "FGSM eps": "not stated",
    "adversarial training": "Eq. 6 (alpha, beta not stated)",
    "seeds": "one model per architecture",
}


def setting_vs_paper(profile: Any) -> pd.DataFrame:
    """What differs in the setting: the paper's experiment beside this run's profile.

    Parameters
    ----------
    profile : a :class:`consis_lib.config.Profile`.

    Returns
    -------
    Display frame with columns aspect, paper, this run.
    """
    d, m, t = profile.data, profile.model, profile.train
    embedded = d.source == "embedded"
    classes = str(d.num_classes) if d.num_classes else "every curated class"
    study = getattr(profile, "study", None)
    seeds = MISSING if study is None else ", ".join(f"{arch_label(a)} {len(study.seeds_of(a))}" for a in profile.archs)
    run = {
        "images": "embedded emoji renderings on generated backgrounds (WordNet classes)" if embedded else f"image folders under {d.root}",
        "classes": classes,
        "image size": f"{d.image_size} px",
        "training images": f"{d.train_per_class} per class" if d.train_per_class else "the folder's",
        "evaluation images": f"{d.val_per_class} held-out renderings per class" if d.val_per_class else "the folder's validation split",
        "networks": "AlexNet, VGG-16, ResNet-18 " + ("(full size, torchvision)" if m.scale == "paper" else f"(BatchNorm variants, width / {m.width_divisor})"),
        "dissection probe": f"embedded Broden-format probe ({d.probe_images} images at {d.probe_size} px, no parts)" if embedded else f"Broden from {d.probe_root}",
        "FGSM eps": f"{profile.attack.eps * 255:g}/255",
        "adversarial training": f"Eq. 6 fine-tuning from the normal net, alpha {t.alpha:g}, beta {t.beta:g}; AT control with beta 0"
        if t.finetune_from_normal else f"Eq. 6 from scratch, alpha {t.alpha:g}, beta {t.beta:g}",
        "seeds": seeds,
    }
    return text_frame([{"aspect": k, "paper": v, "this run": run[k]} for k, v in _PAPER_SETTING.items()])
