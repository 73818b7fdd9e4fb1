"""The embedded Broden-format probe, checked with an independent minimal decoder (csv + PIL)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from consis_lib.config import DataConfig
from consis_lib.data.classes import classes_for_profile
from consis_lib.data.compose import SCENES, TEXTURE_LABELS, compose
from consis_lib.data.embedded import SPRITE_SIZE, image_rng
from consis_lib.data.probe import COLOURS, COLOUR_NAMES, encode_labels, generate_probe, nearest_colour
from consis_lib.data.sprites import load_sprites
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


def test_index_header_and_label_tables(probe):
    root, _ = probe
    with open(root / "index.csv") as fh:
        assert fh.readline().strip() == "image,split,ih,iw,sh,sw,color,object,part,material,scene,texture"
    labels = _rows(root / "label.csv")
    assert list(labels[0]) == ["number", "name", "category", "frequency", "coverage", "syns"]
    numbers = [int(r["number"]) for r in labels]
    assert numbers == list(range(1, len(labels) + 1))
    colour = [r["name"] for r in labels if r["category"].startswith("color(")]
    assert colour == list(COLOUR_NAMES)
    cats = {r["name"]: r for r in _rows(root / "category.csv")}
    assert set(cats) == set(CATS)
    assert cats["part"]["count"] == "0"
    for cat in CATS:
        in_cat = [int(r["number"]) for r in labels if r["category"].split("(")[0] == cat]
        assert int(cats[cat]["count"]) == len(in_cat)
        if in_cat:
            assert (int(cats[cat]["first"]), int(cats[cat]["last"])) == (min(in_cat), max(in_cat))
        codes = _rows(root / f"c_{cat}.csv")
        assert codes[0]["code"] == "0" and codes[0]["name"] == "-"
        assert [int(r["number"]) for r in codes[1:]] == in_cat
    objects = {r["name"] for r in labels if r["category"].startswith("object(")}
    assert {"dog", "wolf", "cat", "tiger", "car", "cab", "banana", "apple"} == objects


def test_masks_match_the_sprites_and_colours_match_the_pixels(probe):
    root, cache = probe
    index = _rows(root / "index.csv")
    meta = {r["image"]: r for r in _rows(root / "probe.csv")}
    labels = {int(r["number"]): r for r in _rows(root / "label.csv")}
    names = {r["name"]: int(r["number"]) for r in labels.values()}
    classes = {c.wnid: c for c in classes_for_profile(CFG)}
    sprites = load_sprites([c.emoji for c in classes.values()], size=SPRITE_SIZE, cache_dir=cache)
    protos = np.array(list(COLOURS.values()), np.int64)
    freq: dict[int, int] = {}
    assert len(index) == CFG.probe_images
    for i, row in enumerate(index):
        assert row["part"] == ""
        assert (int(row["ih"]), int(row["iw"]), int(row["sh"]), int(row["sw"])) == (32, 32, 32, 32)
        img = np.asarray(Image.open(root / "images" / row["image"]).convert("RGB")).astype(np.int64)
        m = meta[row["image"]]
        cls = classes[m["wnid"]]
        # the generator's own sprite alpha, recomputed from the recorded style and seed
        comp = compose(sprites[m["style"]][cls.emoji], 32, image_rng(CFG.seed, "probe", cls.wnid, i))
        assert comp.background == m["background"]
        assert np.array_equal(comp.image, img)
        obj = _decode(root / "images" / row["object"])
        assert np.array_equal(obj > 0, comp.mask)
        assert set(np.unique(obj[obj > 0])) == {names[labels[int(obj.max())]["name"]]}
        assert labels[int(obj.max())]["syns"].split(";")[0].lower() == labels[int(obj.max())]["name"]
        # colour: every pixel labelled with its nearest prototype (independent argmin)
        col = _decode(root / "images" / row["color"])
        d = ((img[:, :, None, :] - protos[None, None]) ** 2).sum(-1)
        expect = np.vectorize(lambda k: names[COLOUR_NAMES[k]])(d.argmin(-1))
        assert np.array_equal(col, expect)
        # texture on the background only, for pattern backgrounds only
        tex_name = TEXTURE_LABELS.get(m["background"])
        if tex_name is None:
            assert row["texture"] == ""
        else:
            tex = _decode(root / "images" / row["texture"])
            assert np.array_equal(tex > 0, ~comp.mask)
            assert labels[int(tex.max())]["name"] == tex_name
        # scene only for scene-like backdrops, as an image-level label number
        if m["background"] in SCENES:
            assert labels[int(row["scene"])]["name"] == f"{m['background']}-s"
        else:
            assert row["scene"] == ""
        # material (water) only on the sea backdrop, never on the sprite
        if row["material"]:
            assert m["background"] == "sea"
            mat = _decode(root / "images" / row["material"])
            assert not (mat[comp.mask] > 0).any()
            assert labels[int(mat.max())]["name"] == "water"
        for cat in ("color", "object", "texture", "material"):
            if row[cat]:
                for n in np.unique(_decode(root / "images" / row[cat])):
                    if n:
                        freq[int(n)] = freq.get(int(n), 0) + 1
        if row["scene"]:
            freq[int(row["scene"])] = freq.get(int(row["scene"]), 0) + 1
    for n, r in labels.items():
        assert int(r["frequency"]) == freq.get(n, 0), r["name"]


def test_broden_reader_reads_the_probe(probe):
    from consis_lib.data.broden import Broden

    root, _ = probe
    ds = Broden(root)
    assert len(ds) == CFG.probe_images
    assert set(ds.categories) == set(CATS)
    assert ds.category_counts["color"] == 11 and ds.category_counts["object"] == 8
    index = _rows(root / "index.csv")
    for i in (0, 7):
        item = ds[i]
        assert tuple(item.image.shape) == (3, 32, 32)
        assert np.array_equal(item.pixel_labels["object"][0], _decode(root / "images" / index[i]["object"]))
        assert item.pixel_labels["part"].shape[0] == 0


def test_probe_is_deterministic_and_atomic(tmp_path, probe, monkeypatch):
    _, cache = probe
    cfg = DataConfig(profile="smoke", num_classes=8, probe_images=6, probe_size=24, seed=1)
    a = generate_probe(cfg, tmp_path / "a", cache)
    b = generate_probe(cfg, tmp_path / "b", cache)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)

    from consis_lib.data import probe as probe_mod

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(probe_mod, "save_png", boom)
    with pytest.raises(RuntimeError):
        generate_probe(cfg, tmp_path / "c", cache)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
    with pytest.raises(ConsisError, match="probe_images"):
        generate_probe(DataConfig(probe_images=0), tmp_path / "d", cache)
