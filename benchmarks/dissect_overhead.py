"""Cost of network dissection relative to plain inference on the same probe images.

Dissection (:func:`consis_lib.dissect.dissect`) makes one pass over the Broden probe
(images and label masks read from disk, forward with a context-managed hook,
streaming exact top-quantile), then tallies IoUs from the cached maps. The baseline
reads the same probe images from disk (no label masks) and runs ``model(x)`` on
channels_last batches, as dissection does (:mod:`consis_lib.layout`). Both
are timed alternately in one run; the ratio of the medians is printed last as
``dissect_over_inference=R`` (goal <= 2.0). That is the steady state of a probe
that is dissected repeatedly, as the pipeline does (real and adversarial images,
normal and adversarial models: four dissections per probe and architecture), with
the decoded label masks held by :class:`~consis_lib.data.broden.Broden`. The first
dissection of a fresh probe also decodes every mask PNG; its ratio is printed as
``dissect_cold_over_inference``. The peak resident memory of the process and the
size of the bounded quantile buffer are printed as well.

Usage: ``python benchmarks/dissect_overhead.py [--arch resnet18] [--profile default] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch
from torch.utils.data import DataLoader, Dataset

from consis_lib.config import DissectConfig, get_profile
from consis_lib.data.broden import Broden
from consis_lib.data.imagefolder import load_image, to_tensor
from consis_lib.data.probe import prepare_probe
from consis_lib.dissect import dissect
from consis_lib.layout import channels_last
from consis_lib.models import build_model, metric_layer


class ProbeImages(Dataset):
    """The probe's images only, resized like the Broden reader does."""

    def __init__(self, probe: Broden) -> None:
        self.paths = [probe._rows[i][0] for i in range(len(probe))]
        self.size = probe.image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        img = load_image(self.paths[i])
        if self.size is not None:
            img = img.resize((self.size, self.size))
        return to_tensor(img)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--profile", default="default")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    prof = get_profile(args.profile)
    root = prepare_probe(prof.data)
    probe = Broden(root, image_size=prof.data.image_size)
    torch.manual_seed(0)
    model = build_model(args.arch, 24, image_size=prof.data.image_size).eval()
    layer = metric_layer(args.arch)
    cfg = DissectConfig()
    loader = DataLoader(ProbeImages(probe), batch_size=cfg.batch_size)

    def inference() -> float:
        t0 = time.perf_counter()
        with torch.no_grad():
            for x in loader:
                model(channels_last(x))
        return time.perf_counter() - t0

    results = []

    def run(on: Broden) -> float:
        t0 = time.perf_counter()
        results.append(dissect(model, layer, on, cfg, progress=False))
        return time.perf_counter() - t0

    rss_before = peak_rss_mb()
    inference()  # warm-up
    run(probe)
    base, full, cold = [], [], []
    for _ in range(args.repeats):
        base.append(inference())
        full.append(run(probe))
        cold.append(run(Broden(root, image_size=prof.data.image_size)))  # label masks decoded anew
    b, f, c = statistics.median(base), statistics.median(full), statistics.median(cold)
    res = results[-1]
    K = len(res.table)
    print(f"arch={args.arch} layer={layer} units={K} probe_images={len(probe)} image_size={prof.data.image_size}")
    print(f"inference_s={b:.3f} dissect_s={f:.3f} dissect_cold_s={c:.3f}")
    print(f"aligned units: {int(res.table.aligned.sum())}/{K}; ratios {res.ratios}")
    print(f"quantile buffer: {res.meta['kept_per_unit']} of {res.meta['positions_per_unit']} values per unit; passes={res.meta['passes']}")
    print(f"peak_rss_mb={peak_rss_mb():.0f} (before the runs {rss_before:.0f})")
    print(f"dissect_cold_over_inference={c / b:.3f} (first dissection of a fresh Broden: masks decoded from PNG)")
    print(f"dissect_over_inference={f / b:.3f}")


if __name__ == "__main__":
    main()
