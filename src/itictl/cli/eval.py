"""`itictl eval`: k-fold TruthfulQA evaluation (MC, judges, BLEU/ROUGE, CE/KL) and sweeps (not built yet; issue 5)."""

from __future__ import annotations

import typer

from itictl.cli.common import not_built

HELP = "k-fold TruthfulQA evaluation (MC, judges, BLEU/ROUGE, CE/KL) and sweeps [not built yet]"


def eval_(ctx: typer.Context) -> None:
    not_built("eval", "issue 5")
