"""Network dissection: exact thresholds, IoU tally and its union rules, primary categories,
planted units, reference agreement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from consis_lib import concepts
from consis_lib.config import DissectConfig
from consis_lib.data.broden import Broden
from consis_lib.data.broden_write import encode_label_png
from consis_lib.dissect import CATEGORIES, DissectionResult, TopQuantile, dissect
from consis_lib.dissect_tally import Tally
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
    tally = Tally(1, np.array([-1, 0, 0, CATEGORIES.index("scene")]))
    tally.add(torch.cat([f1, f2]), [item1, item2], torch.tensor([0.5]))
    iou = tally.iou()[0]
    # label 1: inter 2, union 4 + 4 - 2 = 6 (image 2 carries no colour: its 3 px do not count)
    assert iou[1] == pytest.approx(2 / 6)
    # label 2: inter 2, union 4 + 12 - 2 = 14
    assert iou[2] == pytest.approx(2 / 14)
    # scene 3 (image-level, whole 16 px images): inter 4 + 3, union (4 + 3) + 32 - 7 = 32
    assert iou[3] == pytest.approx(7 / 32)
    assert iou[0] == 0


# ---------------------------------------------------------------- the two union rules

# Three 2x2 images, one unit whose mask is the pixels marked M (maps are at label
# resolution, so upsampling is the identity). Labels: 1 = a colour, 2 = a scene
# (image-level), 3 = an object.
#
#   image A: mask (0,0)          colour 1 on the top row
#   image B: mask the bottom row colour 1 at (0,0); object 3 at (1,1); scene 2
#   image C: mask all 4 pixels   scene 2 (no colour, no object)
#
# colour 1: intersection 1 (A), label area 2 + 1 = 3.
#   images_with_category: A and B carry a colour, unit area 1 + 2 = 3,
#       union 3 + 3 - 1 = 5, IoU 1/5.
#   mask_meets_category: only A's mask meets a colour (B's meets the object, not the
#       colour), unit area 1, union 1 + 3 - 1 = 3, IoU 1/3.
# scene 2 (whole-image masks): intersection 2 + 4 = 6, label area 8; both rules
#   count B and C (their masks are not empty): unit area 6, union 8, IoU 6/8.
# object 3: intersection 1, label area 1; B carries it and its mask meets it:
#   unit area 2, union 2, IoU 1/2 under both rules.
UNION_CASE = {
    "images_with_category": [0.0, 1 / 5, 6 / 8, 1 / 2],
    "mask_meets_category": [0.0, 1 / 3, 6 / 8, 1 / 2],
}


def _mask(*pixels):
    m = torch.zeros(1, 1, 2, 2)
    for r, c in pixels:
        m[0, 0, r, c] = 1.0
    return m


def _plane(label, *pixels):
    """A 2x2 label plane ``[1, 2, 2]`` holding ``label`` at ``pixels``."""
    out = np.zeros((1, 2, 2), np.int32)
    for r, c in pixels:
        out[0, r, c] = label
    return out


def union_case_items():
    empty = np.zeros((0, 2, 2), np.int32)
    a = Item({"color": _plane(1, (0, 0), (0, 1)), "object": empty}, {})
    b = Item({"color": _plane(1, (0, 0)), "object": _plane(3, (1, 1))}, {"scene": [2]})
    c = Item({"color": empty, "object": empty}, {"scene": [2]})
    fmap = torch.cat([_mask((0, 0)), _mask((1, 0), (1, 1)), _mask((0, 0), (0, 1), (1, 0), (1, 1))])
    return fmap, [a, b, c]


@pytest.mark.parametrize("union", sorted(UNION_CASE))
def test_union_rules_on_hand_computed_case(union):
    fmap, items = union_case_items()
    cat_index = np.array([-1] + [CATEGORIES.index(c) for c in ("color", "scene", "object")])
    tally = Tally(1, cat_index, union)
    tally.add(fmap[:2], items[:2], torch.tensor([0.5]))  # two batches: the sums accumulate
    tally.add(fmap[2:], items[2:], torch.tensor([0.5]))
    np.testing.assert_allclose(tally.iou()[0], UNION_CASE[union], rtol=0, atol=1e-12)


def test_label_counts_for_its_primary_category_not_its_column():
    # label 1 has primary category "object" but sits in the "part" column: top row.
    # The unit's mask is the left column. Intersection 1, label area 2; the image
    # carries an object label (label 1 itself), so the unit's 2 px enter the union:
    # 2 + 2 - 1 = 3, IoU 1/3 under both rules (a column-based union would give 1/1).
    item = Item({"part": _plane(1, (0, 0), (0, 1))}, {})
    for union in ("images_with_category", "mask_meets_category"):
        tally = Tally(1, np.array([-1, CATEGORIES.index("object")]), union)
        tally.add(_mask((0, 0), (1, 0)), [item], torch.tensor([0.5]))
        assert tally.iou()[0, 1] == pytest.approx(1 / 3)


def test_mask_meets_union_is_never_larger():
    """Property: mask_meets_category's union is a subset, so its IoUs are >= and all lie in [0, 1]."""
    rng = np.random.default_rng(3)
    cat_index = np.array([-1] + [CATEGORIES.index(c) for c in ("color", "color", "texture", "scene", "object", "object")])
    items = [
        Item(
            {"color": rng.integers(0, 3, (1, 6, 6)).astype(np.int32), "object": (rng.random((1, 6, 6)) < 0.3).astype(np.int32) * 6},
            {"texture": [3] if i % 2 else [], "scene": [4] if i % 3 == 0 else []},
        )
        for i in range(7)
    ]
    fmap = torch.from_numpy(rng.random((7, 4, 3, 3), dtype=np.float32))
    thr = torch.tensor([0.5, 0.8, 0.9, 0.2])
    ious = {}
    for union in ("images_with_category", "mask_meets_category"):
        tally = Tally(4, cat_index, union)
        tally.add(fmap, items, thr)
        ious[union] = tally.iou()
    assert (ious["mask_meets_category"] >= ious["images_with_category"] - 1e-12).all()
    assert (ious["mask_meets_category"] > ious["images_with_category"]).any()
    for iou in ious.values():
        assert ((iou >= 0) & (iou <= 1)).all()


def red_pixels_image(path: Path, pixels) -> None:
    from PIL import Image

    img = np.zeros((2, 2, 3), np.uint8)
    for r, c in pixels:
        img[r, c] = (255, 0, 0)
    Image.fromarray(img).save(path)


def tiny_broden(root: Path, labels, images, categories, c_rows=None) -> Path:
    """A 2x2 Broden folder: ``labels`` ``(number, name, category cell)``; ``images``
    ``(red pixels, {category: 2x2 label array | image-level number})``; ``c_rows``
    ``{category: [(number, name, coverage)]}`` for the ``c_<category>.csv`` files."""
    (root / "images").mkdir(parents=True)
    rows = []
    for i, (red, cells) in enumerate(images):
        red_pixels_image(root / "images" / f"{i}.png", red)
        row = {"image": f"{i}.png", "split": "train", "ih": 2, "iw": 2, "sh": 2, "sw": 2}
        row.update({c: "" for c in concepts.BRODEN_COLUMNS})
        for cat, value in cells.items():
            if isinstance(value, int):
                row[cat] = str(value)
            else:
                encode_label_png(np.asarray(value)).save(root / "images" / f"{i}_{cat}.png")
                row[cat] = f"{i}_{cat}.png"
        rows.append(row)
    pd.DataFrame(rows).to_csv(root / "index.csv", index=False)
    pd.DataFrame([{"name": c, "first": 1, "last": 9, "count": 1, "frequency": 1} for c in categories]).to_csv(
        root / "category.csv", index=False
    )
    pd.DataFrame(
        [{"number": n, "name": nm, "category": cell, "frequency": 1, "coverage": 1, "syns": ""} for n, nm, cell in labels]
    ).to_csv(root / "label.csv", index=False)
    for cat, entries in (c_rows or {}).items():
        c = [{"code": 0, "number": 0, "name": "-", "frequency": 0, "coverage": 0.0}]
        c += [{"code": k, "number": n, "name": nm, "frequency": 1, "coverage": cov} for k, (n, nm, cov) in enumerate(entries, 1)]
        pd.DataFrame(c).to_csv(root / f"c_{cat}.csv", index=False)
    return root


def red_unit() -> nn.Sequential:
    """conv 1x1 ReLU(r - g - b): 1 on pure red pixels, 0 on black ones."""
    conv = nn.Conv2d(3, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1))
    return nn.Sequential(conv, nn.ReLU())


@pytest.mark.parametrize("union", sorted(UNION_CASE))
def test_dissect_applies_the_union_rule(tmp_path, union):
    """UNION_CASE as a Broden folder: the masks are the red pixels (threshold 0.5)."""
    colour_a, colour_b = [[1, 1], [0, 0]], [[1, 0], [0, 0]]
    images = [
        ([(0, 0)], {"color": colour_a}),
        ([(1, 0), (1, 1)], {"color": colour_b, "object": [[0, 0], [0, 3]], "scene": 2}),
        ([(0, 0), (0, 1), (1, 0), (1, 1)], {"scene": 2}),
    ]
    labels = [(1, "red-c", "color(2)"), (2, "street-s", "scene(2)"), (3, "box", "object(1)")]
    probe = Broden(tiny_broden(tmp_path / "p", labels, images, ("color", "object", "scene")))
    res = dissect(red_unit(), "1", probe, DissectConfig(union=union), thresholds=np.array([0.5]), progress=False)
    np.testing.assert_allclose(res.iou[0], UNION_CASE[union], rtol=0, atol=1e-12)
    assert res.meta["union"] == union


# ---------------------------------------------------------------- primary category: count vs coverage

# label.csv cells and c_<category>.csv coverages (category.csv order: color, object, part)
#   car    object(10);part(3)   coverage object 0.5, part 2.5   count: object  coverage: part
#   wheel  object(2);part(8)    coverage object 3.0, part 1.5   count: part    coverage: object
#   door   object(4);part(4)    coverage object 1.0, part 1.0   count: object (first in the cell)
#                                                               coverage: part (the later in category.csv, as NetDissect-Lite)
#   seat   part(6)              coverage part 1.0               part under both
CATEGORY_LABELS = [
    (1, "red-c", "color(5)"),
    (2, "car", "object(10);part(3)"),
    (3, "wheel", "object(2);part(8)"),
    (4, "door", "object(4);part(4)"),
    (5, "seat", "part(6)"),
]
CATEGORY_C_ROWS = {
    "color": [(1, "red-c", 2.0)],
    "object": [(2, "car", 0.5), (3, "wheel", 3.0), (4, "door", 1.0)],
    "part": [(2, "car", 2.5), (3, "wheel", 1.5), (4, "door", 1.0), (5, "seat", 1.0)],
}
BY_RULE = {
    "count": ["color", "object", "part", "object", "part"],
    "coverage": ["color", "part", "object", "part", "part"],
}
# Image P: car (object column) at (0,0), mask (0,0). Image Q: seat (part column) at
# (0,0), mask (1,1). car: intersection 1, label area 1.
#   count: car is an object; Q carries no object label: unit area 1, union 1, IoU 1.
#   coverage: car is a part, and so is Q's seat: unit area 1 + 1, union 2, IoU 1/2.
CAR_IOU = {"count": 1.0, "coverage": 0.5}


def category_probe(root: Path, c_rows=CATEGORY_C_ROWS) -> Broden:
    images = [([(0, 0)], {"object": [[2, 0], [0, 0]]}), ([(1, 1)], {"part": [[5, 0], [0, 0]]})]
    return Broden(tiny_broden(root, CATEGORY_LABELS, images, ("color", "object", "part"), c_rows))


@pytest.mark.parametrize("rule", sorted(BY_RULE))
def test_primary_category_by_count_and_by_coverage(tmp_path, rule):
    probe = category_probe(tmp_path / "p")
    assert probe.primary_categories(rule) == BY_RULE[rule]
    res = dissect(red_unit(), "1", probe, DissectConfig(primary_category=rule), thresholds=np.array([0.5]), progress=False)
    assert res.label_categories[1:] == BY_RULE[rule]
    assert res.iou[0, 2] == pytest.approx(CAR_IOU[rule])
    assert res.iou[0, 5] == 0  # the mask misses the seat
    assert res.meta["primary_category"] == rule


def test_coverage_rule_needs_every_label_in_a_c_file(tmp_path):
    no_seat = {**CATEGORY_C_ROWS, "part": CATEGORY_C_ROWS["part"][:3]}
    with pytest.raises(ConsisError, match=r"label 5 \(seat\) is in no c_<category>.csv"):
        category_probe(tmp_path / "a", no_seat).primary_categories("coverage")
    no_part_file = {k: v for k, v in CATEGORY_C_ROWS.items() if k != "part"}
    with pytest.raises(ConsisError, match=r"c_part.csv with a coverage column"):
        category_probe(tmp_path / "b", no_part_file).primary_categories("coverage")
    assert category_probe(tmp_path / "c", no_part_file).primary_categories("count") == BY_RULE["count"]


@pytest.mark.parametrize(
    "cfg, field",
    [(DissectConfig(union="lite"), "union"), (DissectConfig(primary_category="frequency"), "primary_category")],
)
def test_bad_rule_is_refused_before_any_work(tmp_path, cfg, field):
    class Untouchable(nn.Module):
        def forward(self, x):
            raise AssertionError("the model ran before the config was checked")

    probe = category_probe(tmp_path / "p")
    with pytest.raises(ConsisError, match=f"fix DissectConfig.{field}"):
        dissect(Untouchable(), "x", probe, cfg, progress=False)


def test_concept_categories_have_one_definition():
    from consis_lib import results
    from consis_lib.data import broden

    assert results.CATEGORIES is concepts.CATEGORIES and broden.CATEGORIES is concepts.CATEGORIES
    assert concepts.CATEGORIES == ("color", "texture", "material", "scene", "part", "object")  # Table 2
    assert sorted(concepts.BRODEN_COLUMNS) == sorted(concepts.CATEGORIES)
    assert broden.INDEX_COLUMNS[6:] == concepts.BRODEN_COLUMNS == ("color", "object", "part", "material", "scene", "texture")


def test_category_cell_rules_known_answers():
    assert concepts.parse_category_cell("object(12);part(3)", "x") == {"object": 12, "part": 3}
    assert concepts.primary_by_count({"object": 4, "part": 4}) == "object"  # first on ties
    assert concepts.primary_by_coverage({"object": 1.0, "part": 1.0}) == "part"  # later on ties
    assert concepts.primary_by_coverage({"object": 3.0, "part": 1.5}) == "object"
    assert concepts.primary_by_count({}) == "" == concepts.primary_by_coverage({})
    with pytest.raises(ConsisError, match="unknown category 'shape'"):
        concepts.parse_category_cell("shape(3)", "label.csv row 2")


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


def reference_dissection(model, layer_module, probe, q, cat_index, union="images_with_category"):
    """Brute force: all features in memory, numpy quantile, per-image per-unit loops.

    Every label of :func:`write_probe` sits in its own category's column, so a
    category's labels are the planes and numbers of its column here."""
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
                if union == "images_with_category":
                    counted = (planes > 0).any() or scal
                else:  # the mask meets a label of the category
                    counted = ((planes > 0) & m).any() or (scal and m.any())
                if counted:
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
            denom = unit_cat[k, cat_index[lab]] + lab_area[lab] - inter[k, lab]
            iou[k, lab] = inter[k, lab] / denom if denom > 0 else 0.0
    return T, iou


@pytest.mark.parametrize("union", ["images_with_category", "mask_meets_category"])
@pytest.mark.parametrize("cache_mb", [2048, 0])  # one pass with the cache, two passes without
def test_agrees_with_brute_force_reference(probe, cache_mb, union):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 5, 3, stride=2, padding=1), nn.ReLU())  # 8x8 maps -> 16x16 labels
    cat_index = np.array([-1] + [CATEGORIES.index(c) for _, _, c in LABELS])
    T, iou = reference_dissection(model, model, probe, 0.02, cat_index, union)
    cfg = DissectConfig(quantile=0.02, batch_size=7, cache_mb=cache_mb, union=union)
    res = dissect(model, "1", probe, cfg, progress=False)
    assert np.array_equal(res.thresholds, T)
    assert res.meta["passes"] == (1 if cache_mb else 2)
    assert res.meta["kept_per_unit"] == 20 * 64 - int(np.floor((20 * 64 - 1) * 0.98))  # bounded top-k buffer
    np.testing.assert_allclose(res.iou, iou, atol=1e-12)
    best = iou.argmax(1)
    assert res.table.label.tolist() == [b if iou[k, b] > 0 else 0 for k, b in enumerate(best)]
    fixed = dissect(model, "1", probe, cfg, thresholds=T, progress=False)
    np.testing.assert_allclose(fixed.iou, iou, atol=1e-12)


def test_decoding_in_worker_processes_gives_the_same_dissection(probe):
    """The paper profile decodes the probe in DataLoader workers: same thresholds and IoUs."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 5, 3, stride=2, padding=1), nn.ReLU())
    here = dissect(model, "1", probe, DissectConfig(quantile=0.02, batch_size=7), progress=False)
    workers = dissect(model, "1", probe, DissectConfig(quantile=0.02, batch_size=7, num_workers=2), progress=False)
    assert np.array_equal(workers.thresholds, here.thresholds)
    np.testing.assert_array_equal(workers.iou, here.iou)


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
