"""Page furniture: how a page was made, and links to the pages that hold the evidence."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from IPython.display import Markdown

from consis_lib.present.tables import markdown_cell
from consis_lib.results import arch_label


def provenance(
    profile: str, seed: int, arch: str | None = None, notebook: str | None = None, settings: Sequence[str] = (), **parameters: Any
) -> Markdown:
    """A folded "How this page was made" block: the parameters and the command.

    Parameters
    ----------
    profile, seed, arch : the page's papermill parameters (``arch`` None or
        ``"all"`` for pages over every architecture).
    notebook : the template's name (``"03_consistency"``); adds the papermill
        command that re-executes this page alone once the models exist.
    settings : the run's ``--set`` settings (:func:`consis_lib.run_inputs.recorded_settings`),
        added to the ``consis reproduce`` command.
    parameters : further parameters shown in the table (e.g. ``archs``; a list
        is passed to papermill as YAML with ``-y``).

    Returns
    -------
    Markdown holding a MyST ``admonition`` with the ``dropdown`` class (folded in
    the book); show it from a cell tagged ``remove-input``.
    """
    params = {"profile": profile, "seed": seed, **({"arch": arch} if arch else {}), **parameters}
    shown = {k: v if isinstance(v, (str, int, float)) else ", ".join(map(str, v)) for k, v in params.items()}
    table = ["| parameter | value |", "|:--|:--|", *(f"| {markdown_cell(k)} | {markdown_cell(v)} |" for k, v in shown.items())]
    cmd = f"consis reproduce --profile {profile}"
    if profile == "paper":  # the folders are the reader's own
        cmd += " --data IMAGENET_DIR --probe BRODEN_DIR [--weights DIR]"
    if arch and arch != "all":
        cmd += f" --arch {arch}"
    cmd += "".join(f" --set {s}" for s in settings)
    cmds = [cmd]
    if notebook:
        flags = " ".join(
            f"-p {k} {v}" if isinstance(v, (str, int, float)) else f"-y '{k}: [{', '.join(map(str, v))}]'" for k, v in params.items()
        )
        cmds.append(f"papermill notebooks/{notebook}.ipynb {notebook}.out.ipynb {flags}")
    lines = [
        "````{admonition} How this page was made", ":class: dropdown", "",
        "This page is a notebook executed by papermill with these parameters:", "", *table, "",
        "Reproduce the whole book for this profile (the second command re-executes this page alone, once the models exist):"
        if notebook else "Reproduce it with:", "", "```bash", *cmds, "```", "````",
    ]
    return Markdown("\n".join(lines))

EVIDENCE_PAGES = (
    ("03_consistency", "consistency: Table 1, Fig. 5, sensitivity"),
    ("02_ambiguity", "ambiguity: Fig. 3/4"),
    ("04_dissection", "network dissection: Table 2"),
    ("05_performance", "accuracy: Table 3"),
)


def evidence_links(archs: Sequence[str], summary: str | None = "summary", pages: Sequence[tuple[str, str]] = EVIDENCE_PAGES) -> Markdown:
    """A list of links to the pages that hold the evidence, per architecture.

    Parameters
    ----------
    archs : the run's architectures (``resnet18``); only their pages are linked,
        so a profile that trains fewer architectures has no broken link.
    summary : the summary page's name beside the calling page (None: no link).
    pages : (notebook, what it shows) per architecture, relative to the calling
        page's folder (``notebooks/runs/``).
    """
    lines = [f"- {{doc}}`Summary: Tables 1-3, Fig. 5 and the claims scorecard <{summary}>`"] if summary else []
    for arch in archs:
        links = ", ".join(f"{{doc}}`{what} <{arch}/{page}>`" for page, what in pages)
        lines.append(f"- {arch_label(arch)}: {links}")
    return Markdown("\n".join(lines))
