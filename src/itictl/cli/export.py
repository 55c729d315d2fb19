"""`itictl export`: interventions in pyvene, control-vector and safetensors
formats (not built yet; issue 6)."""

from __future__ import annotations

import typer

from itictl.cli.common import not_built

HELP = "Export an intervention (pyvene, control-vector GGUF, safetensors) [not built yet]"


def export(ctx: typer.Context) -> None:
    not_built("export", "issues 4 and 6")
