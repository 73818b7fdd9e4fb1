"""Readers: WnidImageFolder (embedded and ImageNet layout) and the Broden reader.

Every dataset here is written by the test itself, so the expected values are known.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from consis_lib.data.broden import (
    CATEGORIES,
    Broden,
    collate_broden,
    decode_label_png,
)
from consis_lib.data.broden_write import encode_label_png
from consis_lib.data.imagefolder import WnidImageFolder
from consis_lib.errors import ConsisError

DOG, CAT, CAR = "n02084071", "n02121620", "n02958343"


def _solid(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (8, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path)


# --------------------------------------------------------------------------- ImageFolder


@pytest.fixture()
def tiny_folder(tmp_path: Path) -> Path:
    root = tmp_path / "embedded"
    colours = {DOG: (255, 0, 0), CAT: (0, 255, 0), CAR: (0, 0, 255)}
    for wnid, rgb in colours.items():
        for k in range(2):
            _solid(root / "train" / wnid / f"{k:03d}.png", rgb)
        _solid(root / "val" / wnid / "000.png", rgb)
    (root / "train" / DOG / "notes.txt").write_text("not an image; ignored")
    (root / "classes.json").write_text(
        json.dumps([{"wnid": DOG, "name": "dog", "definition": "", "group": "mammals"}])
    )
    return root


def test_imagefolder_reads_labels_and_pixels(wordnet, tiny_folder):
    ds = WnidImageFolder(tiny_folder, "train")
    assert ds.wnids == sorted([DOG, CAT, CAR])  # n02084071 < n02121620 < n02958343
    assert len(ds) == 6 and ds.targets == [0, 0, 1, 1, 2, 2]
    assert ds.names == ["dog", "cat", "car"]  # dog from classes.json, the others from lemmas
    assert [p.name for p, _ in ds.samples[:2]] == ["000.png", "001.png"]
    for i, expected in [(0, [1.0, 0.0, 0.0]), (2, [0.0, 1.0, 0.0]), (5, [0.0, 0.0, 1.0])]:
        x, y = ds[i]
        assert x.dtype == torch.float32 and x.shape == (3, 8, 8)
        assert y == ds.targets[i]
        assert torch.equal(x[:, 3, 3], torch.tensor(expected))
    assert len(WnidImageFolder(tiny_folder, "val")) == 3


def test_imagefolder_transform_and_loader(wordnet, tiny_folder):
    ds = WnidImageFolder(tiny_folder, "train", image_size=4, transform=lambda x: 1.0 - x)
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    xb, yb = next(iter(loader))
    assert xb.shape == (4, 3, 4, 4) and yb.tolist() == [0, 0, 1, 1]
    assert torch.equal(xb[0, :, 0, 0], torch.tensor([0.0, 1.0, 1.0]))  # 1 - red


def test_imagefolder_center_crop_known_answer(wordnet, tmp_path):
    # A 6x4 (w x h) image whose column j has grey level 10*j: with image_size=4 the
    # shorter side is already 4, so the crop keeps columns 1..4.
    arr = np.repeat(np.repeat((np.arange(6, dtype=np.uint8) * 10)[None, :, None], 4, 0), 3, 2)
    path = tmp_path / "r" / "val" / DOG / "a.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(arr).save(path)
    x, _ = WnidImageFolder(tmp_path / "r", "val", image_size=4)[0]
    assert x.shape == (3, 4, 4)
    assert torch.allclose(x[0, 0], torch.tensor([10.0, 20.0, 30.0, 40.0]) / 255)


def test_imagefolder_imagenet_layout_224(wordnet, tmp_path):
    """Real ImageNet layout: .JPEG files of varied size, resized and cropped to 224."""
    root = tmp_path / "imagenet"
    rng = np.random.default_rng(0)
    for wnid, size in [(DOG, (320, 240)), (CAT, (224, 300)), (CAR, (224, 224))]:
        d = root / "val" / wnid
        d.mkdir(parents=True)
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(arr).save(d / f"ILSVRC2012_val_{wnid}.JPEG", quality=90)
    gray = root / "val" / CAR / "gray.jpg"
    Image.new("L", (224, 224), 128).save(gray)  # ImageNet has greyscale files too
    ds = WnidImageFolder(root, "val", image_size=224)
    assert len(ds) == 4 and ds.names == ["dog", "cat", "car"]
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (3, 224, 224) and 0.0 <= x.min() and x.max() <= 1.0
    x, _ = ds[[p for p, _ in ds.samples].index(gray)]
    assert torch.allclose(x, torch.full_like(x, 128 / 255), atol=2 / 255)
    ds.verify()


def test_imagefolder_missing_folder(tmp_path):
    with pytest.raises(ConsisError, match="does not exist.*consis data embedded") as info:
        WnidImageFolder(tmp_path / "nowhere", "train")
    assert str(tmp_path / "nowhere" / "train") in str(info.value)


def test_imagefolder_folder_not_a_wnid(wordnet, tiny_folder):
    (tiny_folder / "train" / "dogs").mkdir()
    with pytest.raises(ConsisError, match="not a WordNet ID") as info:
        WnidImageFolder(tiny_folder, "train")
    assert "dogs" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("wnid", "match"),
    [("v01234567", "not a noun"), ("n99999999", "not a WordNet 3.0 noun")],
)
def test_imagefolder_wnid_not_a_noun(wordnet, tiny_folder, wnid, match):
    _solid(tiny_folder / "train" / wnid / "0.png", (1, 2, 3))
    with pytest.raises(ConsisError, match=match) as info:
        WnidImageFolder(tiny_folder, "train")
    assert wnid in str(info.value)


def test_imagefolder_empty_class_and_flat_folder(wordnet, tmp_path):
    (tmp_path / "a" / "val" / DOG).mkdir(parents=True)
    with pytest.raises(ConsisError, match="no .png/.jpg/.jpeg images"):
        WnidImageFolder(tmp_path / "a", "val")
    _solid(tmp_path / "b" / "val" / "ILSVRC2012_val_00000001.JPEG", (0, 0, 0))
    with pytest.raises(ConsisError, match="no class folders"):
        WnidImageFolder(tmp_path / "b", "val")


def test_imagefolder_corrupt_image(wordnet, tiny_folder):
    bad = tiny_folder / "train" / CAT / "002.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    ds = WnidImageFolder(tiny_folder, "train")
    idx = [p for p, _ in ds.samples].index(bad)
    ds[idx - 1]  # its neighbours still load
    with pytest.raises(ConsisError, match="corrupt") as info:
        ds[idx]
    assert str(bad) in str(info.value)
    with pytest.raises(ConsisError, match="002.png"):
        ds.verify()


# --------------------------------------------------------------------------- Broden

# label numbers: colours 1-2, objects 3-4, a texture 5, a scene 6 and an object 300
# (> 255, so it needs the green channel: 300 = 44 + 256 * 1).
LABELS = [
    (1, "red-c", "color(2)"),
    (2, "blue-c", "color(1)"),
    (3, "dog", "object(2)"),
    (4, "car", "object(1);part(1)"),
    (5, "striped", "texture(1)"),
    (6, "street", "scene(1)"),
    (300, "bus", "object(1)"),
]


def _masks(rng: np.random.Generator, h: int, w: int) -> dict[str, list[np.ndarray]]:
    colour = rng.choice([0, 1, 2], size=(h, w))
    obj = np.zeros((h, w), dtype=np.int64)
    obj[1:4, 2:6] = 3
    obj[5:, :3] = 300
    part = np.zeros((h, w), dtype=np.int64)
    part[0, :] = 4
    return {"color": [colour], "object": [obj], "part": [part, (part > 0) * 4]}


@pytest.fixture()
def tiny_broden(tmp_path: Path) -> tuple[Path, list[dict[str, list[np.ndarray]]]]:
    """Three images (two train, one val), masks at 6x7, images at 12x14."""
    root = tmp_path / "broden"
    (root / "images" / "set").mkdir(parents=True)
    rng = np.random.default_rng(1)
    rows, truth = [], []
    for k in range(3):
        img = rng.integers(0, 256, (12, 14, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / "images" / "set" / f"im{k}.jpg")
        masks = _masks(rng, 6, 7)
        if k == 2:
            masks = {"color": masks["color"]}  # no objects or parts in this one
        cells = {c: "" for c in CATEGORIES}
        for cat, planes in masks.items():
            names = []
            for j, plane in enumerate(planes):
                name = f"set/im{k}_{cat}_{j}.png"
                encode_label_png(plane).save(root / "images" / name)
                names.append(name)
            cells[cat] = ";".join(names)
        cells["texture"] = "5" if k != 1 else ""
        cells["scene"] = "6" if k == 0 else ""
        truth.append(masks)
        split = "val" if k == 2 else "train"
        rows.append(f"set/im{k}.jpg,{split},12,14,6,7," + ",".join(cells[c] for c in CATEGORIES))
    (root / "index.csv").write_text(
        "image,split,ih,iw,sh,sw," + ",".join(CATEGORIES) + "\n" + "\n".join(rows) + "\n"
    )
    (root / "category.csv").write_text(
        "name,first,last,count,frequency\n"
        "color,1,2,2,3\nobject,3,300,3,2\npart,4,4,1,2\ntexture,5,5,1,2\nscene,6,6,1,1\n"
    )
    (root / "label.csv").write_text(
        "number,name,category,frequency,coverage,syns\n"
        + "\n".join(f'{n},{name},"{cat}",1,0.1,' for n, name, cat in LABELS)
        + "\n"
    )
    (root / "c_color.csv").write_text(
        "code,number,name,frequency,coverage\n0,0,-,0,0\n1,1,red-c,3,0.3\n2,2,blue-c,3,0.3\n"
    )
    return root, truth


def test_label_png_round_trip_above_255(tmp_path):
    labels = np.array([[0, 1, 255], [256, 300, 65535]])
    encode_label_png(labels).save(tmp_path / "m.png")
    rgb = np.asarray(Image.open(tmp_path / "m.png"))
    assert rgb[1, 1].tolist() == [44, 1, 0]  # 300 = 44 + 256 * 1, written by hand
    assert decode_label_png(tmp_path / "m.png").tolist() == labels.tolist()


def test_broden_round_trip_mask_by_mask(tiny_broden):
    root, truth = tiny_broden
    probe = Broden(root)
    assert len(probe) == 3
    assert probe.categories == ("color", "object", "part", "scene", "texture")
    assert probe.category_counts == {"color": 2, "object": 3, "part": 1, "scene": 1, "texture": 1}
    assert probe.labels.columns.tolist() == ["number", "name", "category"]
    row = probe.labels.set_index("number")
    assert row.loc[300, "name"] == "bus" and row.loc[4, "category"] == "object"
    assert probe.label_name(1) == "red-c"
    assert probe.category_codes["color"]["number"].tolist() == [0, 1, 2]
    for k in range(3):
        item = probe[k]
        assert item.index == k and item.path.name == f"im{k}.jpg"
        assert item.image.shape == (3, 12, 14) and item.image.dtype == torch.float32
        assert set(item.pixel_labels) == set(CATEGORIES)
        for cat in CATEGORIES:
            got = item.pixel_labels[cat]
            want = truth[k].get(cat, [])
            assert got.dtype == np.int32 and got.shape == (len(want), 6, 7)
            for plane_got, plane_want in zip(got, want):
                assert np.array_equal(plane_got, plane_want)
        assert item.image_labels["texture"] == ([5] if k != 1 else [])
        assert item.image_labels["scene"] == ([6] if k == 0 else [])
        assert item.image_labels["object"] == []
    assert (probe[0].pixel_labels["object"] == 300).sum() == 3  # row 5, columns 0-2


def test_broden_label_cache_serves_decoded_masks_read_only(tiny_broden):
    root, truth = tiny_broden
    cached, uncached = Broden(root), Broden(root, label_cache_mb=0)
    first = [cached[k].pixel_labels for k in range(3)]
    for k in range(3):  # a cached read equals a fresh decode, plane by plane
        again, fresh = cached[k].pixel_labels, uncached[k].pixel_labels
        for cat in CATEGORIES:
            assert np.array_equal(again[cat], fresh[cat]) and again[cat] is first[k][cat]
            assert not again[cat].flags.writeable and fresh[cat].flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        cached[0].pixel_labels["object"][0, 0, 0] = 7
    # the masks are served from memory: deleting the PNGs no longer matters
    (root / "images" / "set" / "im1_object_0.png").unlink()
    assert np.array_equal(cached[1].pixel_labels["object"][0], truth[1]["object"][0])
    with pytest.raises(ConsisError, match="im1_object_0.png"):
        uncached[1]
    # a budget smaller than one image's masks caches nothing
    tiny = Broden(root, label_cache_mb=1e-6, check_files=False)
    assert tiny[0].pixel_labels["object"].flags.writeable
    with pytest.raises(ConsisError, match="label_cache_mb"):
        Broden(root, label_cache_mb=-1)


def test_broden_split_resize_max_and_collate(tiny_broden):
    root, _ = tiny_broden
    train = Broden(root, split="train", image_size=8)
    assert len(train) == 2 and len(Broden(root, split="val")) == 1
    assert len(Broden(root, max_images=1)) == 1
    assert train[0].image.shape == (3, 8, 8)
    loader = torch.utils.data.DataLoader(train, batch_size=2, collate_fn=collate_broden)
    batch = next(iter(loader))
    assert batch.images.shape == (2, 3, 8, 8) and len(batch) == 2
    assert batch.indices == [0, 1]
    assert batch.pixel_labels[0]["part"].shape == (2, 6, 7)
    with pytest.raises(ConsisError, match="no rows with split 'test'"):
        Broden(root, split="test")


def test_broden_missing_mask_names_file(tiny_broden):
    root, _ = tiny_broden
    missing = root / "images" / "set" / "im1_object_0.png"
    missing.unlink()
    with pytest.raises(ConsisError) as info:
        Broden(root)
    assert str(missing) in str(info.value) and "index.csv" in str(info.value)
    assert "\n" not in str(info.value)
    # Without the up-front check, reading the row names the file too.
    probe = Broden(root, check_files=False)
    probe[0]
    with pytest.raises(ConsisError, match="im1_object_0.png"):
        probe[1]


def test_broden_missing_folder_and_index(tmp_path):
    with pytest.raises(ConsisError, match="consis data probe"):
        Broden(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConsisError, match="index.csv is missing"):
        Broden(tmp_path / "empty")


def test_broden_bad_index_columns(tiny_broden):
    root, _ = tiny_broden
    (root / "index.csv").write_text("image,split\nset/im0.jpg,train\n")
    with pytest.raises(ConsisError, match="lacks column"):
        Broden(root)


def test_broden_corrupt_image(tiny_broden):
    root, _ = tiny_broden
    bad = root / "images" / "set" / "im0.jpg"
    bad.write_bytes(b"garbage")
    with pytest.raises(ConsisError, match="corrupt") as info:
        Broden(root)[0]
    assert str(bad) in str(info.value)
