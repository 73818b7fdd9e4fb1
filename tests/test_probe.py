"""The embedded Broden-format probe, checked with an independent minimal decoder (csv + PIL)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from consis_lib.config import DataConfig
from consis_lib.data.classes import class_by_wnid, classes_for_profile
from consis_lib.data.probe import (
    COLOURS,
    COLOUR_NAMES,
    PROBE_VERSION,
    generate_probe,
    nearest_colour,
    prepare_probe,
    probe_example,
)
from consis_lib.data.broden_write import encode_labels
from consis_lib.data.probe_scene import OBJECT_COUNT, OBJECT_SCALE, compose_probe, plan_objects
from consis_lib.data.textures import MATERIAL_NAMES, TEXTURE_NAMES, draw_colour, draw_material, draw_texture
from consis_lib.errors import ConsisError

CFG = DataConfig(profile="smoke", num_classes=8, probe_images=45, probe_size=32, seed=5)
CATS = ("color", "object", "part", "material", "scene", "texture")


@pytest.fixture(scope="module")
def probe(tmp_path_factory, wordnet) -> tuple[Path, Path]:
    cache = tmp_path_factory.mktemp("cache")
    return generate_probe(CFG, tmp_path_factory.mktemp("p") / "probe", cache), cache


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _decode(path: Path) -> np.ndarray:
    """Independent decoder: label number = R + 256 * G."""
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB")).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1]


def test_nearest_colour_known_answers():
    pixels = np.array(
        [[[255, 0, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0], [255, 255, 0], [0, 128, 0], [128, 128, 128]]],
        np.uint8,
    )
    names = [COLOUR_NAMES[i] for i in nearest_colour(pixels)[0]]
    assert names == ["red-c", "blue-c", "white-c", "black-c", "yellow-c", "green-c", "grey-c"]
    assert len(COLOUR_NAMES) == 11 and all(n.endswith("-c") for n in COLOUR_NAMES)


def test_encode_labels_known_answer():
    rgb = encode_labels(np.array([[0, 5, 300, 65535]]))
    assert rgb[0].tolist() == [[0, 0, 0], [5, 0, 0], [44, 1, 0], [255, 255, 0]]


def test_colour_fills_are_uniform_segments_of_their_name():
    for k, name in enumerate(COLOURS):
        canvas = draw_colour(name, 48, np.random.default_rng(k))
        assert (nearest_colour(np.round(canvas).astype(np.uint8)) == k).all(), name


@pytest.mark.parametrize("name", TEXTURE_NAMES + MATERIAL_NAMES)
def test_texture_and_material_fills_are_patterns(name):
    rng = np.random.default_rng(3)
    canvas = draw_material(name, 64, rng) if name in MATERIAL_NAMES else draw_texture(name, 64, rng)
    assert canvas.shape == (64, 64, 3) and canvas.dtype == np.float32
    assert 0 <= canvas.min() and canvas.max() <= 255
    # a pattern, not a flat fill: some channel varies across the canvas
    assert canvas.reshape(-1, 3).std(0).max() > 5, name
    with pytest.raises(ConsisError, match="unknown"):
        draw_texture("paisley", 8, rng)


def test_objects_are_small_and_regions_tile_the_image():
    sprite = np.zeros((64, 64, 4), np.uint8)
    sprite[..., :3], sprite[..., 3] = 200, 255  # an opaque square: alpha area = side^2
    for seed in range(20):
        rng = np.random.default_rng(seed)
        plan = plan_objects(rng, [[("s", sprite)]], [])
        assert OBJECT_COUNT[0] <= len(plan) <= OBJECT_COUNT[1]
        scene = compose_probe(plan, 64, rng)
        visible = [(scene.objects == k).mean() for k in range(1, len(plan) + 1)]
        # each object at most OBJECT_SCALE[1]^2 of the image (a few percent), hidden parts aside
        assert max(visible) <= OBJECT_SCALE[1] ** 2 * 1.05
        assert sum(visible) >= OBJECT_SCALE[0] ** 2 * 0.8
        if scene.backdrop:
            assert scene.fills == () and not scene.regions.any()
        else:
            assert set(np.unique(scene.regions)) == set(range(len(scene.fills)))


def test_index_header_and_label_tables(probe):
    root, _ = probe
    with open(root / "index.csv") as fh:
        assert fh.readline().strip() == "image,split,ih,iw,sh,sw,color,object,part,material,scene,texture"
    labels = _rows(root / "label.csv")
    assert list(labels[0]) == ["number", "name", "category", "frequency", "coverage", "syns"]
    numbers = [int(r["number"]) for r in labels]
    assert numbers == list(range(1, len(labels) + 1))
    by_cat = {c: [r["name"] for r in labels if r["category"].split("(")[0] == c] for c in CATS}
    assert by_cat["color"] == list(COLOUR_NAMES)
    assert by_cat["texture"] == list(TEXTURE_NAMES) and by_cat["material"] == list(MATERIAL_NAMES)
    assert by_cat["scene"] == ["sky-s", "sea-s", "grass-s"] and by_cat["part"] == []
    cats = {r["name"]: r for r in _rows(root / "category.csv")}
    assert set(cats) == set(CATS)
    assert cats["part"]["count"] == "0" and cats["part"]["frequency"] == "0"
    for cat in CATS:
        in_cat = [int(r["number"]) for r in labels if r["category"].split("(")[0] == cat]
        assert int(cats[cat]["count"]) == len(in_cat)
        if in_cat:
            assert (int(cats[cat]["first"]), int(cats[cat]["last"])) == (min(in_cat), max(in_cat))
        codes = _rows(root / f"c_{cat}.csv")
        assert codes[0]["code"] == "0" and codes[0]["name"] == "-"
        assert [int(r["number"]) for r in codes[1:]] == in_cat
        if cat != "part":  # every other category is labelled somewhere in the probe
            assert int(cats[cat]["frequency"]) > 0, cat
    # objects: some of the profile's classes and some other curated classes, each occurring
    objects = set(by_cat["object"])
    profile = {"dog", "wolf", "cat", "tiger", "car", "cab", "banana", "apple"}
    assert objects & profile and objects - profile
    assert all(int(r["frequency"]) > 0 for r in labels if r["category"].startswith("object("))


def test_masks_match_what_each_image_shows(probe):
    root, _ = probe
    index = _rows(root / "index.csv")
    meta = {r["image"]: r for r in _rows(root / "probe.csv")}
    labels = {int(r["number"]): r for r in _rows(root / "label.csv")}
    names = {r["name"]: int(r["number"]) for r in labels.values()}
    protos = np.array(list(COLOURS.values()), np.int64)
    profile = {c.wnid for c in classes_for_profile(CFG)}
    freq: dict[int, int] = {}
    styles_of: dict[bool, set[str]] = {True: set(), False: set()}
    assert len(index) == CFG.probe_images
    for row in index:
        assert row["part"] == ""
        assert (int(row["ih"]), int(row["iw"]), int(row["sh"]), int(row["sw"])) == (32, 32, 32, 32)
        img = np.asarray(Image.open(root / "images" / row["image"]).convert("RGB")).astype(np.int64)
        m = meta[row["image"]]
        # colour: every pixel labelled with its nearest prototype (independent argmin)
        col = _decode(root / "images" / row["color"])
        d = ((img[:, :, None, :] - protos[None, None]) ** 2).sum(-1)
        assert np.array_equal(col, np.vectorize(lambda k: names[COLOUR_NAMES[k]])(d.argmin(-1)))
        # objects: the lemmas of the recorded classes, nothing else
        drawn = [o.split("/") for o in m["objects"].split(";")]
        for wnid, style in drawn:
            styles_of[wnid in profile].add(style)
        obj = _decode(root / "images" / row["object"])
        shown = {labels[int(n)]["syns"].split(";")[0].lower() for n in np.unique(obj) if n}
        assert shown <= {wn_lemma(w) for w, _ in drawn} and shown
        # texture and material: the recorded region fills, never under an object
        fills = [f.split(":") for f in m["regions"].split(";")] if m["regions"] else []
        for cat in ("texture", "material"):
            expected = {n for k, n in fills if k == cat} | ({"water"} if cat == "material" and m["backdrop"] == "sea" else set())
            if not row[cat]:
                continue
            lab = _decode(root / "images" / row[cat])
            assert not (lab[obj > 0] > 0).any()
            assert {labels[int(n)]["name"] for n in np.unique(lab) if n} <= expected
        # scene: the backdrop as an image-level label number, and then no region fills
        if m["backdrop"]:
            assert labels[int(row["scene"])]["name"] == f"{m['backdrop']}-s" and not fills
            assert row["texture"] == ""
        else:
            assert row["scene"] == "" and 1 <= len(fills) <= 3
        for cat in ("color", "object", "texture", "material"):
            if row[cat]:
                for n in np.unique(_decode(root / "images" / row[cat])):
                    if n:
                        freq[int(n)] = freq.get(int(n), 0) + 1
        if row["scene"]:
            freq[int(row["scene"])] = freq.get(int(row["scene"]), 0) + 1
    for n, r in labels.items():
        assert int(r["frequency"]) == freq.get(n, 0), r["name"]
    # classes outside the profile come in the colour styles only
    assert styles_of[False] and styles_of[False] <= {"twemoji", "openmoji", "noto"}


def wn_lemma(wnid: str) -> str:
    from consis_lib.wordnet import load_wordnet

    return load_wordnet().synset(class_by_wnid(wnid).synset_name).lemma_names()[0].lower()


def test_broden_reader_reads_the_probe(probe):
    from consis_lib.data.broden import Broden

    root, _ = probe
    ds = Broden(root)
    assert len(ds) == CFG.probe_images
    assert set(ds.categories) == set(CATS)
    assert ds.category_counts["color"] == 11 and ds.category_counts["texture"] == len(TEXTURE_NAMES)
    index = _rows(root / "index.csv")
    for i in (0, 7):
        item = ds[i]
        assert tuple(item.image.shape) == (3, 32, 32)
        assert np.array_equal(item.pixel_labels["object"][0], _decode(root / "images" / index[i]["object"]))
        assert item.pixel_labels["part"].shape[0] == 0


def test_probe_example_is_the_written_image_and_masks(probe):
    root, cache = probe
    index = _rows(root / "index.csv")
    labels = {int(r["number"]): r["name"] for r in _rows(root / "label.csv")}
    for i in (0, 3):
        ex = probe_example(CFG, i, cache)
        row = index[i]
        assert np.array_equal(ex.image, np.asarray(Image.open(root / "images" / row["image"]).convert("RGB")))
        for cat in ("color", "object", "material", "texture"):
            written = _decode(root / "images" / row[cat]) if row[cat] else np.zeros((32, 32), np.int64)
            assert np.array_equal(ex.masks[cat], written), cat
        assert not ex.masks["part"].any()
        assert ex.scene == (labels[int(row["scene"])] if row["scene"] else "")
        assert all(ex.names[n] == name for n, name in labels.items())
    with pytest.raises(ConsisError, match="index"):
        probe_example(CFG, CFG.probe_images, cache)


def test_probe_example_figure(probe):
    from consis_lib.data.probe_figure import label_colours, probe_example_figure

    _, cache = probe
    rgb, legend = label_colours(np.array([[0, 2], [2, 7]]), {2: "red-c", 7: "striped"})
    assert rgb[0, 0].tolist() == [1.0, 1.0, 1.0]
    assert np.allclose(rgb[0, 1], np.array([210, 30, 30]) / 255) and list(legend) == ["red-c", "striped"]
    fig = probe_example_figure(probe_example(CFG, 0, cache))
    assert len(fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes[1:]] == ["color", "object", "material", "texture", "part"]
    assert any("no part labels" in t.get_text() for t in fig.axes[-1].texts)


def test_probe_is_deterministic_and_atomic(tmp_path, probe, monkeypatch):
    _, cache = probe
    cfg = DataConfig(profile="smoke", num_classes=8, probe_images=6, probe_size=24, seed=1)
    a = generate_probe(cfg, tmp_path / "a", cache)
    b = generate_probe(cfg, tmp_path / "b", cache)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    other = generate_probe(DataConfig(profile="smoke", num_classes=8, probe_images=6, probe_size=24, seed=2), tmp_path / "o", cache)
    assert (a / "images/probe/000000.png").read_bytes() != (other / "images/probe/000000.png").read_bytes()

    from consis_lib.data import probe as probe_mod

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(probe_mod, "save_png", boom)
    with pytest.raises(RuntimeError):
        generate_probe(cfg, tmp_path / "c", cache)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "o"]
    with pytest.raises(ConsisError, match="probe_images"):
        generate_probe(DataConfig(probe_images=0), tmp_path / "d", cache)


def test_prepare_probe_keys_the_folder_by_generator_version(tmp_path, probe):
    _, cache = probe
    cfg = DataConfig(profile="smoke", num_classes=8, probe_images=2, probe_size=16, seed=1)
    root = prepare_probe(cfg, cache)
    assert root.parent == cache and root.name.startswith(f"probe-v{PROBE_VERSION}-")
    assert prepare_probe(cfg, cache) == root
