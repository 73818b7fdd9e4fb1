"""Bring your own model: class mapping, normalisation wrapper, layer checks, ``consis measure``."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torchvision
from torch import nn

from consis_lib.classmap import NormalizedModel, class_map, imagenet1k_wnids
from consis_lib.cli import main
from consis_lib.config import get_profile
from consis_lib.errors import ConsisError
from consis_lib.measure import inspect_model

FAST = ["--image-size", "48", "--bootstrap", "20"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, wordnet):
    """The smoke profile's context: embedded data and a normal ResNet-18 trained for one epoch."""
    from consis_lib.context import ArchContext
    from consis_lib.train import fit

    prof = get_profile("smoke")
    prof = dataclasses.replace(prof, train=dataclasses.replace(prof.train, epochs=1))
    root = tmp_path_factory.mktemp("measure")
    ctx = ArchContext(prof, "resnet18", root / "runs", device="cpu")
    fit(prof, ctx.paths.checkpoint_dir("resnet18", "normal"), arch="resnet18", data_root=ctx.data_root, device="cpu", progress=False)
    return ctx


def test_imagenet1k_list_is_torchvisions_class_order():
    wnids = imagenet1k_wnids()
    assert len(wnids) == 1000 and len(set(wnids)) == 1000 and wnids == sorted(wnids)
    assert wnids[0] == "n01440764"  # tench, torchvision's output 0
    assert wnids[207] == "n02099601"  # golden retriever, output 207
    assert "n02084071" not in wnids  # ImageNet has dog breeds, not "dog"


def test_class_map_exact_hyponyms_and_unmapped(wordnet):
    cmap = class_map(["n01440764", "n02084071", "n02121620"], "imagenet1k", 1000)
    assert cmap.targets[0] == (0,)
    dogs = cmap.targets[1]
    assert len(dogs) == 118 and 207 in dogs and 0 not in dogs  # the 118 breeds of ILSVRC-2012
    assert cmap.needs_logits
    # explicit file-style mapping: class b has no output
    m = class_map(["n01440764", "n02084071"], {"n01440764": 2}, 3)
    assert m.targets == ((2,), ())
    logits = torch.tensor([[0.0, 5.0, 1.0], [0.0, 5.0, 1.0]])
    # mapped class: its output; unmapped class: the model's own prediction
    assert m.attack_labels(torch.tensor([0, 1]), logits).tolist() == [2, 1]
    # accuracy only over mapped classes: image 0 (class a) predicted 2 -> correct, image 2 wrong
    preds, labels = torch.tensor([2, 0, 1]), torch.tensor([0, 1, 0])
    assert m.correct(preds, labels).tolist() == [True, False, False]
    assert m.accuracy(preds, labels) == pytest.approx(0.5)


def test_class_map_picks_the_highest_scoring_mapped_output():
    m = class_map(["n01440764", "n02084071"], {"n01440764": [0, 3], "n02084071": 1}, 4)
    logits = torch.tensor([[1.0, 9.0, 0.0, 2.0], [1.0, 0.0, 9.0, 2.0]])
    assert m.attack_labels(torch.tensor([0, 1]), logits).tolist() == [3, 1]


def test_class_map_identity_and_size_mismatch(tmp_path):
    wnids = ["n01440764", "n02084071"]
    ident = class_map(wnids, None, 2)
    assert ident.source == "identity" and ident.is_identity and not ident.needs_logits
    assert ident.attack_labels(torch.tensor([1, 0, 1])).tolist() == [1, 0, 1]
    with pytest.raises(ConsisError, match="5 outputs and the data 2 classes"):
        class_map(wnids, None, 5)
    f = tmp_path / "classes.txt"
    f.write_text("n01440764\nn02084071\nn02121620\n")
    with pytest.raises(ConsisError, match="4 outputs but the class list"):
        class_map(wnids, f, 4)
    with pytest.raises(ConsisError, match="outside the model's 2 outputs"):
        class_map(wnids, {"n01440764": 7}, 2)
    assert class_map(wnids, f, 3).targets == ((0,), (1,))


def test_normalized_model_known_answer():
    torch.manual_seed(0)
    net = nn.Conv2d(3, 2, 1)
    mean, std = (0.5, 0.25, 0.0), (0.5, 0.25, 2.0)
    x = torch.rand(2, 3, 4, 4)
    expected = net((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    assert torch.allclose(NormalizedModel(net, mean, std)(x), expected)
    # hand-computed: identity conv, pixel 1.0 in channel 0 -> (1 - 0.5) / 0.5 = 1
    ident = nn.Conv2d(3, 3, 1, bias=False)
    ident.weight.data = torch.eye(3).view(3, 3, 1, 1)
    out = NormalizedModel(ident, mean, std)(torch.ones(1, 3, 1, 1))
    assert out.flatten().tolist() == pytest.approx([1.0, 3.0, 0.5])
    with pytest.raises(ConsisError):
        NormalizedModel(net, (0.5,), (0.0,))


def test_layer_validation_lists_candidates():
    model = torchvision.models.resnet18(num_classes=4).eval()
    x = torch.rand(1, 3, 32, 32)
    assert inspect_model(model, "layer4", x) == (4, (512, 1, 1))
    with pytest.raises(ConsisError, match="did you mean layer4") as e:
        inspect_model(model, "layer5", x)
    assert "\n" not in str(e.value)
    with pytest.raises(ConsisError, match=r"not \[B, K, h, w\].*layer4") as e:
        inspect_model(model, "fc", x)
    assert "\n" not in str(e.value)


def _run(argv, capsys):
    rc = main(["measure", *argv])
    return rc, capsys.readouterr().err


def test_cli_torchvision_resnet18_end_to_end(smoke, tmp_path, capsys):
    out = tmp_path / "m"
    rc, err = _run(["--model", "torchvision:resnet18", "--layer", "layer4", "--data", str(smoke.data_root),
                    "--out", str(out), *FAST], capsys)
    assert rc == 0, err
    res = json.loads((out / "measure.json").read_text())
    rep = res["report"]
    assert rep["num_units"] == 512 and rep["num_images"] == len(smoke.dataset("val"))
    assert res["class_map"]["source"] == "imagenet1k"
    assert len(res["class_map"]["classes"]["n02084071"]) == 118
    assert all(v is None or 0.0 <= v <= 1.0 + 1e-9 for v in rep["consis"] + rep["consis_adv"])
    csv = (out / "units.csv").read_text().splitlines()
    assert len(csv) == 513 and csv[0].startswith("unit,consis,consis_adv,gap")
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 1 and "data:image/jpeg;base64," in page


def test_cli_state_dict_with_arch(smoke, tmp_path, capsys):
    torch.manual_seed(0)
    sd = tmp_path / "resnet18_8.pt"
    torch.save(torchvision.models.resnet18(num_classes=8).state_dict(), sd)
    args = ["--layer", "layer4", "--data", str(smoke.data_root), *FAST]
    rc, err = _run(["--model", str(sd), "--arch", "resnet18", "--out", str(tmp_path / "o"), *args], capsys)
    assert rc == 0, err
    res = json.loads((tmp_path / "o" / "measure.json").read_text())
    assert res["class_map"]["source"] == "identity" and res["info"]["kind"] == "state_dict"
    rc, err = _run(["--model", str(sd), "--out", str(tmp_path / "p"), *args], capsys)
    assert rc == 2 and "pass --arch" in err and err.count("\n") == 1
    rc, err = _run(["--model", str(sd), "--arch", "vgg11", "--out", str(tmp_path / "q"), *args], capsys)
    assert rc == 2 and "does not fit torchvision vgg11" in err and err.count("\n") == 1


def test_cli_bad_inputs_are_one_line_errors(smoke, tmp_path, capsys):
    full = tmp_path / "full.pt"
    torch.save(torchvision.models.resnet18(num_classes=8), full)
    classes = tmp_path / "classes.txt"
    classes.write_text("n01440764\nn02084071\nn02121620\n")
    base = ["--data", str(smoke.data_root), "--out", str(tmp_path / "o"), *FAST]
    for argv, hint in (
        (["--model", str(full), "--layer", "layer4"], "--trust-pickle"),
        (["--model", "torchvision:resnet18", "--layer", "layer44"], "did you mean layer4"),
        (["--model", "torchvision:resnet18", "--layer", "fc"], "not [B, K, h, w]"),
        (["--model", "torchvision:resnet18", "--layer", "layer4", "--classes", str(classes)], "class list"),
        (["--model", "torchvision:resnet81", "--layer", "layer4"], "did you mean resnet18"),
    ):
        rc, err = _run([*argv, *base], capsys)
        assert rc == 2 and err.startswith("consis: error: ") and hint in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_measure_on_consis_checkpoint_matches_the_book(smoke, tmp_path, capsys):
    """``consis measure`` on a ``consis train`` checkpoint gives the consistency page's numbers."""
    book = smoke.consistency("normal").to_dict()
    ckpt = smoke.paths.checkpoint_dir("resnet18", "normal")
    rc, err = _run(["--model", str(ckpt), "--layer", "layer4", "--data", str(smoke.data_root), "--out", str(tmp_path)], capsys)
    assert rc == 0, err
    res = json.loads((tmp_path / "measure.json").read_text())
    assert res["info"]["kind"] == "consis"
    assert res["class_map"]["classes"] == {w: [i] for i, w in enumerate(smoke.dataset("val").wnids)}
    assert res["report"] == json.loads(json.dumps(book))
