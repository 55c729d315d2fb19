"""`itictl bake`: bake an intervention into o_proj biases as a plain Hugging Face model folder.
Thin: itictl.publish.bake.bake_ref resolves the ref (default: the intervention of `last-eval`), bakes,
and tags the result `last-bake` (and --tag)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from itictl.cli.common import artifact_doc, state
from itictl.cli.options import ArchMapOpt, DeviceMapOpt, DeviceOpt, with_arch_map

HELP = """Bake an intervention into o_proj biases (bias = W_o·δ_l) as a plain Hugging Face model.

The result loads with AutoModelForCausalLM.from_pretrained(PATH/model), no custom code. A baked
model intervenes on every token, prompt included. With no REF, bakes the intervention of the
`last-eval` ref. Tags the baked model `last-bake` (and --tag NAME).
"""


def bake(
    ctx: typer.Context,
    ref: Annotated[Optional[str], typer.Argument(help="Intervention ref, or a baked-model / eval ref (its "
                                                      "intervention); default: the intervention of `last-eval`.")] = None,
    dtype: Annotated[str, typer.Option("--dtype", metavar="DTYPE", help="Weights dtype of the baked model: auto (float32 "
                                       "on CPU, float16 on a GPU), float32, bfloat16 or float16.")] = "auto",
    device: DeviceOpt = "auto", device_map: DeviceMapOpt = None,
    tag: Annotated[Optional[str], typer.Option("--tag", help="Also name the baked model with this ref.")] = None,
    arch_map: ArchMapOpt = None,
) -> None:
    from itictl.publish.bake import bake_ref

    st = state(ctx)
    with_arch_map(ctx, arch_map)
    inter, art, cached = bake_ref(st.store, ref, st.out, dtype=dtype, device=device, device_map=device_map, tag=tag)
    st.out.result(artifact_doc(art, cached, intervention=inter.key, model_dir=str(art.path / "model"),
                               layers=art.meta.get("layers"), enabled_flag=art.meta.get("enabled_flag")))
