"""Orchestration: data -> train -> papermill notebooks per arch -> summary -> book.

``consis reproduce --profile P`` runs the whole pipeline:

1. the data set and the dissection probe (cached under ``runs/<profile>/``);
2. a normal and an adversarially trained model per architecture (a checkpoint
   is reused only when its stored config hash matches the profile's);
3. every per-arch notebook template ``notebooks/NN_*.ipynb`` through papermill
   into ``notebooks/runs/<arch>/``; the notebooks save their numbers as JSON
   under ``runs/<profile>/<arch>/``;
4. ``notebooks/summary.ipynb`` into ``notebooks/runs/summary.ipynb`` (Tables 1-3
   beside the paper's values, Fig. 5 and the claims scorecard);
5. ``jupyter-book build book -W -n --keep-going``.

It exits non-zero when any step failed and ends with a line naming the book.
The notebooks work through :mod:`consis_lib.context`; the summary's tables and
scorecard live in :mod:`consis_lib.results` and :mod:`consis_lib.scorecard`.

The ``paper`` profile reads local folders, checked before any work starts::

    consis reproduce --profile paper --data IMAGENET_DIR --probe BRODEN_DIR [--weights DIR]

``IMAGENET_DIR`` holds ``train/<wnid>/`` and ``val/<wnid>/`` (the same WNID class
folders, images in each), ``BRODEN_DIR`` a Broden folder (``index.csv``,
``label.csv``, ``category.csv``, ``images/``), and the optional ``DIR`` one
ImageNet state_dict per architecture, ``alexnet.pth``, ``vgg16.pth`` and
``resnet18.pth`` (``torch.save(model.state_dict(), ...)`` of torchvision's model;
torchvision's own file names are accepted too); without it torchvision's weights API
is used (its ``$TORCH_HOME`` cache when offline). Relative folders are taken from
the repository root; the defaults are ``data/imagenet`` and ``data/broden1_224``.
The folders are recorded in ``runs/paper/run.json``; :func:`recorded_profile` gives
the notebooks the same profile from it. The other profiles generate their images and probe and
train width-scaled models from scratch, so they refuse these options.

With more than one visible GPU, the ``paper`` profile's models are trained by
``torchrun --standalone --nproc_per_node=N -m consis_lib train ...`` (DDP, one
process per GPU, ``CUDA_VISIBLE_DEVICES`` picks the GPUs); the per-GPU batch is the
profile's batch size / N, so the effective batch stays the profile's.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from consis_lib.atomic import atomic_write_text
from consis_lib.config import Profile, get_profile
from consis_lib.context import RunPaths
from consis_lib.dissect import check_config as check_dissect_config
from consis_lib.errors import ConsisError
from consis_lib.results import save_json
from consis_lib.run_inputs import RUN_RECORD, check_pretrained_heads, run_profile, run_record
from consis_lib.run_training import gpu_count, train_models

LOG = logging.getLogger(__name__)



def per_arch_templates(notebooks: Path) -> list[Path]:
    """The numbered per-arch templates (``NN_name.ipynb``) in order."""
    return sorted(p for p in notebooks.glob("[0-9][0-9]_*.ipynb"))


def execute_notebook(template: Path, out: Path, parameters: Mapping[str, Any], cwd: Path, timeout: int = 1800) -> str | None:
    """Run one template with papermill (widget state stored); returns None or an error line."""
    import papermill as pm

    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        pm.execute_notebook(
            str(template), str(out), parameters=dict(parameters), kernel_name="python3",
            cwd=str(cwd), progress_bar=False, log_output=False, execution_timeout=timeout,
            store_widget_state=True,
        )
    except Exception as exc:  # papermill wraps the cell's exception; keep going
        line = str(exc).strip().splitlines()
        return f"{template.name} ({parameters.get('arch', 'summary')}): {line[-1] if line else type(exc).__name__}"
    hide_injected_parameters(out)
    return None


def hide_injected_parameters(path: Path) -> None:
    """Tag papermill's injected parameters cell ``remove-cell``: a page shows its
    parameters once, in the folded "How this page was made" block."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(nb, path)


def prepare_data(profile: Profile, paths: RunPaths) -> tuple[Path, Path]:
    """The data set and the dissection probe for ``profile`` (generated once, cached by config hash)."""
    from consis_lib.data.embedded import prepare_dataset
    from consis_lib.data.probe import prepare_probe

    return prepare_dataset(profile.data, paths.data_cache), prepare_probe(profile.data, paths.data_cache)



def measure_and_save(profile: Profile, arch: str, seed: int, root: Path) -> Path:
    """Compute and save ``measures.json`` of one (arch, seed) (:mod:`consis_lib.measures`)."""
    from consis_lib.context import ArchContext
    from consis_lib.measures import measure_seed, save_measures

    ctx = ArchContext(profile, arch, root / "runs", seed=seed)
    study = profile.study
    variants = tuple(v.name for v in study.variants) if (arch, seed) == (study.study_arch, study.seeds[0]) else ()
    return save_measures(ctx, measure_seed(ctx, variants))


def write_results_fragment(profile: Profile, archs: Sequence[str], root: Path, seconds: float) -> None:
    """Save the run's results as ``runs/<profile>/results.md``; for a complete
    ``default`` run without ``--set`` settings also put them into the README between its markers."""
    from consis_lib.readme import results_fragment, update_readme
    from consis_lib.results import load_results
    from consis_lib.scorecard import ScorecardConfig, scorecard, verdicts

    results = load_results(root / "runs" / profile.name, profile, archs)
    card = scorecard(results, ScorecardConfig(n_boot=profile.metric.bootstrap))
    fragment = results_fragment(profile, results, verdicts(card), seconds)
    atomic_write_text(root / "runs" / profile.name / "results.md", fragment + "\n")
    as_published = profile == get_profile(profile.name) and set(archs) == set(profile.archs)
    if profile.name == "default" and as_published and (root / "README.md").is_file():
        update_readme(root / "README.md", fragment)


def clear_earlier_outputs(paths: RunPaths) -> None:
    """Remove what an earlier run published: executed notebooks, the built book and
    every ``measures.json`` of this profile (checkpoints stay: they are reused only
    when their config hash matches). All of these are written by this project."""
    from consis_lib.measures import MEASURES

    for folder in (paths.executed, paths.root / "book" / "_build"):
        if folder.exists():
            shutil.rmtree(folder)
    for f in paths.runs.glob(f"*/seed*/{MEASURES}"):
        f.unlink()


def build_book(root: Path) -> str | None:
    """``jupyter-book build book -W -n --keep-going`` with the output in ``book/_build``."""
    launcher = "import sys; from jupyter_book.cli.main import main; sys.exit(main())"
    cmd = [sys.executable, "-c", launcher, "build", str(root / "book"), "-W", "-n", "--keep-going", "--path-output", str(root / "book")]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "WARNING" in ln or "rror" in ln]
        for ln in tail[-20:]:
            LOG.error("%s", ln)
        return "jupyter-book build failed (warnings above)"
    return None


HIGHLIGHTS = ("discrepancy", "activation")


def template_parameters(profile: Profile, template: str, highlight: str | None = None) -> dict[str, Any]:
    """Extra papermill parameters of one template for a profile.

    The ambiguity page highlights with discrepancy maps (Zhou et al. 2015), except on
    the ``smoke`` profile, whose time budget only allows the upsampled activation
    map, or where ``highlight`` says otherwise (a paper-scale run on a CPU: the
    occlusion maps of 224 px images cost about 5,000 forward passes per image);
    the page names the highlight it shows.
    """
    if template == "02_ambiguity":
        return {"highlight": highlight or ("activation" if profile.name == "smoke" else "discrepancy")}
    return {}


class StepLog:
    """The progress bar, per-step wall times and failures of one ``reproduce`` run.

    ``timings`` (seconds per step label) is saved as ``runs/<profile>/timings.json``
    so a budget can be checked step by step.
    """

    def __init__(self, total: int, desc: str) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="step")
        self.timings: dict[str, float] = {}
        self.failures: list[str] = []

    @contextlib.contextmanager
    def step(self, label: str, count: int = 1) -> Iterator[None]:
        """Time the block as ``label``; the bar advances by ``count`` even when it raises."""
        self.bar.set_postfix_str(label)
        t0 = time.time()
        try:
            yield
        finally:
            self.timings[label] = round(time.time() - t0, 1)
            LOG.info("%s: %.0f s", label, self.timings[label])
            self.bar.update(count)

    def fail(self, message: str) -> None:
        LOG.error("%s", message)
        self.failures.append(message)

    def notebook(self, label: str, template: Path, out: Path, parameters: Mapping[str, Any], root: Path) -> None:
        with self.step(label):
            err = execute_notebook(template, out, parameters, root)
        if err:
            self.fail(err)


def run_arch(
    log: StepLog, profile: Profile, arch: str, data_root: Path, paths: RunPaths, templates: Sequence[Path],
    nproc: int = 1, highlight: str | None = None,
) -> None:
    """Train and measure every seed of ``arch``, then run its pages (skipped, and
    counted as failed, when training or measuring fails). ``nproc > 1``: train under
    torchrun, and hand this process's cached GPU memory back before each training."""
    seed = profile.study.seeds[0]
    for s in profile.study.seeds_of(arch):
        try:
            with log.step(f"train {arch} seed {s}"):
                train_models(profile, arch, s, data_root, paths, nproc=nproc)
            with log.step(f"measure {arch} seed {s}"):
                measure_and_save(profile, arch, s, paths.root)
            if nproc > 1:
                _release_gpu_memory()
        except Exception as exc:  # keep going: the other archs still run
            log.fail(f"train/measure {arch} seed {s}: {exc}")
            log.bar.update(len(templates))
            return
    for tpl in templates:
        # runs_root is relative to root (the kernels run there): no machine paths in the book
        params = dict(arch=arch, profile=profile.name, seed=seed, runs_root="runs", **template_parameters(profile, tpl.stem, highlight))
        log.notebook(f"{arch} {tpl.stem}", tpl, paths.executed / arch / tpl.name, params, paths.root)


def _release_gpu_memory() -> None:
    import gc

    import torch

    gc.collect()
    torch.cuda.empty_cache()


def reproduce(
    profile_name: str,
    root: str | Path = ".",
    archs: Sequence[str] | None = None,
    build: bool = True,
    data: str | Path | None = None,
    probe: str | Path | None = None,
    weights: str | Path | None = None,
    highlight: str | None = None,
    settings: Sequence[str] = (),
) -> int:
    """Run the whole pipeline for a profile; returns the process exit code (0 = success).

    Parameters
    ----------
    profile_name : ``smoke``, ``default``, ``full`` or ``paper``.
    root : repository root (holds ``notebooks/``, ``book/``; ``runs/`` is written here).
    archs : subset of the profile's architectures (default: all of them).
    build : also build the book.
    data, probe, weights : ``paper`` only: the ImageNet-layout folder, the Broden
        folder and the folder of state_dicts (module docstring); checked first.
    highlight : the ambiguity page's highlight, ``discrepancy`` or ``activation``
        (default: :func:`template_parameters`'s choice for the profile).
    settings : ``SECTION.FIELD=VALUE`` changes to the profile (:mod:`consis_lib.settings`),
        recorded in ``run.json`` for the notebooks.

    The per-arch pages show the first seed of ``profile.study.seeds`` (every arch
    runs it); the summary and its scorecard read every seed's ``measures.json``.
    No book is built when a step failed.
    """
    base = get_profile(profile_name)
    paths = RunPaths(Path(root).resolve(), base.name)
    archs = tuple(archs or base.archs)
    unknown = [a for a in archs if a not in base.archs]
    if unknown:
        raise ConsisError(f"unknown arch {unknown}; choose from {', '.join(base.archs)}")
    if highlight not in (None, *HIGHLIGHTS):
        raise ConsisError(f"unknown highlight {highlight!r}; choose from {', '.join(HIGHLIGHTS)}")
    profile = run_profile(profile_name, paths.root, data, probe, weights, archs, settings)
    check_pretrained_heads(profile, archs)
    check_dissect_config(profile.dissect)
    nproc = gpu_count() if profile.model.scale == "paper" else 1
    templates = per_arch_templates(paths.notebooks)
    summary, data_nb, comparison = (paths.notebooks / f"{n}.ipynb" for n in ("summary", "data", "comparison"))
    if not templates or not all(p.is_file() for p in (summary, data_nb, comparison)):
        raise ConsisError(f"notebook templates missing in {paths.notebooks}; restore notebooks/*.ipynb from the repository")
    t0 = time.time()
    steps = 2 + sum(2 * len(profile.study.seeds_of(a)) for a in archs) + len(archs) * len(templates) + 2 + int(build)
    log = StepLog(steps, f"consis reproduce {profile.name}")
    common = dict(arch="all", profile=profile.name, seed=profile.study.seeds[0], runs_root="runs")
    try:
        with log.step("data"):
            data_root, _probe_root = prepare_data(profile, paths)
        clear_earlier_outputs(paths)
        save_json(run_record(profile, archs), paths.runs / RUN_RECORD)
        log.notebook("data page", data_nb, paths.executed / "data.ipynb", common, paths.root)
        for arch in archs:
            run_arch(log, profile, arch, data_root, paths, templates, nproc, highlight)
        for page in (summary, comparison):  # pages over every architecture
            log.notebook(page.stem, page, paths.executed / page.name, dict(common, archs=list(archs)), paths.root)
        if not log.failures:
            write_results_fragment(profile, archs, paths.root, time.time() - t0)
        if build and log.failures:
            LOG.error("the book is not built because a step failed (an earlier book was removed)")
        elif build:
            with log.step("book"):
                err = build_book(paths.root)
            if err:
                log.fail(err)
    finally:
        log.bar.close()
        save_json({"seconds": log.timings, "total": round(time.time() - t0, 1)}, paths.runs / "timings.json")
    return _report(log.failures, time.time() - t0, paths.book_html if build else paths.executed)


def _report(failures: Sequence[str], elapsed: float, where: Path) -> int:
    if failures:
        for f in failures:
            LOG.error("failed: %s", f)
        sys.stdout.write(f"consis reproduce: {len(failures)} step(s) failed after {elapsed:.0f} s; see the messages above\n")
        return 1
    sys.stdout.write(f"consis reproduce: done in {elapsed:.0f} s; the book is at {where}\n")
    return 0


def _cli(args: argparse.Namespace) -> int:
    logging.getLogger("papermill").setLevel(logging.WARNING)  # one progress bar, not a line per cell
    return reproduce(
        args.profile, root=args.root, archs=args.arch or None, build=not args.no_book,
        data=args.data, probe=args.probe, weights=args.weights, highlight=args.highlight,
        settings=args.set,
    )


def add_cli(sub: argparse._SubParsersAction) -> None:
    """Register ``consis reproduce --profile P [--arch A ...] [--no-book] [--data D --probe B --weights W]``."""
    p = sub.add_parser(
        "reproduce", help="data -> train -> notebooks -> book, for one profile",
        description="Run the whole pipeline for one profile. The paper profile reads local folders: "
        "consis reproduce --profile paper --data IMAGENET_DIR --probe BRODEN_DIR [--weights DIR]. "
        "With N > 1 visible GPUs its models train under torchrun --standalone --nproc_per_node=N "
        "-m consis_lib train (DDP; per-GPU batch = batch size / N).",
    )
    p.add_argument("--profile", default="default", choices=("smoke", "default", "full", "paper"))
    p.add_argument("--arch", action="append", help="only this architecture (repeatable)")
    p.add_argument("--root", default=".", help="repository root (default: current folder)")
    p.add_argument("--no-book", action="store_true", help="stop after the notebooks")
    p.add_argument("--data", default=None,
                   help="paper profile: ImageNet-layout folder, train/<wnid>/ and val/<wnid>/ (default: data/imagenet)")
    p.add_argument("--probe", default=None,
                   help="paper profile: Broden folder, index.csv, label.csv, category.csv, images/ (default: data/broden1_224)")
    p.add_argument("--weights", default=None,
                   help="paper profile: folder of ImageNet state_dicts alexnet.pth, vgg16.pth, resnet18.pth "
                   "(default: torchvision's weights API, its $TORCH_HOME cache when offline)")
    p.add_argument("--highlight", choices=HIGHLIGHTS, default=None,
                   help="regions shown on the ambiguity page (default: discrepancy maps; activation maps on smoke, "
                   "and the quick choice for a paper-scale run on a CPU)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="change one setting of the profile (repeatable), e.g. attack.targeted_steps=20; "
                   "recorded in runs/<profile>/run.json")
    p.set_defaults(func=_cli)
