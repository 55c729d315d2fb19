"""`itictl bake`: bake an intervention into o_proj biases as a plain Hugging Face model folder.
Thin: resolves the ref (default: the intervention of `last-eval`) and calls itictl.publish.bake.run_bake."""

from __future__ import annotations

from typing import Optional

import typer

from itictl.cli.common import artifact_doc, device_map_option, state

HELP = """Bake an intervention into o_proj biases (bias = W_o·δ_l) as a plain Hugging Face model.

The result loads with AutoModelForCausalLM.from_pretrained(PATH/model), no custom code. A baked
model intervenes on every token, prompt included. With no REF, bakes the intervention of the
`last-eval` ref.
"""


def bake(
    ctx: typer.Context,
    ref: Optional[str] = typer.Argument(None, help="Intervention ref (default: the intervention of `last-eval`)."),
    dtype: str = typer.Option("auto", "--dtype", help="Weights dtype of the baked model: auto (float32 on CPU, float16 on GPUs), float32, bfloat16, float16."),
    device: str = typer.Option("cpu", "--device", help="Where to load the model while baking (cpu, cuda, auto)."),
    device_map: Optional[str] = device_map_option("Split a model too large for one device", "overrides --device"),
    tag: Optional[str] = typer.Option(None, "--tag", help="Also name the baked model with this ref."),
) -> None:
    from itictl.publish.bake import intervention_of_last_eval, run_bake
    from itictl.models.devices import parse_device_map, resolve_dtype

    st = state(ctx)
    dmap = parse_device_map(device_map)  # exit 4 before any store work
    store = st.store
    resolve_dtype(dtype, "cpu")  # exit 4 on an unknown dtype before any work
    if tag is not None:
        from itictl.store.core import check_ref_name

        check_ref_name(tag)
    inter = store.open(ref) if ref else intervention_of_last_eval(store, st.out)
    art, cached = run_bake(store, inter, st.out, dtype=dtype, device=device, device_map=dmap)
    store.tag("last-bake", art.key)
    if tag:
        store.tag(tag, art.key)
    st.out.result(artifact_doc(art, cached, intervention=inter.key, model_dir=str(art.path / "model"),
                               layers=art.meta.get("layers"), enabled_flag=art.meta.get("enabled_flag")))
