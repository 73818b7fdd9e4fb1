"""``consis train`` under torchrun (DDP, gloo, 2 CPU processes): both ranks end with
the same parameters and BatchNorm statistics, and rank 0's checkpoint holds them;
each rank has its own training RNG stream (dropout).

The launch is the documented multi-GPU command with a CPU device::

    python -m torch.distributed.run --standalone --nproc_per_node=2 -m consis_lib train ...

run through a small entry script that calls the same ``consis`` main and, when
training returns, writes a SHA-256 of the rank's parameters.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from consis_lib.models import build_model
from consis_lib.train import load_checkpoint

REPO = Path(__file__).resolve().parents[1]

ENTRY = '''
import hashlib, os, sys
import torch
import consis_lib.train_cli as train_cli
from consis_lib.cli import main

fit = train_cli.fit


def fit_and_hash(*args, **kwargs):
    result = fit(*args, **kwargs)
    digest = hashlib.sha256()
    for name, t in [*result.model.named_parameters(), *result.model.named_buffers()]:
        digest.update(name.encode())
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    rng = hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest()
    out = os.path.join(os.environ["HASH_DIR"], "rank" + os.environ["RANK"])
    with open(out, "w") as f:
        f.write(digest.hexdigest() + " " + rng)
    return result


train_cli.fit = fit_and_hash
sys.exit(main(sys.argv[1:]))
'''


def parameter_hash(model: torch.nn.Module) -> str:
    """SHA-256 of the parameters and buffers (BatchNorm running statistics)."""
    digest = hashlib.sha256()
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        digest.update(name.encode())
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _image_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 2)):
        for k, wnid in enumerate(("n02084071", "n02121808", "n02958343")):
            d = root / split / wnid
            d.mkdir(parents=True)
            for i in range(n):
                arr = (rng.random((32, 32, 3)) * 120).astype(np.uint8)
                arr[..., k] += 120
                Image.fromarray(arr).save(d / f"{i}.png")
    return root


def _torchrun(entry: Path, hashes: Path, args: list[str]) -> dict[str, str]:
    """Run ``consis train ARGS`` on 2 gloo processes; returns rank -> (hash of the
    parameters and buffers, hash of the training RNG state at the end)."""
    hashes.mkdir()
    env = dict(os.environ, HASH_DIR=str(hashes), OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(entry), "train", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {p.name: tuple(p.read_text().split()) for p in sorted(hashes.iterdir())}


def test_both_ranks_end_with_the_same_parameters(tmp_path: Path) -> None:
    """Eq. 6 (from scratch, so one launch covers the clean and the adversarial terms):
    two forward passes per step, the first one outside DDP's gradient sync."""
    entry = tmp_path / "entry.py"
    entry.write_text(ENTRY)
    data = _image_folder(tmp_path / "data")
    args = ["--arch", "resnet18", "--profile", "smoke", "--device", "cpu", "--data", str(data), "--batch-size", "4",
            "--adv", "--from-scratch", "--epochs", "1", "--out", str(tmp_path / "adv")]
    ranks = _torchrun(entry, tmp_path / "hashes", args)
    assert list(ranks) == ["rank0", "rank1"]
    (weights0, rng0), (weights1, rng1) = ranks["rank0"], ranks["rank1"]
    assert weights0 == weights1  # parameters, and BatchNorm statistics averaged over the ranks
    assert rng0 != rng1  # each rank draws its own dropout masks
    model, meta = load_checkpoint(tmp_path / "adv", arch="resnet18", num_classes=3)
    assert meta["adv"] and meta["epoch"] == 1
    assert parameter_hash(model) == weights0  # rank 0 saved the shared model
    torch.manual_seed(0)  # the profile's seed: the model the run started from
    assert parameter_hash(build_model("resnet18", 3, image_size=32)) != weights0  # and trained it
