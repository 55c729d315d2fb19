"""`itictl judge …`: fine-tune and manage truth/info judges (not built yet; issue 5)."""

from __future__ import annotations

import typer

from itictl.cli.common import not_built

HELP = "Judges for True/Info scoring: fine-tune an OpenAI judge [not built yet]"
app = typer.Typer(no_args_is_help=True)


@app.command("finetune", help="Reproduce finetune_gpt.ipynb: fine-tune a truth/info judge [not built yet]")
def finetune(ctx: typer.Context) -> None:
    not_built("judge finetune", "issue 5")
