"""`itictl judge train | compare | finetune`: judges for True/Info scoring. Thin: the work is in
itictl.judge (train.run_judge_train, compare.run_compare, remote.finetune_judge)."""

from __future__ import annotations

from typing import Annotated

import typer

from itictl.cli.common import artifact_doc, state
from itictl.cli.options import DeviceOpt, DtypeOpt, ModelOpt, OpenAIBaseUrlOpt

HELP = ("Judges for True/Info scoring: train a probe judge in the store (train), compare two judges "
        "(compare), fine-tune an OpenAI judge (finetune)")
app = typer.Typer(no_args_is_help=True)
KindOpt = Annotated[str, typer.Option("--kind", metavar="KIND", help="truth (True:) or info (Helpful:).")]


@app.command("train", help="Train a truth or info judge in the store: a logistic probe on the judge model's "
                           "activations of TruthfulQA's judge fine-tuning data (finetune_<kind>.jsonl), layer "
                           "and C chosen on held-out answers; tags it last-judge-<kind> (use: eval --judge local).")
def train(
    ctx: typer.Context,
    kind: KindOpt,
    model: ModelOpt = None,
    data: Annotated[str | None, typer.Option(
        "--data", metavar="FILE|DIR", help="finetune_<kind>.jsonl, or the folder holding it (else $ITICTL_DATA).")] = None,
    limit: Annotated[int | None, typer.Option(
        "--limit", "-n", min=1, metavar="N", help="Only the first N labelled answers of the file.")] = None,
    features: Annotated[str, typer.Option(
        "--features", help="heads (the attention-head outputs of a layer, H·D; default) or resid (the residual "
                           "stream entering a layer).")] = "heads",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the question / answer splits.")] = 0,
    batch_tokens: Annotated[int | None, typer.Option(
        "--batch-tokens", min=1, metavar="N", help="Tokens per forward (default: 4096 on CPU, more on a GPU).")] = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    from itictl.judge.train import run_judge_train

    st = state(ctx)
    art, cached, doc = run_judge_train(st.store, kind, model=model, data=data, limit=limit, features=features,
                                       seed=seed, device=device, dtype=dtype, batch_tokens=batch_tokens, out=st.out)
    flag = "--judge" if kind == "truth" else "--info-judge"
    res = artifact_doc(art, cached, judge_kind=kind, model=doc["model"], features=doc["features"],
                       layer=doc["layer"], C=doc["C"], metrics=doc["metrics"], counts=doc["counts"],
                       ref=f"last-judge-{kind}")

    def render(console):
        from rich.table import Table

        t = Table(title=f"{kind} judge: {doc['features']} layer {doc['layer']}, C={doc['C']:g} "
                        f"({doc['counts']['records']} labelled answers)")
        for c in ("held out", "n", "accuracy", "balanced acc.", "AUC"):
            t.add_column(c, justify="left" if c == "held out" else "right")
        for name, label in (("unseen_questions", "unseen questions"), ("seen_questions", "answers of seen questions")):
            m = doc["metrics"][name]
            t.add_row(label, str(m["n"]), *[_fmt(m[k]) for k in ("accuracy", "balanced_accuracy", "auc")])
        console.print(t)
        console.print(f"judge {art.key[:12]} ({'cached' if cached else 'new'}) -> {art.path}\n"
                      f"use it with: itictl eval --metrics judge,info {flag} local")

    st.out.result(res, render)


@app.command("compare", help="Score the same answers with two judges (openai:…, hf:…, local[:REF]); print "
                             "agreement, Cohen's kappa and the confusion counts.")
def compare(
    ctx: typer.Context,
    judge_a: Annotated[str, typer.Argument(metavar="A", help="First judge spec.")],
    judge_b: Annotated[str, typer.Argument(metavar="B", help="Second judge spec.")],
    answers: Annotated[str | None, typer.Option(
        "--answers", metavar="CSV", help="CSV with question and answer columns (e.g. an eval's answers.csv).")] = None,
    eval_ref: Annotated[str | None, typer.Option(
        "--eval", metavar="REF", help="The answers of this eval artifact (default: last-eval).")] = None,
    kind: Annotated[str | None, typer.Option(
        "--kind", metavar="KIND", help="truth or info (default: the local judges' kind, else truth).")] = None,
    openai_base_url: OpenAIBaseUrlOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    from itictl.judge.compare import run_compare

    st = state(ctx)
    doc = run_compare(st.store, judge_a, judge_b, answers=answers, eval_ref=eval_ref, kind=kind,
                      base_url=openai_base_url, device=device, out=st.out)

    def render(console):
        from rich.table import Table

        c = doc["confusion"]
        t = Table(title=f"{doc['kind']} verdicts on {doc['n']} answers ({doc['source']})")
        t.add_column("A \\ B")
        t.add_column("B yes", justify="right")
        t.add_column("B no", justify="right")
        t.add_row(f"A yes ({doc['a']})", str(c["yes_yes"]), str(c["yes_no"]))
        t.add_row(f"A no ({doc['a']})", str(c["no_yes"]), str(c["no_no"]))
        console.print(t)
        console.print(f"agreement {_fmt(doc['agreement'])}, Cohen's kappa {_fmt(doc['kappa'])}; "
                      f"yes rate A {_fmt(doc['yes_rate_a'])}, B {_fmt(doc['yes_rate_b'])} (B = {doc['b']})")

    st.out.result(doc, render)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}"


@app.command("finetune", help="Upload finetune_truth/info.jsonl, create the fine-tuning job (n_epochs 5, "
                              "batch 21, lr multiplier 0.1), wait, print the model name for --judge openai:MODEL.")
def finetune(
    ctx: typer.Context,
    kind: str = typer.Option(..., "--kind", help="truth | info."),
    data: str | None = typer.Option(None, "--data", metavar="FILE",
                                       help="Training JSONL (default: finetune_<kind>.jsonl in the TruthfulQA data dir)."),
    base_model: str = typer.Option("davinci-002", "--base-model"),
    openai_base_url: str | None = typer.Option(None, "--openai-base-url", help="OpenAI-compatible server URL."),
    poll: float = typer.Option(30.0, "--poll", help="Seconds between status checks."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Create the job and return its id without waiting."),
) -> None:
    from pathlib import Path

    from itictl.config import data_dir
    from itictl.errors import BadInputError, NotFoundError
    from itictl.judge.remote import finetune_judge

    st = state(ctx)
    if kind not in ("truth", "info"):
        raise BadInputError(f"unknown judge kind {kind!r}", "use --kind truth or --kind info")
    if data is None:
        dd = data_dir(None)
        if dd is None:
            raise NotFoundError("no training data given", "pass --data finetune_truth.jsonl or set ITICTL_DATA")
        path = dd / f"finetune_{kind}.jsonl"
    else:
        path = Path(data)
    last = {"s": None}

    def on_status(status, tokens):
        if status != last["s"]:
            st.out.info(f"job status: {status}" + (f" ({tokens} tokens trained)" if tokens else ""))
            last["s"] = status

    with st.out.status(f"fine-tuning {base_model} on {path.name}"):
        res = finetune_judge(kind, path, base_model, base_url=openai_base_url, poll_s=poll, wait=not no_wait,
                             on_status=on_status)
    flag = "--judge" if kind == "truth" else "--info-judge"

    def render(console):
        if res["model"]:
            console.print(f"fine-tuned model: {res['model']}\nuse it with: itictl eval {flag} openai:{res['model']}")
        else:
            console.print(f"job {res['job_id']} is {res['status']}")

    st.out.result(res, render)
