"""``consis reproduce --profile paper`` end to end on the paper-shaped synthetic set.

The generated ImageNet-layout folder and Broden-layout probe stand in for ILSVRC-2012
and ``broden1_224``; the "pretrained" weights passed with ``--weights`` are
torchvision's exact ResNet-18 at random initialisation, with a head for the set's
classes (no download). Every per-architecture notebook, the summary and the
comparison page run, and the book is built, through the same command a user runs on
the real data.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from repo_copy import repository_copy

from consis_lib.data.paper_layout import PaperLayoutConfig, generate_paper_layout

REPO = Path(__file__).resolve().parents[1]
# the paper profile trains with batches of 256 images: the training split holds one;
# 20 validation images are the fewest the consistency metric ranks (min_top)
CFG = PaperLayoutConfig(classes=4, per_class=64, val_per_class=5, probe_images=24, seed=0)
PAGES = ("01_training", "02_ambiguity", "03_consistency", "04_dissection", "05_performance", "06_explorer")


@pytest.mark.slow
@pytest.mark.timeout(7200)
def test_paper_profile_runs_every_notebook_on_the_generated_set(tmp_path: Path) -> None:
    if not (REPO / "node_modules" / "@jupyter-widgets" / "html-manager" / "dist" / "embed-amd.js").is_file():
        pytest.skip("widget JavaScript not installed: run `make setup-js` (npm ci)")
    layout = generate_paper_layout(tmp_path / "data", CFG)
    weights = tmp_path / "weights"
    weights.mkdir()
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=CFG.classes).state_dict(), weights / "resnet18.pth")
    root = repository_copy(tmp_path / "repo")
    cmd = [
        sys.executable, "-m", "consis_lib", "reproduce", "--profile", "paper", "--root", str(root), "--arch", "resnet18",
        "--data", str(layout.imagenet), "--probe", str(layout.broden), "--weights", str(weights),
        "--highlight", "activation",  # 224 px discrepancy maps are hours of CPU time
        "--set", "attack.targeted_steps=10",  # Eq. 4 at 224 px: 200 Adam steps per image are minutes per model
    ]
    log = tmp_path / "reproduce.log"  # a long run: its progress can be followed there
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=fh, text=True, timeout=7100)
    assert proc.returncode == 0, proc.stdout[-2000:] + log.read_text()[-4000:]
    html = root / "book" / "_build" / "html"
    assert proc.stdout.strip().splitlines()[-1].endswith(str(html / "index.html"))
    for page in PAGES:
        assert (html / "notebooks" / "runs" / "resnet18" / f"{page}.html").is_file(), page
    assert (html / "notebooks" / "runs" / "summary.html").is_file()
    run = json.loads((root / "runs" / "paper" / "run.json").read_text())
    assert run["settings"] == ["attack.targeted_steps=10"] and run["inputs"]["data"] == str(layout.imagenet.resolve())
    page = (root / "notebooks" / "runs" / "resnet18" / "02_ambiguity.ipynb").read_text()
    assert "--set attack.targeted_steps=10" in page  # the page names the command that made it
    measures = json.loads((root / "runs" / "paper" / "resnet18" / "seed0" / "measures.json").read_text())
    assert measures["identity"]["profile"] == "paper" and measures["layer"] == "layer4"
    assert set(measures["models"]) >= {"normal", "at", "adv"}
    for model in ("normal", "at", "adv"):
        entry = measures["models"][model]
        assert len(entry["consis"]) == 512 and len(entry["clean_correct"]) == CFG.classes * CFG.val_count
        for images in ("real", "adversarial"):
            units = entry["dissection"][images]["units"]
            assert [u[0] for u in units] == list(range(512))
