"""Throughput of the embedded data generators, and the cost of writing relative to drawing.

Times, alternately in one run and on the same classes, (a) drawing composites only
(:func:`consis_lib.data.compose.compose`), (b) the full embedded-set generator
(composite + PNG write + bookkeeping) and (c) the probe generator (composite + colour
labelling + up to four label PNGs per image, at ``probe_size``).  Prints images/s of
each and, last, ``generate_over_compose=R``: the full generator's cost per image
relative to compositing alone (the share of time spent outside the compositor).

Usage: ``python benchmarks/generate_data.py [--images-per-class 40] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from consis_lib.config import DataConfig
from consis_lib.data.classes import classes_for_profile
from consis_lib.data.compose import compose
from consis_lib.data.embedded import SPRITE_SIZE, generate_embedded, image_rng
from consis_lib.data.probe import generate_probe
from consis_lib.data.sprite_styles import STYLES
from consis_lib.data.sprites import load_sprites


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images-per-class", type=int, default=40)
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        cfg = DataConfig(
            profile="default",
            num_classes=args.classes,
            train_per_class=args.images_per_class,
            val_per_class=0,
            probe_images=args.classes * args.images_per_class // 2,
        )
        classes = classes_for_profile(cfg)
        sprites = load_sprites([c.emoji for c in classes], STYLES, SPRITE_SIZE, cache)
        n = len(classes) * args.images_per_class
        generate_embedded(cfg, Path(tmp) / "warm", cache)  # loads WordNet, warms caches

        t_compose, t_embed, t_probe = [], [], []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            for c in classes:
                for i in range(args.images_per_class):
                    style = STYLES[(i + int(c.wnid[1:])) % len(STYLES)]
                    compose(sprites[style][c.emoji], cfg.image_size, image_rng(cfg.seed, "train", c.wnid, i))
            t_compose.append((time.perf_counter() - t0) / n)
            t0 = time.perf_counter()
            generate_embedded(cfg, Path(tmp) / f"e{r}", cache)
            t_embed.append((time.perf_counter() - t0) / n)
            t0 = time.perf_counter()
            generate_probe(cfg, Path(tmp) / f"p{r}", cache)
            t_probe.append((time.perf_counter() - t0) / cfg.probe_images)

    mc, me, mp = (statistics.median(t) for t in (t_compose, t_embed, t_probe))
    print(f"images={n} image_size={cfg.image_size} probe_size={cfg.probe_size} repeats={args.repeats}")
    print(f"compose_only_images_per_s={1 / mc:.0f}")
    print(f"embedded_images_per_s={1 / me:.0f}")
    print(f"probe_images_per_s={1 / mp:.0f}")
    print(f"probe_over_embedded={mp / me:.2f}")
    print(f"generate_over_compose={me / mc:.2f}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
