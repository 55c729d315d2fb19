"""`itictl eval`: k-fold TruthfulQA evaluation (MC, judges, BLEU/ROUGE, CE/KL) and (K, α) sweeps.
Under torchrun every rank runs it (evaluate/runner.py shares the work); rank 0 alone prints."""

from __future__ import annotations

from typing import Optional

import typer

from itictl.cli.common import artifact_doc, device_map_option, rank_session, split_list, state

HELP = """k-fold TruthfulQA evaluation with and without the intervention (validate_2fold.py semantics).

Builds or reuses extract -> probe -> intervene per fold; prints a per-fold table, the mean and the
reference's summary line; writes an `eval` artifact (eval.json, answers.csv, sweep.png for grids)
and tags it `last-eval`. Lists for --heads/--alpha run a sweep.
"""


def eval_(
    ctx: typer.Context,
    model: Optional[str] = typer.Option(None, "--model", help="Model alias, Hub id, folder or GGUF (default: embedded)."),
    heads: str = typer.Option("48", "--heads", help="K, number of heads; a comma list sweeps."),
    alpha: str = typer.Option("15", "--alpha", help="Intervention strength; a comma list sweeps (0 = baseline)."),
    direction: str = typer.Option("com", "--direction", help="com | probe | random."),
    folds: int = typer.Option(2, "--folds", help="Number of question folds."),
    seed: int = typer.Option(42, "--seed"),
    val_ratio: float = typer.Option(0.2, "--val-ratio", help="Held-out share of the training questions for head ranking."),
    split: str = typer.Option("random", "--split", help="random | contiguous folds."),
    instruction_prompt: str = typer.Option("default", "--instruction-prompt", help="default | informative | none."),
    preset: str = typer.Option("qa", "--preset", help="qa | null | chat | long | harm (TruthfulQA presets)."),
    many_shot_prefix: Optional[str] = typer.Option(None, "--many-shot-prefix", metavar="FILE", help="Text prepended to every prompt."),
    metrics: str = typer.Option("mc,ce,kl", "--metrics", help="Comma list of mc,judge,info,bleu,rouge,ce,kl."),
    judge: Optional[str] = typer.Option(None, "--judge", help="Truth judge: openai:MODEL or hf:ID_OR_PATH[@REV]."),
    info_judge: Optional[str] = typer.Option(None, "--info-judge", help="Info judge: openai:MODEL or hf:ID_OR_PATH[@REV]."),
    openai_base_url: Optional[str] = typer.Option(None, "--openai-base-url", help="OpenAI-compatible server URL."),
    limit_questions: Optional[int] = typer.Option(None, "--limit-questions", help="Use the first N questions."),
    text: Optional[str] = typer.Option(None, "--text", metavar="FILE", help="Natural text for CE/KL (needed for them; without it they are reported as skipped)."),
    text_samples: int = typer.Option(100, "--text-samples", help="CE/KL samples of 128 tokens (reference: 100)."),
    mc_style: str = typer.Option("truthfulqa", "--mc-style", help="truthfulqa (reference numbers) | harness (lm-eval mc1/mc2)."),
    eval_dataset: str = typer.Option("truthfulqa", "--eval-dataset", help="truthfulqa | nq_open | trivia_qa."),
    data: Optional[str] = typer.Option(None, "--data", metavar="DIR", help="TruthfulQA directory (else $ITICTL_DATA, else the Hub)."),
    device: str = typer.Option("auto", "--device"),
    dtype: str = typer.Option("auto", "--dtype"),
    device_map: Optional[str] = device_map_option(),
) -> None:
    st = state(ctx)
    with rank_session(st, device, device_map) as dist:
        _eval(st, dist, device_map, model, heads, alpha, direction, folds, seed, val_ratio, split, instruction_prompt,
              preset, many_shot_prefix, metrics, judge, info_judge, openai_base_url, limit_questions, text,
              text_samples, mc_style, eval_dataset, data, device, dtype)


def _eval(st, dist, device_map, model, heads, alpha, direction, folds, seed, val_ratio, split, instruction_prompt,
          preset, many_shot_prefix, metrics, judge, info_judge, openai_base_url, limit_questions, text,
          text_samples, mc_style, eval_dataset, data, device, dtype) -> None:
    from pathlib import Path

    from itictl.config import data_dir
    from itictl.errors import BadInputError, NotFoundError
    from itictl.evaluate.runner import EvalOptions, run_eval

    try:
        ks = [int(k) for k in split_list(heads)]
        alphas = [float(a) for a in split_list(alpha)]
    except ValueError:
        raise BadInputError("--heads takes integers and --alpha numbers", "e.g. --heads 16,48 --alpha 0,5,15") from None
    prefix_text = None
    if many_shot_prefix:
        p = Path(many_shot_prefix)
        if not p.is_file():
            raise NotFoundError(f"many-shot prefix file {p} not found", "pass an existing text file")
        try:
            prefix_text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise BadInputError(f"many-shot prefix file {p} is not UTF-8 text", "save it as UTF-8") from None
    dd = data_dir(data)
    opts = EvalOptions(model=model, heads=ks, alphas=alphas, direction=direction, folds=folds, seed=seed,
                       val_ratio=val_ratio, split=split, instruction=instruction_prompt, preset=preset,
                       many_shot_prefix=prefix_text, metrics=split_list(metrics), judge=judge, info_judge=info_judge,
                       openai_base_url=openai_base_url, limit_questions=limit_questions, text=text, text_samples=text_samples, mc_style=mc_style,
                       eval_dataset=eval_dataset, data_dir=str(dd) if dd else None, device=device, dtype=dtype)
    art, cached, doc = run_eval(st.store, opts, st.out, dist=dist, device_map=device_map)  # st.store holds the lease
    if not dist.is_main:
        return
    result = artifact_doc(art, cached, **doc, world_size=dist.world_size, summary=[s["summary"] for s in doc["settings"]])

    def render(console):
        from rich.table import Table

        from itictl.evaluate.sweep import COLUMNS, grid_rows

        for s in doc["settings"]:
            t = Table(title=f"K={s['heads']}, alpha={s['alpha']:g}" + (" (lm-eval-harness mc)" if doc["mc_style"] == "harness" else ""))
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
        for name, why in doc["skipped"].items():
            console.print(f"[yellow]skipped[/yellow] {name}: {why}")
        for s in doc["settings"]:
            console.print(s["summary"])
        console.print(f"eval {art.key[:12]} ({'cached' if cached else 'new'}) -> {art.path}")

    st.out.result(result, render)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)
