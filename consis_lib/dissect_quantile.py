"""Step 2 of network dissection (Bau et al. 2017): the per-unit quantile threshold.

``T_n`` = numpy's exact ``linear`` quantile at ``1 - quantile`` (default 0.995) of the
unit's activations over every spatial position of every probe image. NetDissect-Lite
estimates the same linear-interpolated quantile from a random sample
(``QuantileVector``); :class:`TopQuantile` keeps only the largest
``k = N - floor((N-1)(1-q))`` values per unit in a streaming top-k merge
(``O(q * positions)`` memory per unit), which is all the interpolation reads, so the
result equals ``numpy.quantile`` exactly.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from consis_lib.errors import ConsisError

__all__ = ["TopQuantile"]


class TopQuantile:
    """Exact streaming ``numpy.quantile(values, 1 - quantile, method="linear")`` per unit.

    Parameters
    ----------
    num_units : K.
    total : N, the number of values each unit will receive (all positions of all images).
    quantile : the top fraction (0.005 in NetDissect).

    Only the ``k = N - floor((N-1) * (1-quantile))`` largest values per unit are kept
    (the two order statistics the linear interpolation reads are among them).

    Example
    -------
    >>> tq = TopQuantile(num_units=2, total=6, quantile=0.5)
    >>> tq.update(torch.tensor([[1., 2, 3], [6, 5, 4]])); tq.update(torch.tensor([[4., 5, 6], [3, 2, 1]]))
    >>> tq.thresholds()          # numpy.quantile(..., 0.5) per row
    array([3.5, 3.5])
    """

    def __init__(self, num_units: int, total: int, quantile: float) -> None:
        if not 0.0 <= quantile < 1.0:
            raise ConsisError(f"quantile={quantile} must be in [0, 1); fix DissectConfig.quantile")
        if total < 1:
            raise ConsisError("no activation values to threshold; the probe is empty")
        self.total = int(total)
        self.p = 1.0 - float(quantile)
        self.virtual = (self.total - 1) * self.p  # numpy's virtual index for "linear"
        self.lo = min(int(math.floor(self.virtual)), self.total - 1)
        self.k = self.total - self.lo
        self.seen = 0
        self.top = torch.empty(num_units, 0)

    def update(self, values: torch.Tensor) -> None:
        """Merge ``values [K, M]`` (any M) into the running top-k."""
        values = values.detach().float().cpu()
        self.seen += values.shape[1]
        if self.seen > self.total:
            raise ConsisError(f"TopQuantile got {self.seen} values per unit but expected {self.total}")
        merged = torch.cat([self.top, values], dim=1)
        if merged.shape[1] > self.k:
            merged = merged.topk(self.k, dim=1, sorted=False).values
        self.top = merged

    def thresholds(self) -> np.ndarray:
        """``[K]`` thresholds (float32 values held as float64); equal to
        ``numpy.quantile(all_values, 1 - quantile)`` on the float32 activations."""
        if self.seen != self.total:
            raise ConsisError(f"TopQuantile got {self.seen} values per unit but expected {self.total}")
        desc = self.top.sort(dim=1, descending=True).values  # float32
        a = desc[:, self.k - 1]  # ascending rank lo
        b = desc[:, self.k - 2] if self.k >= 2 else a  # ascending rank lo + 1
        if self.virtual >= self.total - 1:  # numpy takes the maximum
            return desc[:, 0].double().numpy()
        # numpy's lerp, in the data's float32 precision as numpy.quantile does for a
        # float32 array and a Python-float quantile
        gamma = self.virtual - self.lo
        a32, b32 = a.numpy(), b.numpy()
        diff = b32 - a32
        out = b32 - diff * (1 - gamma) if gamma >= 0.5 else a32 + diff * gamma
        return out.astype(np.float64)
