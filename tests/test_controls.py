"""The study's control tables (consis_lib.controls) on hand-made seed results."""

from __future__ import annotations

import dataclasses
import math

import pytest

from consis_lib.config import TrainConfig, Variant, get_profile
from consis_lib.controls import ablation_table, form_of, study_arch, study_frame, sweep_points
from consis_lib.results import SeedResults


def _model(consis: list[float | None], clean: list[int], share: float) -> dict:
    return {
        "consis": consis, "consis_adv": [0.5, 0.5], "consis_adv_success": [0.25, None],
        "clean_correct": clean, "fgsm_correct": [0, 0, 0, 1], "train": {"share_consistent": share, "feature_mean": 1.0},
    }


def _seed(seed: int, offset: float) -> SeedResults:
    models = {
        "normal": _model([0.9, 0.9], [1, 1, 1, 1], 0.0),  # not an Eq. 6 model: never a row
        "at": _model([0.1 + offset, None], [1, 1, 0, 0], 0.0),
        "adv": _model([0.2 + offset, 0.4 + offset], [1, 0, 0, 0], 0.1),
        "guarded": _model([0.3 + offset, 0.5 + offset], [1, 1, 1, 0], 0.2),
    }
    return SeedResults("alexnet", seed, {"models": models})


TRAIN = TrainConfig(beta=8.0)
VARIANTS = (Variant("guarded", normalize_features=True, stop_gradient_clean=True),)


def test_study_frame_rows_hold_layer_means_over_defined_units() -> None:
    frame = study_frame([_seed(0, 0.0), _seed(1, 0.2)], VARIANTS, TRAIN)
    assert list(zip(frame["model"], frame["seed"])) == [("at", 0), ("adv", 0), ("guarded", 0), ("at", 1), ("adv", 1), ("guarded", 1)]
    row = frame.iloc[1]  # adv, seed 0: mean of 0.2 and 0.4; 1 of 4 images correct
    assert row["beta"] == 8.0 and row["consis"] == pytest.approx(0.3) and row["clean_acc"] == 0.25
    assert frame.iloc[0]["consis"] == pytest.approx(0.1)  # the undefined unit is left out
    assert frame.iloc[0]["beta"] == 0.0 and frame.iloc[0]["consis_adv_success"] == 0.25
    assert frame.iloc[2]["form"] == form_of(True, True, True) == "normalised features, stop-gradient clean side"


def test_sweep_keeps_the_default_form_and_ablation_averages_seeds_at_the_default_beta() -> None:
    frame = study_frame([_seed(0, 0.0), _seed(1, 0.2)], VARIANTS, TRAIN)
    profile = dataclasses.replace(get_profile("smoke"), train=TRAIN)
    assert list(sweep_points(frame, profile)["model"]) == ["at", "adv", "at", "adv"]
    table = ablation_table(frame, profile).set_index("form")
    raw = form_of(False, False, True)
    assert list(table.index) == [raw, form_of(True, True, True)]  # AT (beta 0) is not a row
    assert table.loc[raw, "seeds"] == 2 and table.loc[raw, "consis"] == pytest.approx((0.3 + 0.5) / 2)
    assert table.loc[form_of(True, True, True), "share_consistent"] == pytest.approx(0.2)
    assert math.isclose(table.loc[raw, "clean_acc"], 0.25)


def test_form_of_names_a_from_scratch_model() -> None:
    assert form_of(False, False, False) == "raw MSE, gradient through both sides, from scratch"


def test_without_the_study_architecture_the_run_s_first_is_shown() -> None:
    profile = get_profile("paper")  # study_arch alexnet
    assert study_arch(profile, ["alexnet", "resnet18"]) == "alexnet"
    assert study_arch(profile, ["resnet18", "vgg16"]) == "resnet18"
    empty = study_frame([], VARIANTS, TRAIN)
    assert empty.empty and sweep_points(empty, profile).empty and ablation_table(empty, profile).empty
