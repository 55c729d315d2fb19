"""`itictl extract`: head-wise activations of TruthfulQA prompts into `activations` artifacts.

Thin: parses options, calls itictl.extract.run_extract once per (model, dataset) pair, prints one
artifact document (or a list of them with several models/datasets). Under torchrun
(`torchrun --nproc-per-node N -m itictl extract ...`) every rank runs this; the ranks share the
work (itictl.compute.distributed) and rank 0 alone prints; the document gains "world_size".
"""

from __future__ import annotations

from typing import Any, Optional

import typer

from itictl.cli.common import artifact_doc, device_map_option, rank_session, split_list, state

HELP = ("Extract head-wise activations (o_proj inputs at the last prompt token, every layer) for "
        "TruthfulQA prompts into an HDF5 artifact")


def _shapes(art) -> dict[str, list[int]]:
    m = art.meta
    n, L, H, D = m.get("n_prompts"), m.get("L"), m.get("H"), m.get("D")
    shapes = {"head_wise": [n, L, H * D] if None not in (L, H, D) else None}
    if art.params.get("layer_wise"):
        shapes["layer_wise"] = [n, L + 1, m.get("hidden")] if L is not None else None
    return shapes


def extract(
    ctx: typer.Context,
    model: Optional[str] = typer.Option(None, "--model", "-m", metavar="M[,M2]",
                                        help="Model alias, Hub id, folder or GGUF file; comma-separated for several (default: the embedded model)."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Hub revision (branch, tag or commit) of a Hub model."),
    dataset: str = typer.Option("tqa_mc2", "--dataset", "-d", metavar="FMT[,FMT2]",
                                help="Prompt format(s): tqa_mc2, tqa_gen, tqa_gen_end_q."),
    data: Optional[str] = typer.Option(None, "--data", metavar="DIR", help="TruthfulQA folder (else $ITICTL_DATA, else the Hub)."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1, help="Only the first N prompts of the format."),
    layer_wise: bool = typer.Option(False, "--layer-wise/--no-layer-wise",
                                    help="Also store the residual stream [N, L+1, hidden] at the last token."),
    dtype: str = typer.Option("auto", "--dtype", help="Compute dtype: auto (float32 on CPU, float16 on GPU), float32, float16, bfloat16."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N."),
    batch_tokens: Optional[int] = typer.Option(None, "--batch-tokens", min=1,
                                               help="Padded tokens per forward pass (default 4096 on CPU; on a GPU about total/32, 8192 to 65536); not part of the key."),
    seed: int = typer.Option(42, "--seed", help="Seed for tqa_gen_end_q's random other question."),
    store_dtype: str = typer.Option("auto", "--store-dtype", help="auto (float16 for 16-bit compute), float16, float32."),
    device_map: Optional[str] = device_map_option(),
) -> None:
    st = state(ctx)
    with rank_session(st, device, device_map) as dist:
        _extract(st, dist, model, revision, dataset, data, limit, layer_wise, dtype, device, batch_tokens, seed,
                 store_dtype, device_map)


def _extract(st, dist, model, revision, dataset, data, limit, layer_wise, dtype, device, batch_tokens, seed,
             store_dtype, device_map) -> None:
    from itictl.errors import BadInputError
    from itictl.extract import FORMATS, run_extract

    models: list[Optional[str]] = list(split_list(model)) or [None]
    formats = split_list(dataset)
    if not formats:
        raise BadInputError("--dataset is empty", f"use one of {', '.join(FORMATS)}")
    for f in formats:
        if f not in FORMATS:
            raise BadInputError(f"unknown dataset format {f!r}", f"use one of {', '.join(FORMATS)}")
    docs: list[dict[str, Any]] = []
    for m in models:
        for f in formats:
            art, cached = run_extract(st.store, m, f, data, limit=limit, layer_wise=layer_wise, dtype=dtype,
                                      device=device, batch_tokens=batch_tokens, seed=seed,
                                      store_dtype=store_dtype, out=st.out, revision=revision, dist=dist,
                                      device_map=device_map)
            docs.append(artifact_doc(art, cached, model=art.parents.get("model"), format=f, world_size=dist.world_size,
                                     shapes=_shapes(art), meta={k: art.meta.get(k) for k in
                                                                ("compute_s", "prompts_per_s", "device")}))

    def render(console) -> None:
        from rich.table import Table

        t = Table(title="activations")
        for col in ("key", "format", "head_wise", "cached", "prompts/s"):
            t.add_column(col)
        for d in docs:
            t.add_row(d["key"][:12], d["format"], "x".join(str(x) for x in d["shapes"]["head_wise"]),
                      "yes" if d["cached"] else "no", str(d["meta"].get("prompts_per_s") or "-"))
        console.print(t)

    if dist.is_main:
        st.out.result(docs[0] if len(docs) == 1 else docs, render)  # type: ignore[arg-type]
