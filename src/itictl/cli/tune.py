"""`itictl tune`: choose K, α and direction by nested cross-validation under a KL / CE budget
(itictl.tune.run_tune); renders the trials, each fold's choice and the outer-fold scores."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from itictl.cli import complete
from itictl.cli.common import artifact_doc, split_list, state
from itictl.cli.options import (
    ArchMapOpt,
    BackendOpt,
    DataOpt,
    DeviceOpt,
    DtypeOpt,
    FoldsOpt,
    ModelOpt,
    OpenAIBaseUrlOpt,
    ProtocolOpt,
    RevisionOpt,
    SeedOpt,
    SigmaFromOpt,
    SplitOpt,
    TieBreakOpt,
    ValDrawOpt,
    ValRatioOpt,
    with_arch_map,
)

HELP = """Choose heads K, strength alpha and direction honestly: nested cross-validation under a budget.

In each outer fold, candidates are scored on the validation questions of the fold's probes (the
test fold is never seen while choosing); the chosen setting is then scored once on the test fold,
next to alpha=0 and the paper's K=48 alpha=15, with paired 95% CIs. The budget (--max-kl or
--max-ce-increase, on --text natural text) is a constraint; the objective is maximised under it.
Every trial is a store artifact (reruns and extended searches reuse them; an interrupted tune
resumes). Writes a `tune` artifact (tune.json, trials.csv, pareto.png) tagged `last-tune`.
"""


def tune(
    ctx: typer.Context,
    model: ModelOpt = None, revision: RevisionOpt = None,
    objective: Annotated[str, typer.Option(
        "--objective", help="mc2 | mc1 | true*info (needs --judge and --info-judge).")] = "mc2",
    max_kl: Annotated[Optional[float], typer.Option(
        "--max-kl", help="Budget: KL wrt the original model on the --text samples.")] = None,
    max_ce_increase: Annotated[Optional[float], typer.Option(
        "--max-ce-increase", help="Budget: CE increase over alpha=0 on the --text samples.")] = None,
    heads: Annotated[str, typer.Option(
        "--heads", metavar="LIST|LO..HI", help="K values (grid) or a range (tpe).")] = "8,16,32,48,64",
    alpha: Annotated[str, typer.Option(
        "--alpha", metavar="LIST|LO..HI",
        help="alpha values (grid) or a range (tpe); alpha=0 is always scored.")] = "0,5,10,15,20,25",
    direction: Annotated[str, typer.Option(
        "--direction", autocompletion=complete.directions, help="Comma list of com, probe, random.")] = "com",
    trials: Annotated[Optional[int], typer.Option("--trials", help="TPE trials per outer fold (default 20).")] = None,
    search: Annotated[str, typer.Option("--search", help="grid (every point) | tpe (optuna's TPE sampler).")] = "grid",
    folds: FoldsOpt = 2, seed: SeedOpt = 42, val_ratio: ValRatioOpt = 0.2,
    split: SplitOpt = None, protocol: ProtocolOpt = "itictl", val_draw: ValDrawOpt = None, backend: BackendOpt = None,
    sigma_from: SigmaFromOpt = None, tie_break: TieBreakOpt = None,
    mc_positions: Annotated[Optional[str], typer.Option(
        "--mc-positions", metavar="answer|reference", autocompletion=complete.switch("mc_positions"),
        help="MC tokens scored and edited (as in eval).")] = None,
    instruction_prompt: Annotated[str, typer.Option("--instruction-prompt", help="default | informative | none.")] = "default",
    preset: Annotated[str, typer.Option("--preset", help="qa | null | chat | long | harm (TruthfulQA presets).")] = "qa",
    many_shot_prefix: Annotated[Optional[str], typer.Option(
        "--many-shot-prefix", metavar="FILE", help="Text prepended to every prompt.")] = None,
    judge: Annotated[Optional[str], typer.Option(
        "--judge", autocompletion=complete.judge_specs, help="Truth judge (as in eval).")] = None,
    info_judge: Annotated[Optional[str], typer.Option(
        "--info-judge", autocompletion=complete.judge_specs, help="Info judge (as in eval).")] = None,
    openai_base_url: OpenAIBaseUrlOpt = None,
    limit_questions: Annotated[Optional[int], typer.Option("--limit-questions", help="Use the first N questions.")] = None,
    text: Annotated[Optional[str], typer.Option(
        "--text", metavar="FILE", help="Natural text for CE/KL (needed for a budget and the Pareto plot).")] = None,
    text_samples: Annotated[int, typer.Option("--text-samples", help="CE/KL samples of 128 tokens (reference: 100).")] = 100,
    mc_style: Annotated[str, typer.Option(
        "--mc-style", autocompletion=complete.mc_style, help="truthfulqa | harness (lm-eval mc1/mc2).")] = "truthfulqa",
    data: DataOpt = None, device: DeviceOpt = "auto", dtype: DtypeOpt = "auto", arch_map: ArchMapOpt = None,
) -> None:
    from itictl.config import data_dir
    from itictl.evaluate.options import EvalOptions, read_prefix_file
    from itictl.tune.options import TuneOptions
    from itictl.tune.run import run_tune

    st = state(ctx)
    with_arch_map(ctx, arch_map)
    dd = data_dir(data)
    ev = EvalOptions(model=model, revision=revision, folds=folds, seed=seed, val_ratio=val_ratio, split=split,
                     instruction=instruction_prompt, preset=preset, many_shot_prefix=read_prefix_file(many_shot_prefix),
                     judge=judge, info_judge=info_judge, openai_base_url=openai_base_url,
                     limit_questions=limit_questions, text=text, text_samples=text_samples, mc_style=mc_style,
                     data_dir=str(dd) if dd else None, device=device, dtype=dtype, protocol=protocol,
                     val_draw=val_draw, backend=backend, sigma_from=sigma_from, tie_break=tie_break,
                     mc_positions=mc_positions)
    opts = TuneOptions(eval=ev, objective=objective.lower(), max_kl=max_kl, max_ce_increase=max_ce_increase,
                       heads=heads, alpha=alpha, directions=split_list(direction), trials=trials, search=search)
    art, cached, doc = run_tune(st.store, opts, st.out)
    _render(st, art, cached, doc)


def _render(st, art, cached: bool, doc: dict) -> None:
    def render(console):
        from itictl.cli.tune_render import outer_table, trials_table

        console.print(trials_table(doc))
        for f in doc["folds"]:
            console.print(f"fold {f['fold']}: chose {f['chosen']['label']} on {f['n_val']} validation questions "
                          f"(test: {f['n_test']})")
        console.print(outer_table(doc))
        c = doc["chosen"]
        console.print(f"chosen setting (for bake, all questions): {c['label']}")
        run = doc.get("trials_run", {})
        console.print(f"tune {art.key[:12]} ({'cached' if cached else 'new'}; trials: {run.get('cached', 0)} of "
                      f"{run.get('total', 0)} cached) -> {art.path}")

    st.out.result(artifact_doc(art, cached, **doc), render)
