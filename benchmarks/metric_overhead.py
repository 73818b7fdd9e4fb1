"""Cost of the consistency metric relative to plain inference on the same images.

The metric on a set of images is one activation pass
(:func:`consis_lib.activations.unit_activations`: forward + context-managed hook +
spatial max + predictions) followed by Eq. 1-3 for every unit
(:func:`consis_lib.consistency.label_distributions` and
:func:`consis_lib.consistency.consistency`) and the layer mean. The baseline is a
plain ``model(x)`` loop over the same loader and model, fed the same channels_last
batches (:mod:`consis_lib.layout`). Both are timed alternately
in adjacent pairs in one run; the median of the per-pair ratios is printed last as
``consistency_over_inference=R`` (goal <= 1.15).

The full report (:func:`consis_lib.consistency.consistency_report`: 1,000 bootstrap
replicates for the CI plus the sigma x top-fraction sweep) is a fixed cost that does
not grow with the model; it is timed too and printed on its own line
(``report_over_inference``), not folded into the ratio. ``consis_adv`` adds an FGSM
pass per batch; that attack is not part of the metric and is not timed here.

Usage: ``python benchmarks/metric_overhead.py [--arch resnet18] [--images 1200] [--repeats 7]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from consis_lib.activations import unit_activations
from consis_lib.config import MetricConfig
from consis_lib.consistency import consistency, consistency_report, label_distributions
from consis_lib.wordnet import correlation_matrix
from consis_lib.layout import channels_last
from consis_lib.models import build_model, metric_layer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--images", type=int, default=1200)
    ap.add_argument("--classes", type=int, default=24)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()

    torch.manual_seed(0)
    model = build_model(args.arch, args.classes, image_size=args.image_size).eval()
    layer = metric_layer(args.arch)
    x = torch.rand(args.images, 3, args.image_size, args.image_size)
    y = torch.randint(0, args.classes, (args.images,))
    loader = DataLoader(TensorDataset(x, y), batch_size=args.batch)
    rng = np.random.default_rng(0)
    d = np.triu(rng.integers(1, 20, (args.classes, args.classes)), 1)
    distances = d + d.T
    cfg = MetricConfig()  # default: bootstrap 1000, 5 sigmas x 4 top fractions

    def inference() -> float:
        t0 = time.perf_counter()
        with torch.no_grad():
            for xb, _ in loader:
                model(channels_last(xb))
        return time.perf_counter() - t0

    A = correlation_matrix(distances, cfg.sigma)
    parts: list[tuple[float, float]] = []
    reports: list[float] = []

    def metric() -> float:
        t0 = time.perf_counter()
        res = unit_activations(model, loader, layer, progress=False)
        t1 = time.perf_counter()
        c = consistency(label_distributions(res.acts, res.labels, args.classes, cfg.top_fraction, cfg.min_top), A)
        float(c.nanmean())
        t2 = time.perf_counter()
        consistency_report(res, distances, cfg)
        reports.append(time.perf_counter() - t2)
        parts.append((t1 - t0, t2 - t1))
        return t2 - t0

    inference()  # warm-up
    metric()
    base, full, ratios = [], [], []
    for i in range(args.repeats):
        # adjacent pairs, alternating which runs first: load drift on a shared CPU cancels
        if i % 2 == 0:
            b_t = inference()
            f_t = metric()
        else:
            f_t = metric()
            b_t = inference()
        base.append(b_t)
        full.append(f_t)
        ratios.append(f_t / b_t)
    b, f = statistics.median(base), statistics.median(full)
    acts_t = statistics.median(p[0] for p in parts)
    eq_t = statistics.median(p[1] for p in parts)
    report_t = statistics.median(reports)
    print(f"arch={args.arch} layer={layer} images={args.images} image_size={args.image_size} threads={torch.get_num_threads()}")
    print(f"inference_s={b:.3f} metric_s={f:.3f} (activation pass {acts_t:.3f}, Eq. 1-3 {eq_t:.4f})")
    print(f"report_s={report_t:.3f} (bootstrap={cfg.bootstrap}, sweep {len(cfg.sigmas)}x{len(cfg.top_fractions)} at {cfg.sweep_bootstrap} replicates)")
    print(f"report_over_inference={report_t / b:.3f}")
    print(f"consistency_over_inference={statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
