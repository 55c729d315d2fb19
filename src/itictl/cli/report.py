"""`itictl report`: write one self-contained HTML report of an eval. Thin: calls
itictl.report.build_report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from itictl.cli import complete
from itictl.cli.common import state

HELP = """Write one self-contained HTML report of an eval (default: last-eval).

\b
  itictl report                       last-eval -> report.html
  itictl report EVAL_REF -o out.html  another eval
  itictl report --setting 16,15       per-category bars and answers of that setting

The page needs no network: settings, the lineage of every artifact behind the numbers, the
summary with 95 % CIs and paired changes against α = 0, MC2 / True×Info and CE / KL against α,
the probe-accuracy heatmap with the intervened heads, per-category changes, and a sample of
answers unsteered vs steered with the judges' verdicts (when the eval generated answers).
"""


def report(
    ctx: typer.Context,
    ref: Annotated[Optional[str], typer.Argument(autocompletion=complete.eval_ref,
                                                 help="Eval ref, key or key prefix (default: last-eval).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path("report.html"),
    setting: Annotated[Optional[str], typer.Option(
        "--setting", metavar="K,ALPHA",
        help="The α ≠ 0 setting the heatmap, category and answer sections show (default: the eval's intervention).")] = None,
    samples: Annotated[int, typer.Option("--samples", help="Answers shown, unsteered vs steered.")] = 12,
) -> None:
    from itictl.report import build_report, parse_setting

    st = state(ctx)
    chosen = parse_setting(setting)
    doc = build_report(st.store, ref, output, setting=chosen, samples=samples, out=st.out)

    def render(console):
        console.print(f"report of {doc['kind']} {doc['key'][:12]}: {doc['images']} figures, "
                      f"{len(doc['lineage'])} artifacts in its lineage")
        console.print(doc["path"])

    st.out.result(doc, render)
