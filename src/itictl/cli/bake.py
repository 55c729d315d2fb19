"""`itictl bake`: Bake an intervention into o_proj biases as a plain Hugging Face model (not built yet; issue 6)."""

from __future__ import annotations

import typer

from itictl.cli.common import not_built

HELP = "Bake an intervention into o_proj biases as a plain Hugging Face model [not built yet]"


def bake(ctx: typer.Context) -> None:
    not_built("bake", "issue 6")
