"""`itictl export`: write an intervention as safetensors δ vectors, a llama.cpp control-vector GGUF
or pyvene's save format into a directory. Thin: calls itictl.publish.export.run_export."""

from __future__ import annotations

from pathlib import Path

import typer

from itictl.cli.common import state

HELP = """Export an intervention: safetensors δ vectors, llama.cpp control-vector GGUF, or pyvene.

\b
  itictl export REF --format safetensors DIR     intervention.safetensors + intervention.json + README.md
  itictl export REF --format control-vector DIR  control_vector.gguf (llama-cli --control-vector FILE)
  itictl export REF --format pyvene DIR          loads with pyvene.IntervenableModel.load(DIR, model)

REF may also be a baked model or an eval (its intervention is used).
"""


def export(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="Intervention ref (or a baked-model / eval ref)."),
    directory: Path = typer.Argument(..., help="Output directory (created if missing)."),
    fmt: str = typer.Option("safetensors", "--format", "-f", help="safetensors | control-vector | pyvene."),
    device: str = typer.Option("cpu", "--device", help="Where to load the model (control-vector, pyvene)."),
) -> None:
    from itictl.errors import BadInputError
    from itictl.publish.export import FORMATS, run_export

    st = state(ctx)
    store = st.store
    if fmt not in FORMATS:
        raise BadInputError(f"unknown export format {fmt!r}", f"use one of: {', '.join(FORMATS)}")
    art = store.open(ref)
    if art.kind == "baked-model":
        art = store.get(art.parents["intervention"])
    elif art.kind == "eval":
        found = [store.get(k) for _, k in sorted(art.parents.items()) if store.has(k) and store.get(k).kind == "intervention"]
        if not found:
            raise BadInputError(f"eval {art.key[:12]} has no intervention", "pass an intervention ref")
        art = found[0]
    with store.lease():
        doc = run_export(store, art, fmt, directory, st.out, device=device)

    def render(console):
        console.print(f"exported {doc['intervention'][:12]} as {fmt} to {doc['dir']}")
        for f in doc["files"]:
            console.print(f"  {f}")
        if "usage" in doc:
            console.print(f"use: {doc['usage']}")

    st.out.result(doc, render)
