"""`itictl push`: Upload a baked model or an exported intervention to the Hugging Face Hub (not built yet; issue 6)."""

from __future__ import annotations

import typer

from itictl.cli.common import not_built

HELP = "Upload a baked model or an exported intervention to the Hugging Face Hub [not built yet]"


def push(ctx: typer.Context) -> None:
    not_built("push", "issue 6")
