"""`itictl probe`: Train per-head linear probes and rank heads (not built yet; issue 4)."""

from __future__ import annotations

import typer

from itictl.cli.common import not_built

HELP = "Train per-head linear probes and rank heads [not built yet]"


def probe(ctx: typer.Context) -> None:
    not_built("probe", "issue 4")
