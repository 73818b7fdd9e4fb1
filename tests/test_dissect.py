"""Network dissection: exact thresholds, IoU tally, planted units, reference agreement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from consis_lib.config import DissectConfig
from consis_lib.data.broden import Broden, encode_label_png
from consis_lib.dissect import CATEGORIES, DissectionResult, TopQuantile, _Tally, dissect
from consis_lib.errors import ConsisError
from consis_lib.hooks import count_hooks
from consis_lib.layout import channels_last

# ---------------------------------------------------------------- exact streaming quantile


@pytest.mark.parametrize("q", [0.005, 0.05, 0.3, 0.5, 0.0])
@pytest.mark.parametrize("ties", [False, True])
def test_thresholds_equal_numpy_exact_quantile(q, ties):
    rng = np.random.default_rng(int(q * 1000) + ties)
    K, N = 7, 4099
    data = rng.integers(0, 12, size=(K, N)).astype(np.float32) if ties else rng.random((K, N), dtype=np.float32)
    tq = TopQuantile(K, N, q)
    for start in range(0, N, 500):  # stream in chunks
        tq.update(torch.from_numpy(data[:, start : start + 500]))
    expected = np.quantile(data, 1 - q, axis=1)
    assert np.array_equal(tq.thresholds(), expected)
    assert tq.top.shape[1] <= max(2, int(np.ceil(q * N)) + 2)  # bounded memory


def test_topquantile_known_answer_and_misuse():
    tq = TopQuantile(1, 4, 0.5)
    tq.update(torch.tensor([[4.0, 1.0]]))
    tq.update(torch.tensor([[3.0, 2.0]]))
    assert tq.thresholds()[0] == 2.5  # median of 1..4
    with pytest.raises(ConsisError):
        tq.update(torch.tensor([[9.0]]))
    short = TopQuantile(1, 4, 0.5)
    short.update(torch.tensor([[1.0]]))
    with pytest.raises(ConsisError, match="expected 4"):
        short.thresholds()


# ---------------------------------------------------------------- IoU tally on 4x4 masks


class Item:
    def __init__(self, pixel, image_labels, path="x.png"):
        self.pixel_labels = pixel
        self.image_labels = image_labels
        self.path = path


def test_iou_on_hand_built_4x4_masks():
    # one unit; maps already at label resolution 4x4; threshold 0.5
    f1 = torch.zeros(1, 1, 4, 4)
    f1[0, 0, :2, :2] = 1.0  # unit mask image 1: top-left 2x2 (4 px)
    f2 = torch.zeros(1, 1, 4, 4)
    f2[0, 0, 3, :3] = 1.0  # unit mask image 2: 3 px of the bottom row
    color1 = np.zeros((1, 4, 4), np.int32)
    color1[0, :, 0] = 1  # label 1 (colour): left column, 4 px
    color1[0, :, 1:] = 2  # label 2 (colour): the rest, 12 px
    empty = np.zeros((0, 4, 4), np.int32)
    item1 = Item({"color": color1, "object": empty}, {"scene": [3]})
    item2 = Item({"color": empty, "object": empty}, {"scene": [3]})  # no colour labels
    tally = _Tally(1, 4)
    tally.add(torch.cat([f1, f2]), [item1, item2], torch.tensor([0.5]))
    cat_index = np.array([-1, 0, 0, CATEGORIES.index("scene")])
    iou = tally.iou(cat_index)[0]
    # label 1: inter 2, union 4 + 4 - 2 = 6 (image 2 carries no colour: its 3 px do not count)
    assert iou[1] == pytest.approx(2 / 6)
    # label 2: inter 2, union 4 + 12 - 2 = 14
    assert iou[2] == pytest.approx(2 / 14)
    # scene 3 (image-level, whole 16 px images): inter 4 + 3, union (4 + 3) + 32 - 7 = 32
    assert iou[3] == pytest.approx(7 / 32)
    assert iou[0] == 0


# ---------------------------------------------------------------- hand-built Broden folder

LABELS = [  # number, name, category
    (1, "red-c", "color"),
    (2, "grey-c", "color"),
    (3, "box", "object"),
    (4, "street", "scene"),
    (5, "striped", "texture"),
]


def write_probe(root: Path, n: int = 20, size: int = 16, seed: int = 0) -> Path:
    """A tiny Broden folder: greyish noise images; image 0 holds a 5x5 pure-red square
    (25 of 5,120 pixels, about the top 0.5%) inside a 6x6 'box' object."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        img = rng.uniform(0.0, 0.5, size=(size, size, 3))
        color = np.full((size, size), 2, np.int32)
        obj = np.zeros((size, size), np.int32)
        if i == 0:
            img[4:9, 6:11] = (1.0, 0.0, 0.0)
            color[4:9, 6:11] = 1
            obj[4:10, 6:12] = 3
        from PIL import Image

        Image.fromarray((img * 255).round().astype(np.uint8)).save(root / "images" / f"{i}.png")
        encode_label_png(color).save(root / "images" / f"{i}_color.png")
        row = {"image": f"{i}.png", "split": "train", "ih": size, "iw": size, "sh": size, "sw": size}
        row.update({c: "" for c in CATEGORIES})
        row["color"] = f"{i}_color.png"
        if obj.any():
            encode_label_png(obj).save(root / "images" / f"{i}_object.png")
            row["object"] = f"{i}_object.png"
        row["scene"] = "4" if i % 2 == 0 else ""
        row["texture"] = "5" if i % 3 == 0 else ""
        rows.append(row)
    pd.DataFrame(rows).to_csv(root / "index.csv", index=False)
    pd.DataFrame(
        [{"name": c, "first": 1, "last": 5, "count": 1, "frequency": 1} for c in ("color", "object", "scene", "texture")]
    ).to_csv(root / "category.csv", index=False)
    pd.DataFrame(
        [{"number": k, "name": nm, "category": f"{c}(1)", "frequency": 1, "coverage": 1, "syns": ""} for k, nm, c in LABELS]
    ).to_csv(root / "label.csv", index=False)
    return root


def red_unit_model(extra_units: int = 0, seed: int = 0) -> nn.Sequential:
    """conv 1x1: unit 0 = ReLU(r - g - b) responds to pure red; other units random."""
    conv = nn.Conv2d(3, 1 + extra_units, 1, bias=False)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
        conv.weight[0] = torch.tensor([1.0, -1.0, -1.0]).view(3, 1, 1)
    return nn.Sequential(conv, nn.ReLU())


@pytest.fixture()
def probe(tmp_path):
    return Broden(write_probe(tmp_path / "probe"), image_size=16)


def test_planted_red_unit_is_labelled_red(probe):
    model = red_unit_model(extra_units=2)
    res = dissect(model, "1", probe, DissectConfig(batch_size=6), progress=False)
    row = res.table.iloc[0]
    assert row.concept == "red-c" and row.category == "color"
    assert row.iou > 0.5 and row.aligned
    assert res.ratios["color"] >= 1 / 3
    assert set(res.ratios) == set(CATEGORIES)
    assert any("'part'" in n for n in res.notes) and any("'material'" in n for n in res.notes)
    assert res.ratios["part"] == 0 and res.ratios["material"] == 0
    assert count_hooks(model) == 0
    # the next best concept for the red unit is the box around the square
    assert res.top_concepts(0, 2).concept.tolist() == ["red-c", "box"]


def test_adversarial_attack_changes_the_input(probe):
    model = red_unit_model()
    invert = lambda m, x, y: 1.0 - x  # noqa: E731  (red square becomes cyan)
    res = dissect(model, "1", probe, DissectConfig(batch_size=8), attack=invert, progress=False)
    assert res.adversarial
    assert res.table.iloc[0].concept != "red-c" or res.table.iloc[0].iou < 0.1


def reference_dissection(model, layer_module, probe, q, cat_index):
    """Brute force: all features in memory, numpy quantile, per-image per-unit loops."""
    items = [probe[i] for i in range(len(probe))]
    images = torch.stack([it.image for it in items])
    with torch.no_grad():  # batches of 7 in the same layout as the call under test: bitwise equal features
        fm = torch.cat([layer_module(channels_last(images[i : i + 7])) for i in range(0, len(items), 7)])  # [N, K, h, w]
    K = fm.shape[1]
    T = np.quantile(fm.transpose(0, 1).reshape(K, -1).numpy(), 1 - q, axis=1)
    L = len(cat_index)
    inter = np.zeros((K, L))
    lab_area = np.zeros(L)
    unit_cat = np.zeros((K, len(CATEGORIES)))
    for n, it in enumerate(items):
        sh, sw = it.pixel_labels["color"].shape[1:]
        up = F.interpolate(fm[n : n + 1], size=(sh, sw), mode="bilinear", align_corners=False)[0].numpy()
        for k in range(K):
            m = up[k] > T[k]
            for ci, c in enumerate(CATEGORIES):
                planes = it.pixel_labels[c]
                scal = it.image_labels[c]
                if (planes > 0).any() or scal:
                    unit_cat[k, ci] += m.sum()
                for plane in planes:
                    for lab in np.unique(plane[plane > 0]):
                        inter[k, lab] += (m & (plane == lab)).sum()
                        if k == 0:
                            lab_area[lab] += (plane == lab).sum()
                for s in scal:
                    inter[k, s] += m.sum()
                    if k == 0:
                        lab_area[s] += sh * sw
    iou = np.zeros((K, L))
    for k in range(K):
        for lab in range(1, L):
            union = unit_cat[k, cat_index[lab]] + lab_area[lab] - inter[k, lab]
            iou[k, lab] = inter[k, lab] / union if union > 0 else 0.0
    return T, iou


@pytest.mark.parametrize("cache_mb", [2048, 0])  # one pass with the cache, two passes without
def test_agrees_with_brute_force_reference(probe, cache_mb):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 5, 3, stride=2, padding=1), nn.ReLU())  # 8x8 maps -> 16x16 labels
    cat_index = np.array([-1] + [CATEGORIES.index(c) for _, _, c in LABELS])
    T, iou = reference_dissection(model, model, probe, 0.02, cat_index)
    res = dissect(model, "1", probe, DissectConfig(quantile=0.02, batch_size=7, cache_mb=cache_mb), progress=False)
    assert np.array_equal(res.thresholds, T)
    assert res.meta["passes"] == (1 if cache_mb else 2)
    assert res.meta["kept_per_unit"] == 20 * 64 - int(np.floor((20 * 64 - 1) * 0.98))  # bounded top-k buffer
    np.testing.assert_allclose(res.iou, iou, atol=1e-12)
    best = iou.argmax(1)
    assert res.table.label.tolist() == [b if iou[k, b] > 0 else 0 for k, b in enumerate(best)]
    fixed = dissect(model, "1", probe, DissectConfig(quantile=0.02, batch_size=7), thresholds=T, progress=False)
    np.testing.assert_allclose(fixed.iou, iou, atol=1e-12)


def test_result_round_trips_through_json(probe, tmp_path):
    res = dissect(red_unit_model(1), "1", probe, DissectConfig(), progress=False)
    back = DissectionResult.load(res.save(tmp_path / "d.json"))
    pd.testing.assert_frame_equal(back.table, res.table, check_dtype=False)
    assert back.ratios == res.ratios and back.notes == res.notes
    np.testing.assert_allclose(back.iou, res.iou, atol=1e-8)


def test_degenerate_inputs(probe):
    with pytest.raises(ConsisError, match="conv layer"):
        dissect(nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten()), "1", probe, progress=False)
    nan_model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU())
    with torch.no_grad():
        nan_model[0].bias.fill_(float("nan"))
    with pytest.raises(ConsisError, match="NaN"):
        dissect(nan_model, "1", probe, progress=False)
    with pytest.raises(ConsisError, match="quantile"):
        dissect(red_unit_model(), "1", probe, DissectConfig(quantile=1.5), progress=False)
    # a dead unit: threshold 0, empty masks, IoU 0, not aligned
    dead = red_unit_model(1)
    with torch.no_grad():
        dead[0].weight[1] = -1.0
    res = dissect(dead, "1", probe, progress=False)
    assert res.table.iloc[1].iou == 0 and not res.table.iloc[1].aligned and res.table.iloc[1].concept == ""


# ---------------------------------------------------------------- the embedded probe


@pytest.fixture(scope="module")
def embedded_probe(tmp_path_factory):
    from consis_lib.config import get_profile
    from consis_lib.data.probe import generate_probe

    root = generate_probe(get_profile("smoke").data, tmp_path_factory.mktemp("ep") / "probe")
    return Broden(root)


def test_planted_red_unit_on_the_embedded_probe(embedded_probe):
    model = red_unit_model(extra_units=3)
    red = int(embedded_probe.labels.query("name == 'red-c'").number.iloc[0])
    colour = [embedded_probe[i].pixel_labels["color"] for i in range(len(embedded_probe))]
    red_fraction = float(np.mean([(c == red).mean() for c in colour]))
    assert 0.005 < red_fraction < 0.5
    # default quantile: the mask covers 0.5% of pixels and red covers more, so the
    # IoU with red is bounded by 0.005 / red_fraction; red objects (apples) compete
    res = dissect(model, "1", embedded_probe, DissectConfig(), progress=False)
    assert "red-c" in res.top_concepts(0, 2).concept.tolist()
    assert res.iou[0, red] <= 0.005 / red_fraction + 1e-3
    # with the mask as large as the red area, the red filter matches it closely
    res = dissect(model, "1", embedded_probe, DissectConfig(quantile=red_fraction), progress=False)
    assert res.table.iloc[0].concept == "red-c" and res.table.iloc[0].iou > 0.3
    assert "part" in " ".join(res.notes)  # the embedded probe has no parts


def test_adversarial_dissection_with_project_model(tmp_path):
    """Small ResNet-18 at 32 px on the hand-built probe, real and least-likely adversarial."""
    from consis_lib.activations import least_likely_attack
    from consis_lib.models import build_model, metric_layer

    probe32 = Broden(write_probe(tmp_path / "p32"), image_size=32)
    torch.manual_seed(0)
    model = build_model("resnet18", 4, image_size=32)
    layer = metric_layer("resnet18")
    real = dissect(model, layer, probe32, DissectConfig(batch_size=10), progress=False)
    adv = dissect(model, layer, probe32, DissectConfig(batch_size=10), attack=least_likely_attack(4 / 255, iters=2), progress=False)
    assert len(real.table) == len(adv.table) == real.iou.shape[0]
    assert adv.adversarial and not real.adversarial
    assert not np.array_equal(real.thresholds, adv.thresholds)
    assert set(real.ratios) == set(CATEGORIES) and all(0 <= v <= 1 for v in real.ratios.values())
    assert count_hooks(model) == 0
