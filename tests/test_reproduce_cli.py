"""``consis reproduce --data/--probe/--weights``: input folders checked before any work,
recorded for the notebooks, training under torchrun on several GPUs, and the data
page's examples for folder data."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from matplotlib.figure import Figure
from PIL import Image

from consis_lib import run_inputs, run_training
from consis_lib.cli import build_parser, main
from consis_lib.config import config_hash, get_profile
from consis_lib.context import RunPaths
from consis_lib.data.broden import Broden
from consis_lib.data.broden_write import encode_label_png
from consis_lib.data.contact_sheet import class_subset, contact_sheet, folder_contact_sheet, probe_example_of
from consis_lib.data.probe_figure import probe_example_figure
from consis_lib.errors import ConsisError
from consis_lib.results import save_json
from consis_lib.train_cli import train_profile

WNIDS = ("n02084071", "n02121808", "n02958343")  # dog, domestic cat, car


def imagenet(root: Path, wnids: tuple[str, ...] = WNIDS, per_class: int = 2, size: int = 16) -> Path:
    """A tiny ImageNet-layout folder: ``train/<wnid>/`` and ``val/<wnid>/`` of PNGs."""
    for split in ("train", "val"):
        for k, wnid in enumerate(wnids):
            d = root / split / wnid
            d.mkdir(parents=True)
            for i in range(per_class):
                arr = np.full((size, size, 3), 40 * k + 10 * i, np.uint8)
                Image.fromarray(arr).save(d / f"{wnid}_{i}.png")
    return root


def broden(root: Path) -> Path:
    """A one-image Broden folder: a colour mask (label 1, ``red-c``) and a scene (``sea-s``)."""
    (root / "images").mkdir(parents=True)
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(root / "images" / "a.png")
    mask = np.zeros((4, 4), np.int64)
    mask[:2] = 1
    encode_label_png(mask).save(root / "images" / "a_color.png")
    (root / "index.csv").write_text(
        "image,split,ih,iw,sh,sw,color,object,part,material,scene,texture\n"
        "a.png,train,8,8,4,4,a_color.png,,,,2,\n"
    )
    (root / "label.csv").write_text(
        "number,name,category,frequency,coverage,syns\n1,red-c,color(1),1,0.5,\n2,sea-s,scene(1),1,1.0,\n"
    )
    (root / "category.csv").write_text("name,first,last,count,frequency\ncolor,1,1,1,1\nscene,2,2,1,1\n")
    return root


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    return imagenet(tmp_path / "imagenet"), broden(tmp_path / "broden")


def _one_line(exc: pytest.ExceptionInfo[ConsisError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- checks before any work


def test_paper_profile_takes_the_folders(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    data, probe = inputs
    prof = run_inputs.run_profile("paper", tmp_path, data, probe)
    assert prof.data.root == str(data.resolve()) and prof.data.probe_root == str(probe.resolve())
    assert prof.model.weights == ""
    relative = run_inputs.run_profile("paper", tmp_path, "imagenet", "broden")  # taken from the root
    assert relative == prof


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda d: d.rename(d.with_name("gone")), "does not exist"),
        (lambda d: (d / "val").rename(d / "valid"), "has no val/ folder"),
        (lambda d: (d / "train" / WNIDS[0]).rename(d / "train" / "dogs"), "dogs is not a WNID class folder"),
        (lambda d: [f.unlink() for f in (d / "val" / WNIDS[1]).iterdir()], f"val/{WNIDS[1]} holds no .png/.jpg/.jpeg image"),
        (lambda d: (d / "val" / WNIDS[2]).rename(d / "val" / "n01440764"), "train/ and val/ hold different class folders"),
    ],
)
def test_bad_imagenet_folder_is_named_in_one_line(tmp_path: Path, inputs: tuple[Path, Path], damage, expected) -> None:
    data, probe = inputs
    damage(data)
    with pytest.raises(ConsisError) as exc:
        run_inputs.run_profile("paper", tmp_path, data, probe)
    assert expected in _one_line(exc) and "--data" in str(exc.value)


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda b: (b / "label.csv").unlink(), "has no label.csv"),
        (lambda b: (b / "index.csv").write_text("image,split\n"), "lacks the column(s) ih, iw"),
        (lambda b: b.rename(b.with_name("nothing")), "does not exist"),
    ],
)
def test_bad_broden_folder_is_named_in_one_line(tmp_path: Path, inputs: tuple[Path, Path], damage, expected) -> None:
    data, probe = inputs
    damage(probe)
    with pytest.raises(ConsisError) as exc:
        run_inputs.run_profile("paper", tmp_path, data, probe)
    assert expected in _one_line(exc) and "--probe" in str(exc.value)


def test_weights_folder_needs_a_file_per_arch(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "resnet18.pth").write_bytes(b"")
    prof = run_inputs.run_profile("paper", tmp_path, *inputs, weights=weights, archs=("resnet18",))
    assert prof.model.weights == str(weights.resolve())
    with pytest.raises(ConsisError) as exc:
        run_inputs.run_profile("paper", tmp_path, *inputs, weights=weights, archs=("resnet18", "vgg16"))
    assert "has no vgg16.pth" in _one_line(exc)


@pytest.mark.parametrize("profile", ["smoke", "default", "full"])
def test_other_profiles_refuse_the_folders(tmp_path: Path, inputs: tuple[Path, Path], profile: str) -> None:
    with pytest.raises(ConsisError) as exc:
        run_inputs.run_profile(profile, tmp_path, data=inputs[0])
    assert f"--data: profile {profile} generates its images" in _one_line(exc)
    assert run_inputs.run_profile(profile, tmp_path) == get_profile(profile)


def test_cli_refuses_before_any_work(tmp_path: Path, inputs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    data, probe = inputs
    assert main(["reproduce", "--profile", "paper", "--root", str(root), "--data", str(tmp_path / "none"), "--probe", str(probe)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("consis: error: --data") and "does not exist" in err and len(err.splitlines()) == 1
    assert main(["reproduce", "--profile", "smoke", "--root", str(root), "--probe", str(probe)]) == 2
    assert "--probe: profile smoke" in capsys.readouterr().err
    assert not (root / "runs").exists()


def test_untrained_replaced_head_is_refused_before_any_work(
    tmp_path: Path, inputs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """ImageNet weights (1000 classes) on a 3-class folder: the paper profile's normal model trains 0 epochs."""
    root, weights = tmp_path / "repo", tmp_path / "weights"
    root.mkdir()
    weights.mkdir()
    torch.save(torchvision.models.resnet18().state_dict(), weights / "resnet18.pth")
    args = ["reproduce", "--profile", "paper", "--root", str(root), "--arch", "resnet18", "--weights", str(weights)]
    assert main(args + ["--data", str(inputs[0]), "--probe", str(inputs[1])]) == 2
    err = capsys.readouterr().err
    assert "has 1000 classes, the data 3" in err and "0 epochs" in err
    assert not (root / "runs").exists()


# --------------------------------------------------------------------------- what the notebooks get


def test_run_record_gives_the_notebooks_the_same_profile(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    prof = run_inputs.run_profile("paper", tmp_path, *inputs)
    save_json(run_inputs.run_record(prof, ["resnet18"]), tmp_path / "runs" / "paper" / run_inputs.RUN_RECORD)
    again = run_inputs.recorded_profile("paper", tmp_path / "runs")
    assert again == prof and config_hash(again) == config_hash(prof)
    smoke = get_profile("smoke")
    save_json(run_inputs.run_record(smoke, ["resnet18"]), tmp_path / "runs" / "smoke" / run_inputs.RUN_RECORD)
    assert run_inputs.recorded_profile("smoke", tmp_path / "runs") == smoke
    assert run_inputs.recorded_profile("default", tmp_path / "runs") == get_profile("default")  # no run yet


def test_settings_reach_the_record_and_the_notebooks_profile(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    settings = ["attack.targeted_steps=20", "metric.sigma=1.5", "study.seeds=0,1"]
    prof = run_inputs.run_profile("paper", tmp_path, *inputs, settings=settings)
    assert (prof.attack.targeted_steps, prof.metric.sigma, prof.study.seeds) == (20, 1.5, (0, 1))
    record = run_inputs.run_record(prof, ["resnet18"])
    assert record["settings"] == settings and record["config_hash"] != config_hash(run_inputs.run_profile("paper", tmp_path, *inputs))
    save_json(record, tmp_path / "runs" / "paper" / run_inputs.RUN_RECORD)
    assert run_inputs.recorded_profile("paper", tmp_path / "runs") == prof
    assert run_inputs.recorded_settings("paper", tmp_path / "runs") == settings
    assert run_inputs.recorded_settings("smoke", tmp_path / "runs") == []


def test_a_bad_setting_stops_reproduce_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    assert main(["reproduce", "--profile", "smoke", "--root", str(root), "--set", "attack.steps=3"]) == 2
    assert "attack has no field 'steps'" in capsys.readouterr().err
    assert not (root / "runs").exists()


# --------------------------------------------------------------------------- training under torchrun


def _plan_profile(tmp_path: Path, inputs: tuple[Path, Path]):
    from consis_lib.train_cli import on_folder

    prof = run_inputs.run_profile("paper", tmp_path, *inputs)
    return on_folder(prof, prof.data.root)


def test_train_argv_rebuilds_every_model_of_the_plan(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    prof = _plan_profile(tmp_path, inputs)
    plan = run_training.model_plan(prof, "alexnet", 1)
    assert [name for name, _, _ in plan] == ["normal", "at", "adv"]  # seed 1: no study variants
    plan += run_training.model_plan(prof, "alexnet", 0)[3:]
    flags = {}
    for name, model_prof, adv in plan:
        init = None if name in ("normal", "scratch") else tmp_path / "normal"
        argv = run_training.train_argv(model_prof, "alexnet", adv, Path(prof.data.root), tmp_path / name, init)
        want = dataclasses.replace(model_prof, model=dataclasses.replace(model_prof.model, arch="alexnet"))
        assert train_profile(build_parser().parse_args(argv)) == want
        flags[name] = argv
    assert "--adv" not in flags["normal"] and "--init" not in flags["normal"]
    assert flags["at"][flags["at"].index("--beta") + 1] == "0.0" and "--seed" in flags["at"]
    assert {"--normalize-features", "--stop-gradient-clean"} <= set(flags["guarded"])
    assert "--from-scratch" in flags["scratch"] and "--init" not in flags["scratch"]


def test_train_argv_sets_what_no_option_says_and_refuses_what_no_setting_says(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    prof = _plan_profile(tmp_path, inputs)
    odd = dataclasses.replace(run_training.with_train(prof, momentum=0.5), attack=dataclasses.replace(prof.attack, targeted_steps=7))
    argv = run_training.train_argv(odd, "resnet18", False, Path(prof.data.root), tmp_path / "n", None)
    assert argv[-4:] == ["--set", "attack.targeted_steps=7", "--set", "train.momentum=0.5"]
    assert train_profile(build_parser().parse_args(argv)).train.momentum == 0.5
    no_variants = dataclasses.replace(prof, study=dataclasses.replace(prof.study, variants=()))
    with pytest.raises(ConsisError, match="cannot express"):
        run_training.train_argv(no_variants, "resnet18", False, Path(prof.data.root), tmp_path / "n", None)


def test_several_gpus_train_under_torchrun(tmp_path: Path, inputs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    prof = run_inputs.run_profile("paper", tmp_path, *inputs)
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(run_training.subprocess, "run", fake_run)
    paths = RunPaths(tmp_path, "paper")
    ckpts = run_training.train_models(prof, "resnet18", 0, Path(prof.data.root), paths, nproc=4)
    assert list(ckpts) == ["normal", "at", "adv"]
    assert len(calls) == 3
    for cmd in calls:
        i = cmd.index("torch.distributed.run")
        assert cmd[i + 1 : i + 6] == ["--standalone", "--nproc_per_node=4", "-m", "consis_lib", "train"]
        assert cmd[cmd.index("--batch-size") + 1] == "64"  # the profile's 256 over 4 GPUs
    normal, at = calls[0], calls[1]
    assert normal[normal.index("--out") + 1] == str(paths.checkpoint_dir("resnet18", "normal", 0))
    assert at[at.index("--init") + 1] == str(ckpts["normal"])


def test_torchrun_resumes_retrains_a_changed_config_and_reports_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "model.pt").write_bytes(b"")
    answers = [(2, "... consis: error: model.pt was written by another configuration (hash a != b)\n"), (0, "")]
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        rc, err = answers.pop(0)
        return subprocess.CompletedProcess(cmd, rc, "", err)

    monkeypatch.setattr(run_training.subprocess, "run", fake_run)
    run_training.torchrun_fit(["train", "--out", str(tmp_path)], tmp_path, 2)
    assert calls[0][-1] == "--resume" and calls[1][-1] != "--resume"
    answers[:] = [(1, "[rank0]: consis: error: loss is nan at epoch 1\nChildFailedError\n")]
    with pytest.raises(ConsisError, match="failed \\(exit 1\\): \\[rank0\\]: consis: error: loss is nan"):
        run_training.torchrun_fit(["train"], tmp_path, 2)


# --------------------------------------------------------------------------- the data page on folder data


def test_folder_contact_sheet_shows_a_few_images_per_class(tmp_path: Path, wordnet: object) -> None:
    data = imagenet(tmp_path / "imagenet", per_class=3)
    cfg = run_inputs.run_profile("paper", tmp_path, data, broden(tmp_path / "broden")).data
    fig = contact_sheet(cfg)
    assert isinstance(fig, Figure) and len(fig.axes) == 3 * 6
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels == ["dog\nn02084071", "domestic cat\nn02121808", "car\nn02958343"]
    assert sum(bool(ax.images) for ax in fig.axes) == 9  # three images per class
    two = folder_contact_sheet(data, max_classes=2, per_class=1)
    assert [ax.get_ylabel().split("\n")[1] for ax in two.axes] == ["n02084071", "n02958343"]  # first and last


def test_class_subset_picks_few_classes_and_images(tmp_path: Path, wordnet: object) -> None:
    from consis_lib.data.imagefolder import WnidImageFolder

    ds = WnidImageFolder(imagenet(tmp_path / "imagenet", per_class=3), "train", image_size=16)
    sub = class_subset(ds, max_classes=2, per_class=2)
    assert sub.names == [ds.names[0], ds.names[2]] and sub.targets == [0, 0, 1, 1]
    x, y = sub[2]
    assert y == 1 and torch.equal(x, ds[ds.targets.index(2)][0])


def test_probe_example_of_a_broden_folder(tmp_path: Path) -> None:
    probe = Broden(broden(tmp_path / "broden"), image_size=8)
    cfg = dataclasses.replace(get_profile("paper").data, probe_root=str(probe.root))
    ex = probe_example_of(cfg, probe, 0)
    assert ex.image.shape == (8, 8, 3) and ex.scene == "sea-s"
    assert ex.masks["color"].tolist() == [[1] * 4] * 2 + [[0] * 4] * 2 and not ex.masks["object"].any()
    assert ex.names[1] == "red-c"
    assert isinstance(probe_example_figure(ex), Figure)


def test_highlight_choice_reaches_the_ambiguity_page_only():
    from consis_lib.reproduce import template_parameters

    paper, smoke = get_profile("paper"), get_profile("smoke")
    assert template_parameters(paper, "02_ambiguity") == {"highlight": "discrepancy"}
    assert template_parameters(smoke, "02_ambiguity") == {"highlight": "activation"}
    assert template_parameters(paper, "02_ambiguity", "activation") == {"highlight": "activation"}
    assert template_parameters(paper, "03_consistency", "activation") == {}


def test_unknown_highlight_is_refused_before_any_work(tmp_path):
    from consis_lib.reproduce import reproduce

    with pytest.raises(ConsisError, match="unknown highlight 'occlusion'"):
        reproduce("smoke", root=tmp_path, highlight="occlusion")
    assert list(tmp_path.iterdir()) == []
