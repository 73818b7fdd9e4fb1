"""Neuron explorer and figure helpers: known answers and properties (no trained model)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from consis_lib import explorer, viz
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


def test_static_explorer_links_controls_to_panels() -> None:
    import ipywidgets as w

    views = {"normal": [_view(u, 0.1 * u, 0.05 * u) for u in range(5)], "adv": [_view(u, 0.2, 0.1) for u in range(3)]}
    tab = explorer.static_explorer(views)
    assert isinstance(tab, w.Tab)
    assert list(tab.titles) == ["normal", "adv"]
    for page, name in zip(tab.children, views):
        controls, stack = page.children
        dropdown, slider = controls.children
        assert isinstance(stack, w.Stack)
        assert len(stack.children) == len(views[name])
        assert len(dropdown.options) == len(views[name])
        assert slider.max == len(views[name]) - 1
        # each panel names its own unit
        units = [int(p.children[-1].value.split("data-unit='")[1].split("'")[0]) for p in stack.children]
        assert units == [v.unit for v in views[name]]
    # browser-side links (kernel-free) exist between both controls and the stack
    from ipywidgets.widgets import widget as widget_module
    from ipywidgets.widgets.widget_link import Link

    registry = getattr(widget_module, "_instances", None)
    registry = registry if registry is not None else w.Widget.widgets
    links = [m for m in list(registry.values()) if isinstance(m, Link)]
    targets = {(id(lk.source[0]), lk.source[1], id(lk.target[0]), lk.target[1]) for lk in links}
    page = tab.children[0]
    (dropdown, slider), stack = page.children[0].children, page.children[1]
    assert (id(dropdown), "index", id(stack), "selected_index") in targets
    assert (id(slider), "value", id(stack), "selected_index") in targets


def test_static_explorer_needs_units() -> None:
    with pytest.raises(ConsisError):
        explorer.static_explorer({"normal": []})


def test_live_explorer_sorts_and_renders_on_demand() -> None:
    calls: list[tuple[str, int]] = []

    def render(model: str, unit: int) -> explorer.UnitView:
        calls.append((model, unit))
        return _view(unit, 0.3, 0.1)

    tables = {"normal": pd.DataFrame({"unit": [0, 1, 2], "consis": [0.1, 0.5, 0.3], "consis_adv": [0.1, 0.1, 0.3]})}
    tables["normal"]["gap"] = tables["normal"]["consis"] - tables["normal"]["consis_adv"]
    box = explorer.live_explorer(tables, render)
    (model_dd, sort_dd), (units, out) = box.children[0].children, box.children[1].children
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
