"""`itictl export`: write an intervention as safetensors δ vectors, a llama.cpp control-vector GGUF,
pyvene's save format or an lm-evaluation-harness steering file into a directory. Thin: calls
itictl.publish.export.export_ref."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from itictl.cli import complete
from itictl.cli.common import state
from itictl.cli.options import DeviceOpt, ShipAlphaOpt, ShipHeadsOpt

HELP = """Export an intervention: safetensors δ vectors, llama.cpp control-vector GGUF, pyvene, or lm-eval.

\b
  itictl export REF --format safetensors DIR     intervention.safetensors + intervention.json + README.md
  itictl export REF --format control-vector DIR  control_vector.gguf (llama-cli --control-vector FILE)
  itictl export REF --format pyvene DIR          loads with pyvene.IntervenableModel.load(DIR, model)
  itictl export REF --format lm-eval DIR         steer.pt for lm_eval --model steered (exact, all tokens)

REF may also be a baked model, an eval (its fold-0 intervention is used) or a tune (its chosen
setting refitted on all questions). With no REF (`itictl export DIR`), exports the final
intervention of the newer of last-tune and last-eval, refitted on all questions as `itictl bake`
with no REF does (--heads/--alpha pick the eval's setting when it has several). The
model is loaded (on --device) for control-vector, pyvene and lm-eval only.
"""


def export(
    ctx: typer.Context,
    ref: Annotated[Optional[str], typer.Argument(metavar="REF", autocompletion=complete.ship_ref,
                                                 help="Intervention ref (or a baked-model / eval ref: its "
                                                 "intervention); omitted (`export DIR`): see above.")] = None,
    directory: Annotated[Optional[Path], typer.Argument(metavar="DIR", help="Output directory (created if missing).")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", autocompletion=complete.export_format,
                                     help="safetensors | control-vector | pyvene | lm-eval.")] = "safetensors",
    device: DeviceOpt = "auto", heads: ShipHeadsOpt = None, alpha: ShipAlphaOpt = None,
) -> None:
    from itictl.publish.export import export_ref
    from itictl.publish.final import shipped

    st = state(ctx)
    if ref is None:
        from itictl.errors import UsageError

        raise UsageError("no output directory given", "itictl export [REF] DIR")
    ref, directory = (None, Path(ref)) if directory is None else (ref, directory)  # `itictl export DIR`
    doc = export_ref(st.store, ref, fmt, directory, st.out, device=device, heads=heads, alpha=alpha)  # st.store: the lease
    doc.update(shipped(st.store, st.store.get(doc["intervention"])))

    def render(console):
        console.print(f"exported {doc['intervention'][:12]} as {fmt} to {doc['dir']}")
        for f in doc["files"]:
            console.print(f"  {f}")
        if "usage" in doc:
            console.print(f"use: {doc['usage']}")

    st.out.result(doc, render)
