"""The arch context: streamed data, identity-keyed disk caches, the same numbers as a preloaded pass."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from consis_lib import run_cache
from consis_lib.activations import fgsm_attack, unit_activations
from consis_lib.config import get_profile
from consis_lib.context import ArchContext
from consis_lib.results import MODELS
from consis_lib.run_cache import cached, cached_distances, dataset_identity

DOG, CAT, CAR = "n02084071", "n02121620", "n02958343"
PER_CLASS, SIZE = 8, 32


def test_cached_distances_known_answers_reuse_and_repair(tmp_path: Path, wordnet: Any, monkeypatch: Any) -> None:
    d = cached_distances([DOG, CAT, CAR], tmp_path)
    assert d[0, 1] == 4 and d[0, 2] == 12 and np.array_equal(d, d.T)  # DESIGN: dog-cat 4, dog-car 12
    (cache,) = tmp_path.glob("wordnet-distances-*.npy")

    import consis_lib.wordnet as wn

    def refuse(_: object) -> None:
        raise AssertionError("the cached distances were recomputed")

    monkeypatch.setattr(wn, "distance_matrix", refuse)
    assert np.array_equal(cached_distances([DOG, CAT, CAR], tmp_path), d)  # read from the cache
    monkeypatch.undo()
    assert cached_distances([CAT, DOG], tmp_path)[0, 1] == 4  # another class list, another file
    assert len(list(tmp_path.glob("wordnet-distances-*.npy"))) == 2
    cache.write_bytes(b"damaged")
    assert np.array_equal(cached_distances([DOG, CAT, CAR], tmp_path), d)  # recomputed and replaced
    assert np.array_equal(np.load(cache), d)


def test_cached_value_is_reused_only_under_its_own_key(tmp_path: Path) -> None:
    calls: list[int] = []

    def compute(v: float) -> Any:
        return lambda: calls.append(1) or {"x": torch.full((2,), v), "name": "a"}

    f = tmp_path / "c" / "x.pt"
    assert torch.equal(cached(f, {"v": 1}, compute(1.0))["x"], torch.ones(2)) and len(calls) == 1
    assert torch.equal(cached(f, {"v": 1}, compute(9.0))["x"], torch.ones(2)) and len(calls) == 1  # hit
    assert torch.equal(cached(f, {"v": 2}, compute(2.0))["x"], torch.full((2,), 2.0)) and len(calls) == 2  # other key
    f.write_bytes(b"not a torch file")
    assert cached(f, {"v": 2}, compute(3.0))["x"][0] == 3.0 and len(calls) == 3  # unreadable: recomputed
    assert torch.load(f, weights_only=True)["key"] == run_cache.key_text({"v": 2})
    assert not [p for p in f.parent.iterdir() if p.name != "x.pt"]  # no temporary file left


# ----------------------------------------------------------------------------- a run on disk


def _write_images(root: Path) -> None:
    gen = np.random.default_rng(0)
    for c, wnid in enumerate((DOG, CAT, CAR)):
        folder = root / "val" / wnid
        folder.mkdir(parents=True)
        for i in range(PER_CLASS):
            pixels = gen.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
            pixels[..., c] = np.maximum(pixels[..., c], 200)  # a class tint
            Image.fromarray(pixels).save(folder / f"{wnid}_{i:03d}.png")


def _write_checkpoint(folder: Path, seed: int, prof: Any) -> None:
    """The fields :func:`consis_lib.train.load_checkpoint` reads, with seeded random weights."""
    from consis_lib.models import build_model

    torch.manual_seed(seed)
    m = prof.model
    net = build_model("resnet18", 3, scale=m.scale, width_divisor=m.width_divisor, image_size=SIZE)
    folder.mkdir(parents=True, exist_ok=True)
    meta = dict(arch="resnet18", scale=m.scale, width_divisor=m.width_divisor, image_size=SIZE, num_classes=3)
    torch.save({**meta, "state_dict": net.state_dict()}, folder / "model.pt")


@pytest.fixture
def run(tmp_path: Path, wordnet: Any, monkeypatch: Any) -> tuple[Any, Path]:
    """A smoke-profile run folder with 3 classes x 8 val images and random-weight checkpoints."""
    import consis_lib.data.embedded as embedded

    prof = get_profile("smoke")
    data = tmp_path / "data"
    _write_images(data)
    monkeypatch.setattr(embedded, "prepare_dataset", lambda cfg, cache: data)
    for seed, name in enumerate(MODELS):
        _write_checkpoint(tmp_path / "runs" / "smoke" / "resnet18" / "seed0" / name, seed, prof)
    return prof, tmp_path


def _context(run: tuple[Any, Path]) -> ArchContext:
    prof, root = run
    return ArchContext(prof, "resnet18", root / "runs", device="cpu")


def _preloaded(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Every val image decoded here with PIL (sorted class folders, sorted files) and its label."""
    files = sorted((root / "data" / "val").glob("*/*.png"))
    xs = torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1).float() / 255 for f in files])
    return xs, torch.arange(3).repeat_interleave(PER_CLASS)


def _reference(ctx: ArchContext, root: Path, name: str) -> Any:
    """The pass the context used to run: every image in memory, batched by the profile's batch size."""
    xs, ys = _preloaded(root)
    loader = DataLoader(TensorDataset(xs, ys), batch_size=ctx.profile.dissect.batch_size)
    return unit_activations(ctx.model(name), loader, ctx.layer, attack=fgsm_attack(ctx.profile.attack.eps), progress=False)


def test_streamed_activations_equal_the_preloaded_pass(run: tuple[Any, Path]) -> None:
    ctx = _context(run)
    acts, ref = ctx.activations("normal"), _reference(ctx, run[1], "normal")
    for field in ("acts", "labels", "preds", "adv_acts", "adv_preds"):
        assert torch.equal(getattr(acts, field), getattr(ref, field)), field
    xs, ys = _preloaded(run[1])
    assert torch.equal(ctx.images([17, 3]), xs[[17, 3]]) and torch.equal(ctx.labels("val"), ys)


def test_activation_cache_is_shared_and_keyed_by_model_and_data(run: tuple[Any, Path], monkeypatch: Any) -> None:
    import consis_lib.activations as act

    prof, root = run
    first = _context(run).activations("adv")
    (cache_file,) = (root / "runs" / "smoke" / "resnet18" / "seed0" / "cache").glob("adv-activations*.pt")
    calls: list[str] = []
    real = act.unit_activations

    def counting(*a: Any, **kw: Any) -> Any:
        calls.append("pass")
        return real(*a, **kw)

    monkeypatch.setattr(act, "unit_activations", counting)
    again = _context(run).activations("adv")  # another notebook's context: read from disk
    assert calls == [] and torch.equal(again.acts, first.acts) and torch.equal(again.adv_acts, first.adv_acts)

    _write_checkpoint(root / "runs" / "smoke" / "resnet18" / "seed0" / "adv", 99, prof)  # retrained model
    retrained = _context(run).activations("adv")
    assert calls == ["pass"] and not torch.equal(retrained.acts, first.acts)
    assert torch.equal(retrained.acts, _reference(_context(run), root, "adv").acts)

    image = next((root / "data" / "val" / CAT).glob("*.png"))
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(image)  # the data changed
    os.utime(image, ns=(1, 1))
    _context(run).activations("adv")
    assert calls == ["pass"] * 2

    cache_file.write_bytes(b"damaged")
    _context(run).activations("adv")
    assert len(calls) == 3


def test_dataset_identity_names_the_files(run: tuple[Any, Path]) -> None:
    ctx = _context(run)
    before = dataset_identity(ctx.dataset("val"))
    assert before == ctx.data_identity("val")
    extra = run[1] / "data" / "val" / DOG / "zz_extra.png"
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(extra)
    assert dataset_identity(_context(run).dataset("val")) != before


def test_shared_set_equals_the_materialised_normal_fgsm_images(run: tuple[Any, Path]) -> None:
    ctx = _context(run)
    xs, ys = _preloaded(run[1])
    batch = ctx.profile.dissect.batch_size
    normal = ctx.model("normal")
    eps = ctx.profile.attack.eps
    from consis_lib.attacks import fgsm

    shared = torch.cat([fgsm(normal, xs[i : i + batch], ys[i : i + batch], eps) for i in range(0, len(xs), batch)])
    loader = DataLoader(TensorDataset(shared, ys), batch_size=batch)
    got = ctx.shared_activations(["at", "adv"])
    for name in ("at", "adv"):
        assert torch.equal(got[name], unit_activations(ctx.model(name), loader, ctx.layer, progress=False).acts)


def test_eps_curves_count_correct_fgsm_predictions(run: tuple[Any, Path]) -> None:
    ctx = _context(run)
    xs, ys = _preloaded(run[1])
    from consis_lib.attacks import fgsm

    curves = ctx.eps_curves(eps_grid=(0, 2 / 255), images=12)  # every 2nd image
    idx = torch.arange(0, 24, 2)
    for name in MODELS:
        model = ctx.model(name)
        with torch.no_grad():
            clean = float((model(xs[idx]).argmax(1) == ys[idx]).float().mean())
        x_adv = fgsm(model, xs[idx], ys[idx], 2 / 255)
        with torch.no_grad():
            adv = float((model(x_adv).argmax(1) == ys[idx]).float().mean())
        assert curves[name]["0.000000"] == pytest.approx(clean)
        assert curves[name]["0.007843"] == pytest.approx(adv)
        assert set(curves[name]) == {"0.000000", "0.007843", f"{ctx.profile.attack.eps:.6f}"}


def test_targeted_examples_are_cached_with_their_activations(run: tuple[Any, Path], monkeypatch: Any) -> None:
    import dataclasses

    prof, root = run
    fast = dataclasses.replace(prof, attack=dataclasses.replace(prof.attack, targeted_steps=3))
    ctx = ArchContext(fast, "resnet18", root / "runs", device="cpu")
    ex, acts = ctx.targeted("normal", per_class=2)
    assert ex.labels.tolist() == [0, 0, 1, 1, 2, 2]  # the first 2 images of each class
    assert torch.equal(ex.targets, torch.tensor(np.argmax(ctx.distances(), axis=1))[ex.labels])
    assert acts.acts.shape[0] == 6

    import consis_lib.ambiguity as amb

    monkeypatch.setattr(amb, "targeted_examples", lambda *a, **k: pytest.fail("Eq. 4 ran again"))
    ex2, acts2 = ArchContext(fast, "resnet18", root / "runs", device="cpu").targeted("normal", per_class=2)
    assert torch.equal(ex2.x_adv, ex.x_adv) and torch.equal(acts2.acts, acts.acts)
