"""The run report: one self-contained HTML page, read from the curated tables, that shows at a
glance who is most profitable, where service falls short, what to do, and how clean the data was.

`data` reads the lake (the only module that does), `summaries` turns snapshot frames into one
small frame per chart, `charts` draws them as Vega-Lite specs (Altair), `words` writes the
ledes, and `page` assembles the sections and renders `templates/report.html.j2` with its CSS
and the Vega JavaScript (from `vl-convert-python`) inlined, so the file opens with no network.
"""

from servio.report.page import default_report_path, write_report
from servio.report.summaries import (
    action_matrix,
    headline,
    quarantine_reasons,
    top_profit_share,
)

__all__ = [
    "action_matrix",
    "default_report_path",
    "headline",
    "quarantine_reasons",
    "top_profit_share",
    "write_report",
]
