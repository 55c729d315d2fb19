"""Generates the CLI reference (docs/cli.md) and shell completion scripts from the Typer app, so
both always match the code. `make docs` writes them; tests fail when the committed copies are stale."""

from __future__ import annotations

import os

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_ITICTL_COMPLETE"


def completion_script(shell: str) -> str:
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name="itictl", complete_var=COMPLETE_VAR, shell=shell).strip() + "\n"


def _walk(cmd, ctx, path):
    import typer._click as click  # Typer >= 0.26 vendors Click

    yield path, cmd, ctx
    if hasattr(cmd, "list_commands"):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            sub_ctx = click.Context(sub, info_name=name, parent=ctx, terminal_width=100, max_content_width=100)
            yield from _walk(sub, sub_ctx, path + [name])


def cli_reference_markdown() -> str:
    import typer
    import typer._click as click

    from itictl.cli.app import app

    old = os.environ.pop("COLUMNS", None)
    try:
        root = typer.main.get_command(app)
        ctx = click.Context(root, info_name="itictl", terminal_width=100, max_content_width=100)
        parts = ["# itictl CLI reference", "",
                 "Generated from the app by `make docs` (src/itictl/cli/reference.py); do not edit by hand.",
                 "Global options (`--store`, `--json`, `-q`, `-v`) may be given anywhere on the command line.", ""]
        for path, cmd, cctx in _walk(root, ctx, ["itictl"]):
            title = " ".join(path)
            parts += [f"## `{title}`", "", "```text", cmd.get_help(cctx).rstrip(), "```", ""]
        return "\n".join(parts)
    finally:
        if old is not None:
            os.environ["COLUMNS"] = old
