"""`itictl judge finetune`: fine-tune a truth/info judge on OpenAI (finetune_gpt.ipynb)."""

from __future__ import annotations

from typing import Optional

import typer

from itictl.cli.common import state

HELP = "Judges for True/Info scoring: fine-tune an OpenAI judge (finetune_gpt.ipynb)"
app = typer.Typer(no_args_is_help=True)


@app.command("finetune", help="Upload finetune_truth/info.jsonl, create the fine-tuning job (n_epochs 5, "
                              "batch 21, lr multiplier 0.1), wait, print the model name for --judge openai:MODEL.")
def finetune(
    ctx: typer.Context,
    kind: str = typer.Option(..., "--kind", help="truth | info."),
    data: Optional[str] = typer.Option(None, "--data", metavar="FILE",
                                       help="Training JSONL (default: finetune_<kind>.jsonl in the TruthfulQA data dir)."),
    base_model: str = typer.Option("davinci-002", "--base-model"),
    openai_base_url: Optional[str] = typer.Option(None, "--openai-base-url", help="OpenAI-compatible server URL."),
    poll: float = typer.Option(30.0, "--poll", help="Seconds between status checks."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Create the job and return its id without waiting."),
) -> None:
    from pathlib import Path

    from itictl.config import data_dir
    from itictl.errors import BadInputError, NotFoundError
    from itictl.evaluate.judges import finetune_judge

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
