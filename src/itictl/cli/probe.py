"""`itictl probe`: train per-head linear probes on one fold and rank heads (a `probes` artifact).

Thin: itictl.pipeline.build_probes resolves (or builds) the activations and trains one fold's probes;
prints the artifact doc plus the best heads and a terminal heatmap.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from itictl.cli import complete
from itictl.cli.common import artifact_doc, state
from itictl.cli.options import (
    AllQuestionsOpt,
    BackendOpt,
    DataOpt,
    DeviceOpt,
    FoldOpt,
    FoldsOpt,
    LimitOpt,
    ModelOpt,
    ProtocolOpt,
    RevisionOpt,
    SeedOpt,
    SplitOpt,
    ValDrawOpt,
    ValRatioOpt,
    fold_of,
)

HELP = "Train per-head linear probes and rank heads"


def probe_summary(art, top: int = 10) -> dict[str, Any]:
    """Best heads and accuracy statistics of a probes artifact (for JSON and the table)."""
    import numpy as np

    from itictl.intervene.build import top_heads
    from itictl.probe.step import load_probes

    p = load_probes(art)
    best = [{"layer": l, "head": h, "val_acc": round(float(p.val_acc[l, h]), 4)} for l, h in top_heads(p.val_acc, top)]
    L, H, D = p.layout
    return {"layout": {"L": L, "H": H, "D": D}, "fold": art.params.get("fold"), "n_prompts": p.doc["n_prompts"],
            "top_heads": best,
            "val_acc_mean": round(float(np.mean(p.val_acc)), 4), "heatmap": str(art.path / "heatmap.png"),
            "fit_seconds": art.meta.get("fit_seconds")}


def render_probes(console, doc: dict[str, Any], val_acc) -> None:
    from rich.table import Table

    from itictl.probe.heatmap import text_rows

    console.print(f"[bold]probes[/bold] {doc['key'][:12]} ({'cached' if doc['cached'] else 'built'})  "
                  f"{doc['layout']['L']}×{doc['layout']['H']} heads, fold {doc['fold']}, prompts {doc['n_prompts']}, "
                  f"mean val acc {doc['val_acc_mean']:.3f}")
    for line in text_rows(val_acc):
        console.print(line, markup=False)
    t = Table(title="best heads (validation accuracy)")
    for c in ("layer", "head", "val acc"):
        t.add_column(c)
    for r in doc["top_heads"]:
        t.add_row(str(r["layer"]), str(r["head"]), f"{r['val_acc']:.3f}")
    console.print(t)
    console.print(f"heatmap: {doc['heatmap']}")


def probe(
    ctx: typer.Context,
    activations: Annotated[Optional[str], typer.Option(
        "--activations", "-a", metavar="REF", autocompletion=complete.refs("activations"),
        help="An activations artifact (ref, key or prefix); else built from --model/--dataset.")] = None,
    model: ModelOpt = None, revision: RevisionOpt = None,
    dataset: Annotated[str, typer.Option("--dataset", "-d", autocompletion=complete.prompt_format,
                                         help="Prompt format for building activations.")] = "tqa_mc2",
    data: DataOpt = None, limit: LimitOpt = None, folds: FoldsOpt = 2, fold: FoldOpt = 0,
    all_questions: AllQuestionsOpt = False, val_ratio: ValRatioOpt = 0.2, seed: SeedOpt = 42, split: SplitOpt = None,
    backend: BackendOpt = None, protocol: ProtocolOpt = "itictl", val_draw: ValDrawOpt = None, device: DeviceOpt = "auto",
) -> None:
    from itictl.pipeline import ChainSpec, build_probes
    from itictl.probe.step import load_probes

    st = state(ctx)
    spec = ChainSpec(model=model, revision=revision, data_dir=data, dataset=dataset, limit=limit, folds=folds,
                     val_ratio=val_ratio, split=split, seed=seed, backend=backend, device=device, protocol=protocol,
                     val_draw=val_draw)
    acts, art, cached = build_probes(st.store, spec, fold=fold_of(all_questions, fold), acts_ref=activations,
                                     probe_device=device, out=st.out)
    doc = artifact_doc(art, cached, activations=acts.key, **probe_summary(art))
    st.out.result(doc, lambda console: render_probes(console, doc, load_probes(art).val_acc))
