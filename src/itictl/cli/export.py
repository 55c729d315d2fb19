"""`itictl export`: write an intervention as safetensors δ vectors, a llama.cpp control-vector GGUF
or pyvene's save format into a directory. Thin: calls itictl.publish.export.export_ref."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from itictl.cli.common import state
from itictl.cli.options import DeviceOpt

HELP = """Export an intervention: safetensors δ vectors, llama.cpp control-vector GGUF, or pyvene.

\b
  itictl export REF --format safetensors DIR     intervention.safetensors + intervention.json + README.md
  itictl export REF --format control-vector DIR  control_vector.gguf (llama-cli --control-vector FILE)
  itictl export REF --format pyvene DIR          loads with pyvene.IntervenableModel.load(DIR, model)

REF may also be a baked model or an eval (its intervention is used). The model is loaded (on
--device) for control-vector and pyvene only.
"""


def export(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Intervention ref (or a baked-model / eval ref: its intervention).")],
    directory: Annotated[Path, typer.Argument(help="Output directory (created if missing).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="safetensors | control-vector | pyvene.")] = "safetensors",
    device: DeviceOpt = "auto",
) -> None:
    from itictl.publish.export import export_ref

    st = state(ctx)
    doc = export_ref(st.store, ref, fmt, directory, st.out, device=device)  # st.store holds the lease

    def render(console):
        console.print(f"exported {doc['intervention'][:12]} as {fmt} to {doc['dir']}")
        for f in doc["files"]:
            console.print(f"  {f}")
        if "usage" in doc:
            console.print(f"use: {doc['usage']}")

    st.out.result(doc, render)
