"""`itictl import pyvene DIR_OR_HUB_ID`: turn a pyvene-saved additive intervention on o_proj inputs
into an `intervention` artifact (which eval, bake and export accept).

Thin: itictl.publish.pyvene_io.load_pyvene reads the folder (or downloads config.json + intkey_*.bin from
the Hub), itictl.intervene.build.import_deltas stores it.
"""

from __future__ import annotations

from typing import Optional

import typer

from itictl.cli.common import artifact_doc, state

HELP = "Import a pyvene-saved additive intervention as an intervention artifact"


def import_(
    ctx: typer.Context,
    fmt: str = typer.Argument(..., metavar="FORMAT", help="Only 'pyvene' for now."),
    source: str = typer.Argument(..., metavar="DIR_OR_HUB_ID", help="A folder written by pyvene, or a Hub repo id."),
    model: Optional[str] = typer.Option(None, "--model", "-m",
                                        help="The model it was made for (checks sizes, records lineage; default: none)."),
) -> None:
    from itictl.errors import BadInputError, UnsupportedError
    from itictl.intervene.build import import_deltas, read_intervention
    from itictl.publish.pyvene_io import load_pyvene

    st = state(ctx)
    if fmt != "pyvene":
        raise UnsupportedError(f"unknown import format {fmt!r}", "use: itictl import pyvene DIR_OR_HUB_ID")
    deltas, info = load_pyvene(source)
    layout = None
    model_key = None
    if model is not None:
        from itictl.models import ensure_model
        from itictl.models.loading import model_info

        m_art = ensure_model(st.store, model, out=st.out)
        mi = model_info(m_art)
        layout = (int(mi["n_layers"]), int(mi["n_heads"]), int(mi["head_dim"]))
        for l, d in deltas.items():
            if l >= layout[0] or d.numel() != layout[1] * layout[2]:
                raise BadInputError(f"the pyvene intervention (layer {l}, {d.numel()} features) does not fit "
                                    f"{model or 'the embedded model'} ({layout[0]} layers, {layout[1] * layout[2]} features)",
                                    "pass the --model it was made for")
        model_key = m_art.key
    art, cached = import_deltas(st.store, deltas, layout=layout, model_key=model_key,
                                source={"format": "pyvene", "from": str(source), "components": info["components"]})
    doc = read_intervention(art)
    st.out.result(artifact_doc(art, cached, layers=doc["layers"], heads=doc["heads"], model=model_key))
