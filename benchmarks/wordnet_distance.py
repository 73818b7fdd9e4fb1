"""distance_matrix (one ancestor table per class) vs a plain nltk shortest_path_distance loop.

Both compute the same [C, C] matrix (checked here); the ratio is measured side by side
in one run on the same synsets; distance_matrix runs first and pays for reading the
synsets from disk, so the ratio understates its advantage.
Last line: ``distance_matrix_speedup=<nltk loop seconds / distance_matrix seconds>``.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np

from consis_lib.wordnet import distance_matrix, load_wordnet, wnid_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=145, help="number of noun synsets")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    t0 = time.perf_counter()
    wn = load_wordnet()
    print(f"load_wordnet_s={time.perf_counter() - t0:.2f}")
    nouns = sorted(wnid_of(s) for s in wn.all_synsets("n"))
    wnids = random.Random(args.seed).sample(nouns, args.classes)

    t0 = time.perf_counter()
    ours = distance_matrix(wnids)
    t_ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    syns = [wn.synset_from_pos_and_offset("n", int(w[1:])) for w in wnids]
    ref = np.array([[a.shortest_path_distance(b) for b in syns] for a in syns])
    t_ref = time.perf_counter() - t0

    assert np.array_equal(ours, ref), "distance_matrix disagrees with nltk"
    print(f"classes={args.classes} distance_matrix_s={t_ours:.3f} nltk_loop_s={t_ref:.3f}")
    print(f"distance_matrix_speedup={t_ref / t_ours:.1f}")


if __name__ == "__main__":
    main()
