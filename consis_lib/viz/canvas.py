"""New matplotlib figures for the book: page width, panels, no pyplot state."""

from __future__ import annotations

from matplotlib.figure import Figure

PAGE_WIDTH = 8.0
"""Width in inches of a figure that spans the book's text column (about 800 px)."""


def subplots(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (4, 3), **kw: object) -> tuple[Figure, object]:
    """A new Figure with subplots, outside pyplot's global state (no figure is leaked
    or shown twice in notebooks; Jupyter renders the returned Figure)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kw)


def panels(n: int, ncols: int = 2, height: float = 2.8, **kw: object) -> tuple[Figure, list]:
    """``n`` panels in rows of ``ncols`` at page width (unused grid cells removed)."""
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig = Figure(figsize=(PAGE_WIDTH, height * nrows), layout="constrained")
    axes = list(fig.subplots(nrows, ncols, squeeze=False, **kw).ravel())
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, axes[:n]
