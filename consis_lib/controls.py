"""The study's controls on one architecture: the beta sweep and the collapse-guard
ablation of Eq. 6 (``StudyConfig.variants``), as tables of the seed results.

:func:`study_frame` gives one row per (model, seed); :func:`sweep_points` and
:func:`ablation_table` select and average it for the summary page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from consis_lib.results import SeedResults, layer_mean

STUDY_COLUMNS = (
    "model", "seed", "beta", "form", "consis", "consis_adv", "consis_adv_success",
    "clean_acc", "fgsm_acc", "share_consistent", "feature_mean",
)


def study_arch(profile: Any, archs: Sequence[str]) -> str:
    """The architecture the controls are shown for: the profile's ``study_arch`` when
    the run trained it, else the run's first (its AT and Eq. 6 models, no variants)."""
    return profile.study.study_arch if profile.study.study_arch in archs else archs[0]


def form_of(normalize: bool, stop_gradient: bool, finetune: bool) -> str:
    """A short description of an Eq. 6 form (the collapse guards it uses)."""
    guards = [g for g, on in (("normalised features", normalize), ("stop-gradient clean side", stop_gradient)) if on]
    base = ", ".join(guards) if guards else "raw MSE, gradient through both sides"
    return base + ("" if finetune else ", from scratch")


def study_frame(results: Sequence[SeedResults], variants: Sequence[Any], train: Any) -> pd.DataFrame:
    """The study arch's Eq. 6 models (AT, Eq. 6, variants), one row per (model, seed).

    ``train`` is the profile's :class:`~consis_lib.config.TrainConfig` (the default
    form and beta). Columns: model, seed, beta, form, consis, consis_adv,
    consis_adv_success, clean_acc, fgsm_acc, share_consistent, feature_mean.
    """
    default = form_of(train.normalize_features, train.stop_gradient_clean, train.finetune_from_normal)
    forms = {"at": (0.0, default), "adv": (train.beta, default)}
    forms.update(
        {v.name: (train.beta * v.beta_factor, form_of(v.normalize_features, v.stop_gradient_clean, v.finetune_from_normal)) for v in variants}
    )
    rows = []
    for r in results:
        for name, (beta, form) in forms.items():
            d = r.model(name)
            if d is None:
                continue
            t = d.get("train", {})
            rows.append(
                dict(
                    model=name, seed=r.seed, beta=beta, form=form,
                    consis=layer_mean(d["consis"]), consis_adv=layer_mean(d["consis_adv"]),
                    consis_adv_success=layer_mean(d["consis_adv_success"]),
                    clean_acc=float(np.mean(d["clean_correct"])), fgsm_acc=float(np.mean(d["fgsm_correct"])),
                    share_consistent=t.get("share_consistent", float("nan")), feature_mean=t.get("feature_mean", float("nan")),
                )
            )
    return pd.DataFrame(rows, columns=list(STUDY_COLUMNS))


def sweep_points(study: pd.DataFrame, profile: Any) -> pd.DataFrame:
    """The beta sweep: the rows of :func:`study_frame` in the profile's default form."""
    t = profile.train
    return study[study["form"] == form_of(t.normalize_features, t.stop_gradient_clean, t.finetune_from_normal)]


def ablation_table(study: pd.DataFrame, profile: Any) -> pd.DataFrame:
    """The collapse-guard ablation at the default beta: one row per form, means over seeds."""
    rows = study[np.isclose(study["beta"], profile.train.beta)]
    cols = ["consis", "consis_adv", "consis_adv_success", "clean_acc", "fgsm_acc", "share_consistent", "feature_mean"]
    out = rows.groupby("form", sort=False)[cols].mean().reset_index()
    out.insert(1, "seeds", rows.groupby("form", sort=False)["seed"].nunique().to_numpy())
    return out
