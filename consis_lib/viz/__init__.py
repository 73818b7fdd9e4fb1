"""Figures for the book. Every function returns a matplotlib ``Figure`` (or an image).

Nothing here computes a metric: the numbers come from :mod:`consis_lib.consistency`,
:mod:`consis_lib.dissect` and the training logs; these functions only draw them.
The figures live in :mod:`~consis_lib.viz.histograms` (Fig. 5),
:mod:`~consis_lib.viz.curves` (measures against a parameter or a model),
:mod:`~consis_lib.viz.examples` (Fig. 3/4, Eq. 4, data samples) and
:mod:`~consis_lib.viz.images` (tiles and montages); names and colours of the
models in :mod:`consis_lib.book_style`.

Example
-------
>>> import numpy as np
>>> from consis_lib.viz import consis_histograms
>>> rng = np.random.default_rng(0)
>>> fig = consis_histograms({"ResNet-18": (rng.random(64), rng.random(64) / 2)})
>>> len(fig.axes)
2
"""

from consis_lib.book_style import IMAGE_COLORS, MODEL_COLORS, model_color, model_kind, model_label
from consis_lib.viz.canvas import PAGE_WIDTH
from consis_lib.viz.curves import accuracy_vs_eps, beta_sweep, learning_curves, ratio_bars, sensitivity
from consis_lib.viz.examples import class_samples, probe_examples, targeted_figure, views_figure
from consis_lib.viz.histograms import consis_facets, consis_histograms, label_distribution
from consis_lib.viz.images import jpeg_bytes, montage, overlay, square_thumb

__all__ = [
    "IMAGE_COLORS",
    "MODEL_COLORS",
    "PAGE_WIDTH",
    "accuracy_vs_eps",
    "beta_sweep",
    "class_samples",
    "consis_facets",
    "consis_histograms",
    "jpeg_bytes",
    "label_distribution",
    "learning_curves",
    "model_color",
    "model_kind",
    "model_label",
    "montage",
    "overlay",
    "probe_examples",
    "ratio_bars",
    "sensitivity",
    "square_thumb",
    "targeted_figure",
    "views_figure",
]
