"""Summary tables and the claims scorecard on hand-made results (known answers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consis_lib import reproduce as rp
from consis_lib import results as rs
from consis_lib import scorecard as sc
from consis_lib.errors import ConsisError


def _dissection(real_iou: list[float], adv_iou: list[float], cats: list[str]) -> dict:
    def part(ious: list[float]) -> dict:
        return {"units": [[u, f"c{u}", cats[u], iou] for u, iou in enumerate(ious)]}

    return {"real": part(real_iou), "adversarial": part(adv_iou)}


def _results(good: bool = True) -> list[rs.ArchResults]:
    """Results in which every claim holds clearly (``good``) or the normal model looks robust."""
    rng = np.random.default_rng(0)
    k = 40
    c_n = 0.30 + 0.01 * rng.standard_normal(k)
    ca_n = (0.10 if good else 0.40) + 0.01 * rng.standard_normal(k)
    c_a = 0.30 + 0.01 * rng.standard_normal(k)
    ca_a = 0.25 + 0.01 * rng.standard_normal(k)
    cats = ["object"] * 20 + ["texture"] * 10 + ["color"] * 10
    dis = {
        "iou_threshold": 0.04,
        "normal": _dissection([0.1] * 30 + [0.0] * 10, [0.1] * 5 + [0.0] * 35, cats),
        "adv": _dissection([0.1] * 30 + [0.0] * 10, [0.1] * 25 + [0.0] * 15, cats),
    }
    n = 200
    perf = {
        "normal": {"clean_correct": [1] * 180 + [0] * 20, "fgsm_correct": [1] * 20 + [0] * 180, "eps": 8 / 255},
        "adv": {"clean_correct": [1] * 150 + [0] * 50, "fgsm_correct": [1] * 120 + [0] * 80, "eps": 8 / 255},
    }
    assert len(perf["normal"]["clean_correct"]) == n
    cons = {
        "normal": {"consis": c_n.tolist(), "consis_adv": ca_n.tolist()},
        "adv": {"consis": c_a.tolist(), "consis_adv": ca_a.tolist()},
    }
    return [rs.ArchResults("resnet18", cons, dis, perf)]


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
    cons = {"normal": {"consis": [0.1, 0.3, None], "consis_adv": [0.0, 0.1, 0.2]}}
    t = rs.table1([rs.ArchResults("vgg16", cons, None, None)])
    row = t.loc[("VGG-16", "normal")]
    assert row["consis"] == pytest.approx(0.2)  # None (undefined unit) is skipped
    assert row["consis_adv"] == pytest.approx(0.1)
    assert row["units"] == 2
    assert row["paper_consis"] == 0.0296 and row["paper_consis_adv"] == 0.0187


def test_category_ratios_known_answer() -> None:
    part = {"units": [[0, "dog", "object", 0.2], [1, "red-c", "color", 0.05], [2, "sky", "scene", 0.01], [3, None, None, None]]}
    r = rs.category_ratios(part, 0.04)
    assert r["object"] == 25.0 and r["color"] == 25.0 and r["scene"] == 0.0 and r["part"] == 0.0
    assert rs.aligned_flags(part, 0.04).tolist() == [1.0, 1.0, 0.0, 0.0]


def test_scorecard_all_claims_hold_on_clear_results() -> None:
    card = sc.scorecard(_results(good=True), sc.ScorecardConfig(n_boot=200))
    assert list(card["claim"]) == ["C1", "C2", "C3", "C4", "C5", "C6"]
    assert card["holds"].all(), card[["claim", "measured"]].to_string()
    c4 = card.set_index("claim").loc["C4"]
    assert c4["estimate"] == pytest.approx(-62.5)  # 75% -> 12.5% aligned
    c6 = card.set_index("claim").loc["C6"]
    assert c6["estimate"] == pytest.approx(50.0)  # FGSM accuracy 10% -> 60%
    summary = sc.claims_summary(card)
    assert (summary["verdict"] == "holds").all()


def test_scorecard_reports_claims_that_fail() -> None:
    card = sc.scorecard(_results(good=False), sc.ScorecardConfig(n_boot=200)).set_index("claim")
    assert not card.loc["C1", "holds"]  # consis_adv above consis for the normal model
    assert not card.loc["C2", "holds"]  # the adv model's consis_adv is lower
    assert card.loc["C6", "holds"]


def test_scorecard_lists_missing_parts() -> None:
    card = sc.scorecard([rs.ArchResults("alexnet", None, None, None)], sc.ScorecardConfig(n_boot=10))
    assert len(card) == 6 and not card["holds"].any()


def test_table2_and_table3_from_results() -> None:
    res = _results()
    t2 = rs.table2(res)
    assert t2.loc[("ResNet-18", "normal", "real"), "object"] == 50.0
    assert t2.loc[("ResNet-18", "normal", "adversarial"), "object"] == pytest.approx(12.5)
    beside = rs.table2_beside_paper(res)
    assert beside.loc[("ResNet-18", "normal", "real", "paper"), "object"] == 33.8
    t3 = rs.table3(res)
    assert t3.loc[("ResNet-18", "adv"), "clean_acc"] == 0.75
    assert t3.loc[("ResNet-18", "normal"), "fgsm_acc"] == 0.1


def test_load_results_reads_json_and_refuses_empty(tmp_path: Path) -> None:
    with pytest.raises(ConsisError, match="consis reproduce"):
        rs.load_results(tmp_path, ["resnet18"])
    rs.save_json({"normal": {"consis": [0.5], "consis_adv": [0.25]}}, tmp_path / "resnet18" / "consistency.json")
    (res,) = rs.load_results(tmp_path, ["resnet18"])
    assert res.consistency["normal"]["consis_adv"] == [0.25] and res.dissection is None
    assert not list((tmp_path / "resnet18").glob(".*tmp"))  # atomic write leaves no temp file


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
    assert len(ax.containers) == 4  # normal/adv x real/adversarial
    assert len(ax.containers[0]) == 6  # one bar per Broden category
    heights = {c.get_label(): [b.get_height() for b in c] for c in ax.containers}
    assert heights["ResNet-18 normal real"][rs.CATEGORIES.index("object")] == 50.0
