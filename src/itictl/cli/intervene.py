"""`itictl intervene`: build an intervention (top-K heads, α, direction) and optionally steer a prompt.

Thin: parses options into a pipeline.ChainSpec + Setting (+ Steer with --prompt), calls
itictl.pipeline.build_chain (which builds or reuses extract (tqa_mc2) → probe → tuning activations
(tqa_gen_end_q) → intervention through the store, unless --probes / --tuning name them), renders.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from itictl.cli import complete
from itictl.cli.common import artifact_doc, state
from itictl.cli.options import (
    AllQuestionsOpt,
    ArchMapOpt,
    DataOpt,
    DeviceMapOpt,
    DeviceOpt,
    DirectionOpt,
    DtypeOpt,
    FoldOpt,
    FoldsOpt,
    LimitOpt,
    ModelOpt,
    ProtocolOpt,
    RevisionOpt,
    SeedOpt,
    SigmaFromOpt,
    SplitOpt,
    TieBreakOpt,
    ValDrawOpt,
    ValRatioOpt,
    fold_of,
    with_arch_map,
)

HELP = """Build an intervention (top-K heads, alpha, direction) and steer generation

Builds or reuses extract (tqa_mc2) -> probe (--fold) -> tuning activations -> intervention. With
--all-questions the probes train on every question (--val-ratio of them for validation, no test
fold) and σ comes from every tuning prompt: the fit bake/push/export ship. With --probes and no
--model, the probes' own model is used. Every option is checked before any model work.
"""

HeadsOpt = Annotated[int, typer.Option("--heads", "-K", help="Number of heads to intervene on (top-K by validation accuracy).")]
AlphaOpt = Annotated[float, typer.Option("--alpha", "-A", help="Strength α (shift = α·σ·θ per head).")]
ProbesOpt = Annotated[Optional[str], typer.Option("--probes", "-p", metavar="REF", autocompletion=complete.refs("probes"),
                                                  help="A probes artifact; else built from --model.")]
TuningOpt = Annotated[Optional[str], typer.Option("--tuning", metavar="REF", autocompletion=complete.refs("activations"),
                                                  help="Tuning activations artifact (else extracted).")]
TuningDatasetOpt = Annotated[str, typer.Option("--tuning-dataset", autocompletion=complete.prompt_format,
                                                         help="Prompt format of the tuning activations (σ).")]
PromptOpt = Annotated[Optional[str], typer.Option("--prompt", help="Generate unsteered and steered answers to this prompt.")]
MaxNewOpt = Annotated[int, typer.Option("--max-new-tokens", min=1, help="Tokens to generate for --prompt.")]
ChatOpt = Annotated[bool, typer.Option("--chat/--no-chat", help="Wrap --prompt in the model's chat template.")]
PositionsOpt = Annotated[str, typer.Option("--positions", help="generated (last prompt token + new tokens) or all.")]


def intervene(
    ctx: typer.Context, heads: HeadsOpt, alpha: AlphaOpt, direction: DirectionOpt = "com", probes: ProbesOpt = None,
    model: ModelOpt = None, revision: RevisionOpt = None, tuning: TuningOpt = None,
    tuning_dataset: TuningDatasetOpt = "tqa_gen_end_q", data: DataOpt = None, limit: LimitOpt = None,
    folds: FoldsOpt = 2, fold: FoldOpt = 0, all_questions: AllQuestionsOpt = False, val_ratio: ValRatioOpt = 0.2,
    split: SplitOpt = None, protocol: ProtocolOpt = "itictl", val_draw: ValDrawOpt = None,
    sigma_from: SigmaFromOpt = None, tie_break: TieBreakOpt = None, seed: SeedOpt = 42, prompt: PromptOpt = None,
    max_new_tokens: MaxNewOpt = 64,
    chat: ChatOpt = True, positions: PositionsOpt = "generated", dtype: DtypeOpt = "auto", device: DeviceOpt = "auto",
    device_map: DeviceMapOpt = None, arch_map: ArchMapOpt = None,
) -> None:
    from itictl.models.devices import parse_device_map
    from itictl.pipeline import ChainSpec, Setting, Steer, build_chain

    st = state(ctx)
    if all_questions and probes is not None:
        from itictl.errors import UsageError

        raise UsageError("--all-questions trains the probes; it does not apply to --probes", "drop one of them")
    with_arch_map(ctx, arch_map)
    spec = ChainSpec(model=model, revision=revision, data_dir=data, tuning_dataset=tuning_dataset, limit=limit,
                     folds=folds, val_ratio=val_ratio, split=split, seed=seed, dtype=dtype, device=device,
                     device_map=parse_device_map(device_map), protocol=protocol, val_draw=val_draw,
                     sigma_from=sigma_from, tie_break=tie_break)
    steer = Steer(prompt, max_new_tokens, chat, positions) if prompt is not None else None
    chain = build_chain(st.store, spec, Setting(heads, alpha, direction), fold=fold_of(all_questions, fold),
                        probes=probes, tuning=tuning, steering=steer, out=st.out)
    _render(st, chain, heads, alpha, prompt)


def _render(st, chain, heads: int, alpha: float, prompt: Optional[str]) -> None:
    from itictl.intervene.build import read_intervention

    art, cached = chain.intervention, chain.cached
    info = read_intervention(art)
    doc: dict[str, Any] = artifact_doc(art, cached, probes=chain.probes.key, tuning=chain.tuning.key,
                                       model=chain.model.key, heads=info["heads"], layers=info["layers"],
                                       alpha=info["alpha"], direction=info["direction"],
                                       fold=chain.probes.params.get("fold"))
    if chain.answers is not None:
        doc.update(chain.answers, prompt=prompt)

    def render(console) -> None:
        from rich.table import Table

        console.print(f"[bold]intervention[/bold] {art.key[:12]} ({'cached' if cached else 'built'}): "
                      f"{len(info['heads'])} heads in {len(info['layers'])} layers, α={info['alpha']}, "
                      f"direction={info['direction']}, fold {doc['fold']}")
        if prompt is not None:
            t = Table(title=prompt, show_lines=True)
            t.add_column("unsteered", ratio=1)
            t.add_column(f"steered (K={heads}, α={alpha:g})", ratio=1)
            t.add_row(doc["unsteered"], doc["steered"])
            console.print(t)

    st.out.result(doc, render)
