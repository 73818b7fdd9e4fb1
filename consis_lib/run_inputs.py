"""The inputs of a ``reproduce`` run: checked before any work, recorded in
``runs/<profile>/run.json`` and read back by the notebooks (:func:`recorded_profile`).

Only the ``paper`` profile reads folders (ImageNet layout, Broden, optional
weights); the other profiles generate their data and refuse the options. Every
profile takes ``SECTION.FIELD=VALUE`` settings (:mod:`consis_lib.settings`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from consis_lib.config import Profile, config_hash, get_profile
from consis_lib.errors import ConsisError
from consis_lib.settings import apply_settings, settings_between

RUN_RECORD = "run.json"


def check_image_folder(folder: Path) -> int:
    """Check an ImageNet-layout folder without decoding images; returns its class count.

    ``train/`` and ``val/`` must hold the same WNID class folders, each with an image.
    """
    from consis_lib.data.imagefolder import IMAGE_EXTENSIONS
    from consis_lib.wordnet import is_wnid

    if not folder.is_dir():
        raise ConsisError(f"--data {folder} does not exist: pass an ImageNet-layout folder (train/<wnid>/, val/<wnid>/)")
    classes = {}
    for split in ("train", "val"):
        if not (folder / split).is_dir():
            raise ConsisError(f"--data {folder} has no {split}/ folder: it needs train/<wnid>/ and val/<wnid>/")
        classes[split] = sorted(d.name for d in (folder / split).iterdir() if d.is_dir() and not d.name.startswith("."))
        if not classes[split]:
            raise ConsisError(f"--data {folder / split} has no class folders: put the images in <wnid>/ folders")
        bad = [c for c in classes[split] if not is_wnid(c)]
        if bad:
            raise ConsisError(f"--data {folder / split}/{bad[0]} is not a WNID class folder: rename it (e.g. n02084071)")
        for c in classes[split]:
            with os.scandir(folder / split / c) as files:
                has_image = any(f.name.lower().endswith(IMAGE_EXTENSIONS) for f in files)
            if not has_image:
                raise ConsisError(f"--data {folder / split / c} holds no .png/.jpg/.jpeg image: add images or remove it")
    if classes["train"] != classes["val"]:
        odd = sorted(set(classes["train"]) ^ set(classes["val"]))[0]
        raise ConsisError(f"--data {folder}: train/ and val/ hold different class folders (e.g. {odd}): make them match")
    return len(classes["train"])


def check_broden_folder(folder: Path) -> None:
    """Check a Broden folder's files and ``index.csv`` header without reading images."""
    from consis_lib.data.broden import INDEX_COLUMNS

    if not folder.is_dir():
        raise ConsisError(f"--probe {folder} does not exist: pass a Broden folder (e.g. NetDissect's broden1_224)")
    for name in ("index.csv", "label.csv", "category.csv", "images"):
        if not (folder / name).exists():
            raise ConsisError(f"--probe {folder} has no {name}: pass a Broden folder (index.csv, label.csv, category.csv, images/)")
    with open(folder / "index.csv", encoding="utf-8") as f:
        header = [c.strip() for c in f.readline().split(",")]
    missing = [c for c in INDEX_COLUMNS if c not in header]
    if missing:
        raise ConsisError(f"--probe {folder}/index.csv lacks the column(s) {', '.join(missing)}: pass a Broden folder")


def with_inputs(profile: Profile, data: str, probe: str, weights: str = "") -> Profile:
    """``profile`` reading ``data`` (ImageNet layout), ``probe`` (Broden) and ``weights``."""
    return dataclasses.replace(
        profile,
        data=dataclasses.replace(profile.data, root=data, probe_root=probe),
        model=dataclasses.replace(profile.model, weights=weights),
    )


def run_profile(
    profile_name: str, root: Path, data: str | Path | None = None, probe: str | Path | None = None,
    weights: str | Path | None = None, archs: Sequence[str] = (), settings: Sequence[str] = (),
) -> Profile:
    """The profile of a run with its settings and input folders, each checked (module docstring).

    Relative folders are taken from ``root``; ``archs`` need a file in ``weights``.
    """
    from consis_lib.weights import weights_file

    profile = apply_settings(get_profile(profile_name), settings)
    given = [flag for flag, v in (("--data", data), ("--probe", probe), ("--weights", weights)) if v is not None]
    if profile.data.source != "folder":
        if given:
            raise ConsisError(
                f"{', '.join(given)}: profile {profile.name} generates its images and probe and trains width-scaled "
                "models from scratch; use --profile paper for local ImageNet/Broden folders and weights"
            )
        return profile
    data_dir, probe_dir = ((root / v).resolve() for v in (data or profile.data.root, probe or profile.data.probe_root))
    check_image_folder(data_dir)
    check_broden_folder(probe_dir)
    weights_dir = (root / Path(weights)).resolve() if weights is not None else None
    for arch in archs if weights_dir is not None else ():
        weights_file(arch, weights_dir)
    return with_inputs(profile, str(data_dir), str(probe_dir), str(weights_dir or ""))


def recorded_profile(profile_name: str, runs_root: str | Path) -> Profile:
    """The profile a ``reproduce`` run used: the named one with the settings and input
    folders that its ``runs/<profile>/run.json`` records (the profile itself when none are)."""
    record = _read_record(profile_name, runs_root)
    profile = apply_settings(get_profile(profile_name), record.get("settings", []))
    inputs = record.get("inputs")
    return with_inputs(profile, **inputs) if inputs else profile


def recorded_settings(profile_name: str, runs_root: str | Path) -> list[str]:
    """The ``--set`` settings that ``runs/<profile>/run.json`` records (none when there is no run)."""
    return list(_read_record(profile_name, runs_root).get("settings", []))


def _read_record(profile_name: str, runs_root: str | Path) -> dict[str, Any]:
    path = Path(runs_root) / profile_name / RUN_RECORD
    return json.loads(path.read_text()) if path.is_file() else {}


def check_pretrained_heads(profile: Profile, archs: Sequence[str]) -> None:
    """Refuse weights that do not fit, or a replaced head used untrained (paper scale)."""
    from consis_lib.weights import check_pretrained_head
    from consis_lib.train_cli import data_wnids

    if profile.data.source == "folder" and profile.model.pretrained:
        classes = len(data_wnids(profile, None))
        for arch in archs:
            check_pretrained_head(dataclasses.replace(profile.model, arch=arch), classes, profile.train.epochs)


def run_record(profile: Profile, archs: Sequence[str]) -> dict[str, Any]:
    """What ``run.json`` holds: the profile, its architectures and hash, its settings
    (:func:`~consis_lib.settings.settings_between` the named profile and this one) and
    its input folders."""
    settings = settings_between(get_profile(profile.name), profile)
    record: dict[str, Any] = {
        "profile": profile.name, "archs": list(archs), "config_hash": config_hash(profile), "settings": settings,
    }
    if profile.data.source == "folder":
        record["inputs"] = {"data": profile.data.root, "probe": profile.data.probe_root, "weights": profile.model.weights}
    return record
