"""Paper-scale ResNet-18 training throughput on CUDA: clean step vs Eq. 6 step (img/s).

Runs torchvision's exact ResNet-18 (random weights, 1000 classes, 224 px) with the
trainer's settings on a GPU: channels_last and autocast (bfloat16 where supported,
else float16 with a gradient scaler). Both step kinds are timed alternately on the
same batch in one run; the last line is ``eq6_over_clean_step_gpu=R``. Report the
card with the numbers (printed first).

Exits with status 2 and a one-line message when CUDA is not available.

With ``--kernels`` it also prints the CUDA kernels that take the most time in each
step kind (torch.profiler), to see where an Eq. 6 step spends more than two clean
steps.

Usage: ``python benchmarks/gpu_throughput.py [--batch 128] [--repeats 20] [--no-amp] [--kernels]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--no-amp", action="store_true")
    ap.add_argument("--kernels", action="store_true", help="print the top CUDA kernels per step kind")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu_throughput: no CUDA device visible; run this on a machine with an NVIDIA GPU", file=sys.stderr)
        return 2

    from consis_lib.models import build_model, metric_layer
    from consis_lib.train import StepOptions, clean_backward, eq6_backward

    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = build_model(args.arch, 1000, scale="paper").to(dev).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    amp = None
    scaler = None
    if not args.no_amp:
        amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    x = torch.rand(args.batch, 3, 224, 224, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (args.batch,), device=dev)
    opts = StepOptions(eps=2 / 255, layer=metric_layer(args.arch, "paper"), amp_dtype=amp)

    def step(fn) -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        fn(model, x, y, opts, scaler)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    for _ in range(5):
        step(clean_backward)
        step(eq6_backward)
    clean, adv = [], []
    for _ in range(args.repeats):
        clean.append(step(clean_backward))
        adv.append(step(eq6_backward))
    c, a = statistics.median(clean), statistics.median(adv)
    if args.kernels:
        from torch.profiler import ProfilerActivity, profile

        for fn in (clean_backward, eq6_backward):
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(5):
                    step(fn)
            print(f"--- {fn.__name__}: 5 steps")
            print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=10, max_name_column_width=60))
    print(f"device={torch.cuda.get_device_name(dev)} torch={torch.__version__} amp={amp} batch={args.batch}")
    print(f"clean_img_per_s={args.batch / c:.0f} eq6_img_per_s={args.batch / a:.0f}")
    print(f"eq6_over_clean_step_gpu={a / c:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
