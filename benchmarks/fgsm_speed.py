"""Speed of :func:`consis_lib.attacks.fgsm` relative to torchattacks' FGSM, same outputs.

Both attack the same model (eval mode) on the same batch; the script first checks
that the two adversarial batches are identical (exits 1 otherwise), then times them
alternately and prints ``fgsm_speed_vs_torchattacks=R`` last, R = torchattacks'
time / ours, the median over adjacent pairs of runs (R >= 1 means ours is at least as fast). torchattacks is a
benchmark-only dependency (``pip install '.[bench]'``).

Usage: ``python benchmarks/fgsm_speed.py [--arch resnet18] [--batch 256] [--repeats 15] [--device cuda]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from consis_lib.attacks import fgsm
from consis_lib.models import build_model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--classes", type=int, default=24)
    ap.add_argument("--eps", type=float, default=8 / 255)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--device", default="cpu", help="cpu (the goal is set on a 2-core CPU) or cuda")
    args = ap.parse_args()
    try:
        import torchattacks
    except ImportError:
        print("torchattacks is not installed: pip install '.[bench]'", file=sys.stderr)
        return 1

    torch.manual_seed(0)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    model = build_model(args.arch, args.classes, image_size=args.image_size).to(dev).eval()
    x = torch.rand(args.batch, 3, args.image_size, args.image_size, device=dev)
    y = torch.randint(0, args.classes, (args.batch,), device=dev)
    reference = torchattacks.FGSM(model, eps=args.eps)

    ours = fgsm(model, x, y, args.eps)
    theirs = reference(x, y)
    same = torch.equal(ours, theirs)
    differ = (ours != theirs).float().mean().item()
    print(f"identical_outputs={same} differing_pixels={differ:.2e} max_abs_diff={(ours - theirs).abs().max().item():.3g}")
    if not same:
        print("outputs differ: the benchmark is void", file=sys.stderr)
        return 1

    for _ in range(2):  # warm-up
        fgsm(model, x, y, args.eps)
        reference(x, y)
    t_ours, t_ref, ratios = [], [], []
    for i in range(args.repeats):
        # adjacent pairs, alternating which runs first: load drift on a shared CPU cancels
        order = ("ours", "ref") if i % 2 == 0 else ("ref", "ours")
        times = {}
        for who in order:
            sync()
            t0 = time.perf_counter()
            if who == "ours":
                fgsm(model, x, y, args.eps)
            else:
                reference(x, y)
            sync()
            times[who] = time.perf_counter() - t0
        t_ours.append(times["ours"])
        t_ref.append(times["ref"])
        ratios.append(times["ref"] / times["ours"])
    a, b = statistics.median(t_ours), statistics.median(t_ref)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu threads={torch.get_num_threads()}"
    print(f"arch={args.arch} batch={args.batch} device={where} torch={torch.__version__}")
    print(f"ours_ms={a * 1e3:.1f} torchattacks_ms={b * 1e3:.1f}")
    print(f"fgsm_speed_vs_torchattacks={statistics.median(ratios):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
