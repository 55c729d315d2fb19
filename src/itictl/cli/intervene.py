"""`itictl intervene`: Build an intervention (top-K heads, alpha, direction) and steer generation (not built yet; issue 4)."""

from __future__ import annotations

import typer

from itictl.cli.common import not_built

HELP = "Build an intervention (top-K heads, alpha, direction) and steer generation [not built yet]"


def intervene(ctx: typer.Context) -> None:
    not_built("intervene", "issue 4")
