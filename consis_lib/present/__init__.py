"""Tables a reader can read: number formatting, book tables, the claims scorecard and page provenance.

Nothing here computes a metric. The functions turn the frames of
:mod:`consis_lib.results` and :mod:`consis_lib.scorecard` into frames of display
strings (3 significant digits, percentages with ``%``, intervals as
``0.52 [0.49, 0.55]``, model names as the book writes them, no index), and wrap
those either as a pandas ``Styler`` (HTML, :func:`styled`) or as a numbered MyST
table (:func:`myst_table`, rendered by myst-nb with ``nb_render_markdown_format:
myst``; Sphinx's ``numfig`` numbers it "Table N").

The parts: :mod:`~consis_lib.present.numbers` (numbers as text),
:mod:`~consis_lib.present.tables` (display frames, HTML and MyST tables),
:mod:`~consis_lib.present.views` (Tables 1-3 and the scorecard),
:mod:`~consis_lib.present.paper` (this run beside the paper) and
:mod:`~consis_lib.present.pages` (provenance and links between pages).

Example
-------
>>> interval(0.52, 0.49, 0.55, digits=2)
'0.52 [0.49, 0.55]'
>>> percent(0.8412)
'84.1%'
"""

from consis_lib.book_style import model_label
from consis_lib.present.numbers import MISSING, direction, interval, percent, sig
from consis_lib.present.pages import EVIDENCE_PAGES, evidence_links, provenance
from consis_lib.present.paper import effects_vs_paper, setting_vs_paper
from consis_lib.present.tables import format_frame, myst_table, styled
from consis_lib.present.views import TABLE1_LABELS, scorecard_view, table1_view, table2_view, table3_view, verdict

__all__ = [
    "EVIDENCE_PAGES",
    "MISSING",
    "TABLE1_LABELS",
    "direction",
    "effects_vs_paper",
    "evidence_links",
    "format_frame",
    "interval",
    "model_label",
    "myst_table",
    "percent",
    "provenance",
    "scorecard_view",
    "setting_vs_paper",
    "sig",
    "styled",
    "table1_view",
    "table2_view",
    "table3_view",
    "verdict",
]
