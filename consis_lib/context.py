"""What the notebooks work on: the run's folders and, per architecture, its data,
models and measurements, each computed once on first use (:class:`ArchContext`).

Example
-------
>>> ctx = notebook_context("smoke", "resnet18", "runs")
>>> model = ctx.model("adv")
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from consis_lib.config import Profile, get_profile
from consis_lib.errors import ConsisError
from consis_lib.results import MODELS, arch_label

@dataclass(frozen=True)
class RunPaths:
    """Where one profile's outputs live (relative to the repository root ``root``)."""

    root: Path
    profile: str

    @property
    def runs(self) -> Path:
        return self.root / "runs" / self.profile

    @property
    def data_cache(self) -> Path:
        return self.runs / "data"

    def arch_dir(self, arch: str) -> Path:
        return self.runs / arch

    def seed_dir(self, arch: str, seed: int = 0) -> Path:
        """``runs/<profile>/<arch>/seed<k>``: the models and measures of one training seed."""
        return self.runs / arch / f"seed{seed}"

    def checkpoint_dir(self, arch: str, model: str, seed: int = 0) -> Path:
        """Folder of one model (``normal``, ``at``, ``adv`` or a study variant) of one seed."""
        return self.seed_dir(arch, seed) / model

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def executed(self) -> Path:
        return self.root / "notebooks" / "runs"

    @property
    def book_html(self) -> Path:
        return self.root / "book" / "_build" / "html" / "index.html"


class ArchContext:
    """What a per-arch notebook needs: data, the two models, the metric layer.

    Built by :func:`notebook_context`; every property is computed on first use.

    Example
    -------
    >>> ctx = notebook_context("smoke", "resnet18", "runs")
    >>> model = ctx.model("adv")
    """

    def __init__(
        self, profile: Profile, arch: str | None, runs_root: str | Path = "runs", device: str | None = None, seed: int = 0
    ) -> None:
        import torch

        if arch is not None and arch not in profile.archs:
            raise ConsisError(f"unknown arch {arch!r}; the profile has {', '.join(profile.archs)}")
        self.profile = profile
        self.arch = arch
        self.seed = seed
        self.paths = RunPaths(Path(runs_root).resolve().parent, profile.name)
        self.out = self.paths.seed_dir(arch, seed) if arch else self.paths.runs
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._cache: dict[str, Any] = {}

    def _memo(self, key: str, make: Any) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def label(self) -> str:
        """Display name, e.g. ``ResNet-18``."""
        return arch_label(self.arch)

    @property
    def data_root(self) -> Path:
        from consis_lib.data.embedded import prepare_dataset

        return self._memo("data_root", lambda: Path(prepare_dataset(self.profile.data, self.paths.data_cache)))

    @property
    def probe_root(self) -> Path:
        from consis_lib.data.probe import prepare_probe

        return self._memo("probe_root", lambda: Path(prepare_probe(self.profile.data, self.paths.data_cache)))

    @property
    def layer(self) -> str:
        """The metric layer (last conv layer after ReLU)."""
        from consis_lib.models import metric_layer

        return metric_layer(self.arch, self.profile.model.scale)

    def dataset(self, split: str = "val") -> Any:
        """The ``WnidImageFolder`` of ``split`` (images [3,H,W] in [0,1], labels)."""
        from consis_lib.data.imagefolder import WnidImageFolder

        return self._memo(f"ds-{split}", lambda: WnidImageFolder(self.data_root, split, image_size=self.profile.data.image_size))

    def tensors(self, split: str = "val") -> tuple[Any, Any]:
        """All images ``[N, 3, H, W]`` and labels ``[N]`` of ``split``, decoded once and kept."""
        import torch

        def make() -> tuple[Any, Any]:
            ds = self.dataset(split)
            items = [ds[i] for i in range(len(ds))]
            return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])

        return self._memo(f"tensors-{split}", make)

    def loader(self, split: str = "val") -> Any:
        """A deterministic (unshuffled) DataLoader over the preloaded :meth:`tensors`."""
        from torch.utils.data import DataLoader, TensorDataset

        return DataLoader(TensorDataset(*self.tensors(split)), batch_size=self.profile.dissect.batch_size, shuffle=False)

    def model(self, name: str) -> Any:
        """A trained model of this seed (eval mode, on ``self.device``): ``"normal"``,
        ``"at"`` (beta = 0), ``"adv"`` (Eq. 6) or a study variant's name."""
        from consis_lib.train import load_checkpoint

        known = MODELS + tuple(v.name for v in self.profile.study.variants)
        if name not in known:
            raise ConsisError(f"unknown model {name!r}; use one of {', '.join(known)}")

        def make() -> Any:
            m, _meta = load_checkpoint(self.paths.checkpoint_dir(self.arch, name, self.seed), arch=self.arch)
            return m.to(self.device).eval()

        return self._memo(f"model-{name}", make)

    def train_logs(self) -> dict[str, list[dict[str, Any]]]:
        """The per-epoch training log of each model (``log.jsonl``)."""
        logs = {}
        for name in MODELS:
            f = self.paths.checkpoint_dir(self.arch, name, self.seed) / "log.jsonl"
            if not f.is_file():
                raise ConsisError(f"{f} is missing; train with `consis reproduce --profile {self.profile.name}`")
            logs[name] = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        return logs

    def class_names(self) -> list[str]:
        return list(self.dataset("val").names)

    def distances(self) -> np.ndarray:
        """WordNet distances [C, C] between the classes (for Eq. 2), cached on disk
        by the class list (:func:`cached_distances`)."""
        return self._memo("dist", lambda: cached_distances(list(self.dataset("val").wnids), self.paths.data_cache))

    def activations(self, name: str, keep_maps: bool = False) -> Any:
        """``a_n(x)`` on the val images and on their FGSM counterparts (one pass)."""
        from consis_lib.activations import fgsm_attack, unit_activations

        def make() -> Any:
            return unit_activations(
                self.model(name), self.loader("val"), self.layer, reduce=self.profile.metric.activation,
                device=self.device, keep_maps=keep_maps, attack=fgsm_attack(self.profile.attack.eps), progress=False,
            )

        return self._memo(f"acts-{name}-{keep_maps}", make)

    def unit_consistency(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Per-unit ``consis(n)`` and ``consis_adv(n)`` [K] (Eq. 1-3 at the defaults, no bootstrap).

        The same numbers as :meth:`consistency` gives per unit, without its
        confidence intervals and sweeps (used by the explorer).
        """
        from consis_lib.consistency import consistency, label_distributions
        from consis_lib.wordnet import correlation_matrix

        def make() -> tuple[np.ndarray, np.ndarray]:
            acts, m = self.activations(name), self.profile.metric
            A = correlation_matrix(self.distances(), m.sigma)
            C = A.shape[0]
            out = []
            for a in (acts.acts, acts.adv_acts):
                P = label_distributions(a, acts.labels, C, m.top_fraction, m.min_top)
                out.append(np.asarray(consistency(P, A), float))
            return out[0], out[1]

        return self._memo(f"unit-cons-{name}", make)

    def consistency(self, name: str) -> Any:
        """Eq. 1-3 report (consis, consis_adv per unit, means with bootstrap CIs, sweeps)."""
        from consis_lib.consistency import consistency_report

        return self._memo(
            f"cons-{name}",
            lambda: consistency_report(self.activations(name), self.distances(), self.profile.metric, seed=self.profile.train.seed),
        )

    def probe(self) -> Any:
        """The Broden-format probe set (embedded or real) at the profile's image size."""
        from consis_lib.data.broden import Broden

        size = self.profile.data.image_size
        return self._memo("probe", lambda: Broden(self.probe_root, image_size=size))

    def dissect(self, name: str, adversarial: bool = False) -> Any:
        """Network dissection of the metric layer on real or least-likely-class images."""
        from consis_lib.activations import least_likely_attack
        from consis_lib.dissect import dissect

        attack = least_likely_attack(self.profile.attack.eps, self.profile.attack.ll_step) if adversarial else None
        return self._memo(
            f"dissect-{name}-{adversarial}",
            lambda: dissect(self.model(name), self.layer, self.probe(), self.profile.dissect, attack=attack, device=self.device, progress=False),
        )

    def eps_curves(
        self, eps_grid: Sequence[float] = (0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255), images: int = 600
    ) -> dict[str, dict[str, float]]:
        """FGSM accuracy against eps per model, on every k-th validation image (at most
        ``images``; Table 3 itself uses every image): ``{model: {"0.031373": acc}}``."""
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        from consis_lib.attacks import fgsm
        from consis_lib.train import monitoring_subset

        xs, ys = self.tensors("val")
        loader = DataLoader(monitoring_subset(TensorDataset(xs, ys), images), batch_size=self.profile.dissect.batch_size)
        out: dict[str, dict[str, float]] = {}
        for name in MODELS:
            model, curve = self.model(name), {}
            for e in sorted(set(eps_grid) | {self.profile.attack.eps}):
                correct = n = 0
                for x, y in loader:
                    x, y = x.to(self.device), y.to(self.device)
                    xa = fgsm(model, x, y, e) if e > 0 else x
                    with torch.no_grad():
                        correct += int((model(xa).argmax(1) == y).sum())
                    n += len(y)
                curve[f"{e:.6f}"] = correct / n
            out[name] = curve
        return out

    def targeted(self, name: str, per_class: int = 4) -> tuple[Any, Any]:
        """Eq. 4 examples of ``per_class`` validation images of every class (target: the
        WordNet-farthest class; each image stops at its first successful step) and the
        model's activations on them: ``(TargetedExamples, Activations)``."""
        from consis_lib.activations import unit_activations
        from consis_lib.ambiguity import per_class_indices, targeted_examples

        def make() -> tuple[Any, Any]:
            xs, ys = self.tensors("val")
            idx = per_class_indices(ys, per_class)
            model = self.model(name)
            ex = targeted_examples(
                model, xs[idx], ys[idx], self.distances(), self.profile.attack, progress=False, stop_on_success=True
            )
            acts = unit_activations(model, ex.loader(128), self.layer, reduce=self.profile.metric.activation, device=self.device, progress=False)
            return ex, acts

        return self._memo(f"targeted-{name}-{per_class}", make)

    def targeted_example(self, name: str = "normal", index: int = 0) -> dict[str, Any]:
        """Eq. 4 on one val image: the target is the class WordNet puts farthest from its label."""
        import torch

        from consis_lib.attacks import targeted_l2

        xs, ys = self.tensors("val")
        x, y = xs[index], int(ys[index])
        target = int(np.argmax(self.distances()[y]))
        model = self.model(name)
        a = self.profile.attack
        xb = x[None].to(self.device)
        x_adv = targeted_l2(model, xb, torch.tensor([target], device=self.device), a.targeted_lambda, a.targeted_steps, a.targeted_lr)
        with torch.no_grad():
            before = int(model(xb).argmax(1))
            after = int(model(x_adv).argmax(1))
        names = self.class_names()
        return dict(
            x=x, x_adv=x_adv[0].cpu(), label=names[y], target=names[target], pred_before=names[before],
            pred_after=names[after], l2=float((x_adv[0].cpu() - x).norm()), success=after == target,
        )

    def measures(self) -> Any:
        """This seed's :class:`~consis_lib.results.SeedResults` (``measures.json``,
        written by ``consis reproduce`` before the notebooks run; identity checked)."""
        from consis_lib.results import load_results

        def make() -> Any:
            found = [r for r in load_results(self.paths.runs, self.profile, [self.arch]) if r.seed == self.seed]
            if not found:
                raise ConsisError(f"seed {self.seed} is not a seed of {self.arch} in profile {self.profile.name}")
            return found[0]

        return self._memo("measures", make)

    def dissection_summary(self) -> dict[str, Any]:
        """Per model the dissection unit tables of :meth:`measures`, with ``iou_threshold``."""
        m = self.measures().measures
        out: dict[str, Any] = {"iou_threshold": m["iou_threshold"]}
        out.update({name: d["dissection"] for name, d in m["models"].items() if "dissection" in d})
        return out


def cached_distances(wnids: Sequence[str], cache: Path) -> np.ndarray:
    """:func:`consis_lib.wordnet.distance_matrix` of ``wnids``, kept as
    ``cache/wordnet-distances-<hash of the WNIDs>.npy`` so that the notebooks of a run
    load WordNet once, not once per kernel (about 4 s each)."""
    import hashlib

    from consis_lib.atomic import atomic_path
    from consis_lib.wordnet import distance_matrix

    key = hashlib.sha256(("wordnet-3.0:" + ",".join(wnids)).encode()).hexdigest()[:16]
    path = Path(cache) / f"wordnet-distances-{key}.npy"
    if path.is_file():
        try:
            d = np.load(path, allow_pickle=False)
            if d.shape == (len(wnids), len(wnids)) and np.isfinite(d).all():
                return d
        except (OSError, ValueError):
            pass  # a damaged cache file is recomputed and replaced below
    d = np.asarray(distance_matrix(list(wnids)), dtype=np.float64)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, d, allow_pickle=False)
    return d


def notebook_context(
    profile: str, arch: str | None, runs_root: str | Path = "runs", device: str | None = None, seed: int = 0
) -> ArchContext:
    """The :class:`ArchContext` of a per-arch notebook (its ``parameters`` cell's values);
    ``arch=None`` for the arch-independent data page."""
    return ArchContext(get_profile(profile), arch, runs_root, device, seed)
