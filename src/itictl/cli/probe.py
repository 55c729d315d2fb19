"""`itictl probe`: train per-head linear probes on one fold and rank heads (a `probes` artifact).

Thin: resolves (or builds, via itictl.extract.run_extract) the activations, calls
itictl.probe.step.run_probe, prints the artifact doc plus the best heads and a terminal heatmap.
"""

from __future__ import annotations

from typing import Any, Optional

import typer

from itictl.cli.common import artifact_doc, state

HELP = "Train per-head linear probes and rank heads"


def probe_summary(art, top: int = 10) -> dict[str, Any]:
    """Best heads and accuracy statistics of a probes artifact (for JSON and the table)."""
    import numpy as np

    from itictl.intervene.build import top_heads
    from itictl.probe.step import load_probes

    p = load_probes(art)
    best = [{"layer": l, "head": h, "val_acc": round(float(p.val_acc[l, h]), 4)} for l, h in top_heads(p.val_acc, top)]
    L, H, D = p.layout
    return {"layout": {"L": L, "H": H, "D": D}, "n_prompts": p.doc["n_prompts"], "top_heads": best,
            "val_acc_mean": round(float(np.mean(p.val_acc)), 4), "heatmap": str(art.path / "heatmap.png"),
            "fit_seconds": art.meta.get("fit_seconds")}


def render_probes(console, doc: dict[str, Any], val_acc) -> None:
    from rich.table import Table

    from itictl.probe.heatmap import text_rows

    console.print(f"[bold]probes[/bold] {doc['key'][:12]} ({'cached' if doc['cached'] else 'built'})  "
                  f"{doc['layout']['L']}×{doc['layout']['H']} heads, prompts {doc['n_prompts']}, "
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
    activations: Optional[str] = typer.Option(None, "--activations", "-a", metavar="REF",
                                              help="An activations artifact (ref, key or prefix); else built from --model/--dataset."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model for building activations (default: the embedded one)."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Hub revision (branch, tag or commit) of a Hub model."),
    dataset: str = typer.Option("tqa_mc2", "--dataset", "-d", help="Prompt format for building activations."),
    data: Optional[str] = typer.Option(None, "--data", metavar="DIR", help="TruthfulQA folder (else $ITICTL_DATA, else the Hub)."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1, help="Only the first N prompts (when building activations)."),
    folds: int = typer.Option(2, "--folds", help="Number of question folds."),
    fold: int = typer.Option(0, "--fold", help="Which fold is the test fold (0-based)."),
    val_ratio: float = typer.Option(0.2, "--val-ratio", help="Share of the training questions held out for validation."),
    seed: int = typer.Option(42, "--seed", help="Seed for the fold shuffle and the validation split."),
    split: str = typer.Option("random", "--split", help="random (seeded shuffle) or contiguous (the reference's np.array_split)."),
    backend: str = typer.Option("torch", "--backend", help="torch (all heads at once) or sklearn (per-head loop, like the reference)."),
    device: str = typer.Option("auto", "--device", help="Device for building activations and batched training: auto, cpu, cuda."),
) -> None:
    from itictl.config import data_dir
    from itictl.probe.step import load_probes, validate_options, run_probe

    st = state(ctx)
    validate_options(folds, fold, val_ratio, split, backend)  # fail before any extraction
    if activations:
        acts = st.store.open(activations, kind="activations")
    else:
        from itictl.extract import run_extract

        acts, _ = run_extract(st.store, model, dataset, data_dir(data), limit=limit, device=device, out=st.out,
                              revision=revision)
    from itictl.models.devices import resolve_device

    train_dev = resolve_device(device)  # validated: a bad --device exits 4, not a traceback
    art, cached = run_probe(st.store, acts, folds=folds, fold=fold, val_ratio=val_ratio, seed=seed, split=split,
                            backend=backend, out=st.out, device=train_dev)
    doc = artifact_doc(art, cached, activations=acts.key, **probe_summary(art))
    st.out.result(doc, lambda console: render_probes(console, doc, load_probes(art).val_acc))
