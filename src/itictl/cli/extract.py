"""`itictl extract`: head-wise activations of TruthfulQA prompts into `activations` artifacts.

Thin: parses options, calls itictl.extract.run_extract once per (model, dataset) pair, prints one
artifact document (or a list of them with several models/datasets). Under torchrun
(`torchrun --nproc-per-node N -m itictl extract ...`) every rank runs this; the ranks share the
work (itictl.compute.distributed) and rank 0 alone prints; the document gains "world_size".
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from itictl.cli import complete
from itictl.cli.common import artifact_doc, rank_session, split_list, state
from itictl.cli.options import ArchMapOpt, DataOpt, DeviceMapOpt, DeviceOpt, DtypeOpt, ModelsOpt, RevisionOpt, with_arch_map

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
    model: ModelsOpt = None, revision: RevisionOpt = None,
    dataset: Annotated[str, typer.Option("--dataset", "-d", metavar="FMT[,FMT2]", autocompletion=complete.prompt_formats,
                                         help="Prompt format(s): tqa_mc2, tqa_gen, tqa_gen_end_q.")] = "tqa_mc2",
    data: DataOpt = None,
    limit: Annotated[Optional[int], typer.Option("--limit", "-n", min=1, metavar="N",
                                                 help="Only the first N prompts of each format.")] = None,
    layer_wise: Annotated[bool, typer.Option(
        "--layer-wise/--no-layer-wise", help="Also store the residual stream [N, L+1, hidden] at the last token.")] = False,
    dtype: DtypeOpt = "auto", device: DeviceOpt = "auto",
    batch_tokens: Annotated[Optional[int], typer.Option(
        "--batch-tokens", min=1, help="Padded tokens per forward pass (default 4096 on CPU; on a GPU about total/32, "
                                      "8192 to 65536); not part of the key.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for tqa_gen_end_q's random other question.")] = 42,
    store_dtype: Annotated[str, typer.Option(
        "--store-dtype", help="auto (float16 for 16-bit compute), float16, float32.")] = "auto",
    device_map: DeviceMapOpt = None, arch_map: ArchMapOpt = None,
    fuse: Annotated[str, typer.Option(
        "--fuse", metavar="MODE",
        help="Fuse the decoder layers' elementwise work with torch.compile: off (default), auto (on a GPU for "
             "architectures checked with it), compile, max-autotune (slower to compile); compiling costs seconds "
             "to minutes per process (docs/extract.md); falls back to off when it fails; in the key unless off.")] = "off",
) -> None:
    from itictl.compute.fuse import check_fuse
    from itictl.data.prompts import check_format
    from itictl.errors import BadInputError
    from itictl.extract import run_extract

    st = state(ctx)
    with_arch_map(ctx, arch_map)
    models: list[Optional[str]] = list(split_list(model)) or [None]
    formats = [check_format(f) for f in split_list(dataset)]  # every format checked before any work
    fuse = check_fuse(fuse)
    if not formats:
        raise BadInputError("--dataset is empty", "use one of tqa_mc2, tqa_gen, tqa_gen_end_q")
    docs: list[dict[str, Any]] = []
    with rank_session(st, device, device_map) as dist:
        for m in models:
            for f in formats:
                art, cached = run_extract(st.store, m, f, data, limit=limit, layer_wise=layer_wise, dtype=dtype,
                                          device=device, batch_tokens=batch_tokens, seed=seed,
                                          store_dtype=store_dtype, out=st.out, revision=revision, dist=dist,
                                          device_map=device_map, fuse=fuse)
                docs.append(artifact_doc(art, cached, model=art.parents.get("model"), format=f,
                                         world_size=dist.world_size, shapes=_shapes(art),
                                         meta={k: art.meta.get(k) for k in ("compute_s", "prompts_per_s", "device", "fuse")}))
        if dist.is_main:
            _render(st, docs)


def _render(st, docs: list[dict[str, Any]]) -> None:
    def render(console) -> None:
        from rich.table import Table

        t = Table(title="activations")
        for col in ("key", "format", "head_wise", "cached", "prompts/s"):
            t.add_column(col)
        for d in docs:
            t.add_row(d["key"][:12], d["format"], "x".join(str(x) for x in d["shapes"]["head_wise"]),
                      "yes" if d["cached"] else "no", str(d["meta"].get("prompts_per_s") or "-"))
        console.print(t)
    st.out.result(docs[0] if len(docs) == 1 else docs, render)  # type: ignore[arg-type]
