"""Eq. 6 training: the consistent loss, one step, fit/resume/checkpoints, the input
pipeline, bad input, torchrun."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from consis_lib import checkpoint as checkpoint_mod
from consis_lib import loaders
from consis_lib import train as train_mod
from consis_lib.attacks import fgsm_from_grad
from consis_lib.config import AttackConfig, ModelConfig, Profile, get_profile
from consis_lib.errors import ConsisError
from consis_lib.hooks import capture, count_hooks
from consis_lib.train import (
    StepOptions,
    augment,
    clean_backward,
    consistent_loss,
    eq6_backward,
    fit,
    load_checkpoint,
)

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- consistent loss


def test_consistent_loss_gradient_is_2_a_minus_b_over_n() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 4, 2, 2, generator=g, requires_grad=True)
    b = torch.randn(3, 4, 2, 2, generator=g, requires_grad=True)
    consistent_loss(b, a).backward()
    n = a.numel()
    assert torch.allclose(a.grad, 2 * (a - b).detach() / n)
    assert b.grad is None  # stop-gradient on the clean side
    a.grad = None
    consistent_loss(b, a, stop_gradient=False).backward()
    assert torch.allclose(b.grad, -2 * (a - b).detach() / n)


def test_consistent_loss_known_values() -> None:
    clean = torch.tensor([[0.0, 0.0]])
    adv = torch.tensor([[1.0, 2.0]])
    assert float(consistent_loss(clean, adv)) == pytest.approx(2.5)
    # normalised: orthogonal unit vectors are sqrt(2) apart
    u, v = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 0.5]])
    assert float(consistent_loss(u, v, normalize=True)) == pytest.approx(2.0)


def test_normalised_consistent_loss_is_scale_free() -> None:
    """The collapse guard: shrinking all features towards 0 does not lower it."""
    g = torch.Generator().manual_seed(1)
    f, h = torch.rand(4, 8, 3, 3, generator=g), torch.rand(4, 8, 3, 3, generator=g)
    base = consistent_loss(f, h, normalize=True)
    for c in (1e-3, 0.5, 7.0):
        assert float(consistent_loss(c * f, c * h, normalize=True)) == pytest.approx(float(base), rel=1e-5)
    raw = float(consistent_loss(f, h))
    assert float(consistent_loss(0.1 * f, 0.1 * h)) == pytest.approx(0.01 * raw, rel=1e-5)  # raw MSE is not


# --------------------------------------------------------------------------- one Eq. 6 step


class Tiny(nn.Module):
    """Conv -> ReLU ("feat") -> pool -> linear, no BatchNorm/Dropout (mode-free)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.feat = nn.ReLU()
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.feat(self.conv(x)).mean((2, 3)))


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(8, 3, 6, 6, generator=g), torch.randint(0, 4, (8,), generator=g)


@pytest.mark.parametrize(("alpha", "beta", "normalize"), [(0.5, 0.0, False), (0.3, 2.0, False), (0.5, 0.7, True)])
def test_eq6_gradients_match_direct_autograd(alpha: float, beta: float, normalize: bool) -> None:
    x, y = batch()
    eps = 0.05
    model = Tiny()
    opts = StepOptions(alpha=alpha, beta=beta, eps=eps, layer="feat", normalize_features=normalize)
    out = eq6_backward(model, x, y, opts)
    got = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert count_hooks(model) == 0

    # Direct evaluation of Eq. 6 with an independently computed FGSM image.
    ref = Tiny()
    xg = x.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(F.cross_entropy(ref(xg), y), xg)
    x_adv = (x + eps * gx.sign()).clamp(0, 1)
    with capture(ref, ["feat"], detach=False) as f:
        ce_clean = F.cross_entropy(ref(x), y)
        phi_clean = f["feat"].detach()
        ce_adv = F.cross_entropy(ref(x_adv), y)
        phi_adv = f["feat"]
    if normalize:
        d = (F.normalize(phi_adv.flatten(1), dim=1) - F.normalize(phi_clean.flatten(1), dim=1)).pow(2).sum(1).mean()
    else:
        d = (phi_adv - phi_clean).pow(2).mean()
    loss = alpha * ce_clean + (1 - alpha) * ce_adv + beta * d
    loss.backward()
    assert float(out["loss"]) == pytest.approx(float(loss.detach()), rel=1e-5)
    for n, p in ref.named_parameters():
        assert torch.allclose(got[n], p.grad, atol=1e-6), n


def test_eq6_with_alpha_one_and_beta_zero_is_a_clean_step_plus_nothing() -> None:
    x, y = batch(1)
    m1, m2 = Tiny(), Tiny()
    eq6_backward(m1, x, y, StepOptions(alpha=1.0, beta=0.0, layer="feat"))
    clean_backward(m2, x, y)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert torch.allclose(p1.grad, p2.grad, atol=1e-7)


def test_one_optimiser_step_lowers_the_eq6_loss() -> None:
    x, y = batch(2)
    model = Tiny()
    opts = StepOptions(alpha=0.5, beta=0.5, eps=0.03, layer="feat", normalize_features=True)
    # x* of the current model, then the Eq. 6 objective at that fixed x*
    xg = x.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(F.cross_entropy(model(xg), y), xg)
    x_adv = fgsm_from_grad(x, gx, opts.eps)

    def objective() -> float:
        with torch.no_grad(), capture(model, ["feat"]) as f:
            ce = F.cross_entropy(model(x), y)
            fc = f["feat"]
            ca = F.cross_entropy(model(x_adv), y)
            return float(0.5 * ce + 0.5 * ca + opts.beta * consistent_loss(fc, f["feat"], normalize=True))

    before = objective()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    out = eq6_backward(model, x, y, opts)
    assert float(out["loss"]) == pytest.approx(before, rel=1e-5)
    opt.step()
    assert objective() < before


def test_augment_is_deterministic_flip_and_shift() -> None:
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    a = augment(x, torch.Generator().manual_seed(0))
    b = augment(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape
    # every output pixel is an input pixel of the same image and channel
    for i in range(2):
        for c in range(3):
            assert set(a[i, c].flatten().tolist()) <= set(x[i, c].flatten().tolist())


# --------------------------------------------------------------------------- fit


def synthetic(n_per_class: int, classes: int = 4, seed: int = 0, size: int = 16) -> TensorDataset:
    """Class = a colour tint plus noise: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    tints = torch.linspace(0.1, 0.9, classes)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    x = 0.5 * torch.rand(len(y), 3, size, size, generator=g)
    x[:, 0] += tints[y].view(-1, 1, 1) * 0.5
    return TensorDataset(x.clamp(0, 1), y)


def tiny_profile(**train: object) -> Profile:
    base = get_profile("smoke")
    fields: dict[str, object] = dict(epochs=2, adv_epochs=2, batch_size=16, lr=0.05, adv_lr=0.02)
    fields.update(train)
    tcfg = dataclasses.replace(base.train, **fields)  # type: ignore[arg-type]
    return dataclasses.replace(
        base, train=tcfg, model=ModelConfig(arch="alexnet", width_divisor=16), attack=AttackConfig(eps=4 / 255)
    )


def test_fit_writes_checkpoint_and_log_that_reload(tmp_path: Path) -> None:
    prof = tiny_profile()
    res = fit(prof, tmp_path / "n", train_set=synthetic(12), val_set=synthetic(4, seed=1), progress=False)
    lines = [json.loads(s) for s in (tmp_path / "n" / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in lines] == [1, 2]
    for key in ("loss", "train_acc", "val_acc", "val_fgsm_acc", "feature_mean"):
        assert all(np.isfinite(e[key]) for e in lines), key
    model, meta = load_checkpoint(tmp_path / "n")
    assert meta["arch"] == "alexnet" and meta["num_classes"] == 4 and meta["epoch"] == 2 and not meta["adv"]
    assert len(meta["config_hash"]) == 12
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), res.model(x))
    assert not list((tmp_path / "n").glob("*.tmp"))


def test_at_control_is_the_eq6_trainer_with_beta_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """AT differs from Eq. 6 in beta only and trains through the same eq6_backward."""
    from consis_lib.run_training import model_plan

    plan = {name: (prof, adv) for name, prof, adv in model_plan(tiny_profile(), "alexnet", seed=3)}
    at, eq6 = plan["at"][0], plan["adv"][0]
    assert plan["at"][1] and plan["adv"][1] and not plan["normal"][1]
    assert at.train.beta == 0.0 and eq6.train.beta > 0
    assert dataclasses.replace(at.train, beta=eq6.train.beta) == eq6.train
    assert at.train.seed == eq6.train.seed == plan["normal"][0].train.seed == 3
    betas: list[float] = []
    original = train_mod.eq6_backward

    def spy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, opts: StepOptions, scaler: object = None) -> dict:
        betas.append(opts.beta)
        return original(model, x, y, opts, scaler)

    monkeypatch.setattr(train_mod, "eq6_backward", spy)
    normal = fit(plan["normal"][0], tmp_path / "n", train_set=synthetic(8), val_set=synthetic(4, seed=1), progress=False)
    res = fit(at, tmp_path / "at", adv=True, init=normal.checkpoint, train_set=synthetic(8), val_set=synthetic(4, seed=1), progress=False)
    assert betas and set(betas) == {0.0}
    last = res.history[-1]
    assert last["share_consistent"] == 0.0 and last["beta_d"] == 0.0 and last["consistent"] > 0
    assert last["share_ce_clean"] + last["share_ce_adv"] == pytest.approx(1.0)


def test_loss_shares_add_up_to_one() -> None:
    shares = train_mod.loss_shares({"ce_clean": 0.4, "ce_adv": 1.6, "consistent": 0.3}, alpha=0.5, beta=2.0)
    assert shares["beta_d"] == pytest.approx(0.6)
    assert shares["share_consistent"] == pytest.approx(0.6 / 1.6)
    assert shares["share_ce_clean"] + shares["share_ce_adv"] + shares["share_consistent"] == pytest.approx(1.0)


def test_zero_epochs_records_the_starting_model(tmp_path: Path) -> None:
    """The paper profile's normal model is the pretrained one: 0 epochs still give a checkpoint."""
    res = fit(tiny_profile(epochs=0), tmp_path, train_set=synthetic(8), val_set=synthetic(4, seed=1), progress=False)
    model, meta = load_checkpoint(tmp_path)
    assert meta["epoch"] == 0 and [h["epoch"] for h in meta["history"]] == [0]
    assert 0.0 <= meta["history"][0]["val_acc"] <= 1.0
    assert _states_equal(model.state_dict(), res.model.state_dict())


def _states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("adv", "workers"), [(False, 0), (True, 0), (False, 1)])
def test_resume_equals_uninterrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, adv: bool, workers: int) -> None:
    """Bitwise, also with persistent loader workers (AlexNet's dropout draws from the global RNG)."""
    prof = tiny_profile(num_workers=workers)
    data = dict(train_set=synthetic(12), val_set=synthetic(4, seed=1), progress=False)
    init = None
    if adv:
        init = fit(dataclasses.replace(prof, train=dataclasses.replace(prof.train, epochs=1)), tmp_path / "n", **data).checkpoint
    full = fit(prof, tmp_path / "full", adv=adv, init=init, **data)

    real_save = checkpoint_mod._atomic_save

    class Crash(Exception):
        pass

    def crash_after_first(obj: dict, path: Path) -> None:
        real_save(obj, path)
        if obj["epoch"] == 1:
            raise Crash

    monkeypatch.setattr(checkpoint_mod, "_atomic_save", crash_after_first)
    with pytest.raises(Crash):
        fit(prof, tmp_path / "part", adv=adv, init=init, **data)
    monkeypatch.setattr(checkpoint_mod, "_atomic_save", real_save)
    assert load_checkpoint(tmp_path / "part")[1]["epoch"] == 1
    resumed = fit(prof, tmp_path / "part", adv=adv, init=init, resume=True, **data)
    assert _states_equal(resumed.model.state_dict(), full.model.state_dict())
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]


# --------------------------------------------------------------------------- input pipeline


def test_training_loader_is_built_once_per_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[object] = []
    real = train_mod.train_loader

    def spy(*args: object, **kwargs: object) -> object:
        built.append(real(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(train_mod, "train_loader", spy)
    res = fit(tiny_profile(epochs=3, num_workers=1), tmp_path, train_set=synthetic(8), val_set=synthetic(2, seed=1),
              progress=False)
    assert len(res.history) == 3 and len(built) == 1
    assert built[0].persistent_workers and not built[0].pin_memory  # type: ignore[attr-defined]


@pytest.mark.parametrize(("workers", "device"), [(0, "cpu"), (2, "cpu"), (2, "cuda")])
def test_loaders_persist_workers_and_pin_for_cuda(workers: int, device: str) -> None:
    data = synthetic(4)
    for loader in (loaders.train_loader(data, 4, workers, 0, device), loaders.eval_loader(data, 4, workers, device)):
        assert loader.persistent_workers == (workers > 0)
        assert loader.pin_memory == (device == "cuda")


def _smooth_jpeg(path: Path, size: tuple[int, int]) -> Path:
    """A photograph-like (smooth) RGB JPEG of ``size`` = (width, height)."""
    from PIL import Image

    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / h
    arr = np.stack([0.5 + 0.4 * np.sin(3 * np.pi * xx), 0.5 + 0.4 * np.cos(4 * np.pi * yy), (xx + yy) / 3], -1)
    Image.fromarray((arr * 255).clip(0, 255).astype(np.uint8)).save(path, quality=95)
    return path


def test_drafted_jpeg_decode_matches_a_full_decode(tmp_path: Path) -> None:
    """JPEG draft: decoded at 1/2 scale (shorter side 384 >= 256), then resized 256 / cropped 224."""
    from consis_lib.data.imagefolder import load_image, resize_center_crop, to_tensor

    path = _smooth_jpeg(tmp_path / "a.jpg", (1024, 768))
    drafted, full = load_image(path, min_side=256), load_image(path)
    assert full.size == (1024, 768) and drafted.size == (512, 384)
    assert load_image(path, min_side=400).size == (1024, 768)  # 1/2 would be smaller than 400
    a = to_tensor(resize_center_crop(drafted, 224, 256))
    b = to_tensor(resize_center_crop(full, 224, 256))
    assert a.shape == b.shape == (3, 224, 224)
    diff = (a - b).abs() * 255
    assert float(diff.mean()) < 1.0 and float(diff.max()) <= 8.0


def _framed_folder(root: Path, side: int, frame: int) -> Path:
    """train/ and val/ with one PNG: a white square inside a red frame ``frame`` px wide."""
    from PIL import Image

    arr = np.zeros((side, side, 3), np.uint8)
    arr[..., 0] = 255
    arr[frame:-frame, frame:-frame] = 255
    for split in ("train", "val"):
        (root / split / "n02084071").mkdir(parents=True)
        Image.fromarray(arr).save(root / split / "n02084071" / "a.png")
    return root


def test_paper_scale_images_are_resized_to_256_and_cropped_to_224(tmp_path: Path, wordnet: object) -> None:
    """torchvision's evaluation transform: the 16-px frame of a 256-px image falls outside the
    224 crop (resized straight to 224, as before, its top rows would be red)."""
    from consis_lib.train import load_datasets

    root = _framed_folder(tmp_path / "imagenet", side=256, frame=16)
    dcfg = dataclasses.replace(get_profile("paper").data, root=str(root))
    train, val, wnids = load_datasets(dcfg)
    assert wnids == ["n02084071"] and train.resize_size == val.resize_size == 256  # type: ignore[attr-defined]
    x, _ = val[0]
    assert x.shape == (3, 224, 224) and torch.equal(x, torch.ones_like(x))
    small = dataclasses.replace(get_profile("smoke").data, source="folder", root=str(root))
    train, _, _ = load_datasets(small)
    assert train.resize_size == 32 and train[0][0].shape == (3, 32, 32)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- bad input


def test_unknown_arch_is_a_consis_error(tmp_path: Path) -> None:
    with pytest.raises(ConsisError, match="unknown arch"):
        fit(tiny_profile(), tmp_path, arch="lenet", train_set=synthetic(4), val_set=synthetic(2))


def test_checkpoint_of_another_arch_or_class_count_is_refused(tmp_path: Path) -> None:
    prof = tiny_profile(epochs=1)
    data = dict(train_set=synthetic(8), val_set=synthetic(2, seed=1), progress=False)
    fit(prof, tmp_path / "a", **data)
    with pytest.raises(ConsisError, match="alexnet checkpoint, not resnet18"):
        load_checkpoint(tmp_path / "a", arch="resnet18")
    with pytest.raises(ConsisError, match="4 classes, the data has 5"):
        load_checkpoint(tmp_path / "a" / "model.pt", num_classes=5)
    with pytest.raises(ConsisError, match="not resnet18"):
        fit(prof, tmp_path / "b", arch="resnet18", adv=True, init=tmp_path / "a", **data)
    five = dict(train_set=synthetic(4, classes=5), val_set=synthetic(2, classes=5), progress=False)
    with pytest.raises(ConsisError, match="4 classes"):
        fit(prof, tmp_path / "c", adv=True, init=tmp_path / "a", **five)
    with pytest.raises(ConsisError, match="--init"):
        fit(prof, tmp_path / "d", adv=True, **data)
    other = dataclasses.replace(prof, train=dataclasses.replace(prof.train, lr=0.01))
    with pytest.raises(ConsisError, match="another configuration"):
        fit(other, tmp_path / "a", resume=True, **data)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConsisError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")


def test_nan_loss_raises_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    prof = tiny_profile(epochs=1)
    fit(prof, tmp_path, train_set=synthetic(8), val_set=synthetic(2, seed=1), progress=False)
    good = (tmp_path / "model.pt").read_bytes()
    bad = synthetic(8)
    bad.tensors[0][:] = float("nan")
    with pytest.raises(ConsisError, match=r"loss is nan at epoch 1 step 1 .*last good checkpoint"):
        fit(prof, tmp_path, train_set=bad, val_set=synthetic(2, seed=1), progress=False)
    assert (tmp_path / "model.pt").read_bytes() == good
    assert not list(tmp_path.glob("*.tmp"))


def test_paper_scale_eq6_on_torchvision_resnet18(tmp_path: Path) -> None:
    """The paper path (torchvision ResNet-18, random weights) runs Eq. 6 end to end."""
    base = get_profile("paper")
    prof = dataclasses.replace(
        base,
        model=dataclasses.replace(base.model, pretrained=False),
        train=dataclasses.replace(
            base.train, epochs=1, batch_size=4, num_workers=0, finetune_from_normal=False, augment=False
        ),
    )
    res = fit(prof, tmp_path, arch="resnet18", adv=True, train_set=synthetic(2, size=64),
              val_set=synthetic(1, size=64), progress=False)
    meta = load_checkpoint(tmp_path, arch="resnet18", num_classes=4)[1]
    assert meta["scale"] == "paper" and meta["layer"] == "layer4" and meta["adv"]
    assert np.isfinite(res.history[0]["consistent"])


# --------------------------------------------------------------------------- folders, CLI, torchrun


def _image_folder(root: Path, per_class: int, size: int = 32) -> Path:
    """A tiny ImageNet-layout folder (WNID class folders of PNGs)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", max(2, per_class // 4))):
        for k, wnid in enumerate(("n02084071", "n02121808", "n02958343")):  # dog, domestic cat, car
            d = root / split / wnid
            d.mkdir(parents=True)
            for i in range(n):
                arr = (rng.random((size, size, 3)) * 120).astype(np.uint8)
                arr[..., k] += 120
                Image.fromarray(arr).save(d / f"{i}.png")
    return root


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def test_cli_trains_from_an_image_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], wordnet: object
) -> None:
    pytest.importorskip("consis_lib.data.imagefolder")
    from consis_lib.cli import main

    data = _image_folder(tmp_path / "data", per_class=8)
    out = tmp_path / "run"
    args = ["train", "--arch", "resnet18", "--profile", "smoke", "--data", str(data), "--batch-size", "8",
            "--epochs", "1", "--device", "cpu"]
    assert main(args + ["--out", str(out)]) == 0
    model, meta = load_checkpoint(out, arch="resnet18", num_classes=3)
    assert meta["wnids"] == ["n02084071", "n02121808", "n02958343"]
    assert meta["config"]["train"]["batch_size"] == 8 and meta["config"]["train"]["epochs"] == 1
    capsys.readouterr()
    assert main(args + ["--out", str(tmp_path / "x"), "--adv"]) == 2
    err = capsys.readouterr().err
    assert "--init" in err and len(err.strip().splitlines()) == 1
    assert main(args + ["--out", str(tmp_path / "y"), "--adv", "--init", str(out)]) == 0
    assert load_checkpoint(tmp_path / "y")[1]["adv"]


@pytest.mark.slow
def test_torchrun_two_processes_gloo_smoke(tmp_path: Path) -> None:
    pytest.importorskip("consis_lib.data.imagefolder")
    data = _image_folder(tmp_path / "data", per_class=16)
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "consis_lib", "train", "--arch", "resnet18", "--profile", "smoke", "--device", "cpu",
           "--data", str(data), "--out", str(out), "--batch-size", "8"]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model, meta = load_checkpoint(out, arch="resnet18", num_classes=3)
    assert meta["epoch"] == get_profile("smoke").train.epochs
    log = [json.loads(s) for s in (out / "log.jsonl").read_text().splitlines()]
    assert len(log) == meta["epoch"]  # rank 0 only writes
    # adversarial fine-tuning under torchrun from that checkpoint
    proc = subprocess.run(cmd[:-4] + ["--out", str(tmp_path / "ddp_adv"), "--adv", "--init", str(out),
                                      "--batch-size", "8"], env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert load_checkpoint(tmp_path / "ddp_adv")[1]["adv"]
