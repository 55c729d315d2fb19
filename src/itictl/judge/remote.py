"""OpenAI-compatible judges and the OpenAI fine-tuning flow of TruthfulQA's finetune_gpt.ipynb.

Owns: `openai_judge` (P(" yes") from the legacy /v1/completions endpoint's top log-probs, 20
prompts per request), the client (key from OPENAI_API_KEY, base URL from --openai-base-url /
OPENAI_BASE_URL), the mapping of openai exceptions to itictl errors, and `finetune_judge`
(upload, create the job with the reference's hyper-parameters, poll). The API key never enters
a spec, a param dict, an error message or an artifact.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from itictl.errors import AuthError, BadInputError, NotFoundError, RemoteError
from itictl.judge.base import Judge
from itictl.secrets import redact

OPENAI_BATCH = 20  # prompts per /v1/completions request (the legacy API takes a list)


def openai_client(base_url: str | None = None, max_retries: int = 2, timeout: float = 60.0):
    key = os.environ.get("OPENAI_API_KEY") or os.environ.get("ITICTL_OPENAI_API_KEY")
    if not key:
        raise AuthError("OPENAI_API_KEY is not set", "export OPENAI_API_KEY=… (or use a local judge: --judge hf:…)")
    import openai

    return openai.OpenAI(api_key=key, base_url=base_url or os.environ.get("OPENAI_BASE_URL") or None,
                         max_retries=max_retries, timeout=timeout)


def map_openai_error(e: Exception, what: str) -> Exception:
    """openai exceptions -> itictl errors (AuthError exit 7, RemoteError exit 6); messages redacted."""
    import openai

    if isinstance(e, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return AuthError(f"{what}: the API key was rejected ({getattr(e, 'status_code', '?')})",
                         "check OPENAI_API_KEY and the base URL")
    if isinstance(e, openai.NotFoundError):
        return NotFoundError(f"{what}: not found on the server", "check the model name / file id and the base URL")
    if isinstance(e, openai.APIConnectionError):
        return RemoteError(f"{what}: cannot reach the OpenAI endpoint", "check the network or --openai-base-url")
    if isinstance(e, openai.APIStatusError):
        return RemoteError(f"{what}: the server answered {e.status_code}: {redact(str(e))[:200]}",
                           "retry later or check the endpoint")
    if isinstance(e, openai.OpenAIError):
        return RemoteError(f"{what}: {redact(str(e))[:200]}", "check the endpoint")
    return e


def _p_yes(top: dict[str, float] | None) -> float:
    if not top or " yes" not in top:
        return 0.0
    return float(math.exp(top[" yes"]))


def openai_judge(model: str, *, base_url: str | None = None, max_retries: int = 2, timeout: float = 60.0) -> Judge:
    state: dict[str, Any] = {}

    def score(prompts: list[str]) -> list[float]:
        if "client" not in state:
            state["client"] = openai_client(base_url, max_retries, timeout)
        client = state["client"]
        out: list[float] = []
        for i in range(0, len(prompts), OPENAI_BATCH):
            chunk = prompts[i:i + OPENAI_BATCH]
            try:
                resp = client.completions.create(model=model, prompt=chunk, temperature=0, max_tokens=1,
                                                 logprobs=2, echo=False)
            except Exception as e:  # noqa: BLE001 - mapped to itictl errors
                raise map_openai_error(e, f"judge openai:{model}") from None
            got = sorted(resp.choices, key=lambda c: c.index)
            if len(got) != len(chunk):
                raise RemoteError(f"judge openai:{model}: {len(got)} answers for {len(chunk)} prompts",
                                  "the endpoint must support list prompts on /v1/completions")
            for c in got:
                top = (c.logprobs.top_logprobs or [None])[0] if c.logprobs is not None else None
                out.append(_p_yes(dict(top) if top else None))
        return out

    ident = {"type": "openai", "model": model, "base_url": base_url or os.environ.get("OPENAI_BASE_URL") or "default"}
    return Judge(spec=f"openai:{model}", identity=ident, _score=score)



# ---- fine-tuning (finetune_gpt.ipynb) --------------------------------------------------------
FINETUNE_DEFAULTS = {"n_epochs": 5, "batch_size": 21, "learning_rate_multiplier": 0.1}
FINETUNE_SUFFIX = {"truth": "truthful", "info": "informative"}
TERMINAL = {"succeeded", "failed", "cancelled"}


def finetune_judge(kind: str, data: Path, base_model: str = "davinci-002", *, base_url: str | None = None,
                   poll_s: float = 30.0, timeout_s: float | None = None, wait: bool = True,
                   on_status: Callable[[str, int | None], None] | None = None) -> dict[str, Any]:
    """Upload `data`, create a fine-tuning job with the reference's hyper-parameters, and (with
    wait) poll until it ends. Returns {file_id, job_id, status, model}."""
    if kind not in FINETUNE_SUFFIX:
        raise BadInputError(f"unknown judge kind {kind!r}", "use --kind truth or --kind info")
    if not data.is_file():
        raise NotFoundError(f"judge training data {data} not found", "pass --data finetune_truth.jsonl / finetune_info.jsonl")
    client = openai_client(base_url)
    try:
        with data.open("rb") as fh:
            f = client.files.create(file=fh, purpose="fine-tune")
        job = client.fine_tuning.jobs.create(training_file=f.id, model=base_model, suffix=FINETUNE_SUFFIX[kind],
                                             hyperparameters=dict(FINETUNE_DEFAULTS))
        start = time.monotonic()
        while wait and job.status not in TERMINAL:
            if on_status:
                on_status(job.status, getattr(job, "trained_tokens", None))
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                break
            time.sleep(poll_s)
            job = client.fine_tuning.jobs.retrieve(job.id)
    except Exception as e:  # noqa: BLE001
        raise map_openai_error(e, "judge finetune") from None
    if on_status:
        on_status(job.status, getattr(job, "trained_tokens", None))
    if job.status in ("failed", "cancelled"):
        err = getattr(job, "error", None)
        msg = getattr(err, "message", None) if err is not None else None
        raise RemoteError(f"fine-tuning job {job.id} {job.status}" + (f": {msg}" if msg else ""),
                          "inspect the job in the OpenAI dashboard and rerun")
    return {"file_id": f.id, "job_id": job.id, "status": job.status, "model": job.fine_tuned_model,
            "base_model": base_model, "kind": kind, "hyperparameters": dict(FINETUNE_DEFAULTS)}
