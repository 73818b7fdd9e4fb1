"""The embedded image set: determinism, layout, held-out style family, atomic writes."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from consis_lib.config import DataConfig, config_hash
from consis_lib.data import embedded
from consis_lib.data.classes import classes_for_profile
from consis_lib.data.embedded import generate_embedded, image_rng, prepare_dataset, split_styles
from consis_lib.data.sprite_styles import STYLES, available_styles, style_family
from consis_lib.errors import ConsisError

SMALL = DataConfig(profile="smoke", num_classes=8, train_per_class=5, val_per_class=5, seed=3)


@pytest.fixture(scope="session")
def sprite_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sprite-cache")


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path, sprite_cache, wordnet):
    a = generate_embedded(SMALL, tmp_path / "a", sprite_cache)
    b = generate_embedded(SMALL, tmp_path / "b", sprite_cache)
    da, db = _digest(a), _digest(b)
    assert da == db
    c = generate_embedded(DataConfig(**{**SMALL.__dict__, "seed": 4}), tmp_path / "c", sprite_cache)
    dc = _digest(c)
    assert da.keys() == dc.keys()
    pngs = [k for k in da if k.endswith(".png")]
    assert sum(da[k] != dc[k] for k in pngs) == len(pngs)


def test_cli_smoke_twice_gives_identical_files(tmp_path, sprite_cache, wordnet):
    from consis_lib.cli import main

    for name in ("x", "y"):
        rc = main(["data", "embedded", "--profile", "smoke", "--out", str(tmp_path / name), "--cache", str(sprite_cache)])
        assert rc == 0
    dx, dy = _digest(tmp_path / "x"), _digest(tmp_path / "y")
    assert dx == dy
    assert sum(k.endswith(".png") for k in dx) == 8 * (40 + 16)


def test_layout_classes_json_and_images_csv(tmp_path, sprite_cache, wordnet):
    root = generate_embedded(SMALL, tmp_path / "emb", sprite_cache)
    classes = classes_for_profile(SMALL)
    for split, n in (("train", SMALL.train_per_class), ("val", SMALL.val_per_class)):
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(c.wnid for c in classes)
        for c in classes:
            files = sorted((root / split / c.wnid).glob("*.png"))
            assert len(files) == n
            with Image.open(files[0]) as im:
                assert im.mode == "RGB" and im.size == (SMALL.image_size, SMALL.image_size)
    meta = json.loads((root / "classes.json").read_text())
    assert meta["config_hash"] == config_hash(SMALL)
    assert [r["wnid"] for r in meta["classes"]] == [c.wnid for c in classes]
    dog = meta["classes"][0]
    assert dog["synset"] == "dog.n.01" and dog["name"] == "dog" and "Canis" in dog["definition"]
    assert dog["group"] == "mammal"
    with open(root / "images.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(classes) * (SMALL.train_per_class + SMALL.val_per_class)
    assert all((root / r["path"]).is_file() for r in rows)
    # the held-out family never appears in train; val draws every family
    train_fams = {r["family"] for r in rows if r["split"] == "train"}
    val_fams = {r["family"] for r in rows if r["split"] == "val"}
    assert SMALL.holdout_family not in train_fams
    assert val_fams == {style_family(s) for s in available_styles()}
    # every class sees several styles in train
    for c in classes:
        assert len({r["style"] for r in rows if r["wnid"] == c.wnid and r["split"] == "train"}) >= 4


def test_split_styles_and_holdout_validation():
    assert "noto" not in split_styles(DataConfig(), STYLES)["train"]
    assert split_styles(DataConfig(), STYLES)["val"] == STYLES
    assert split_styles(DataConfig(holdout_family=""), STYLES)["train"] == STYLES
    assert "openmoji-line" not in split_styles(DataConfig(holdout_family="openmoji"), STYLES)["train"]
    # a missing font shrinks the set; a missing held-out family holds nothing out
    no_fonts = ("twemoji", "openmoji", "openmoji-line")
    assert split_styles(DataConfig(), no_fonts)["train"] == no_fonts
    with pytest.raises(ConsisError, match="holdout_family"):
        split_styles(DataConfig(holdout_family="crayon"), STYLES)
    with pytest.raises(ConsisError, match="make setup"):
        split_styles(DataConfig(), ("openmoji", "openmoji-line"))


def test_image_rng_depends_on_every_key():
    base = image_rng(0, "train", "n02084071", 0).integers(1 << 30, size=4)
    assert np.array_equal(base, image_rng(0, "train", "n02084071", 0).integers(1 << 30, size=4))
    for other in (
        image_rng(1, "train", "n02084071", 0),
        image_rng(0, "val", "n02084071", 0),
        image_rng(0, "train", "n02114100", 0),
        image_rng(0, "train", "n02084071", 1),
    ):
        assert not np.array_equal(base, other.integers(1 << 30, size=4))


def test_images_do_not_depend_on_the_class_subset(tmp_path, sprite_cache, wordnet):
    two = DataConfig(profile="smoke", num_classes=2, train_per_class=3, val_per_class=1, seed=3)
    three = DataConfig(profile="smoke", num_classes=3, train_per_class=3, val_per_class=1, seed=3)
    a = _digest(generate_embedded(two, tmp_path / "two", sprite_cache))
    b = _digest(generate_embedded(three, tmp_path / "three", sprite_cache))
    shared = [k for k in a if k.endswith(".png")]
    assert shared and all(a[k] == b[k] for k in shared)


def test_interrupted_run_leaves_no_output(tmp_path, sprite_cache, wordnet, monkeypatch):
    calls = {"n": 0}
    real = embedded.compose

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 7:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(embedded, "compose", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_embedded(SMALL, tmp_path / "out", sprite_cache)
    assert calls["n"] == 8
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temporary folder


def test_rerun_replaces_earlier_output_but_never_a_foreign_folder_or_file(tmp_path, sprite_cache, wordnet):
    out = tmp_path / "emb"
    generate_embedded(SMALL, out, sprite_cache)
    first = _digest(out)
    (out / "train" / "n02084071" / "n02084071_00000.png").unlink()  # our own file: may be replaced
    generate_embedded(SMALL, out, sprite_cache)
    assert _digest(out) == first
    (out / "notes.txt").write_text("a user's file")
    with pytest.raises(ConsisError, match="notes.txt was not written by consis"):
        generate_embedded(SMALL, out, sprite_cache)
    assert (out / "notes.txt").read_text() == "a user's file"
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "classes.json").write_text("[]")  # a user's data set (classes.json is optional there)
    with pytest.raises(ConsisError, match="holds classes.json but was not written by consis"):
        generate_embedded(SMALL, foreign, sprite_cache)
    assert (foreign / "classes.json").read_text() == "[]"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb", "mine"]  # no temporary folder left


def test_cached_set_missing_an_image_is_generated_again(tmp_path, sprite_cache, wordnet):
    cfg = DataConfig(profile="smoke", num_classes=2, train_per_class=2, val_per_class=1)
    root = prepare_dataset(cfg, tmp_path)
    victim = root / "val" / "n02084071" / "n02084071_00000.png"
    good = victim.read_bytes()
    victim.unlink()
    assert prepare_dataset(cfg, tmp_path) == root
    assert victim.read_bytes() == good
    victim.write_bytes(good[:20])  # truncated: its size no longer matches the manifest
    prepare_dataset(cfg, tmp_path)
    assert victim.read_bytes() == good


def test_imagefolder_reads_the_generated_set(tmp_path, sprite_cache, wordnet):
    from consis_lib.data.imagefolder import WnidImageFolder

    root = generate_embedded(SMALL, tmp_path / "emb", sprite_cache)
    ds = WnidImageFolder(root, "val")
    assert len(ds) == 8 * SMALL.val_per_class
    assert ds.wnids == sorted(c.wnid for c in classes_for_profile(SMALL))
    names = dict(zip(ds.wnids, ds.names))
    assert names["n02084071"] == "dog"
    x, y = ds[0]
    assert tuple(x.shape) == (3, 32, 32) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert ds.wnids[y] == ds.samples[0][0].parent.name


def test_prepare_dataset_keys_by_config_hash_and_validates_folders(tmp_path, sprite_cache, wordnet):
    cfg = DataConfig(profile="smoke", num_classes=2, train_per_class=2, val_per_class=1)
    root = prepare_dataset(cfg, tmp_path)
    assert root == tmp_path / f"embedded-{config_hash(cfg)}"
    assert (root / "classes.json").is_file()
    stamp = (root / "classes.json").stat().st_mtime_ns
    assert prepare_dataset(cfg, tmp_path) == root
    assert (root / "classes.json").stat().st_mtime_ns == stamp
    with pytest.raises(ConsisError, match="does not exist"):
        prepare_dataset(DataConfig(source="folder", root=str(tmp_path / "nope")), tmp_path)
    (tmp_path / "half" / "train").mkdir(parents=True)
    with pytest.raises(ConsisError, match="val"):
        prepare_dataset(DataConfig(source="folder", root=str(tmp_path / "half")), tmp_path)
    assert prepare_dataset(DataConfig(source="folder", root=str(root)), tmp_path) == root
