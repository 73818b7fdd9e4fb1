"""Display formatting of the book's tables and the claims scorecard (known strings)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from consis_lib import present as P
from consis_lib import results as rs
from consis_lib.config import get_profile
from consis_lib.errors import ConsisError


@pytest.mark.parametrize(
    ("value", "kw", "expected"),
    [
        (0.023456, {}, "0.0235"),
        (84.123, {}, "84.1"),
        (0.09996, {}, "0.100"),  # rounding carries into the next digit
        (1234.5, {}, "1234"),  # integer digits are kept, no exponent
        (-0.5, {"signed": True}, "-0.500"),
        (0.5, {"signed": True}, "+0.500"),
        (0.0, {}, "0"),
        (-0.00001, {"digits": 1}, "-0.00001"),
        (None, {}, P.MISSING),
        (float("nan"), {}, P.MISSING),
    ],
)
def test_sig_known_strings(value: float | None, kw: dict, expected: str) -> None:
    assert P.sig(value, **kw) == expected


def test_percent_known_strings() -> None:
    assert P.percent(0.8412) == "84.1%"
    assert P.percent(68.75, scale=1) == "68.8%"
    assert P.percent(0.05) == "5.00%"
    assert P.percent(1.0) == "100%"
    assert P.percent(-0.012, signed=True) == "-1.20%"
    assert P.percent(None) == P.MISSING


def test_interval_known_strings() -> None:
    assert P.interval(0.52, 0.49, 0.55, digits=2) == "0.52 [0.49, 0.55]"
    assert P.interval(0.52, 0.49, 0.55) == "0.520 [0.490, 0.550]"
    assert P.interval(-0.2352, -0.3, -0.17) == "-0.235 [-0.300, -0.170]"
    assert P.interval(0.0123, 0.0098, 0.0151) == "0.0123 [0.0098, 0.0151]"  # decimals of the largest
    assert P.interval(0.841, 0.823, 0.859, scale=100, unit="%") == "84.1% [82.3%, 85.9%]"
    assert P.interval(0.5, float("nan"), 0.6) == "0.500"
    assert P.interval(None, 0.1, 0.2) == P.MISSING


def test_direction_arrows() -> None:
    assert [P.direction(v) for v in (0.1, -2, 0, None)] == ["↑", "↓", "=", P.MISSING]


def _table1() -> pd.DataFrame:
    return pd.DataFrame(
        dict(
            arch=["ResNet-18"] * 3, model=["normal", "at", "adv"], units=[128, 128, 128],
            consis=[0.5, 0.48, 0.456], consis_adv=[0.258, 0.3, 0.344],
            paper_consis=[0.0261, None, 0.0251], paper_consis_adv=[0.0133, None, 0.0206],
        )
    ).set_index(["arch", "model"])


def test_table1_view_formats_and_names_models() -> None:
    view = P.table1_view(_table1())
    assert list(view.columns) == ["arch", "model", "units", "consis", "consis_adv", "paper: consis", "paper: consis_adv"]
    assert view.iloc[1].tolist() == ["ResNet-18", "AT (beta = 0)", "128", "0.480", "0.300", P.MISSING, P.MISSING]
    assert view.iloc[2].tolist() == ["ResNet-18", "Eq. 6", "128", "0.456", "0.344", "0.0251", "0.0206"]
    assert view.attrs["numeric"] == ["units", "consis", "consis_adv", "paper: consis", "paper: consis_adv"]


def test_format_frame_intervals_booleans_and_bad_columns() -> None:
    df = pd.DataFrame({"m": [0.52], "m_lo": [0.49], "m_hi": [0.55], "ok": [True], "acc": [0.841]})
    view = P.format_frame(df, percent_cols=["acc"], intervals={"m": ("m_lo", "m_hi")}, labels={"acc": "accuracy"})
    assert view.to_dict("records") == [{"m": "0.520 [0.490, 0.550]", "ok": "yes", "accuracy": "84.1%"}]
    with pytest.raises(ConsisError, match="not in the table"):
        P.format_frame(df, percent_cols=["nope"])


def test_table3_view_percent_and_eps() -> None:
    t3 = pd.DataFrame(
        dict(arch=["VGG-16"], model=["adv"], images=[2400], clean_acc=[0.843], fgsm_acc=[0.388], eps=[8 / 255])
    ).set_index(["arch", "model"])
    assert P.table3_view(t3).iloc[0].tolist() == ["VGG-16", "Eq. 6", "2,400", "84.3%", "38.8%", "8/255"]


def test_table2_view_values_already_in_percent() -> None:
    view = P.table2_view(rs.paper_table2().head(1))
    assert view.iloc[0].tolist() == ["AlexNet", "normal", "real", "0.400%", "13.3%", "0.800%", "0.400%", "6.60%", "17.2%"]


def test_styled_hides_the_index_and_captions() -> None:
    html = P.styled(P.table1_view(_table1()), caption="Table 1 of this run").to_html()
    assert "<caption>Table 1 of this run</caption>" in html
    assert "row_heading" not in html  # no index column
    assert "AT (beta = 0)" in html


def test_myst_table_is_a_numbered_table_directive() -> None:
    md = P.myst_table(P.table1_view(_table1()).head(1), "Mean `consis(n)`.", name="tab-t1").data.splitlines()
    assert md[:4] == ["~~~{table} Mean `consis(n)`.", ":align: left", ":name: tab-t1", ""]
    assert md[4] == "| arch | model | units | consis | consis&#95;adv | paper: consis | paper: consis&#95;adv |"
    assert md[5] == "|:--|:--|--:|--:|--:|--:|--:|"  # numbers right-aligned
    assert md[6] == "| ResNet-18 | normal | 128 | 0.500 | 0.258 | 0.0261 | 0.0133 |"
    assert md[-1] == "~~~"
    with pytest.raises(ConsisError):
        P.myst_table(pd.DataFrame(), "empty")


def _card(**extra: list) -> pd.DataFrame:
    return pd.DataFrame(
        dict(
            claim=["C1", "C1", "C2", "C2"], arch=["AlexNet", "ResNet-18"] * 2,
            measured=["mean consis_adv - consis < 0", "b", "c", "d"],
            estimate=[-0.2352, -0.1, 0.05, np.nan], ci_low=[-0.3, -0.2, 0.01, np.nan], ci_high=[-0.17, -0.01, 0.09, np.nan],
            holds=[True, True, False, False], **extra,
        )
    )


def test_scorecard_view_one_row_per_claim_with_folded_evidence() -> None:
    view = P.scorecard_view(_card(), claims={"C1": "consis_adv(n) < consis(n)", "C2": "raises"})
    assert list(view.columns) == ["claim", "AlexNet", "ResNet-18"]
    assert view["claim"].tolist() == ["C1: consis_adv(n) &lt; consis(n)", "C2: raises"]
    assert view.loc[0, "AlexNet"] == (
        "<details><summary>✓ holds</summary>mean consis_adv - consis &lt; 0 (estimate -0.235 [-0.300, -0.170])</details>"
    )
    assert view.loc[1, "ResNet-18"] == "<details><summary>✗ does not hold</summary>d</details>"


def test_scorecard_view_k_of_n_seeds_and_hover() -> None:
    card = _card(seeds_holding=[3, 2, 1, 0], seeds=[3, 3, 3, 1])
    view = P.scorecard_view(card, claims={}, evidence="hover")
    assert view.loc[0, "AlexNet"].endswith(">✓ holds (3 of 3 seeds)</span>")
    assert view.loc[0, "ResNet-18"].endswith(">✓ holds (2 of 3 seeds)</span>")  # the rule's outcome, with k of n
    assert view.loc[1, "AlexNet"].startswith('<span title="c (estimate 0.0500 [0.0100, 0.0900])">✗ does not hold (1 of 3 seeds)')
    assert view.loc[1, "ResNet-18"].endswith(">✗ does not hold</span>")  # one seed: no count
    assert view["claim"].tolist() == ["C1", "C2"]


def test_scorecard_view_aggregates_rows_per_seed() -> None:
    card = pd.DataFrame(dict(claim=["C7"] * 3, arch=["AlexNet"] * 3, seed=[0, 1, 2], measured=["x", "y", "z"], holds=[True, False, True]))
    cell = P.scorecard_view(card, claims={"C7": "beyond AT"}).loc[0, "AlexNet"]
    assert cell == "<details><summary>✗ does not hold (2 of 3 seeds)</summary>seed 0: x<br>seed 1: y<br>seed 2: z</details>"


def test_scorecard_view_marks_missing_architectures_and_bad_input() -> None:
    card = _card().iloc[[0, 1, 2]]
    assert P.scorecard_view(card, claims={}).loc[1, "ResNet-18"] == P.MISSING
    with pytest.raises(ConsisError, match="holds"):
        P.scorecard_view(card.drop(columns="holds"))
    with pytest.raises(ConsisError, match="evidence"):
        P.scorecard_view(card, evidence="popup")  # type: ignore[arg-type]


def test_verdict_words() -> None:
    assert P.verdict(True) == "holds"
    assert P.verdict(False, 0, 1) == "does not hold"
    assert P.verdict(False, 1, 3) == "does not hold (1 of 3 seeds)"


def test_provenance_names_parameters_and_command() -> None:
    md = P.provenance("default", 1, arch="resnet18", notebook="03_consistency").data
    assert md.startswith("````{admonition} How this page was made\n:class: dropdown\n")
    assert "| arch | resnet18 |" in md
    assert "consis reproduce --profile default --arch resnet18" in md
    assert "papermill notebooks/03_consistency.ipynb 03_consistency.out.ipynb -p profile default -p seed 1 -p arch resnet18" in md
    assert "--arch" not in P.provenance("smoke", 0, arch="all").data


def test_effects_vs_paper_signs_and_agreement() -> None:
    t2 = rs.paper_table2().loc[["ResNet-18"]]  # the paper's own numbers agree with themselves
    t3 = pd.DataFrame(
        dict(arch=["ResNet-18"] * 2, model=["normal", "adv"], clean_acc=[0.84, 0.83], fgsm_acc=[0.14, 0.42])
    ).set_index(["arch", "model"])
    eff = P.effects_vs_paper(_table1(), t2, rs.paper_table2(), t3).set_index("effect")
    first = eff.loc["consis_adv - consis, normal net (Table 1)"]
    assert first["paper"] == "↓ -0.0128" and first["this run"] == "↓ -0.242" and first["same direction"] == "yes"
    assert eff.loc["consis, Eq. 6 vs normal, relative (Table 1)", "paper"] == "↓ -3.83%"  # 0.0251 / 0.0261 - 1
    assert eff.loc["consis_adv, Eq. 6 - AT (control; Table 1)", "same direction"] == P.MISSING
    drop = eff.loc["aligned units, adversarial - real images, normal net (Table 2)"]
    assert drop["paper"] == drop["this run"] == "↓ -45.3 points"  # 12.2 - 57.5
    assert eff.loc["clean accuracy, Eq. 6 - normal (Table 3)", "this run"] == "↓ -1.00 points"
    assert set(eff["same direction"]) <= {"yes", P.MISSING}


def test_setting_vs_paper_reads_the_profile() -> None:
    s = P.setting_vs_paper(get_profile("default")).set_index("aspect")
    assert s.loc["classes", "paper"] == "1000" and s.loc["classes", "this run"] == "24"
    assert s.loc["image size", "this run"] == "32 px"
    assert s.loc["FGSM eps", "this run"] == "8/255"
    assert P.setting_vs_paper(get_profile("paper")).set_index("aspect").loc["networks", "this run"].endswith("(full size, torchvision)")


def test_flat_frames_with_model_labels_are_understood() -> None:
    flat = _table1().reset_index().assign(model=["normal", "AT (beta = 0)", "Eq. 6"], attack_success=[0.9, 0.6, 0.55])
    view = P.table1_view(flat)
    assert view.loc[0, "attack success"] == "90.0%" and view.loc[2, "model"] == "Eq. 6"
    eff = P.effects_vs_paper(flat).set_index("effect")
    assert eff.loc["consis_adv, Eq. 6 - AT (control; Table 1)", "this run"] == "↑ +0.0440"  # 0.344 - 0.300
    with pytest.raises(ConsisError, match="lacks"):
        P.effects_vs_paper(flat.drop(columns="model"))
