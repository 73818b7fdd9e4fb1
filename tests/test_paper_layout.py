"""The paper-shaped synthetic set (``consis data paper-layout``) and the paper code path on it.

The layout is checked with an independent minimal decoder (csv + PIL); the set is then
read by the project's own readers and run through the ``paper`` profile's code path at
tiny size: torchvision's exact ResNet-18 (random weights), an Eq. 6 fit, the
consistency metric (Eq. 1-3) and network dissection; AlexNet and VGG-16 dissect the probe.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from consis_lib.cli import main
from consis_lib.data.classes import classes_for_profile
from consis_lib.data.paper_layout import PaperLayout, PaperLayoutConfig, generate_paper_layout, part_maps
from consis_lib.errors import ConsisError
from consis_lib.outputs import MARKER, write_marker

CATS = ("color", "object", "part", "material", "scene", "texture")
CFG = PaperLayoutConfig(classes=3, per_class=2, probe_images=6, seed=3)
PARTS = ({"upper-half", "lower-half"}, {"rim", "interior"})


@pytest.fixture(scope="module")
def sprite_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sprite-cache")


@pytest.fixture(scope="module")
def layout(tmp_path_factory, sprite_cache, wordnet) -> PaperLayout:
    """The set, written by the command line."""
    out = tmp_path_factory.mktemp("paper") / "set"
    args = ["--classes", "3", "--per-class", "2", "--probe-images", "6", "--seed", "3"]
    assert main(["data", "paper-layout", "--out", str(out), "--cache", str(sprite_cache), *args]) == 0
    return PaperLayout(out)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _decode(path: Path) -> np.ndarray:
    """Label number = R + 256 * G; B must be 0."""
    with Image.open(path) as im:
        assert im.format == "PNG"
        rgb = np.asarray(im.convert("RGB")).astype(np.int64)
    assert not rgb[..., 2].any()
    return rgb[..., 0] + 256 * rgb[..., 1]


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MARKER
    }


# ----------------------------------------------------------------------------- ImageNet layout


def test_imagenet_layout_is_jpegs_of_varied_sizes_in_wnid_folders(layout, wordnet):
    classes = classes_for_profile("full", CFG.classes)
    wnids = sorted(c.wnid for c in classes)
    val_numbers = []
    sizes = set()
    for split in ("train", "val"):
        assert sorted(p.name for p in (layout.imagenet / split).iterdir()) == wnids
        for c in classes:
            assert wordnet.synset_from_pos_and_offset("n", int(c.wnid[1:])).name() == c.synset_name
            files = sorted((layout.imagenet / split / c.wnid).iterdir())
            assert len(files) == CFG.per_class
            for f in files:
                if split == "train":
                    assert re.fullmatch(rf"{c.wnid}_\d+\.JPEG", f.name)
                else:
                    val_numbers.append(int(re.fullmatch(r"ILSVRC2012_val_(\d{8})\.JPEG", f.name).group(1)))
                with Image.open(f) as im:
                    assert im.format == "JPEG" and im.mode in ("RGB", "L")
                    assert 168 <= min(im.size) <= 288 and max(im.size) <= 1.5 * min(im.size) + 1
                    sizes.add(im.size)
    assert sorted(val_numbers) == list(range(1, CFG.classes * CFG.per_class + 1))
    assert len(sizes) > 1 and any(w != h for w, h in sizes)
    meta = json.loads((layout.root / "layout.json").read_text())
    assert [c["wnid"] for c in meta["classes"]] == [c.wnid for c in classes]
    assert meta["config"] == dataclasses.asdict(CFG) and (meta["probe_size"], meta["mask_size"]) == (224, 112)


def test_imagenet_layout_reads_with_wnid_image_folder(layout, wordnet):
    from consis_lib.data.imagefolder import WnidImageFolder

    classes = sorted(classes_for_profile("full", CFG.classes), key=lambda c: c.wnid)
    for split in ("train", "val"):
        ds = WnidImageFolder(layout.imagenet, split, image_size=224)
        assert ds.wnids == [c.wnid for c in classes] and len(ds) == CFG.classes * CFG.per_class
        assert ds.names == [wordnet.synset(c.synset_name).lemma_names()[0].replace("_", " ") for c in classes]
        ds.verify()
        x, y = ds[len(ds) - 1]
        assert x.shape == (3, 224, 224) and x.dtype == torch.float32
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and y == len(classes) - 1


# ----------------------------------------------------------------------------- Broden layout


def test_broden_index_has_paper_geometry_all_categories_and_multi_value_cells(layout):
    root = layout.broden
    with open(root / "index.csv", newline="") as fh:
        assert next(csv.reader(fh)) == ["image", "split", "ih", "iw", "sh", "sw", *CATS]
    rows = _rows(root / "index.csv")
    assert len(rows) == CFG.probe_images and {r["split"] for r in rows} == {"train", "val"}
    present = set()
    multi = 0
    for r in rows:
        assert (r["ih"], r["iw"], r["sh"], r["sw"]) == ("224", "224", "112", "112")
        with Image.open(root / "images" / r["image"]) as im:
            assert im.format == "JPEG" and im.size == (224, 224)
        for cat in CATS:
            tokens = [t for t in r[cat].split(";") if t]
            present |= {cat} if tokens else set()
            multi += len(tokens) > 1
            for t in tokens:
                if cat == "scene":
                    assert t.isdigit()
                else:
                    assert _decode(root / "images" / t).shape == (112, 112)
        parts = r["part"].split(";")
        assert [p.rsplit("_", 1)[-1] for p in parts] == ["1.png", "2.png"]
    assert present == set(CATS)
    assert multi >= CFG.probe_images  # every image has objects, so two part levels


def test_label_tables_and_coverage_match_the_masks(layout):
    root = layout.broden
    labels = {int(r["number"]): r for r in _rows(root / "label.csv")}
    category_of = {n: r["category"].split("(")[0] for n, r in labels.items()}
    freq: dict[int, int] = defaultdict(int)
    cover: dict[int, float] = defaultdict(float)
    images: dict[str, int] = defaultdict(int)
    for r in _rows(root / "index.csv"):
        for cat in CATS:
            tokens = [t for t in r[cat].split(";") if t]
            images[cat] += bool(tokens)
            seen: set[int] = set()
            for level, t in enumerate(tokens):
                if t.isdigit():
                    n = int(t)
                    seen.add(n)
                    cover[n] += 1.0
                    continue
                mask = _decode(root / "images" / t)
                numbers, counts = np.unique(mask[mask > 0], return_counts=True)
                if cat == "part":
                    assert {labels[int(n)]["name"] for n in numbers} <= PARTS[level]
                for n, k in zip(numbers.tolist(), counts.tolist()):
                    assert category_of[n] == cat
                    seen.add(n)
                    cover[n] += k / mask.size
            for n in seen:
                freq[n] += 1
    for n, r in labels.items():
        assert int(r["frequency"]) == freq[n] and r["category"] == f"{category_of[n]}({freq[n]})"
        assert float(r["coverage"]) == pytest.approx(cover[n], abs=6e-5)
    for cat in CATS:
        codes = _rows(root / f"c_{cat}.csv")
        assert codes[0] == {"code": "0", "number": "0", "name": "-", "frequency": "0", "coverage": "0.0000"}
        numbers = [n for n in labels if category_of[n] == cat]
        assert [int(c["number"]) for c in codes[1:]] == numbers
        assert [int(c["code"]) for c in codes[1:]] == list(range(1, len(numbers) + 1))
        for c in codes[1:]:
            n = int(c["number"])
            assert c["name"] == labels[n]["name"] and int(c["frequency"]) == freq[n]
            assert float(c["coverage"]) == pytest.approx(cover[n], abs=6e-5)
        row = next(r for r in _rows(root / "category.csv") if r["name"] == cat)
        assert (int(row["first"]), int(row["last"]), int(row["count"])) == (min(numbers), max(numbers), len(numbers))
        assert int(row["frequency"]) == images[cat] > 0
    assert {labels[n]["name"] for n in labels if category_of[n] == "part"} == PARTS[0] | PARTS[1]
    assert len({r["name"] for r in labels.values()}) == len(labels)


def test_broden_reader_reads_the_probe(layout):
    from consis_lib.data.broden import Broden

    probe = Broden(layout.broden, image_size=224)
    assert len(probe) == CFG.probe_images and set(probe.categories) == set(CATS)
    rows = _rows(layout.broden / "index.csv")
    for i, r in enumerate(rows):
        item = probe[i]
        assert item.image.shape == (3, 224, 224)
        assert item.pixel_labels["part"].shape == (2, 112, 112)
        assert item.pixel_labels["color"].shape == (1, 112, 112) and (item.pixel_labels["color"] > 0).all()
        assert item.image_labels["scene"] == ([int(r["scene"])] if r["scene"] else [])
    assert len(Broden(layout.broden, split="val")) == sum(r["split"] == "val" for r in rows)


def test_part_maps_known_answer():
    objects = np.zeros((7, 6), int)
    objects[0:4, 0:3] = 1  # rows 0-3: halves 0-1 / 2-3
    objects[2:7, 4:6] = 2  # rows 2-6: halves 2-4 / 5-6 (the middle row goes up)
    level1, level2 = part_maps(objects, rim=1)
    expect1 = np.zeros((7, 6), int)
    expect1[0:2, 0:3], expect1[2:4, 0:3] = 1, 2
    expect1[2:5, 4:6], expect1[5:7, 4:6] = 1, 2
    assert level1.tolist() == expect1.tolist()
    expect2 = np.where(objects > 0, 1, 0)
    expect2[1:3, 1] = 2  # the only pixels of object 1 whose four neighbours are all object 1
    assert level2.tolist() == expect2.tolist()


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path, sprite_cache):
    tiny = PaperLayoutConfig(classes=2, per_class=1, val_per_class=2, probe_images=3, seed=0)
    a = _digest(generate_paper_layout(tmp_path / "a", tiny, sprite_cache).root)
    b = _digest(generate_paper_layout(tmp_path / "b", tiny, sprite_cache).root)
    c = _digest(generate_paper_layout(tmp_path / "c", dataclasses.replace(tiny, seed=1), sprite_cache).root)
    assert a == b
    images = [k for k in a if k.endswith((".JPEG", ".jpg"))]
    assert len(images) == 2 * 1 + 2 * 2 + 3 and all(a[k] != c.get(k) for k in images)
    assert sum(k.startswith("imagenet/val/") for k in a) == 4
    generate_paper_layout(tmp_path / "a", tiny, sprite_cache)  # its own output is replaced
    assert _digest(tmp_path / "a") == a


def _marked_by_other_writer(w: Path) -> str:
    out = w / "embedded"
    out.mkdir()
    (out / "classes.json").write_text("{}")
    write_marker(out, "embedded", "consis_lib.data.embedded (consis 0.1.0)")
    return str(out)


def _user_folder(w: Path) -> str:
    (w / "mine").mkdir()
    (w / "mine" / "notes.txt").write_text("keep me")
    return str(w / "mine")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--classes", "1"], "--classes 1: pass 2 to"),
        (["--per-class", "0"], "--per-class 0: pass 1 or more"),
        (["--val-per-class", "0"], "--val-per-class 0: pass 1 or more"),
        (["--probe-images", "2"], "--probe-images 2: pass 3 or more"),
        (["--seed", "-1"], "--seed -1 is negative"),
        (["--out", _user_folder], "is not empty but was not written by consis"),
        (["--out", _marked_by_other_writer], "holds a consis embedded output, not paper-layout"),
    ],
)
def test_cli_refuses_bad_arguments_before_any_work(args, fragment, tmp_path, capsys):
    args = [a(tmp_path) if callable(a) else a for a in args]
    out = args[args.index("--out") + 1] if "--out" in args else str(tmp_path / "new")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    rc = main(["data", "paper-layout", *(["--out", out] if "--out" not in args else []), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and fragment in err and len(err.splitlines()) == 1
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_library_refuses_a_bad_config(tmp_path):
    with pytest.raises(ConsisError, match="--probe-images 0"):
        generate_paper_layout(tmp_path / "x", PaperLayoutConfig(probe_images=0))
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------- the paper code path


def _tiny_paper_profile(layout: PaperLayout):
    """The ``paper`` profile on the generated folders, at random weights and tiny size."""
    from consis_lib.config import get_profile

    p = get_profile("paper")
    return dataclasses.replace(
        p,
        data=dataclasses.replace(p.data, root=str(layout.imagenet), probe_root=str(layout.broden)),
        model=dataclasses.replace(p.model, pretrained=False),
        train=dataclasses.replace(
            p.train, epochs=1, batch_size=3, num_workers=0, val_images=1, finetune_from_normal=False
        ),
        metric=dataclasses.replace(p.metric, min_top=3, min_activating=2, bootstrap=20, sweep_bootstrap=5),
    )


def _expected_consistency(acts: np.ndarray, labels: np.ndarray, A: np.ndarray, m: int, min_activating: int) -> np.ndarray:
    """Eq. 1-3 from scratch: the label histogram of each unit's top-m images with a_n > 0, p^T A p."""
    out = np.full(acts.shape[1], np.nan)
    for n in range(acts.shape[1]):
        top = np.argsort(-acts[:, n], kind="stable")[:m]
        top = top[acts[top, n] > 0]
        if len(top) >= min_activating:
            p = np.bincount(labels[top], minlength=A.shape[0]) / len(top)
            out[n] = p @ A @ p
    return out


@pytest.mark.timeout(300)
def test_paper_code_path_runs_on_the_generated_set(layout, tmp_path, wordnet):
    from consis_lib.context import ArchContext
    from consis_lib.train import fit

    profile = _tiny_paper_profile(layout)
    assert profile.model.scale == "paper" and profile.data.image_size == 224 and profile.data.source == "folder"
    ctx = ArchContext(profile, "resnet18", tmp_path / "runs", device="cpu")
    adv = fit(profile, ctx.paths.checkpoint_dir("resnet18", "adv"), arch="resnet18", adv=True, device="cpu", progress=False)
    reference = torchvision.models.resnet18(num_classes=CFG.classes)
    assert [(k, v.shape) for k, v in adv.model.state_dict().items()] == [
        (k, v.shape) for k, v in reference.state_dict().items()
    ]
    entry = adv.history[-1]  # one epoch of Eq. 6: two steps of three images
    assert entry["epoch"] == 1 and 0.0 <= entry["val_acc"] <= 1.0 and 0.0 <= entry["val_fgsm_acc"] <= 1.0
    assert all(math.isfinite(entry[k]) for k in ("ce_clean", "ce_adv", "consistent", "loss"))

    report = ctx.consistency("adv")
    assert report.num_units == 512 and report.num_images == CFG.classes * CFG.per_class
    acts = ctx.activations("adv")
    labels = acts.labels.numpy()
    names = [c.synset_name for c in sorted(classes_for_profile("full", CFG.classes), key=lambda c: c.wnid)]
    d = np.array([[wordnet.synset(a).shortest_path_distance(wordnet.synset(b)) for b in names] for a in names], float)
    A = np.exp(-(d**2) / (2 * profile.metric.sigma**2))
    for got, a in ((report.consis, acts.acts), (report.consis_adv, acts.adv_acts)):
        want = _expected_consistency(a.numpy(), labels, A, 3, 2)
        np.testing.assert_allclose(np.asarray(got, float), want, rtol=1e-9, equal_nan=True)
        assert np.isfinite(want).any() and np.nanmin(want) >= 1 / CFG.classes - 1e-9 and np.nanmax(want) <= 1 + 1e-9

    res = ctx.dissect("adv")
    assert res.layer == "layer4" and res.num_images == CFG.probe_images
    assert res.table["unit"].tolist() == list(range(512)) and res.thresholds.shape == (512,)
    assert np.isfinite(res.thresholds).all() and ((res.iou >= 0) & (res.iou <= 1)).all()
    assert (res.table["aligned"] == (res.table["iou"] > profile.dissect.iou_threshold)).all()
    assert {c for c in res.label_categories if c} == set(CATS)
    assert not [n for n in res.notes if "no labels" in n]  # every category's labels reached the tally
    assert set(res.ratios) == set(CATS) and sum(res.ratios.values()) <= 1.0


@pytest.mark.parametrize("arch, units", [("alexnet", 256), ("vgg16", 512)])
def test_other_paper_architectures_dissect_the_probe(arch, units, layout):
    from consis_lib.config import DissectConfig
    from consis_lib.data.broden import Broden
    from consis_lib.dissect import dissect
    from consis_lib.models import build_model, metric_layer

    torch.manual_seed(0)
    model = build_model(arch, CFG.classes, scale="paper")
    probe = Broden(layout.broden, image_size=224, max_images=3)  # a scene, a material and a texture image
    res = dissect(model, metric_layer(arch, "paper"), probe, DissectConfig(), progress=False)
    assert res.table["unit"].tolist() == list(range(units)) and np.isfinite(res.thresholds).all()
    assert not [n for n in res.notes if "no labels" in n]
