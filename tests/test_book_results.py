"""Summary tables and the claims scorecard on hand-made results (known answers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consis_lib import present
from consis_lib import reproduce as rp
from consis_lib import results as rs
from consis_lib import scorecard as sc
from consis_lib.errors import ConsisError


def _dissection(real_iou: list[float], adv_iou: list[float], cats: list[str]) -> dict:
    def part(ious: list[float]) -> dict:
        return {"units": [[u, f"c{u}", cats[u], iou] for u, iou in enumerate(ious)]}

    return {"real": part(real_iou), "adversarial": part(adv_iou)}


def _model(consis: np.ndarray, consis_adv: np.ndarray, clean: list[int], fgsm: list[int], dissection: dict | None) -> dict:
    d = {
        "consis": consis.tolist(), "consis_adv": consis_adv.tolist(),
        "consis_adv_success": consis_adv.tolist(), "consis_adv_shared": consis_adv.tolist(),
        "attack_success": 1 - float(np.mean(fgsm)), "clean_correct": clean, "fgsm_correct": fgsm, "train": {},
    }
    if dissection is not None:
        d["dissection"] = dissection
    return d


def _results(good: bool = True, at_like_adv: bool = False) -> list[rs.SeedResults]:
    """Results in which every claim holds clearly (``good``) or the normal model looks
    robust; ``at_like_adv`` makes the AT control identical to the Eq. 6 model."""
    rng = np.random.default_rng(0)
    k = 40
    c_n = 0.30 + 0.01 * rng.standard_normal(k)
    ca_n = (0.10 if good else 0.40) + 0.01 * rng.standard_normal(k)
    c_a = 0.30 + 0.001 * rng.standard_normal(k)
    ca_a = 0.25 + 0.01 * rng.standard_normal(k)
    ca_at = ca_a.copy() if at_like_adv else 0.15 + 0.01 * rng.standard_normal(k)
    cats = ["object"] * 20 + ["texture"] * 10 + ["color"] * 10
    adv_dis = _dissection([0.1] * 30 + [0.0] * 10, [0.1] * 25 + [0.0] * 15, cats)
    at_dis = adv_dis if at_like_adv else _dissection([0.1] * 30 + [0.0] * 10, [0.1] * 10 + [0.0] * 30, cats)
    models = {
        "normal": _model(c_n, ca_n, [1] * 180 + [0] * 20, [1] * 20 + [0] * 180,
                         _dissection([0.1] * 30 + [0.0] * 10, [0.1] * 5 + [0.0] * 35, cats)),
        "at": _model(c_a, ca_at, [1] * 150 + [0] * 50, [1] * 120 + [0] * 80, at_dis),
        "adv": _model(c_a, ca_a, [1] * 150 + [0] * 50, [1] * 120 + [0] * 80, adv_dis),
    }
    measures = {"identity": {}, "iou_threshold": 0.04, "eps": 8 / 255, "models": models}
    return [rs.SeedResults("resnet18", 0, measures)]


def test_bootstrap_of_a_constant_is_the_constant() -> None:
    est, lo, hi = rs.bootstrap_ci([np.full(10, 2.5)], np.mean, n_boot=50)
    assert est == lo == hi == 2.5


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=2, max_size=30), st.integers(0, 1000))
def test_bootstrap_interval_brackets_the_range(values: list[float], seed: int) -> None:
    a = np.asarray(values)
    est, lo, hi = rs.bootstrap_ci([a], np.mean, n_boot=100, seed=seed)
    assert a.min() - 1e-9 <= lo <= hi <= a.max() + 1e-9
    assert est == pytest.approx(a.mean())


def test_bootstrap_rejects_empty() -> None:
    with pytest.raises(ConsisError):
        rs.bootstrap_ci([np.array([])], np.mean)


def test_table1_means_and_paper_values() -> None:
    d = _model(np.array([0.1, 0.3, np.nan]), np.array([0.0, 0.1, 0.2]), [1, 0], [0, 0], None)
    t = rs.table1([rs.SeedResults("vgg16", 0, {"models": {"normal": d}})]).set_index(["arch", "model"])
    row = t.loc[("VGG-16", "normal")]
    assert row["consis"] == pytest.approx(0.2)  # NaN (undefined unit) is skipped
    assert row["consis_adv"] == pytest.approx(0.1)
    assert row["units"] == 2 and row["attack_success"] == 1.0
    assert row["paper_consis"] == 0.0296 and row["paper_consis_adv"] == 0.0187
    d["lift"] = [2.0, 4.0, None]
    with_lift = rs.table1([rs.SeedResults("vgg16", 0, {"models": {"normal": d}})], paper_baseline=0.01).iloc[0]
    assert with_lift["lift"] == pytest.approx(3.0)
    assert with_lift["paper_lift"] == pytest.approx(2.96) and with_lift["paper_lift_adv"] == pytest.approx(1.87)


def test_category_ratios_known_answer() -> None:
    part = {"units": [[0, "dog", "object", 0.2], [1, "red-c", "color", 0.05], [2, "sky", "scene", 0.01], [3, None, None, None]]}
    r = rs.category_ratios(part, 0.04)
    assert r["object"] == 25.0 and r["color"] == 25.0 and r["scene"] == 0.0 and r["part"] == 0.0
    assert rs.aligned_flags(part, 0.04).tolist() == [1.0, 1.0, 0.0, 0.0]


def test_scorecard_all_claims_hold_on_clear_results() -> None:
    card = sc.scorecard(_results(good=True), sc.ScorecardConfig(n_boot=200))
    assert list(card["claim"]) == [f"C{i}" for i in range(1, 9)]
    assert card["holds"].all(), card[["claim", "measured"]].to_string()
    c4 = card.set_index("claim").loc["C4"]
    assert c4["estimate"] == pytest.approx(-62.5)  # 75% -> 12.5% aligned
    c6 = card.set_index("claim").loc["C6"]
    assert c6["estimate"] == pytest.approx(50.0)  # FGSM accuracy 10% -> 60%
    c8 = card.set_index("claim").loc["C8"]
    assert c8["estimate"] == pytest.approx(37.5)  # Eq. 6 loses 12.5 points, AT 50
    v = sc.verdicts(card)
    assert (v["verdict"] == "holds").all() and (v["seeds"] == 1).all()


def test_scorecard_reports_claims_that_fail() -> None:
    card = sc.scorecard(_results(good=False), sc.ScorecardConfig(n_boot=200)).set_index("claim")
    assert not card.loc["C1", "holds"]  # consis_adv above consis for the normal model
    assert not card.loc["C2", "holds"]  # the adv model's consis_adv is lower
    assert card.loc["C6", "holds"]


def test_c7_c8_do_not_hold_when_eq6_equals_at() -> None:
    """The control: a consistent loss that changes nothing cannot be credited."""
    card = sc.scorecard(_results(at_like_adv=True), sc.ScorecardConfig(n_boot=200)).set_index("claim")
    assert not card.loc["C7", "holds"] and card.loc["C7", "estimate"] == 0.0
    assert not card.loc["C8", "holds"] and card.loc["C8", "estimate"] == 0.0
    assert card.loc["C2", "holds"]  # the paper's claim still holds against the normal model


def test_c2_needs_both_attack_success_controls() -> None:
    (r,) = _results()
    adv = r.measures["models"]["adv"]
    adv["consis_adv_shared"] = r.measures["models"]["normal"]["consis_adv_shared"]  # no gain on the shared set
    card = sc.scorecard([r], sc.ScorecardConfig(n_boot=200)).set_index("claim")
    assert not card.loc["C2", "holds"]
    assert "shared set" in card.loc["C2", "measured"]


def test_verdicts_count_seeds() -> None:
    good, bad = _results(good=True)[0], _results(good=False)[0]
    runs = [good, rs.SeedResults("resnet18", 1, bad.measures), rs.SeedResults("resnet18", 2, good.measures)]
    v = sc.verdicts(sc.scorecard(runs, sc.ScorecardConfig(n_boot=100))).set_index("claim")
    assert v.loc["C1", "verdict"] == "holds for 2 of 3 seeds" and v.loc["C1", "seeds_holding"] == 2
    assert v.loc["C6", "verdict"] == "holds"
    assert v.loc["C1", "seed_low"] < v.loc["C1", "estimate"] < v.loc["C1", "seed_high"]


def test_scorecard_lists_missing_parts() -> None:
    card = sc.scorecard([rs.SeedResults("alexnet", 0, {"models": {}})], sc.ScorecardConfig(n_boot=10))
    assert len(card) == 8 and not card["holds"].any()


def test_a_claim_no_unit_can_test_is_not_measured_not_an_error() -> None:
    (r,) = _results()
    undefined = [None] * 40  # every unit had too few activating images
    models = {name: dict(m, consis=undefined, consis_adv=undefined) for name, m in r.measures["models"].items()}
    seeds = [rs.SeedResults("resnet18", 1, dict(r.measures, models=models)), r]
    card = sc.scorecard(seeds, sc.ScorecardConfig(n_boot=50))
    first = card[card["seed"] == 1].set_index("claim")
    assert not first.loc["C1", "tested"] and "no unit is defined in both models" in first.loc["C1", "measured"]
    assert not first.loc["C3", "tested"] and first.loc["C6", "tested"]  # C6 needs no unit
    v = sc.verdicts(card[card["seed"] == 1]).set_index("claim")
    assert v.loc["C1", "verdict"] == "not measured" and v.loc["C6", "verdict"] == "holds"
    both = sc.verdicts(card).set_index("claim")  # the other seed tests it: its verdict alone counts
    assert both.loc["C1", "verdict"] == "holds" and both.loc["C1", "seeds"] == 1
    view = present.scorecard_view(card[card["seed"] == 1]).set_index("claim")
    assert "not measured" in view.iloc[0, 0] and "✓ holds" in view.iloc[5, 0]


def test_table2_and_table3_from_results() -> None:
    res = _results()
    t2 = rs.table2(res)
    assert t2.loc[("ResNet-18", "normal", "real"), "object"] == 50.0
    assert t2.loc[("ResNet-18", "normal", "adversarial"), "object"] == pytest.approx(12.5)
    beside = rs.table2_beside_paper(res).set_index(["arch", "model", "images", "source"])
    assert beside.loc[("ResNet-18", "normal", "real", "paper"), "object"] == 33.8
    t3 = rs.table3(res).set_index(["arch", "model"])
    assert t3.loc[("ResNet-18", "Eq. 6"), "clean_acc"] == 0.75
    assert t3.loc[("ResNet-18", "normal"), "fgsm_acc"] == 0.1


def _write_run(root: Path, profile: object) -> Path:
    """A fake run folder: checkpoints and a measures.json carrying their identity."""
    from consis_lib.config import config_hash
    from consis_lib.measures import file_sha256

    d = root / "resnet18" / "seed0"
    for m in ("normal", "at", "adv"):
        (d / m).mkdir(parents=True)
        (d / m / "model.pt").write_bytes(m.encode())
    ident = {"profile": profile.name, "arch": "resnet18", "seed": 0, "config_hash": config_hash(profile),
             "checkpoints": {m: file_sha256(d / m / "model.pt") for m in ("normal", "at", "adv")}}
    rs.save_json({"identity": ident, "models": _results()[0].measures["models"]}, d / "measures.json")
    return d


def test_load_results_checks_identity(tmp_path: Path) -> None:
    import dataclasses

    from consis_lib.config import get_profile

    prof = dataclasses.replace(get_profile("smoke"), archs=("resnet18",))
    with pytest.raises(ConsisError, match="missing.*consis reproduce"):
        rs.load_results(tmp_path, prof)
    d = _write_run(tmp_path, prof)
    (res,) = rs.load_results(tmp_path, prof)
    assert res.model("adv")["attack_success"] == pytest.approx(0.4)
    (d / "adv" / "model.pt").write_bytes(b"retrained")  # the checkpoint changed after measuring
    with pytest.raises(ConsisError, match="stale: its checkpoints"):
        rs.load_results(tmp_path, prof)
    other = dataclasses.replace(prof, train=dataclasses.replace(prof.train, beta=123.0))
    with pytest.raises(ConsisError, match="stale: its config_hash"):
        rs.load_results(tmp_path, other)


@pytest.mark.parametrize(("content", "message"), [("{}", "holds no measures"), ('{"models": {', "not readable JSON"), ("[]", "holds no measures")])
def test_load_results_refuses_bad_files_naming_them(tmp_path: Path, content: str, message: str) -> None:
    import dataclasses

    from consis_lib.config import get_profile

    prof = dataclasses.replace(get_profile("smoke"), archs=("resnet18",))
    d = _write_run(tmp_path, prof)
    (d / "measures.json").write_text(content)
    with pytest.raises(ConsisError, match=message) as info:
        rs.load_results(tmp_path, prof)
    assert "measures.json" in str(info.value) and "\n" not in str(info.value)


def test_save_json_handles_numpy(tmp_path: Path) -> None:
    p = rs.save_json({"a": np.arange(3), "b": np.float32(0.5)}, tmp_path / "x.json")
    assert json.loads(p.read_text()) == {"a": [0, 1, 2], "b": 0.5}


def test_paper_tables_are_complete() -> None:
    assert rs.paper_table1().shape == (6, 2)
    t2 = rs.paper_table2()
    assert t2.shape == (12, 6)
    assert t2.loc[("VGG-16", "normal", "adversarial"), "texture"] == 2.9


def test_reproduce_rejects_unknown_arch(tmp_path: Path) -> None:
    with pytest.raises(ConsisError, match="unknown arch"):
        rp.reproduce("smoke", root=tmp_path, archs=["lenet"])


def test_cli_registers_reproduce() -> None:
    from consis_lib.cli import build_parser

    args = build_parser().parse_args(["reproduce", "--profile", "smoke", "--arch", "resnet18", "--no-book"])
    assert args.profile == "smoke" and args.arch == ["resnet18"] and args.no_book


def test_ratio_bars_draws_every_row_and_category() -> None:
    from consis_lib import viz

    fig = viz.ratio_bars(rs.table2(_results()))
    ax = fig.axes[0]
    assert len(ax.containers) == 6  # normal/AT/Eq. 6 x real/adversarial
    assert len(ax.containers[0]) == 6  # one bar per Broden category
    heights = {c.get_label(): [b.get_height() for b in c] for c in ax.containers}
    assert heights["ResNet-18 normal real"][rs.CATEGORIES.index("object")] == 50.0
