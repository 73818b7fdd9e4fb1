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
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from consis_lib.config import Profile, config_hash, get_profile
from consis_lib.context import RunPaths
from consis_lib.errors import ConsisError
from consis_lib.results import save_json

LOG = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- pipeline


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
    return None


def prepare_data(profile: Profile, paths: RunPaths) -> tuple[Path, Path]:
    """The data set and the dissection probe for ``profile`` (generated once, cached by config hash)."""
    from consis_lib.data.embedded import prepare_dataset
    from consis_lib.data.probe import prepare_probe

    return prepare_dataset(profile.data, paths.data_cache), prepare_probe(profile.data, paths.data_cache)


def train_models(profile: Profile, arch: str, data_root: Path, paths: RunPaths, device: str | None = None) -> dict[str, Path]:
    """Train the normal and the adv model of ``arch`` (adv fine-tunes the normal one).

    A checkpoint is reused only when its stored config hash equals this run's
    (``fit(resume=True)`` checks it); any other checkpoint is retrained from the start.

    Returns
    -------
    {"normal": DIR/normal/model.pt, "adv": DIR/adv/model.pt}
    """
    from consis_lib.train import fit

    ckpts: dict[str, Path] = {}
    for name, adv in (("normal", False), ("adv", True)):
        out = paths.checkpoint_dir(arch, name)
        init = ckpts.get("normal") if adv and profile.train.finetune_from_normal else None
        kw = dict(arch=arch, adv=adv, data_root=data_root, init=init, device=device, progress=False)
        try:
            res = fit(profile, out, resume=(out / "model.pt").is_file(), **kw)
        except ConsisError as exc:
            if "another configuration" not in str(exc):
                raise
            LOG.info("%s: config changed, retraining from scratch", out)
            res = fit(profile, out, resume=False, **kw)
        ckpts[name] = Path(res.checkpoint)
    return ckpts


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


def template_parameters(profile: Profile, template: str) -> dict[str, Any]:
    """Extra papermill parameters of one template for a profile.

    The ambiguity page uses discrepancy maps (Zhou et al. 2015), except on the
    ``smoke`` profile, whose time budget only allows the upsampled activation map;
    the page names the highlight it shows.
    """
    if template == "02_ambiguity":
        return {"highlight": "activation" if profile.name == "smoke" else "discrepancy"}
    return {}


def reproduce(
    profile_name: str,
    root: str | Path = ".",
    archs: Sequence[str] | None = None,
    build: bool = True,
    seed: int = 0,
) -> int:
    """Run the whole pipeline for a profile; returns the process exit code (0 = success).

    Parameters
    ----------
    profile_name : ``smoke``, ``default``, ``full`` or ``paper``.
    root : repository root (holds ``notebooks/``, ``book/``; ``runs/`` is written here).
    archs : subset of the profile's architectures (default: all of them).
    build : also build the book.
    seed : passed to every notebook's ``parameters`` cell.
    """
    from tqdm.auto import tqdm

    profile = get_profile(profile_name)
    root = Path(root).resolve()
    paths = RunPaths(root, profile.name)
    archs = tuple(archs or profile.archs)
    unknown = [a for a in archs if a not in profile.archs]
    if unknown:
        raise ConsisError(f"unknown arch {unknown}; choose from {', '.join(profile.archs)}")
    templates = per_arch_templates(paths.notebooks)
    summary = paths.notebooks / "summary.ipynb"
    data_nb = paths.notebooks / "data.ipynb"
    if not templates or not summary.is_file() or not data_nb.is_file():
        raise ConsisError(f"notebook templates missing in {paths.notebooks}; restore notebooks/*.ipynb from the repository")
    failures: list[str] = []
    t0 = time.time()
    steps = 2 + 2 * len(archs) + len(archs) * len(templates) + 1 + int(build)
    bar = tqdm(total=steps, desc=f"consis reproduce {profile.name}", unit="step")
    try:
        bar.set_postfix_str("data")
        data_root, _probe_root = prepare_data(profile, paths)
        bar.update(1)
        if paths.executed.exists():
            shutil.rmtree(paths.executed)  # never publish notebooks of an earlier run
        save_json({"profile": profile.name, "archs": list(archs), "config_hash": config_hash(profile)}, paths.runs / "run.json")
        bar.set_postfix_str("data page")
        common = dict(arch="all", profile=profile.name, seed=seed, runs_root="runs")  # relative to root (the kernels run there): no machine paths in the book
        err = execute_notebook(data_nb, paths.executed / "data.ipynb", common, root)
        if err:
            LOG.error("%s", err)
            failures.append(err)
        bar.update(1)
        for arch in archs:
            bar.set_postfix_str(f"train {arch}")
            try:
                train_models(profile, arch, data_root, paths)
            except Exception as exc:  # keep going: the other archs still run
                LOG.error("training %s failed: %s", arch, exc)
                failures.append(f"train {arch}: {exc}")
                bar.update(2 + len(templates))
                continue
            bar.update(2)
            for tpl in templates:
                bar.set_postfix_str(f"{arch} {tpl.stem}")
                params = dict(arch=arch, profile=profile.name, seed=seed, runs_root="runs")  # relative to root (the kernels run there): no machine paths in the book
                params.update(template_parameters(profile, tpl.stem))
                err = execute_notebook(tpl, paths.executed / arch / tpl.name, params, root)
                if err:
                    LOG.error("%s", err)
                    failures.append(err)
                bar.update(1)
        bar.set_postfix_str("summary")
        err = execute_notebook(summary, paths.executed / "summary.ipynb", dict(common, archs=list(archs)), root)
        if err:
            LOG.error("%s", err)
            failures.append(err)
        bar.update(1)
        if build:
            bar.set_postfix_str("book")
            err = build_book(root)
            if err:
                failures.append(err)
            bar.update(1)
    finally:
        bar.close()
    elapsed = time.time() - t0
    if failures:
        for f in failures:
            LOG.error("failed: %s", f)
        sys.stdout.write(f"consis reproduce: {len(failures)} step(s) failed after {elapsed:.0f} s; see the messages above\n")
        return 1
    where = paths.book_html if build else paths.executed
    sys.stdout.write(f"consis reproduce: done in {elapsed:.0f} s; the book is at {where}\n")
    return 0


def _cli(args: argparse.Namespace) -> int:
    logging.getLogger("papermill").setLevel(logging.WARNING)  # one progress bar, not a line per cell
    return reproduce(args.profile, root=args.root, archs=args.arch or None, build=not args.no_book, seed=args.seed)


def add_cli(sub: argparse._SubParsersAction) -> None:
    """Register ``consis reproduce --profile P [--arch A ...] [--no-book] [--seed S]``."""
    p = sub.add_parser("reproduce", help="data -> train -> notebooks -> book, for one profile")
    p.add_argument("--profile", default="default", choices=("smoke", "default", "full", "paper"))
    p.add_argument("--arch", action="append", help="only this architecture (repeatable)")
    p.add_argument("--root", default=".", help="repository root (default: current folder)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-book", action="store_true", help="stop after the notebooks")
    p.set_defaults(func=_cli)
