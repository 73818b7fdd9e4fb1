"""Sphinx extension: refuse to publish notebooks that failed.

papermill writes an executed notebook even when one of its cells raised, and
Jupyter Book with execution switched off would render it silently. This
extension

* stops the build with one line when ``notebooks/runs`` does not exist yet
  (nothing has been executed: run ``consis reproduce --profile smoke``);
* logs one warning per executed notebook that holds an error output (so
  ``-W --keep-going`` lists all of them) and fails the build at the end.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ExtensionError
from sphinx.util import logging

LOGGER = logging.getLogger(__name__)
RUNS = Path("notebooks") / "runs"
PRODUCE = "consis reproduce --profile smoke  (or `make book` for the default profile)"


def notebook_errors(path: Path) -> list[str]:
    """One line per error output in the notebook at ``path`` (cell number, exception)."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"unreadable notebook ({exc})"]
    found = []
    for i, cell in enumerate(nb.get("cells", [])):
        for out in cell.get("outputs", []) or []:
            if out.get("output_type") == "error":
                found.append(f"cell {i}: {out.get('ename', 'Error')}: {out.get('evalue', '')}"[:300])
    return found


def _check_results_exist(app: Sphinx, config: Config) -> None:
    runs = Path(app.srcdir) / RUNS
    if not runs.is_dir():
        sys.stderr.write(
            f"consis book: no executed notebooks in {RUNS}/; produce them with: {PRODUCE}\n"
        )
        sys.stderr.flush()
        raise SystemExit(2)


def _scan(app: Sphinx, env: object, docnames: list[str]) -> None:
    failed = []
    runs = Path(app.srcdir) / RUNS
    for path in sorted(runs.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        for line in notebook_errors(path):
            rel = path.relative_to(app.srcdir)
            LOGGER.warning("executed notebook holds an error output: %s: %s", rel, line)
            failed.append(str(rel))
    app.env.consis_failed_notebooks = sorted(set(failed))  # type: ignore[attr-defined]


def _finish(app: Sphinx, exc: Exception | None) -> None:
    failed = getattr(app.env, "consis_failed_notebooks", []) if app.env else []
    if exc is None and failed:
        raise ExtensionError(
            f"{len(failed)} executed notebook(s) hold errors: {', '.join(failed)}; "
            "fix the failing cell and rerun `consis reproduce`"
        )


def setup(app: Sphinx) -> dict[str, object]:
    app.connect("config-inited", _check_results_exist, priority=100)
    app.connect("env-before-read-docs", _scan)
    app.connect("build-finished", _finish)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
