"""Figures of the book: layout at page width, square thumbnails, one colour per model kind."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from consis_lib import viz
from consis_lib.errors import ConsisError
from consis_lib.results import MODEL_LABELS


def _fig5(models: tuple[str, ...], archs: tuple[str, ...] = ("AlexNet", "VGG-16", "ResNet-18")) -> dict:
    rng = np.random.default_rng(0)
    return {a: {m: (rng.random(40), rng.random(40) / 2) for m in models} for a in archs}


def test_model_colours_and_labels_cover_every_kind() -> None:
    assert set(viz.MODEL_COLORS) == set(MODEL_LABELS) == {"normal", "at", "adv"}
    assert len(set(viz.MODEL_COLORS.values())) == 3
    assert [viz.model_label(k) for k in ("normal", "at", "adv")] == ["normal", "AT (beta = 0)", "Eq. 6"]
    for name, kind in (("adv", "adv"), ("Eq. 6", "adv"), ("AT (beta = 0)", "at"), ("ResNet-18-Adv", "adv"), ("ResNet-18", None)):
        assert viz.model_kind(name) == kind
    assert viz.model_color("VGG-16") is None


@pytest.mark.parametrize(("models", "by", "ncols"), [(("normal", "adv"), "images", 2), (("normal", "at", "adv"), "images", 2), (("normal", "at", "adv"), "model", 3)])
def test_consis_facets_grid_shares_axes(models: tuple[str, ...], by: str, ncols: int) -> None:
    fig = viz.consis_facets(_fig5(models), by=by)
    assert isinstance(fig, Figure) and len(fig.axes) == 3 * ncols
    assert fig.get_figwidth() == pytest.approx(viz.PAGE_WIDTH)
    a, b = fig.axes[0], fig.axes[-1]
    assert a.get_shared_x_axes().joined(a, b) and a.get_shared_y_axes().joined(a, b)


def test_consis_facets_colours_each_model_consistently() -> None:
    fig = viz.consis_facets(_fig5(("normal", "at", "adv"), archs=("ResNet-18",)))
    legend = fig.legends[0]
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["normal", "AT (beta = 0)", "Eq. 6"]
    colours = [to_hex(h.get_facecolor(), keep_alpha=False) for h in legend.legend_handles]
    assert colours == [viz.MODEL_COLORS[k].lower() for k in ("normal", "at", "adv")]
    means = {to_hex(ln.get_color()) for ln in fig.axes[1].lines}  # one dashed mean per model
    assert means == {c.lower() for c in viz.MODEL_COLORS.values()}


def test_consis_facets_rejects_bad_input() -> None:
    with pytest.raises(ConsisError):
        viz.consis_facets({})
    with pytest.raises(ConsisError, match="by must be"):
        viz.consis_facets(_fig5(("normal", "adv")), by="arch")
    with pytest.raises(ConsisError, match="consis, consis_adv"):
        viz.consis_facets({"A": {"normal": (np.ones(3),)}})


def _sweep() -> pd.DataFrame:
    rows = [
        dict(beta=b, seed=s, consis=0.5, consis_adv=0.3 + b + 0.01 * s, clean_acc=0.8 - b, fgsm_acc=0.3 + b)
        for b in (0.0, 0.01, 0.1) for s in range(3)
    ]
    return pd.DataFrame(rows)


def test_beta_sweep_four_panels_points_and_mean_line() -> None:
    fig = viz.beta_sweep(_sweep(), default_beta=0.01)
    assert len(fig.axes) == 4
    assert [t.get_text() for t in fig.axes[2].get_xticklabels()] == ["0", "0.01", "0.1"]  # shared axis
    ax = fig.axes[0]
    points = np.concatenate([c.get_offsets() for c in ax.collections if len(c.get_offsets()) == 3])
    assert len(points) == 9  # three seeds at three betas
    mean_line = [ln for ln in ax.lines if len(ln.get_ydata()) == 3][0]
    assert np.allclose(mean_line.get_ydata(), [0.31, 0.32, 0.41])  # mean over seeds of 0.3 + b + 0.01 s
    colours = [to_hex(c.get_facecolor()[0], keep_alpha=False) for c in ax.collections if len(c.get_offsets()) == 3]
    assert colours[0] == viz.MODEL_COLORS["at"].lower() and colours[1] == viz.MODEL_COLORS["adv"].lower()


def test_beta_sweep_names_missing_columns() -> None:
    with pytest.raises(ConsisError, match="fgsm_acc"):
        viz.beta_sweep(_sweep().drop(columns="fgsm_acc"))


def test_square_thumb_pads_or_crops_never_stretches() -> None:
    wide = np.zeros((8, 16, 3), np.uint8)  # black, twice as wide as tall
    padded = np.asarray(viz.square_thumb(wide, 16, fit="pad"))
    assert padded.shape == (16, 16, 3)
    assert (padded[:4] == 255).all() and (padded[12:] == 255).all()  # white bands above and below
    assert (padded[4:12] == 0).all()  # the image keeps its 2:1 shape
    cropped = np.asarray(viz.square_thumb(wide, 16, fit="crop"))
    assert cropped.shape == (16, 16, 3) and (cropped == 0).all()
    with pytest.raises(ConsisError):
        viz.square_thumb(wide, 16, fit="stretch")


def test_montage_tiles_are_square_for_any_image_shape() -> None:
    tall = torch.zeros(3, 32, 16)
    im = viz.montage([[tall, torch.zeros(3, 16, 16)]], thumb=16, pad=2)
    assert im.size == (2 * 18 + 2, 18 + 2)
    a = np.asarray(im)
    tile = a[2:18, 2:18]
    assert (tile[:, :4] == 255).all() and (tile[:, 12:] == 255).all() and (tile[:, 4:12] == 0).all()
    assert (a[2:18, 20:36] == 0).all()  # the square image fills its tile


def test_existing_figures_use_the_model_colours_at_page_width() -> None:
    logs = {m: [{"epoch": 1, "loss": 2.0, "val_acc": 0.3}, {"epoch": 2, "loss": 1.0, "val_acc": 0.5}] for m in ("normal", "at", "adv")}
    fig = viz.learning_curves(logs, keys=("loss", "val_acc", "val_fgsm_acc"))
    assert len(fig.axes) == 2 and fig.get_figwidth() == pytest.approx(viz.PAGE_WIDTH)
    assert [to_hex(ln.get_color()) for ln in fig.axes[0].lines] == [viz.MODEL_COLORS[m].lower() for m in ("normal", "at", "adv")]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["normal", "AT (beta = 0)", "Eq. 6"]
    fig = viz.accuracy_vs_eps({"adv": {0.0: 0.9, 8 / 255: 0.4}})
    assert to_hex(fig.axes[0].lines[0].get_color()) == viz.MODEL_COLORS["adv"].lower()
    sweep = pd.DataFrame({"model": ["normal", "adv"] * 2, "sigma": [1.0, 1.0, 2.0, 2.0], "consis": [0.1, 0.2, 0.3, 0.4], "consis_adv": [0.1] * 4})
    fig = viz.sensitivity(sweep, x="sigma")
    assert len(fig.axes) == 2
