"""The book toolchain: the error-notebook guard, the missing-results guard, and the
whole smoke book built by ``consis reproduce --profile smoke`` (integration test).

The small books here reuse the repository's ``_config.yml`` and Sphinx extension,
with paths made absolute, so they check the real configuration.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from repo_copy import repository_copy

REPO = Path(__file__).resolve().parents[1]
JB = [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.exit(main())"]


def write_notebook(path: Path, title: str, sources: list[str]) -> Path:
    """A notebook with a title cell and the given code cells (not executed)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}")] + [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def execute(template: Path, out: Path) -> bool:
    """Run a notebook with papermill as the pipeline does; True when it raised no error."""
    import papermill as pm

    try:
        pm.execute_notebook(str(template), str(out), kernel_name="python3", progress_bar=False, cwd=str(REPO))
    except pm.PapermillExecutionError:
        return False
    return True


def make_mini_book(root: Path, with_runs: bool = True) -> Path:
    """``root/_config.yml`` (the repo's, paths absolute) and ``root/book`` with one page.

    Notebooks placed in ``root/book/notebooks/runs/`` are picked up by the toc's glob.
    """
    cfg = yaml.safe_load((REPO / "_config.yml").read_text())
    cfg["sphinx"]["local_extensions"] = {"notebook_errors": str(REPO / "book" / "_ext")}
    conf = cfg["sphinx"]["config"]
    conf["html_static_path"] = [str((REPO / "book" / p).resolve()) for p in conf["html_static_path"]]
    (root / "_config.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))  # script order matters
    book = root / "book"
    book.mkdir(parents=True)
    (book / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - glob: notebooks/runs/*\n"
    )
    (book / "intro.md").write_text("# Mini book\n\nA test page.\n")
    if with_runs:
        (book / "notebooks" / "runs").mkdir(parents=True)
    return book


def build(book: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*JB, "build", str(book), "-W", "-n", "--keep-going", "--path-output", str(book)],
        capture_output=True, text=True, cwd=book.parent, timeout=300,
    )


def needs_widget_js() -> None:
    if not (REPO / "node_modules" / "@jupyter-widgets" / "html-manager" / "dist" / "embed-amd.js").is_file():
        pytest.skip("widget JavaScript not installed: run `make setup-js` (npm ci)")


def test_build_without_results_fails_with_one_line(tmp_path: Path) -> None:
    needs_widget_js()
    book = make_mini_book(tmp_path, with_runs=False)
    proc = build(book)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if "consis book" in ln]
    assert len(lines) == 1
    assert "consis reproduce --profile" in lines[0]
    assert "Traceback" not in proc.stderr


def test_failing_notebook_fails_the_build(tmp_path: Path) -> None:
    needs_widget_js()
    book = make_mini_book(tmp_path)
    runs = book / "notebooks" / "runs"
    src = tmp_path / "src"
    assert execute(write_notebook(src / "good.ipynb", "Good", ["x = 1 + 1", "x"]), runs / "good.ipynb")
    ok = build(book)
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    assert (book / "_build" / "html" / "notebooks" / "runs" / "good.html").is_file()

    bad = write_notebook(src / "bad.ipynb", "Bad", ["y = 2", "raise RuntimeError('boom in cell')", "z = 3"])
    assert not execute(bad, runs / "bad.ipynb")  # papermill still writes the notebook
    assert (runs / "bad.ipynb").is_file()
    shutil.rmtree(book / "_build")
    proc = build(book)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "bad.ipynb" in out and "RuntimeError" in out
    assert "good.ipynb: cell" not in out


def test_notebook_errors_lists_every_error(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "book" / "_ext"))
    try:
        import notebook_errors
    finally:
        sys.path.pop(0)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("1"), nbformat.v4.new_code_cell("2"), nbformat.v4.new_code_cell("3")]
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="ok")]
    nb.cells[1].outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=[])]
    nb.cells[2].outputs = [nbformat.v4.new_output("error", ename="KeyError", evalue="k", traceback=[])]
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    assert notebook_errors.notebook_errors(path) == ["cell 1: ValueError: bad", "cell 2: KeyError: k"]
    path.write_text("{not json")
    assert notebook_errors.notebook_errors(path)[0].startswith("unreadable notebook")


def test_book_layout_links_are_relative() -> None:
    for name, target in (("_toc.yml", "../_toc.yml"), ("notebooks", "../notebooks")):
        link = REPO / "book" / name
        assert link.is_symlink() and os.readlink(link) == target


def test_templates_have_parameters_and_no_definitions() -> None:
    templates = sorted((REPO / "notebooks").glob("*.ipynb"))
    assert {p.stem for p in templates} >= {
        "01_training", "02_ambiguity", "03_consistency", "04_dissection", "05_performance", "06_explorer", "summary",
    }
    for path in templates:
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path.name
        for name in ("arch", "profile", "seed"):
            assert f"{name} =" in tagged[0].source, (path.name, name)
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), path.name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not any(ln.lstrip().startswith(("def ", "class ")) for ln in cell.source.splitlines()), path.name
                assert not cell.get("outputs"), f"{path.name} is committed with outputs"


@pytest.mark.timeout(1500)
def test_smoke_profile_builds_the_whole_book(tmp_path: Path) -> None:
    """Integration: data -> training -> every notebook -> summary -> book, on the smoke profile."""
    needs_widget_js()
    root = repository_copy(tmp_path / "repo")
    proc = subprocess.run(
        [sys.executable, "-m", "consis_lib", "reproduce", "--profile", "smoke", "--root", str(root)],
        capture_output=True, text=True, timeout=1480,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert proc.stdout.strip().splitlines()[-1].endswith(str(root / "book" / "_build" / "html" / "index.html"))
    html = root / "book" / "_build" / "html"
    summary = (html / "notebooks" / "runs" / "summary.html").read_text()
    for claim in (f"C{i}" for i in range(1, 9)):
        assert claim in summary
    for arch in ("alexnet", "vgg16", "resnet18"):
        for page in ("01_training", "02_ambiguity", "03_consistency", "04_dissection", "05_performance", "06_explorer"):
            assert (html / "notebooks" / "runs" / arch / f"{page}.html").is_file(), (arch, page)
    from consis_lib.config import get_profile

    study = get_profile("smoke").study
    for arch in ("alexnet", "vgg16", "resnet18"):
        for seed in study.seeds_of(arch):
            data = json.loads((root / "runs" / "smoke" / arch / f"seed{seed}" / "measures.json").read_text())
            assert set(data["models"]) >= {"normal", "at", "adv"}
            assert data["identity"]["seed"] == seed and len(data["identity"]["checkpoints"]["adv"]) == 64
    readme_fragment = (root / "runs" / "smoke" / "results.md").read_text()
    assert "C8" in readme_fragment and "AT (beta = 0)" in readme_fragment
    for page in html.glob("notebooks/runs/**/*.html"):
        text = page.read_text()
        assert 'profile = "smoke"' not in text, f"{page.name} shows a parameters cell"
        assert text.count("<figure") == text.count("<figcaption"), f"{page.name} has a figure without a caption"
