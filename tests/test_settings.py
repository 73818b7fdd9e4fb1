"""``SECTION.FIELD=VALUE`` settings of a profile (consis_lib.settings)."""

from __future__ import annotations

import dataclasses

import pytest

from consis_lib.config import get_profile
from consis_lib.errors import ConsisError
from consis_lib.present import pages
from consis_lib.settings import apply_settings, format_value, parse_value, settings_between


def test_each_value_is_read_as_its_fields_type() -> None:
    prof = apply_settings(
        get_profile("smoke"),
        ["train.epochs=3", "train.lr=0.5", "train.augment=false", "dissect.union=mask_meets_category",
         "metric.sigmas=1,2.5", "study.seeded_archs=alexnet,vgg16", "train.beta=2"],
    )
    assert prof.train.epochs == 3 and prof.train.lr == 0.5 and prof.train.augment is False
    assert prof.dissect.union == "mask_meets_category" and prof.metric.sigmas == (1.0, 2.5)
    assert prof.study.seeded_archs == ("alexnet", "vgg16")
    assert prof.train.beta == 2.0 and isinstance(prof.train.beta, float)  # an int is a number
    assert prof.attack == get_profile("smoke").attack  # nothing else changes


def test_later_settings_win() -> None:
    assert apply_settings(get_profile("smoke"), ["train.epochs=3", "train.epochs=4"]).train.epochs == 4


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("train.epochs", "SECTION.FIELD=VALUE"),
        ("epochs=3", "SECTION.FIELD=VALUE"),
        ("training.epochs=3", "unknown section 'training'"),
        ("train.epoch=3", "train has no field 'epoch'"),
        ("train.epochs=3.5", "expected an integer"),
        ("train.lr=fast", "expected a number"),
        ("train.augment=maybe", "expected true or false"),
        ("data.root=/somewhere", "given with --data"),
        ("model.arch=vgg16", "given with --arch"),
        ("study.variants=beta10x", "cannot be set"),
        ("train.beta=-1", "expected a finite number >= 0"),
        ("train.batch_size=0", "expected a finite number > 0"),
        ("metric.sigmas=1,0", "expected a finite number > 0"),
        ("train.lr=nan", "expected a finite number > 0"),
        ("train.alpha=1.5", "expected a fraction in \\[0, 1\\]"),
    ],
)
def test_a_bad_setting_is_named_in_one_line(setting: str, message: str) -> None:
    with pytest.raises(ConsisError, match=message) as info:
        apply_settings(get_profile("default"), [setting])
    assert setting in str(info.value) and "\n" not in str(info.value)


def test_settings_between_round_trips() -> None:
    base = get_profile("default")
    changed = apply_settings(base, ["attack.eps=0.01", "study.seeds=0", "train.normalize_features=true", "data.image_size=48"])
    settings = settings_between(base, changed)
    assert sorted(settings) == sorted(["attack.eps=0.01", "study.seeds=0", "train.normalize_features=true", "data.image_size=48"])
    assert apply_settings(base, settings) == changed
    assert settings_between(base, base) == []
    # fields with their own option are not settings
    moved = dataclasses.replace(base, data=dataclasses.replace(base.data, root="/elsewhere"))
    assert settings_between(base, moved) == []


@pytest.mark.parametrize("value", [True, False, 3, 0.1 + 0.2, "count", (0.5, 1.0), (1, 2), ("alexnet",)])
def test_format_value_is_read_back_exactly(value: object) -> None:
    assert parse_value(value, format_value(value), "x") == value


def test_the_page_command_carries_the_settings() -> None:
    md = pages.provenance("paper", 0, arch="resnet18", notebook="02_ambiguity", settings=["attack.targeted_steps=20"]).data
    assert "consis reproduce --profile paper --data IMAGENET_DIR --probe BRODEN_DIR [--weights DIR] --arch resnet18 --set attack.targeted_steps=20" in md
