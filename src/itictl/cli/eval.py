"""`itictl eval`: k-fold TruthfulQA evaluation (MC, judges, BLEU/ROUGE, CE/KL) and (K, α) sweeps.
Under torchrun every rank runs it (evaluate/runner.py shares the work); rank 0 alone prints."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from itictl.cli import complete
from itictl.cli.common import artifact_doc, rank_session, split_list, state
from itictl.cli.options import (
    ArchMapOpt,
    BackendOpt,
    DataOpt,
    DeviceMapOpt,
    DeviceOpt,
    DirectionOpt,
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
    parse_floats,
    parse_ints,
    with_arch_map,
)

HELP = """k-fold TruthfulQA evaluation with and without the intervention (validate_2fold.py semantics).

Builds or reuses extract -> probe -> intervene per fold; prints a per-fold table, the mean and the
reference's summary line, 95% bootstrap CIs of the means and paired CIs of each change against
alpha=0; writes an `eval` artifact (eval.json, answers.csv, per_question.csv, sweep.png for grids)
and tags it `last-eval`. Lists for --heads/--alpha run a sweep. --protocol reference reproduces
honest_llama's validate_2fold literally; each of its switches can also be set alone (docs/differences.md).
"""


def eval_(
    ctx: typer.Context,
    model: ModelOpt = None, revision: RevisionOpt = None,
    heads: Annotated[str, typer.Option("--heads", help="K, number of heads; a comma list sweeps.")] = "48",
    alpha: Annotated[str, typer.Option("--alpha", help="Intervention strength; a comma list sweeps (0 = baseline).")] = "15",
    direction: DirectionOpt = "com", folds: FoldsOpt = 2, seed: SeedOpt = 42, val_ratio: ValRatioOpt = 0.2,
    split: SplitOpt = None, protocol: ProtocolOpt = "itictl", val_draw: ValDrawOpt = None, backend: BackendOpt = None,
    sigma_from: SigmaFromOpt = None, tie_break: TieBreakOpt = None,
    mc_positions: Annotated[Optional[str], typer.Option(
        "--mc-positions", metavar="answer|reference", autocompletion=complete.switch("mc_positions"),
        help="MC tokens scored and edited: answer (the answer's tokens) or reference (tqa_run_probs literally: "
             "log_probs[3:] after the question, edits from +4). Default: the --protocol's.")] = None,
    instruction_prompt: Annotated[str, typer.Option("--instruction-prompt", help="default | informative | none.")] = "default",
    preset: Annotated[str, typer.Option("--preset", help="qa | null | chat | long | harm (TruthfulQA presets).")] = "qa",
    many_shot_prefix: Annotated[Optional[str], typer.Option(
        "--many-shot-prefix", metavar="FILE", help="Text prepended to every prompt.")] = None,
    metrics: Annotated[str, typer.Option(
        "--metrics", autocompletion=complete.metrics, help="Comma list of mc,judge,info,bleu,rouge,ce,kl.")] = "mc,ce,kl",
    judge: Annotated[Optional[str], typer.Option(
        "--judge", autocompletion=complete.judge_specs,
        help="Truth judge: openai:MODEL, hf:ID_OR_PATH[@REV], local (the last `judge train --kind truth`) "
             "or local:REF.")] = None,
    info_judge: Annotated[Optional[str], typer.Option(
        "--info-judge", autocompletion=complete.judge_specs,
        help="Info judge: openai:MODEL, hf:ID_OR_PATH[@REV], local (the last `judge train --kind "
             "info`) or local:REF.")] = None,
    openai_base_url: OpenAIBaseUrlOpt = None,
    limit_questions: Annotated[Optional[int], typer.Option("--limit-questions", help="Use the first N questions.")] = None,
    text: Annotated[Optional[str], typer.Option(
        "--text", metavar="FILE",
        help="Natural text for CE/KL (needed for them; without it they are reported as skipped).")] = None,
    text_samples: Annotated[int, typer.Option("--text-samples", help="CE/KL samples of 128 tokens (reference: 100).")] = 100,
    mc_style: Annotated[str, typer.Option(
        "--mc-style", autocompletion=complete.mc_style,
        help="truthfulqa (reference numbers) | harness (lm-eval mc1/mc2).")] = "truthfulqa",
    eval_dataset: Annotated[str, typer.Option("--eval-dataset", help="truthfulqa | nq_open | trivia_qa.")] = "truthfulqa",
    data: DataOpt = None, device: DeviceOpt = "auto", dtype: DtypeOpt = "auto", device_map: DeviceMapOpt = None,
    arch_map: ArchMapOpt = None,
) -> None:
    from itictl.config import data_dir
    from itictl.evaluate.options import EvalOptions, read_prefix_file
    from itictl.evaluate.runner import run_eval

    st = state(ctx)
    with_arch_map(ctx, arch_map)
    dd = data_dir(data)
    opts = EvalOptions(model=model, revision=revision, heads=parse_ints(heads, "--heads", "16,48"),
                       alphas=parse_floats(alpha, "--alpha", "0,5,15"), direction=direction, folds=folds, seed=seed,
                       val_ratio=val_ratio, split=split, instruction=instruction_prompt, preset=preset,
                       many_shot_prefix=read_prefix_file(many_shot_prefix), metrics=split_list(metrics), judge=judge,
                       info_judge=info_judge, openai_base_url=openai_base_url, limit_questions=limit_questions,
                       text=text, text_samples=text_samples, mc_style=mc_style, eval_dataset=eval_dataset,
                       data_dir=str(dd) if dd else None, device=device, dtype=dtype, protocol=protocol,
                       val_draw=val_draw, backend=backend, sigma_from=sigma_from, tie_break=tie_break,
                       mc_positions=mc_positions)
    with rank_session(st, device, device_map) as dist:
        art, cached, doc = run_eval(st.store, opts, st.out, dist=dist, device_map=device_map)  # st.store: the lease
        if dist.is_main:
            _render(st, art, cached, doc, dist.world_size)


def _render(st, art, cached: bool, doc: dict, world_size: int) -> None:
    result = artifact_doc(art, cached, **doc, world_size=world_size, summary=[s["summary"] for s in doc["settings"]])

    def render(console):
        from rich.table import Table

        from itictl.evaluate.sweep import COLUMNS, grid_rows

        proto = f", protocol {doc.get('protocol', 'itictl')}"
        for s in doc["settings"]:
            harness = " (lm-eval-harness mc)" if doc["mc_style"] == "harness" else ""
            t = Table(title=f"K={s['heads']}, alpha={s['alpha']:g}{proto}" + harness)
            keys = [k for k in COLUMNS[2:] if k in s["mean"]]
            t.add_column("fold")
            for k in keys:
                t.add_column(k, justify="right")
            for i, f in enumerate(s["folds"]):
                t.add_row(str(i), *[_fmt(f.get(k)) for k in keys])
            t.add_row("mean", *[_fmt(s["mean"].get(k)) for k in keys], style="bold")
            console.print(t)
        if len(doc["settings"]) > 1:
            g = Table(title="sweep (mean over folds)")
            rows = grid_rows(doc)
            for c in COLUMNS:
                if any(r.get(c) is not None for r in rows):
                    g.add_column(c, justify="right")
            for r in rows:
                g.add_row(*[_fmt(r.get(c)) for c in COLUMNS if any(x.get(c) is not None for x in rows)])
            console.print(g)
        for t in _uncertainty_tables(doc):
            console.print(t)
        for name, why in doc["skipped"].items():
            console.print(f"[yellow]skipped[/yellow] {name}: {why}")
        for s in doc["settings"]:
            console.print(s["summary"])
        if st.out.verbose and doc.get("timings"):
            console.print(_timings_table(doc["timings"]))
        console.print(f"eval {art.key[:12]} ({'cached' if cached else 'new'}) -> {art.path}")

    st.out.result(result, render)


def _timings_table(timings: dict):
    """-v: wall seconds per phase of this run (evaluate/timings.py), with each one's share."""
    from rich.table import Table

    from itictl.evaluate.timings import rows

    t = Table(title="time per phase (s)")
    for c in ("phase", "seconds", "share"):
        t.add_column(c, justify="left" if c == "phase" else "right")
    for r in rows(timings):
        t.add_row(*r)
    return t


def _uncertainty_tables(doc: dict) -> list:
    """'mean [95 % CI]' per setting and 'Δ vs α=0 [95 % CI]' per α ≠ 0 setting (a CI that includes 0
    is dim and marked n.s.); none for documents without intervals (evals cached before them)."""
    from rich.table import Table
    from rich.text import Text

    from itictl.evaluate.sweep import COLUMNS

    settings = [s for s in doc["settings"] if s.get("ci95")]
    keys = [k for k in COLUMNS[2:] if any(k in s["ci95"] for s in settings)]
    if not settings or not keys:
        return []
    ci = Table(title="mean [95% CI]")
    for c in ("heads", "alpha", *keys):
        ci.add_column(c, justify="right")
    for s in settings:
        cells = [_with_ci(s["mean"].get(k), s["ci95"].get(k)) for k in keys]
        ci.add_row(str(s["heads"]), f"{s['alpha']:g}", *cells)
    deltas = [s for s in settings if s.get("delta_vs_alpha0")]
    if not deltas:
        return [ci]
    dt = Table(title="Δ vs α=0 [95% paired CI] (n.s.: the CI includes 0)")
    dkeys = [k for k in keys if any(k in s["delta_vs_alpha0"] for s in deltas)]
    for c in ("heads", "alpha", *dkeys):
        dt.add_column(c, justify="right")
    for s in deltas:
        cells = []
        for k in dkeys:
            d = s["delta_vs_alpha0"].get(k)
            if not d or d.get("delta") is None:
                cells.append(Text("-"))
                continue
            txt = _with_ci(d["delta"], d["ci95"], sign="+")
            cells.append(Text(txt) if d["excludes_zero"] else Text(txt + " n.s.", style="dim"))
        dt.add_row(str(s["heads"]), f"{s['alpha']:g}", *cells)
    return [ci, dt]


def _with_ci(v, ci, sign: str = "") -> str:
    """'0.5101 [0.489, 0.531]' (sign '+': '+0.0664 [+0.051, +0.082]')."""
    if v is None:
        return "-"
    if not ci:
        return f"{v:{sign}.4f}"
    return f"{v:{sign}.4f} [{ci[0]:{sign}.3f}, {ci[1]:{sign}.3f}]"


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)
