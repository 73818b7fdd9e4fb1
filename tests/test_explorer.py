"""Neuron explorers (live and static) and figure helpers: known answers and properties (no trained model)."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from consis_lib import explorer, explorer_static, viz
from consis_lib.errors import ConsisError


def _view(u: int, c: float, ca: float) -> explorer.UnitView:
    jpeg = viz.jpeg_bytes(viz.montage([[torch.full((3, 8, 8), u / 10.0)]], thumb=8))
    return explorer.UnitView(
        unit=u, consis=c, consis_adv=ca, montage_jpeg=jpeg, label_names=("dog", "cat"),
        label_probs=(0.75, 0.25), label_probs_adv=(0.5, 0.5), concept="dog" if u % 2 else None,
        category="object" if u % 2 else None, iou=0.2 if u % 2 else None,
    )


def test_interesting_units_known_answer() -> None:
    # gaps: 0.4, 0.0, 0.1, 0.3 -> the two largest gaps are units 0 and 3;
    # then highest consis among the rest: unit 2 (0.9).
    c = [0.5, 0.2, 0.9, 0.4]
    ca = [0.1, 0.2, 0.8, 0.1]
    assert explorer.interesting_units(c, ca, n=3) == [0, 3, 2]
    assert explorer.interesting_units(c, ca, n=10) == [0, 3, 2, 1]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=40), st.integers(1, 50))
def test_interesting_units_properties(pairs: list[tuple[float, float]], n: int) -> None:
    c, ca = zip(*pairs)
    units = explorer.interesting_units(c, ca, n=n)
    assert len(units) == min(n, len(pairs))
    assert len(set(units)) == len(units)
    assert all(0 <= u < len(pairs) for u in units)
    gaps = np.asarray(c) - np.asarray(ca)
    # the first pick always has the largest gap
    assert gaps[units[0]] == pytest.approx(gaps.max())


def test_interesting_units_puts_undefined_units_last() -> None:
    nan = float("nan")
    assert explorer.interesting_units([1.0, 0.5, 0.4, nan], [nan, 0.1, 0.4, 0.2], n=4) == [1, 2, 0, 3]


def test_interesting_units_rejects_mismatched_lengths() -> None:
    with pytest.raises(ConsisError, match="same length"):
        explorer.interesting_units([0.1, 0.2], [0.1])


def test_sort_units_by_each_key() -> None:
    table = explorer.stats_table([_view(0, 0.5, 0.1), _view(1, 0.2, 0.2), _view(2, 0.9, 0.8)])
    assert explorer.sort_units(table, "consis") == [2, 0, 1]
    assert explorer.sort_units(table, "consis_adv") == [2, 1, 0]
    assert explorer.sort_units(table, "gap") == [0, 2, 1]
    with pytest.raises(ConsisError, match="sort key"):
        explorer.sort_units(table, "iou")


def test_unit_view_gap() -> None:
    assert _view(3, 0.5, 0.2).gap == pytest.approx(0.3)


def test_live_explorer_sorts_and_renders_on_demand() -> None:
    calls: list[tuple[str, int]] = []

    def render(model: str, unit: int) -> explorer.UnitView:
        calls.append((model, unit))
        return _view(unit, 0.3, 0.1)

    tables = {"normal": pd.DataFrame({"unit": [0, 1, 2], "consis": [0.1, 0.5, 0.3], "consis_adv": [0.1, 0.1, 0.3]})}
    tables["normal"]["gap"] = tables["normal"]["consis"] - tables["normal"]["consis_adv"]
    box = explorer.live_explorer(tables, render)
    (_, sort_dd), (units, _) = box.children[0].children, box.children[1].children
    assert [v for _, v in units.options] == [1, 0, 2]  # gap: 0.4, 0.0, 0.0 (stable)
    sort_dd.value = "consis"
    assert [v for _, v in units.options] == [1, 2, 0]
    units.value = 2
    units.value = 1
    units.value = 2  # cached: not rendered twice
    assert calls == [("normal", 2), ("normal", 1)]


def test_montage_size_and_content() -> None:
    black, white = torch.zeros(3, 8, 8), torch.ones(3, 8, 8)
    im = viz.montage([[black, black, black], [white, white]], thumb=16, pad=2)
    assert im.size == (3 * 18 + 2, 2 * 18 + 2)
    a = np.asarray(im)
    assert a[2 + 8, 2 + 8].tolist() == [0, 0, 0]  # first tile of the first row is black
    assert a[20 + 8, 2 + 8].tolist() == [255, 255, 255]  # first tile of the second row is white
    decoded = Image.open(io.BytesIO(viz.jpeg_bytes(im)))
    assert decoded.format == "JPEG" and decoded.size == im.size


def test_overlay_dims_where_the_map_is_low() -> None:
    img = torch.full((3, 4, 4), 1.0)
    heat = torch.zeros(4, 4)
    heat[:, 2:] = 1.0
    out = viz.overlay(img, heat, strength=0.5)
    assert out[0, 3].tolist() == [255, 255, 255]  # map high: unchanged
    assert out[0, 0].tolist() == [127, 127, 127]  # map low: 255 * (1 - 0.5)
    flat = viz.overlay(img, torch.ones(4, 4))  # constant map: nothing to highlight
    assert (flat == 255).all()


def test_figures_return_figures() -> None:
    from matplotlib.figure import Figure

    fig = viz.consis_histograms({"A": ([0.1, 0.2, None], [0.05, float("nan"), 0.1])})
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    fig = viz.accuracy_vs_eps({"normal": {"0.000000": 0.9, "0.031373": 0.2}})
    xs = fig.axes[0].lines[0].get_xdata()
    assert xs[0] == 0 and xs[1] == pytest.approx(8.0, abs=1e-3)
    with pytest.raises(ConsisError):
        viz.learning_curves({"normal": [{"epoch": 1}]})


# ----------------------------------------------------------------------------- static explorer over every unit

CLASSES = ("dog", "wolf", "fox", "tabby cat")


def _units(name: str, k: int = 6, top_k: int = 2, thumb: int = 8, seed: int = 0) -> explorer_static.ModelUnits:
    """``k`` units; unit u's real images are dominated by class u % 4 and its adversarial ones by (u + 1) % 4."""
    rng = np.random.default_rng(seed)
    P = np.full((k, len(CLASSES)), 0.05)
    Pa = np.full((k, len(CLASSES)), 0.05)
    for u in range(k):
        P[u, u % 4] = 0.85
        Pa[u, (u + 1) % 4] = 0.85
    tiles = [[np.full((thumb, thumb, 3), 10 * u + s, np.uint8) for s in range(2 * top_k)] for u in range(k)]
    consis = rng.random(k)
    consis[-1] = np.nan  # a unit no image activates
    return explorer_static.ModelUnits(
        name=name, consis=consis, consis_adv=rng.random(k), probs=P, probs_adv=Pa,
        sprite=explorer_static.sprite_sheet(tiles, thumb), top_k=top_k, thumb=thumb,
        concepts=tuple(("grass-s", "scene", 0.12) if u == 1 else None for u in range(k)),
    )


def test_square_tile_pads_without_stretching() -> None:
    img = torch.zeros(3, 8, 16)  # black, twice as wide as high
    tile = explorer_static.square_tile(img, size=16, fit="pad")
    assert tile.shape == (16, 16, 3)
    assert (tile[:4] == 255).all() and (tile[12:] == 255).all()  # white bands above and below
    assert (tile[4:12] == 0).all()  # the image itself, unscaled


def test_square_tile_crops_the_centre() -> None:
    img = torch.zeros(3, 8, 16)
    img[0, :, :8] = 1.0  # left half red
    img[2, :, 8:] = 1.0  # right half blue
    tile = explorer_static.square_tile(img, size=8, fit="crop")  # columns 4..11
    assert tile[:, :4].reshape(-1, 3).tolist() == [[255, 0, 0]] * 32
    assert tile[:, 4:].reshape(-1, 3).tolist() == [[0, 0, 255]] * 32
    with pytest.raises(ConsisError, match="fit"):
        explorer_static.square_tile(img, size=8, fit="stretch")


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 40), st.integers(2, 40), st.integers(4, 32), st.sampled_from(explorer_static.FITS))
def test_square_tile_is_square_and_keeps_the_aspect_ratio(h: int, w: int, size: int, fit: str) -> None:
    assume(min(h, w) * size / max(h, w) >= 3)  # a sliver thinner than 3 px blurs into the padding
    tile = explorer_static.square_tile(torch.zeros(3, h, w), size=size, fit=fit)
    assert tile.shape == (size, size, 3)
    dark = np.argwhere(tile.max(axis=2) < 128)
    if fit == "crop":
        assert len(dark) == size * size  # the crop fills the tile
    else:  # the letterboxed image is scaled by size / max(h, w) on both axes
        rows = dark[:, 0].max() - dark[:, 0].min() + 1
        cols = dark[:, 1].max() - dark[:, 1].min() + 1
        scale = size / max(h, w)
        assert abs(rows - h * scale) <= 1.5 and abs(cols - w * scale) <= 1.5


def test_highlight_matches_overlay_image_by_image() -> None:
    gen = torch.Generator().manual_seed(1)
    images, heats = torch.rand(5, 3, 12, 10, generator=gen), torch.rand(5, 3, 3, generator=gen)
    heats[2] = 0.7  # constant map: image unchanged
    batch = explorer_static.highlight(images, heats)
    for i in range(5):
        assert np.array_equal(batch[i], viz.overlay(images[i], heats[i]))


def test_sprite_sheet_places_every_tile_where_tile_origin_says() -> None:
    size, per_unit, k, upc = 4, 3, 7, 3  # 7 units in column blocks of 3 rows
    tiles = [[np.full((size, size, 3), 30 * u + s, np.uint8) for s in range(per_unit)] for u in range(k)]
    tiles[2][1] = None  # a missing image leaves a blank tile
    sheet = np.asarray(explorer_static.sprite_sheet(tiles, size, units_per_column=upc))
    assert sheet.shape == (upc * size, 3 * per_unit * size, 3)  # ceil(7 / 3) = 3 blocks
    assert explorer_static.tile_origin(4, 2, size, per_unit, upc) == ((1 * per_unit + 2) * size, 1 * size)
    for u in range(k):
        for s in range(per_unit):
            x, y = explorer_static.tile_origin(u, s, size, per_unit, upc)
            expected = list(explorer_static.BLANK) if (u, s) == (2, 1) else [30 * u + s] * 3
            assert sheet[y : y + size, x : x + size].reshape(-1, 3).tolist() == [expected] * size * size, (u, s)


def test_dominant_classes_known_answer() -> None:
    assert explorer_static.dominant_classes([0.2, 0.0, 0.8], ["dog", "cat", "wolf"], top=3) == [("wolf", 0.8), ("dog", 0.2)]
    assert explorer_static.dominant_classes([0.5, 0.3, 0.2], ["dog", "cat", "wolf"], top=2) == [("dog", 0.5), ("cat", 0.3)]
    assert explorer_static.dominant_classes([float("nan")] * 3, ["dog", "cat", "wolf"]) == []  # unit never activated
    with pytest.raises(ConsisError, match="class names"):
        explorer_static.dominant_classes([0.5, 0.5], ["dog", "cat", "wolf"])


@pytest.mark.parametrize("names", [("normal", "adv"), ("normal", "at", "adv")])
def test_explorer_data_covers_every_unit_of_every_model(names: tuple[str, ...]) -> None:
    models = [_units(n, seed=i) for i, n in enumerate(names)]
    data = explorer_static.explorer_data(models, CLASSES, top_classes=2)
    assert data["models"] == list(names)
    assert [u["u"] for u in data["units"]] == list(range(6))
    for u, entry in enumerate(data["units"]):
        assert len(entry["m"]) == len(names)
        for m, rec in zip(models, entry["m"]):
            # the filter's data: the dominant class names on real and adversarial images
            assert rec["cls"][0] == (CLASSES[u % 4], 0.85)
            assert rec["cls_adv"][0][0] == CLASSES[(u + 1) % 4]
            assert len(rec["cls"]) == 2
            if np.isfinite(m.consis[u]):
                assert rec["c"] == pytest.approx(m.consis[u], abs=1e-4)
                assert rec["g"] == pytest.approx(m.consis[u] - m.consis_adv[u], abs=2e-4)
            else:
                assert rec["c"] is None and rec["g"] is None
    assert data["units"][1]["m"][0]["concept"] == ["grass-s", "scene", 0.12]
    assert data["units"][0]["m"][0]["concept"] is None


def test_explorer_data_rejects_models_of_different_layers() -> None:
    with pytest.raises(ConsisError, match="layer size"):
        explorer_static.explorer_data([_units("normal", k=6), _units("adv", k=5)], CLASSES)
    with pytest.raises(ConsisError, match="units x classes"):
        explorer_static.explorer_data([_units("normal")], CLASSES[:3])
    with pytest.raises(ConsisError, match="at least one model"):
        explorer_static.explorer_data([], CLASSES)


def _embedded_json(page_html: str) -> dict:
    start = page_html.index('class="cx-data">') + len('class="cx-data">')
    return json.loads(page_html[start : page_html.index("</script>", start)].replace("<\\/", "</"))


def test_explorer_html_is_self_contained_and_states_its_size() -> None:
    models = [_units("normal", seed=0), _units("at", seed=1), _units("adv", seed=2)]
    page = explorer_static.explorer_html(models, CLASSES, layer="layer4")
    assert page.n_units == 6 and page.models == ("normal", "at", "adv")
    assert _embedded_json(page.html) == json.loads(json.dumps(explorer_static.explorer_data(models, CLASSES)))
    # one JPEG sprite per model, inlined; nothing fetched from elsewhere
    sprites = re.findall(r"url\(data:image/jpeg;base64,([A-Za-z0-9+/=]+)\)", page.html)
    assert len(sprites) == 3
    for b64, m in zip(sprites, models):
        decoded = Image.open(io.BytesIO(base64.b64decode(b64)))
        assert decoded.format == "JPEG" and decoded.size == m.sprite.size
    assert page.sprite_bytes == sum(len(b) for b in sprites)
    assert not re.search(r"(src|href)=\"?(https?:)?//", page.html)
    # the size the page states is the block's own size
    stated = re.search(r"adds ([0-9.]+) MB \(sprites ([0-9.]+) MB\)", page.html)
    assert stated and float(stated.group(1)) == pytest.approx(page.n_bytes / 1e6, abs=0.051)
    assert float(stated.group(2)) == pytest.approx(page.sprite_bytes / 1e6, abs=0.051)
    assert page.size_text() == f"{page.n_bytes / 1e6:.1f} MB (sprites {page.sprite_bytes / 1e6:.1f} MB)"
    assert page._repr_html_() == page.html


def test_explorer_html_escapes_names() -> None:
    names = ("dog", "</script><b>x", "fox", "cat")
    page = explorer_static.explorer_html([_units("<normal>")], names)
    assert page.html.count("</script>") == 2  # the data block and the code block
    markup = re.sub(r"<script.*?</script>", "", page.html, flags=re.S)
    assert "<normal>" not in markup and "&lt;normal&gt;" in markup  # escaped outside the JSON
    assert _embedded_json(page.html)["units"][1]["m"][0]["cls"][0][0] == "</script><b>x"


class _TinyContext:
    """The parts of ``ArchContext`` the explorers use, over a hand-made two-unit model; records image reads."""

    def __init__(self) -> None:
        from consis_lib.activations import fgsm_attack, unit_activations
        from consis_lib.config import get_profile

        torch.manual_seed(0)
        self.profile = get_profile("smoke")
        self.layer, self.device = "1", torch.device("cpu")
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten(), torch.nn.Linear(2, 2)
        ).eval()
        gen = torch.Generator().manual_seed(0)
        self.x, self.y = torch.rand(24, 3, 8, 12, generator=gen), torch.arange(24) % 2
        self.acts = unit_activations(self.net, [(self.x, self.y)], self.layer, attack=fgsm_attack(self.profile.attack.eps), progress=False)
        self.read: list[int] = []

    def activations(self, name: str) -> object:
        return self.acts

    def unit_consistency(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return np.array([0.5, 0.25]), np.array([0.25, 0.25])

    def class_names(self) -> list[str]:
        return ["dog", "wolf"]

    def images(self, index: torch.Tensor) -> torch.Tensor:
        self.read.extend(int(i) for i in index)
        return self.x[torch.as_tensor(index)]

    def labels(self, split: str = "val") -> torch.Tensor:
        return self.y

    def model(self, name: str) -> torch.nn.Module:
        return self.net

    def dissection_summary(self) -> dict:
        return {"iou_threshold": 0.04, "normal": {"real": {"units": [[0, "dog", "object", 0.2], [1, "sky-s", "scene", 0.01]]}}}


def _top(acts: torch.Tensor, u: int, k: int) -> list[int]:
    return torch.argsort(acts[:, u], descending=True, stable=True)[:k].tolist()


def test_model_units_from_a_context_shows_each_units_top_images() -> None:
    from consis_lib.activations import layer_maps
    from consis_lib.attacks import fgsm

    ctx = _TinyContext()
    top_k, thumb = 3, 16
    mu = explorer_static.model_units(ctx, "normal", top_k=top_k, thumb=thumb, fit="pad")
    assert mu.n_units == 2 and mu.sprite.size == (2 * top_k * thumb, 2 * thumb)
    assert mu.concepts == (("dog", "object", 0.2), None)  # unit 1's IoU is below the threshold
    assert mu.concepts_adv == ()  # no adversarial dissection in the results
    sheet = np.asarray(mu.sprite).astype(int)
    for u in range(2):
        best = _top(ctx.acts.acts, u, 1)[0]
        maps = layer_maps(ctx.net, ctx.layer, ctx.x[best : best + 1])
        expected = explorer_static.square_tile(ctx.x[best], maps[0, u], thumb, "pad")
        x, y = explorer_static.tile_origin(u, 0, thumb, 2 * top_k)
        assert np.array_equal(sheet[y : y + thumb, x : x + thumb], expected)
        assert (expected[:2] == 255).all()  # 8x12 images are letterboxed, not stretched
        best_adv = _top(ctx.acts.adv_acts, u, 1)[0]
        x_adv = fgsm(ctx.net, ctx.x[best_adv : best_adv + 1], ctx.y[best_adv : best_adv + 1], ctx.profile.attack.eps)
        expected_adv = explorer_static.square_tile(x_adv[0], layer_maps(ctx.net, ctx.layer, x_adv)[0, u], thumb, "pad")
        x, y = explorer_static.tile_origin(u, top_k, thumb, 2 * top_k)
        assert np.abs(sheet[y : y + thumb, x : x + thumb] - expected_adv).max() <= 1  # FGSM in a batch: float rounding
    real, adv = ({i for u in range(2) for i in _top(a, u, top_k) if a[i, u] > 0} for a in (ctx.acts.acts, ctx.acts.adv_acts))
    assert sorted(ctx.read) == sorted([*real, *adv])  # only the activating top images, once per row
    page = explorer_static.explorer_html([mu, mu], ctx.class_names())
    assert page.n_units == 2
    with pytest.raises(ConsisError, match="multiple of 8"):
        explorer_static.model_units(ctx, "normal", thumb=12)


def test_build_views_reads_only_the_units_top_images() -> None:
    from consis_lib.consistency import label_distributions

    ctx = _TinyContext()
    (view,) = explorer.build_views(ctx, "normal", [1], top_k=2, thumb=16)
    assert sorted(ctx.read) == sorted(_top(ctx.acts.acts, 1, 2) + _top(ctx.acts.adv_acts, 1, 2))
    assert (view.unit, view.consis, view.consis_adv, view.concept) == (1, 0.25, 0.25, None)  # IoU 0.01 < 0.04
    m = ctx.profile.metric
    P = label_distributions(ctx.acts.acts, ctx.acts.labels, 2, m.top_fraction, m.min_top)
    assert view.label_probs == pytest.approx(P[1].tolist(), nan_ok=True)
    assert Image.open(io.BytesIO(view.montage_jpeg)).size[0] >= 2 * 16
    with pytest.raises(ConsisError, match="highlight"):
        explorer.build_views(ctx, "normal", [0], highlight="saliency")
