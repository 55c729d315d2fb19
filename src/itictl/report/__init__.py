"""`itictl report`: one self-contained HTML page of an eval's (or a tune's) results: settings, the
lineage of every artifact behind the numbers, summary with CIs and paired changes against α = 0,
plots against α, the probe-accuracy heatmap with the chosen heads, per-category changes, answers.

Modules: source.py (ReportSource and the kind -> reader seam; eval_source.py reads evals,
tune_source.py tunes), lineage.py (ancestors and the SVG layout), sections.py (tables), figures.py
(matplotlib -> inline PNG), build.py (build_report: read, draw, render report.html.j2 with jinja2,
write atomically).
"""

from __future__ import annotations

from itictl.report.build import build_report
from itictl.report.source import DEFAULT_REF, READERS, ReportSource, load_source, parse_setting

__all__ = ["build_report", "load_source", "parse_setting", "ReportSource", "READERS", "DEFAULT_REF"]
