"""`itictl import`: turn a pyvene-saved additive intervention into an intervention artifact
(not built yet; issue 4)."""

from __future__ import annotations

import typer

from itictl.cli.common import not_built

HELP = "Import a pyvene-saved additive intervention as an intervention artifact [not built yet]"


def import_(ctx: typer.Context) -> None:
    not_built("import", "issue 4")
