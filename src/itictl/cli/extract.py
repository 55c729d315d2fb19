"""`itictl extract`: Extract head-wise activations for TruthfulQA prompts into an HDF5 artifact (not built yet; issue 3)."""

from __future__ import annotations

import typer

from itictl.cli.common import not_built

HELP = "Extract head-wise activations for TruthfulQA prompts into an HDF5 artifact [not built yet]"


def extract(ctx: typer.Context) -> None:
    not_built("extract", "issue 3")
