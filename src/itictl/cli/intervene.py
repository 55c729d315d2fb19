"""`itictl intervene`: build an intervention (top-K heads, α, direction) and optionally steer a prompt.

Thin: with no --probes it builds or reuses the chain extract (tqa_mc2) → probe through the store;
the tuning activations (tqa_gen_end_q by default) come from the same model. Calls
itictl.intervene.build.run_intervene, then with --prompt prints the unsteered and steered greedy answers.
"""

from __future__ import annotations

from typing import Any, Optional

import typer

from itictl.cli.common import artifact_doc, device_map_option, state

HELP = "Build an intervention (top-K heads, alpha, direction) and steer generation"


def model_spec_of(model_art) -> Optional[str]:
    """A spec that resolves back to a stored model artifact (None = the embedded default)."""
    from itictl.models.loading import model_info

    info = model_info(model_art)
    if info.get("source") == "embedded":
        return None
    if info.get("source") == "hub":
        return info.get("identity", {}).get("repo") or info.get("name")
    return info.get("location") or info.get("name")


def revision_of(model_art) -> Optional[str]:
    """The resolved commit of a Hub model artifact (so later steps use exactly that snapshot)."""
    from itictl.models.loading import model_info

    info = model_info(model_art)
    return info.get("identity", {}).get("commit") if info.get("source") == "hub" else None


def intervene(
    ctx: typer.Context,
    heads: int = typer.Option(..., "--heads", "-K", help="Number of heads to intervene on (top-K by validation accuracy)."),
    alpha: float = typer.Option(..., "--alpha", "-A", help="Strength α (shift = α·σ·θ per head)."),
    direction: str = typer.Option("com", "--direction", help="com (mean true − mean false), probe (probe weights) or random."),
    probes: Optional[str] = typer.Option(None, "--probes", "-p", metavar="REF", help="A probes artifact; else built from --model."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model (default: the embedded one, or the probes' model)."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Hub revision (branch, tag or commit) of a Hub model."),
    tuning: Optional[str] = typer.Option(None, "--tuning", metavar="REF", help="Tuning activations artifact (else extracted)."),
    tuning_dataset: str = typer.Option("tqa_gen_end_q", "--tuning-dataset", help="Prompt format of the tuning activations (σ)."),
    data: Optional[str] = typer.Option(None, "--data", metavar="DIR", help="TruthfulQA folder (else $ITICTL_DATA, else the Hub)."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1, help="Only the first N prompts when extracting."),
    folds: int = typer.Option(2, "--folds", help="Question folds (when building probes)."),
    fold: int = typer.Option(0, "--fold", help="Test fold (when building probes)."),
    val_ratio: float = typer.Option(0.2, "--val-ratio", help="Validation share (when building probes)."),
    split: str = typer.Option("random", "--split", help="random or contiguous (when building probes)."),
    seed: int = typer.Option(42, "--seed", help="Seed for folds, validation split and random directions."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Generate unsteered and steered answers to this prompt."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1, help="Tokens to generate for --prompt."),
    chat: bool = typer.Option(True, "--chat/--no-chat", help="Wrap --prompt in the model's chat template."),
    positions: str = typer.Option("generated", "--positions", help="generated (last prompt token + new tokens) or all."),
    dtype: str = typer.Option("auto", "--dtype", help="Compute dtype for extraction and generation."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N."),
    device_map: Optional[str] = device_map_option("Split the model across devices (extraction and --prompt)", "overrides --device"),
) -> None:
    from itictl.config import data_dir
    from itictl.errors import BadInputError
    from itictl.intervene.build import read_intervention, run_intervene, validate
    from itictl.models.devices import parse_device_map
    from itictl.probe.step import validate_options

    st = state(ctx)
    store = st.store
    validate(heads, alpha, direction)  # K ≤ 0, NaN/inf α, unknown direction: before any work
    dmap = parse_device_map(device_map)
    if positions not in ("generated", "all"):
        raise BadInputError(f"unknown --positions {positions!r}", "use generated or all")
    ddir = data_dir(data)
    model_art = None
    if model is not None or probes is None:
        from itictl.models import ensure_model

        model_art = ensure_model(store, model, revision=revision, out=st.out)
    if probes:
        probes_art = store.open(probes, kind="probes")
        p_model = probes_art.read_json("probes.json").get("model_key")
        if model_art is not None:  # before any extraction: fail fast
            from itictl.intervene.build import check_probes_model

            check_probes_model(probes_art.key, p_model, model_art.key, model or "the embedded model")
        if model_art is None:
            if not p_model or not store.has(p_model):
                raise BadInputError(f"the model of probes {probes_art.key[:12]} is not in this store", "pass --model")
            model_art = store.get(p_model)
    else:
        from itictl.extract import run_extract
        from itictl.probe.step import run_probe

        validate_options(folds, fold, val_ratio, split, "torch")
        acts, _ = run_extract(store, model_spec_of(model_art), "tqa_mc2", ddir, limit=limit, dtype=dtype,
                              device=device, out=st.out, revision=revision_of(model_art),
                              device_map=dmap)
        probes_art, _ = run_probe(store, acts, folds=folds, fold=fold, val_ratio=val_ratio, seed=seed, split=split,
                                  backend="torch", out=st.out)
    if tuning:
        tuning_art = store.open(tuning, kind="activations")
    else:
        from itictl.extract import run_extract

        tuning_art, _ = run_extract(store, model_spec_of(model_art), tuning_dataset, ddir, limit=limit, dtype=dtype,
                                    device=device, seed=seed, out=st.out, revision=revision_of(model_art),
                                    device_map=dmap)
    art, cached = run_intervene(store, probes_art, tuning_art, heads=heads, alpha=alpha, direction=direction,
                                seed=seed, out=st.out, model_key=model_art.key)
    info = read_intervention(art)
    doc: dict[str, Any] = artifact_doc(art, cached, probes=probes_art.key, tuning=tuning_art.key,
                                       model=model_art.key, heads=info["heads"], layers=info["layers"],
                                       alpha=info["alpha"], direction=info["direction"])
    if prompt is not None:
        from itictl.intervene.build import load_deltas
        from itictl.models import load_model
        from itictl.intervene.steering import steered_generate

        lm = load_model(store, model_art, dtype=dtype, device=device, device_map=dmap)
        deltas = load_deltas(art)
        with st.out.status("generating"):
            doc["unsteered"] = steered_generate(lm.model, lm.tokenizer, [prompt], None, max_new_tokens, chat)[0]
            doc["steered"] = steered_generate(lm.model, lm.tokenizer, [prompt], deltas, max_new_tokens, chat,
                                              positions=positions)[0]
        doc["prompt"] = prompt

    def render(console) -> None:
        from rich.table import Table

        console.print(f"[bold]intervention[/bold] {art.key[:12]} ({'cached' if cached else 'built'}): "
                      f"{len(info['heads'])} heads in {len(info['layers'])} layers, α={info['alpha']}, "
                      f"direction={info['direction']}")
        if prompt is not None:
            t = Table(title=prompt, show_lines=True)
            t.add_column("unsteered", ratio=1)
            t.add_column(f"steered (K={heads}, α={alpha:g})", ratio=1)
            t.add_row(doc["unsteered"], doc["steered"])
            console.print(t)

    st.out.result(doc, render)
