"""`itictl import pyvene DIR_OR_HUB_ID`: turn a pyvene-saved additive intervention on o_proj inputs
into an `intervention` artifact (which eval, bake and export accept).

Thin: itictl.publish.pyvene_io.import_pyvene reads the folder (or downloads config.json + intkey_*.bin
from the Hub), checks the deltas fit --model (intervene.build.check_deltas_fit) and stores them.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from itictl.cli import complete
from itictl.cli.common import artifact_doc, state
from itictl.cli.options import RevisionOpt

HELP = "Import a pyvene-saved additive intervention as an intervention artifact"


def import_(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Argument(metavar="FORMAT", help="Only 'pyvene' for now.")],
    source: Annotated[str, typer.Argument(metavar="DIR_OR_HUB_ID", help="A folder written by pyvene, or a Hub repo id.")],
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", metavar="MODEL", autocompletion=complete.models,
        help="The model it was made for (checks sizes, records lineage; default: none).")] = None,
    revision: RevisionOpt = None,
) -> None:
    from itictl.errors import UnsupportedError
    from itictl.intervene.build import read_intervention
    from itictl.publish.pyvene_io import import_pyvene

    st = state(ctx)
    if fmt != "pyvene":
        raise UnsupportedError(f"unknown import format {fmt!r}", "use: itictl import pyvene DIR_OR_HUB_ID")
    art, cached = import_pyvene(st.store, source, model, revision, out=st.out)
    doc = read_intervention(art)
    st.out.result(artifact_doc(art, cached, layers=doc["layers"], heads=doc["heads"], model=doc.get("model_key")))
