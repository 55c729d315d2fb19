"""`itictl bake`: bake an intervention into o_proj biases as a plain Hugging Face model folder.
Thin: itictl.publish.bake.bake_ref resolves the ref (default: the all-questions intervention of the
newer of last-tune and last-eval), bakes, and tags the result `last-bake` (and --tag)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from itictl.cli import complete
from itictl.cli.common import artifact_doc, state
from itictl.cli.options import ArchMapOpt, DeviceMapOpt, DeviceOpt, ShipAlphaOpt, ShipHeadsOpt, with_arch_map

HELP = """Bake an intervention into o_proj biases (bias = W_o·δ_l) as a plain Hugging Face model.

The result loads with AutoModelForCausalLM.from_pretrained(PATH/model), no custom code. A baked
model intervenes on every token, prompt included. Tags the baked model `last-bake` (and --tag NAME).

With no REF, bakes the final intervention of whichever of the `last-tune` and `last-eval` refs
was tagged most recently (it says which): refitted on all questions (--val-ratio of them for
validation, no test fold; σ from every tuning prompt) with the tune's chosen setting, or the eval's
K, α and direction, and their model, data, seed and dtype, built or reused from the store. An eval
with several (K, α) settings needs --heads/--alpha to pick one (a usage error with a tune). A tune
REF bakes its chosen setting the same way; any other explicit REF (an eval: its fold-0
intervention) is baked as it is.
"""


def bake(
    ctx: typer.Context,
    ref: Annotated[Optional[str], typer.Argument(autocompletion=complete.ship_ref,
                                                 help="Intervention ref, or a baked-model / eval / tune ref "
                                                      "(its intervention); default: see above.")] = None,
    dtype: Annotated[str, typer.Option("--dtype", metavar="DTYPE", help="Weights dtype of the baked model: auto (float32 "
                                       "on CPU, float16 on a GPU), float32, bfloat16 or float16.")] = "auto",
    device: DeviceOpt = "auto", device_map: DeviceMapOpt = None,
    tag: Annotated[Optional[str], typer.Option("--tag", help="Also name the baked model with this ref.")] = None,
    arch_map: ArchMapOpt = None, heads: ShipHeadsOpt = None, alpha: ShipAlphaOpt = None,
) -> None:
    from itictl.publish.bake import bake_ref
    from itictl.publish.final import shipped

    st = state(ctx)
    with_arch_map(ctx, arch_map)
    inter, art, cached = bake_ref(st.store, ref, st.out, dtype=dtype, device=device, device_map=device_map, tag=tag,
                                  heads=heads, alpha=alpha)
    st.out.result(artifact_doc(art, cached, intervention=inter.key, **shipped(st.store, inter),
                               model_dir=str(art.path / "model"),
                               layers=art.meta.get("layers"), enabled_flag=art.meta.get("enabled_flag")))
