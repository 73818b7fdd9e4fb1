"""Model factory: paper-scale torchvision architectures, small variants, metric layers."""

from __future__ import annotations

import time
import urllib.error
from collections.abc import Callable

import pytest
import torch
import torchvision
from torch import nn

from consis_lib import models
from consis_lib.config import ModelConfig
from consis_lib.errors import ConsisError
from consis_lib.hooks import capture, count_hooks
from consis_lib import weights
from consis_lib.models import (
    ARCHS,
    Normalize,
    build_model,
    metric_layer,
    model_from_config,
)
from consis_lib.weights import check_pretrained_head


@pytest.fixture(scope="module")
def paper_model() -> Callable[[str], nn.Module]:
    """Paper-scale models built once per module (VGG-16 takes seconds to initialise)."""
    cache: dict[str, nn.Module] = {}

    def get(arch: str) -> nn.Module:
        if arch not in cache:
            cache[arch] = build_model(arch, 1000, scale="paper")
        return cache[arch]

    return get


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_normalize_known_answer() -> None:
    norm = Normalize(mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 2.0))
    x = torch.tensor([1.0, 0.5, 1.0]).view(1, 3, 1, 1)
    assert torch.allclose(norm(x).flatten(), torch.tensor([1.0, 1.0, 0.5]))
    assert len(norm.state_dict()) == 0  # buffers are not persistent


@pytest.mark.parametrize("arch", ["alexnet", "resnet18", "vgg16"])
def test_paper_scale_is_exactly_torchvision(arch: str, paper_model: Callable[[str], nn.Module]) -> None:
    ours = paper_model(arch)
    ref = getattr(torchvision.models, arch)()
    assert n_params(ours) == n_params(ref)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert [n for n, _ in ours.named_children()][0] == "normalize"
    if arch == "vgg16":
        return  # a forward pass of VGG-16 at 224 px is slow on a shared CPU
    # torchvision's weights load strictly; our model = torchvision's on normalised input
    ours = build_model(arch, 1000, scale="paper")
    ours.load_state_dict(ref.state_dict())
    ours.eval(), ref.eval()
    x = torch.rand(2, 3, 96, 96)
    mean = torch.tensor(models.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(models.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref((x - mean) / std), atol=1e-5)


def _last_relu_after_last_conv(model: nn.Module, prefix: str) -> str:
    names = [(n, m) for n, m in model.named_modules() if n.startswith(prefix + ".")]
    last_conv = max(i for i, (_, m) in enumerate(names) if isinstance(m, nn.Conv2d))
    return next(n for n, m in names[last_conv:] if isinstance(m, nn.ReLU))


@pytest.mark.parametrize("scale", ["paper", "small"])
@pytest.mark.parametrize("arch", ["alexnet", "vgg16"])
def test_metric_layer_is_relu_after_last_conv(
    arch: str, scale: str, paper_model: Callable[[str], nn.Module]
) -> None:
    model = paper_model(arch) if scale == "paper" else build_model(arch, 10, scale=scale)
    assert metric_layer(arch, scale) == _last_relu_after_last_conv(model, "features")


def test_metric_layer_paper_names() -> None:
    assert metric_layer("alexnet", "paper") == "features.11"
    assert metric_layer("vgg16", "paper") == "features.29"
    assert metric_layer("resnet18", "paper") == "layer4"


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("size", [32, 64])
def test_small_models_shapes_and_metric_maps(arch: str, size: int) -> None:
    model = build_model(arch, 7, image_size=size).eval()
    x = torch.rand(3, size, size).expand(2, 3, size, size).contiguous()
    layer = metric_layer(arch)
    with torch.no_grad(), capture(model, [layer]) as feats:
        out = model(x)
    assert out.shape == (2, 7)
    fmap = feats[layer]
    assert fmap.ndim == 4 and fmap.shape[0] == 2 and fmap.shape[2] >= 4  # a spatial map
    assert float(fmap.min()) >= 0.0  # after ReLU
    assert count_hooks(model) == 0


def test_width_divisor_scales_parameters() -> None:
    wide = n_params(build_model("resnet18", 10, width_divisor=2))
    narrow = n_params(build_model("resnet18", 10, width_divisor=4))
    assert 3.0 < wide / narrow < 4.2  # conv parameters scale with width squared


def test_model_from_config_uses_fields() -> None:
    m = model_from_config(ModelConfig(arch="alexnet", width_divisor=8), num_classes=5, image_size=32)
    assert isinstance(m, models.SmallAlexNet)
    assert m.classifier[-1].out_features == 5


def test_unknown_arch_and_scale_are_consis_errors() -> None:
    with pytest.raises(ConsisError, match="unknown arch 'lenet'"):
        build_model("lenet", 10)
    with pytest.raises(ConsisError, match="scale"):
        metric_layer("resnet18", "huge")
    with pytest.raises(ConsisError, match="pretrained"):
        build_model("resnet18", 10, scale="small", pretrained=True)


def test_pretrained_without_network_fails_fast(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    calls = []

    def offline(url: str, timeout: float = 10.0) -> None:
        calls.append(url)
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(weights, "_probe_url", offline)
    t0 = time.perf_counter()
    with pytest.raises(ConsisError, match="resnet18-f37072fd.pth"):
        build_model("resnet18", 1000, scale="paper", pretrained=True)
    assert time.perf_counter() - t0 < 20
    assert calls and calls[0].startswith("https://")
    assert not any(tmp_path.rglob("*.pth"))


def test_pretrained_uses_cached_weights(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(weights, "_probe_url", lambda *a, **k: pytest.fail("must not touch the network"))
    torch.manual_seed(3)
    ref = torchvision.models.resnet18()
    ckpt_dir = tmp_path / "hub" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    torch.save(ref.state_dict(), ckpt_dir / "resnet18-f37072fd.pth")
    model = build_model("resnet18", 1000, scale="paper", pretrained=True)
    assert torch.equal(model.conv1.weight, ref.conv1.weight)
    assert torch.equal(model.fc.weight, ref.fc.weight)
    # another class count keeps the backbone, re-initialises the classifier
    model10 = build_model("resnet18", 10, scale="paper", pretrained=True)
    assert torch.equal(model10.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)
    assert model10.fc.out_features == 10


# --------------------------------------------------------------------------- local weights (--weights DIR)


@pytest.fixture(scope="module")
def imagenet_state() -> dict[str, torch.Tensor]:
    """A full-size torchvision ResNet-18 state_dict (1000 classes) at random weights."""
    torch.manual_seed(7)
    return torchvision.models.resnet18().state_dict()


def _weights_dir(folder, state: dict[str, torch.Tensor], name: str = "resnet18.pth"):
    folder.mkdir(exist_ok=True)
    torch.save(state, folder / name)
    return folder


def _states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["resnet18.pth", "resnet18-f37072fd.pth"])
def test_weights_folder_loads_exactly(tmp_path, monkeypatch, imagenet_state, name: str, caplog) -> None:
    monkeypatch.setattr(weights, "_probe_url", lambda *a, **k: pytest.fail("must not touch the network"))
    folder = _weights_dir(tmp_path / "w", imagenet_state, name)
    with caplog.at_level("WARNING", logger="consis_lib.models"):
        model = build_model("resnet18", 1000, scale="paper", pretrained=True, weights=folder)
    assert _states_equal(model.state_dict(), imagenet_state)
    assert not caplog.records
    mcfg = ModelConfig(arch="resnet18", scale="paper", width_divisor=1, pretrained=True, weights=str(folder))
    assert _states_equal(model_from_config(mcfg, 1000, 224).state_dict(), imagenet_state)


def test_head_of_another_class_count_is_replaced_with_a_warning(tmp_path, imagenet_state, caplog) -> None:
    folder = _weights_dir(tmp_path / "w", imagenet_state)
    with caplog.at_level("WARNING", logger="consis_lib.models"):
        model = build_model("resnet18", 10, scale="paper", pretrained=True, weights=folder)
    (record,) = caplog.records
    assert record.levelname == "WARNING" and "head fc replaced (1000 -> 10 classes)" in record.getMessage()
    own = model.state_dict()
    assert model.fc.out_features == 10
    assert all(torch.equal(own[k], v) for k, v in imagenet_state.items() if not k.startswith("fc."))


def test_untrained_replaced_head_is_refused(tmp_path, imagenet_state) -> None:
    folder = _weights_dir(tmp_path / "w", imagenet_state)
    mcfg = ModelConfig(arch="resnet18", scale="paper", width_divisor=1, pretrained=True, weights=str(folder))
    with pytest.raises(ConsisError, match="has 1000 classes, the data 10, and the normal model trains 0 epochs"):
        check_pretrained_head(mcfg, 10, normal_epochs=0)
    check_pretrained_head(mcfg, 10, normal_epochs=2)  # the head is trained
    check_pretrained_head(mcfg, 1000, normal_epochs=0)  # the head is the weights' own
    check_pretrained_head(ModelConfig(arch="resnet18"), 10, normal_epochs=0)  # nothing pretrained


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda s: s.pop("layer1.0.conv1.weight"), "missing layer1.0.conv1.weight"),
        (lambda s: s.update(extra=torch.zeros(1)), "unexpected extra"),
        (lambda s: s.update({"conv1.weight": torch.zeros(64, 3, 3, 3)}), "conv1.weight is (64, 3, 3, 3), the model needs (64, 3, 7, 7)"),
    ],
)
def test_weights_that_do_not_fit_are_refused(tmp_path, imagenet_state, change, expected: str) -> None:
    state = dict(imagenet_state)
    change(state)
    folder = _weights_dir(tmp_path / "w", state)
    with pytest.raises(ConsisError, match="pretrained weights do not fit torchvision's resnet18") as exc:
        build_model("resnet18", 1000, scale="paper", pretrained=True, weights=folder)
    assert expected in str(exc.value) and "\n" not in str(exc.value)
    mcfg = ModelConfig(arch="resnet18", scale="paper", pretrained=True, weights=str(folder))
    with pytest.raises(ConsisError, match=expected.replace("(", "\\(").replace(")", "\\)")):
        check_pretrained_head(mcfg, 1000, normal_epochs=1)


def test_weights_folder_without_the_file_or_with_another_file(tmp_path) -> None:
    folder = tmp_path / "w"
    folder.mkdir()
    with pytest.raises(ConsisError, match=r"weights folder .*/w has no resnet18.pth or resnet18-f37072fd.pth"):
        build_model("resnet18", 1000, scale="paper", pretrained=True, weights=folder)
    with pytest.raises(ConsisError, match="does not exist"):
        build_model("resnet18", 1000, scale="paper", pretrained=True, weights=tmp_path / "none")
    torch.save({"epoch": 3}, folder / "resnet18.pth")
    with pytest.raises(ConsisError, match="is not a state_dict"):
        build_model("resnet18", 1000, scale="paper", pretrained=True, weights=folder)
    with pytest.raises(ConsisError, match="only for scale='paper'"):
        build_model("resnet18", 10, weights=folder)


def test_train_command_checks_the_weights_first(tmp_path, imagenet_state, capsys) -> None:
    """``consis train --weights``: refused for small models, and for an untrained replaced head."""
    from PIL import Image

    from consis_lib.cli import main

    folder = _weights_dir(tmp_path / "w", imagenet_state)
    small = ["train", "--arch", "resnet18", "--profile", "smoke", "--weights", str(folder), "--out", str(tmp_path / "a")]
    assert main(small) == 2
    assert "--weights needs pretrained torchvision models: profile smoke builds small-scale models" in capsys.readouterr().err
    for split in ("train", "val"):
        for wnid in ("n02084071", "n02958343"):
            (tmp_path / "d" / split / wnid).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / "d" / split / wnid / "0.png")
    paper = ["train", "--arch", "resnet18", "--profile", "paper", "--data", str(tmp_path / "d"), "--batch-size", "2",
             "--device", "cpu", "--weights", str(folder), "--out", str(tmp_path / "b")]
    assert main(paper) == 2
    err = capsys.readouterr().err
    assert "has 1000 classes, the data 2, and the normal model trains 0 epochs" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()
