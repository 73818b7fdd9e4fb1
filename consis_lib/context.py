"""What the notebooks work on: the run's folders (:class:`RunPaths`) and, per
architecture and seed, an :class:`ArchContext` that hands out its data, models and
measurements.

The context names things and remembers them; it computes nothing itself. Each
measurement is a function of the module that owns it (activations, consistency,
dissection, ambiguity, robustness), called with the context's data and models.
The costly ones (the activation pass, the shared-set control, the Eq. 4 examples)
are kept on disk in ``runs/<profile>/<arch>/seed<k>/cache/`` under the identity of
their inputs (:mod:`consis_lib.run_cache`: the checkpoint's SHA-256, the data set's
files, the settings), so that the notebooks of a run share them; a file whose key
does not match is computed again.

Memory: images are read from the data set when needed, batch by batch for passes
(:meth:`ArchContext.loader`) and by index for figures (:meth:`ArchContext.images`);
what grows with the number of validation images is the per-unit tables only (the
model in :mod:`consis_lib.activations`).

Example
-------
>>> ctx = notebook_context("smoke", "resnet18", "runs")
>>> ctx.activations("adv").acts.shape   # [N, K], from the cache when the run has it
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from consis_lib.config import Profile, to_dict
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

    def cache_dir(self, arch: str, seed: int = 0) -> Path:
        """``seed<k>/cache``: measurements shared by the seed's notebooks, keyed by their inputs."""
        return self.seed_dir(arch, seed) / "cache"

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
    """The data, models and measurements of one (profile, arch, seed), each made once.

    Built by :func:`notebook_context`. ``arch=None`` gives the data-only context of
    the data page.

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
        self._made: dict[Any, Any] = {}

    def _once(self, key: Any, make: Callable[[], Any]) -> Any:
        if key not in self._made:
            self._made[key] = make()
        return self._made[key]

    # ------------------------------------------------------------------ names

    @property
    def label(self) -> str:
        """Display name, e.g. ``ResNet-18``."""
        return arch_label(self.arch)

    @property
    def layer(self) -> str:
        """The metric layer (last conv layer after ReLU)."""
        from consis_lib.models import metric_layer

        return metric_layer(self.arch, self.profile.model.scale)

    # ------------------------------------------------------------------ data

    @property
    def data_root(self) -> Path:
        from consis_lib.data.embedded import prepare_dataset

        return self._once("data_root", lambda: Path(prepare_dataset(self.profile.data, self.paths.data_cache)))

    @property
    def probe_root(self) -> Path:
        from consis_lib.data.probe import prepare_probe

        return self._once("probe_root", lambda: Path(prepare_probe(self.profile.data, self.paths.data_cache)))

    def dataset(self, split: str = "val") -> Any:
        """The ``WnidImageFolder`` of ``split`` (images [3,H,W] in [0,1], labels); nothing decoded yet."""
        from consis_lib.data.imagefolder import WnidImageFolder, resize_for

        size = self.profile.data.image_size
        return self._once(
            ("dataset", split), lambda: WnidImageFolder(self.data_root, split, image_size=size, resize_size=resize_for(size))
        )

    def labels(self, split: str = "val") -> Any:
        """The labels ``[N]`` (int64) of ``split``, from the folder names (no image is read)."""
        import torch

        return torch.tensor(self.dataset(split).targets, dtype=torch.long)

    def images(self, index: Sequence[int] | Any, split: str = "val") -> Any:
        """The images ``[n, 3, H, W]`` at ``index`` of ``split``, read from disk now (a figure's few images)."""
        import torch

        ds = self.dataset(split)
        return torch.stack([ds[int(i)][0] for i in index])

    def loader(self, split: str = "val", subset: Sequence[int] | None = None) -> Any:
        """A deterministic (unshuffled) DataLoader reading ``split`` (or its ``subset`` of
        indices) batch by batch: the profile's evaluation batch size and data workers
        (:func:`consis_lib.loaders.eval_loader`)."""
        from torch.utils.data import Subset

        from consis_lib.loaders import eval_loader

        ds = self.dataset(split)
        data = ds if subset is None else Subset(ds, list(subset))
        return eval_loader(data, self.profile.dissect.batch_size, self.profile.train.num_workers, self.device)

    def class_names(self) -> list[str]:
        return list(self.dataset("val").names)

    def distances(self) -> np.ndarray:
        """WordNet distances [C, C] between the classes (Eq. 2), cached on disk by the class list."""
        from consis_lib.run_cache import cached_distances

        return self._once("dist", lambda: cached_distances(list(self.dataset("val").wnids), self.paths.data_cache))

    def probe(self) -> Any:
        """The Broden-format probe set (embedded or real) at the profile's image size."""
        from consis_lib.data.broden import Broden

        size = self.profile.data.image_size
        return self._once("probe", lambda: Broden(self.probe_root, image_size=size))

    # ------------------------------------------------------------------ models and identities

    def model(self, name: str) -> Any:
        """A trained model of this seed (eval mode, on ``self.device``): ``"normal"``,
        ``"at"`` (beta = 0), ``"adv"`` (Eq. 6) or a study variant's name."""
        from consis_lib.train import load_checkpoint

        self._check_model(name)

        def make() -> Any:
            m, _meta = load_checkpoint(self.paths.checkpoint_dir(self.arch, name, self.seed), arch=self.arch)
            return m.to(self.device).eval()

        return self._once(("model", name), make)

    def _check_model(self, name: str) -> None:
        known = MODELS + tuple(v.name for v in self.profile.study.variants)
        if name not in known:
            raise ConsisError(f"unknown model {name!r}; use one of {', '.join(known)}")

    def model_identity(self, name: str) -> str:
        """SHA-256 of the model's checkpoint file (part of every cache key)."""
        from consis_lib.measures import file_sha256
        from consis_lib.train import CHECKPOINT

        self._check_model(name)
        path = self.paths.checkpoint_dir(self.arch, name, self.seed) / CHECKPOINT
        return self._once(("model_identity", name), lambda: file_sha256(path))

    def data_identity(self, split: str = "val") -> str:
        """SHA-256 of the split's files (:func:`consis_lib.run_cache.dataset_identity`)."""
        from consis_lib.run_cache import dataset_identity

        return self._once(("data_identity", split), lambda: dataset_identity(self.dataset(split)))

    def _cached(self, file: str, what: str, models: Sequence[str], settings: dict[str, Any], compute: Callable[[], dict]) -> dict:
        """``compute()`` kept in ``cache/<file>`` under the models', the data's and ``settings``' identity."""
        from consis_lib.run_cache import cached

        key = dict(
            what=what, models={m: self.model_identity(m) for m in models}, data=self.data_identity("val"),
            layer=self.layer, batch_size=self.profile.dissect.batch_size, device=self.device.type, **settings,
        )
        return cached(self.paths.cache_dir(self.arch, self.seed) / file, key, compute)

    # ------------------------------------------------------------------ measurements kept on disk

    def activations(self, name: str) -> Any:
        """``a_n(x)`` on the val images and on their FGSM counterparts (one streaming pass; cached)."""
        from consis_lib.activations import Activations, fgsm_attack, unit_activations

        metric, eps = self.profile.metric, self.profile.attack.eps

        def compute() -> dict:
            res = unit_activations(
                self.model(name), self.loader("val"), self.layer, reduce=metric.activation, device=self.device,
                attack=fgsm_attack(eps), progress=False,
            )
            return res.state()

        settings = dict(reduce=metric.activation, fgsm_eps=eps)
        return self._once(
            ("acts", name), lambda: Activations(**self._cached(f"{name}-activations.pt", "activations", [name], settings, compute))
        )

    def shared_activations(self, names: Sequence[str]) -> dict[str, Any]:
        """``a_n`` ``[N, K]`` of each model on the normal model's FGSM images (the shared-set
        control of ``consis_adv``; one streaming pass, cached)."""
        from consis_lib.activations import fgsm_attack, transfer_activations

        metric, eps, names = self.profile.metric, self.profile.attack.eps, list(names)

        def compute() -> dict:
            models = {n: self.model(n) for n in names}
            return transfer_activations(
                self.model("normal"), models, self.loader("val"), self.layer, fgsm_attack(eps), reduce=metric.activation,
                device=self.device, progress=False,
            )

        settings = dict(reduce=metric.activation, fgsm_eps=eps, source="normal")
        return self._once(
            ("shared", tuple(names)),
            lambda: self._cached(f"shared-activations-{'-'.join(names)}.pt", "shared activations", ["normal", *names], settings, compute),
        )

    def targeted(self, name: str, per_class: int = 4) -> tuple[Any, Any]:
        """Eq. 4 examples of ``per_class`` validation images of every class (target: the
        WordNet-farthest class; each image stops at its first successful step) and the
        model's activations on them: ``(TargetedExamples, Activations)`` (cached)."""
        from consis_lib.activations import Activations
        from consis_lib.ambiguity import TargetedExamples, targeted_per_class

        def compute() -> dict:
            ex, acts = targeted_per_class(
                self.model(name), self.dataset("val"), self.labels("val"), per_class, self.distances(), self.profile.attack,
                self.layer, reduce=self.profile.metric.activation,
            )
            return {"examples": {f.name: getattr(ex, f.name) for f in fields(ex)}, "activations": acts.state()}

        def make() -> tuple[Any, Any]:
            settings = dict(per_class=per_class, attack=to_dict(self.profile.attack), reduce=self.profile.metric.activation)
            value = self._cached(f"{name}-targeted-{per_class}.pt", "targeted", [name], settings, compute)
            return TargetedExamples(**value["examples"]), Activations(**value["activations"])

        return self._once(("targeted", name, per_class), make)

    # ------------------------------------------------------------------ measurements kept in memory

    def unit_consistency(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Per-unit ``consis(n)`` and ``consis_adv(n)`` [K] (Eq. 1-3 at the defaults, no bootstrap;
        :func:`consis_lib.explorer.unit_consistency`)."""
        from consis_lib.explorer import unit_consistency

        return self._once(("unit-cons", name), lambda: unit_consistency(self.activations(name), self.distances(), self.profile.metric))

    def consistency(self, name: str) -> Any:
        """Eq. 1-3 report (consis, consis_adv per unit, means with bootstrap CIs, sweeps)."""
        from consis_lib.consistency import consistency_report

        return self._once(
            ("cons", name),
            lambda: consistency_report(self.activations(name), self.distances(), self.profile.metric, seed=self.profile.train.seed),
        )

    def dissect(self, name: str, adversarial: bool = False) -> Any:
        """Network dissection of the metric layer on real or least-likely-class images."""
        from consis_lib.activations import least_likely_attack
        from consis_lib.dissect import dissect

        attack = least_likely_attack(self.profile.attack.eps, self.profile.attack.ll_step) if adversarial else None
        return self._once(
            ("dissect", name, adversarial),
            lambda: dissect(self.model(name), self.layer, self.probe(), self.profile.dissect, attack=attack, device=self.device, progress=False),
        )

    def eps_curves(
        self, eps_grid: Sequence[float] = (0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255), images: int = 600
    ) -> dict[str, dict[str, float]]:
        """FGSM accuracy against eps per model, on every k-th validation image (at most
        ``images``; Table 3 itself uses every image): ``{model: {"0.031373": acc}}``."""
        from consis_lib.robustness import fgsm_accuracy
        from consis_lib.train import monitoring_subset

        ds = self.dataset("val")
        subset = monitoring_subset(ds, images)
        loader = self.loader("val", subset=None if subset is ds else subset.indices)
        eps = list(eps_grid) + [self.profile.attack.eps]
        return fgsm_accuracy({name: self.model(name) for name in MODELS}, loader, eps, self.device)

    def targeted_example(self, name: str = "normal", index: int = 0) -> dict[str, Any]:
        """Eq. 4 on one val image: the target is the class WordNet puts farthest from its label."""
        from consis_lib.ambiguity import farthest_target_example

        x, y = self.dataset("val")[index]
        ex = farthest_target_example(self.model(name), x, int(y), self.distances(), self.profile.attack)
        names = self.class_names()
        return {**ex, **{k: names[ex[k]] for k in ("label", "target", "pred_before", "pred_after")}}

    # ------------------------------------------------------------------ the run's files

    def train_logs(self) -> dict[str, list[dict[str, Any]]]:
        """The per-epoch training log of each model (``log.jsonl``)."""
        from consis_lib.run_files import train_logs

        return train_logs(self.paths, self.arch, self.seed, self.profile.name)

    def measures(self) -> Any:
        """This seed's :class:`~consis_lib.results.SeedResults` (``measures.json``,
        written by ``consis reproduce`` before the notebooks run; identity checked)."""
        from consis_lib.run_files import seed_results

        return self._once("measures", lambda: seed_results(self.paths, self.profile, self.arch, self.seed))

    def dissection_summary(self) -> dict[str, Any]:
        """Per model the dissection unit tables of :meth:`measures`, with ``iou_threshold``."""
        from consis_lib.run_files import dissection_summary

        return dissection_summary(self.measures())


def notebook_context(
    profile: str, arch: str | None, runs_root: str | Path = "runs", device: str | None = None, seed: int = 0
) -> ArchContext:
    """The :class:`ArchContext` of a per-arch notebook (its ``parameters`` cell's values);
    ``arch=None`` for the arch-independent data page. The input folders are those
    the run recorded in ``runs/<profile>/run.json`` (``consis reproduce --data ...``)."""
    from consis_lib.run_inputs import recorded_profile

    return ArchContext(recorded_profile(profile, runs_root), arch, runs_root, device, seed)
