"""Sprite rendering, hole filling and the compositor."""

from __future__ import annotations

import numpy as np
import pytest

from consis_lib.data.compose import BACKGROUNDS, SCALE_RANGE, compose, make_background
from consis_lib.data.sprite_styles import STYLES, style_available, style_version
from consis_lib.data.sprites import fill_holes, has_sprite, load_sprites, render_sprite
from consis_lib.errors import ConsisError

DOG = "1F415"


def test_fill_holes_known_answer():
    ring = np.zeros((7, 7, 4), np.uint8)
    ring[1:6, 1:6, 3] = 255
    ring[2:5, 2:5, 3] = 0  # a 3x3 hole enclosed by the opaque ring
    out = fill_holes(ring, colour=(10, 20, 30))
    assert (out[2:5, 2:5, 3] == 255).all()
    assert out[3, 3, :3].tolist() == [10, 20, 30]
    assert (out[0] == 0).all() and (out[:, 0] == 0).all()  # the outside stays transparent
    open_ring = ring.copy()
    open_ring[3, 5, 3] = 0  # a gap connects the hole to the outside: nothing to fill
    open_ring[3, 6, 3] = 0
    assert (fill_holes(open_ring)[2:5, 2:5, 3] == 0).all()


@pytest.mark.parametrize("style", STYLES)
def test_every_style_renders_a_normalised_sprite(style):
    if not style_available(style):
        pytest.skip(f"{style} is not installed (make setup installs it)")
    assert has_sprite(style, DOG)
    s = render_sprite(style, DOG, size=40)
    assert s.shape == (40, 40, 4) and s.dtype == np.uint8
    opaque = s[..., 3] > 128
    ys, xs = np.nonzero(opaque)
    # cropped to the alpha box and padded to a square: the long side spans the canvas
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) >= 36
    assert opaque.mean() > 0.15  # outline styles have filled interiors, not just strokes


def test_outline_styles_are_filled():
    line = render_sprite("openmoji-line", DOG, size=64)
    colour = render_sprite("openmoji", DOG, size=64)
    # the line rendition covers (about) the same silhouette as the colour one
    a, b = line[..., 3] > 128, colour[..., 3] > 128
    assert (a & b).sum() / (a | b).sum() > 0.8


def test_missing_sprite_and_unknown_style():
    if not style_available("symbola"):
        pytest.skip("Symbola is not installed (make setup installs it)")
    assert not has_sprite("symbola", "1FAE8")  # an emoji newer than the Symbola font
    assert render_sprite("symbola", "1FAE8") is None
    with pytest.raises(ConsisError, match="unknown sprite style"):
        render_sprite("crayon", DOG)


def test_sprite_cache_round_trip(tmp_path):
    if not style_available("symbola"):
        pytest.skip("Symbola is not installed (make setup installs it)")
    first = load_sprites([DOG, "1F34C"], styles=("twemoji", "symbola"), size=24, cache_dir=tmp_path)
    files = sorted(p.name for p in (tmp_path / "sprites").iterdir())
    assert files == sorted(f"{s}-{style_version(s)}-24.npz" for s in ("twemoji", "symbola"))
    again = load_sprites([DOG, "1F34C"], styles=("twemoji", "symbola"), size=24, cache_dir=tmp_path)
    for style in first:
        for e in first[style]:
            assert np.array_equal(first[style][e], again[style][e])
    assert np.array_equal(first["twemoji"][DOG], render_sprite("twemoji", DOG, 24))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong-shape"])
def test_damaged_sprite_cache_is_rendered_again(tmp_path, damage):
    first = load_sprites([DOG], styles=("twemoji",), size=24, cache_dir=tmp_path)
    path = tmp_path / "sprites" / f"twemoji-{style_version('twemoji')}-24.npz"
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\0" * len(data))
    else:
        np.savez(path, **{DOG: np.zeros((5, 5), np.uint8)})
    again = load_sprites([DOG], styles=("twemoji",), size=24, cache_dir=tmp_path)
    assert np.array_equal(again["twemoji"][DOG], first["twemoji"][DOG])
    with np.load(path) as npz:  # the cache file was written again, whole
        assert np.array_equal(npz[DOG], first["twemoji"][DOG])


def _square_sprite() -> np.ndarray:
    s = np.zeros((64, 64, 4), np.uint8)
    s[..., :3] = (200, 40, 40)
    s[..., 3] = 255
    return s


def test_compose_is_a_function_of_the_generator_state():
    s = _square_sprite()
    a = compose(s, 32, np.random.default_rng(7))
    b = compose(s, 32, np.random.default_rng(7))
    c = compose(s, 32, np.random.default_rng(8))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, c.image)


def test_compose_scale_and_mask_properties():
    s = _square_sprite()
    size = 48
    for seed in range(40):
        comp = compose(s, size, np.random.default_rng(seed))
        assert comp.image.shape == (size, size, 3) and comp.image.dtype == np.uint8
        assert comp.background in BACKGROUNDS
        area = comp.mask.mean()
        # an opaque square scaled by 0.55-0.95 (rotation keeps area; borders may crop)
        assert SCALE_RANGE[0] ** 2 * 0.8 <= area <= SCALE_RANGE[1] ** 2 * 1.05
        assert comp.water.any() == (comp.background == "sea")
        if comp.greyscale:
            assert (comp.image[..., 0] == comp.image[..., 1]).all()


def test_greyscale_and_noise_free_composite():
    s = _square_sprite()
    comp = compose(s, 32, np.random.default_rng(0), background="gradient", greyscale_prob=1.0, max_noise_std=0)
    assert comp.greyscale
    assert (comp.image[..., 0] == comp.image[..., 2]).all()


@pytest.mark.parametrize("kind", BACKGROUNDS)
def test_every_background_is_valid(kind):
    img, water = make_background(kind, 32, np.random.default_rng(1))
    assert img.shape == (32, 32, 3) and 0 <= img.min() and img.max() <= 255
    assert img.std() > 1.0  # something is drawn, not a flat fill
    assert water.any() == (kind == "sea")


def test_bad_inputs():
    with pytest.raises(ConsisError, match="unknown background"):
        make_background("plaid", 32, np.random.default_rng(0))
    with pytest.raises(ConsisError, match="RGBA"):
        compose(np.zeros((8, 8, 3), np.uint8), 32, np.random.default_rng(0))
