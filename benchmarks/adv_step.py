"""Cost of one Eq. 6 training step relative to one clean step (same model, same batch).

An Eq. 6 step reuses the clean forward/backward pass for the FGSM input gradient and
the clean cross-entropy term, so it should cost about two clean steps (goal <= 2.1).
Both steps include ``zero_grad`` and the SGD update; they are timed in adjacent
pairs in one run and the median of the per-pair ratios is printed last as ``adv_step_over_clean_step=R``.

Usage: ``python benchmarks/adv_step.py [--arch resnet18] [--batch 128] [--repeats 15] [--device cuda]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from consis_lib.models import build_model, metric_layer
from consis_lib.train import StepOptions, clean_backward, eq6_backward


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--classes", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--device", default="cpu", help="cpu (the goal is set on a 2-core CPU) or cuda")
    args = ap.parse_args()

    torch.manual_seed(0)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    model = build_model(args.arch, args.classes, image_size=args.image_size).to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.rand(args.batch, 3, args.image_size, args.image_size, device=dev)
    y = torch.randint(0, args.classes, (args.batch,), device=dev)
    opts = StepOptions(layer=metric_layer(args.arch))

    def step(fn) -> float:
        sync()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        fn(model, x, y, opts)
        opt.step()
        sync()
        return time.perf_counter() - t0

    for _ in range(3):  # warm-up
        step(clean_backward)
        step(eq6_backward)
    clean, adv, ratios = [], [], []
    for i in range(args.repeats):
        # adjacent pairs, alternating which runs first: load drift on a shared CPU cancels
        if i % 2 == 0:
            c_t = step(clean_backward)
            a_t = step(eq6_backward)
        else:
            a_t = step(eq6_backward)
            c_t = step(clean_backward)
        clean.append(c_t)
        adv.append(a_t)
        ratios.append(a_t / c_t)
    c, a = statistics.median(clean), statistics.median(adv)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu threads={torch.get_num_threads()}"
    print(f"arch={args.arch} batch={args.batch} device={where} torch={torch.__version__}")
    print(f"clean_step_ms={c * 1e3:.1f} eq6_step_ms={a * 1e3:.1f}")
    print(f"clean_img_per_s={args.batch / c:.0f} eq6_img_per_s={args.batch / a:.0f}")
    print(f"adv_step_over_clean_step={statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
