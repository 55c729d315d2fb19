"""Exporting an intervention as a steering file for lm-evaluation-harness's `steered` model.

Owns `lm_eval_hookpoints`, `steer_config`, `pretrained_arg` and `write_lm_eval` (the `--format lm-eval`
branch of publish.export.run_export).

lm-eval's format (lm_eval/models/hf_steered.py, checked against lm-eval 0.4.13): a torch .pt dict
{hookpoint: {"steering_vector", "steering_coefficient", "action", "bias", "head_index"}}. A hookpoint
is a module name inside `model.base_model` (for Llama `layers.3.self_attn.o_proj`); lm-eval puts a
forward hook on it and, for action "add" with head_index None, returns output + coefficient ·
vector (cast to the model's dtype) at every position, in every forward: loglikelihood, rolling
perplexity and generation alike. Its head_index form indexes a 4-D [batch, pos, head, dim] output,
which the Hugging Face modules at this site (o_proj, self_attn) do not produce, so it is not used.

What we write: one hookpoint per intervened layer, the attention output projection, with vector
W_o·δ_l (float32 [hidden], publish.bake.residual_shifts) and coefficient 1. Since o_proj is linear,
o_proj(x) + W_o·δ_l = o_proj(x + δ_l): this is itictl's intervention with positions='all' (the
same shift `itictl bake` puts in the o_proj bias). itictl's own MC evaluation edits answer tokens
only, so its numbers differ from lm-eval's by the prompt-token shift, as a baked model's do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from itictl.errors import BadInputError, UnsupportedError

STEER_FILE = "steer.pt"
LM_EVAL_VERSION = "0.4.13"  # the version whose hf_steered.py this format follows (the test extra pins it)


def lm_eval_hookpoints(model) -> list[str]:
    """Per layer, the name lm-eval's `steered` model resolves for its o_proj (a name in model.base_model)."""
    from itictl.models.arch import o_proj_modules

    names = {id(m): n for n, m in model.base_model.named_modules()}
    out = []
    for layer, mod in enumerate(o_proj_modules(model)):
        if id(mod) not in names:
            raise UnsupportedError(f"layer {layer}'s attention output projection is not inside model.base_model,"
                                   " where lm-eval looks for hookpoints", "use --format pyvene or safetensors")
        out.append(names[id(mod)])
    return out


def steer_config(model, deltas: Mapping[int, Any]) -> dict[str, dict[str, Any]]:
    """{hookpoint: {steering_vector float32 [hidden] = W_o·δ_l, coefficient 1, action 'add'}}."""
    from itictl.publish.bake import residual_shifts

    hooks = lm_eval_hookpoints(model)
    return {hooks[layer]: {"steering_vector": shift.contiguous(), "steering_coefficient": 1.0, "action": "add",
                           "bias": None, "head_index": None}
            for layer, shift in sorted(residual_shifts(model, deltas).items())}


def pretrained_arg(store, model_art) -> dict[str, str]:
    """lm-eval model_args naming the model's weights: {pretrained (, revision)}."""
    from itictl.models import model_info

    info = model_info(model_art)
    src = info.get("weights") or info.get("source")
    if src == "hf":  # embedded / converted weights: the HF folder inside the store
        return {"pretrained": str(Path(model_art.path) / "hf")}
    if src == "folder":
        return {"pretrained": str(info["location"])}
    ident = info.get("identity", {})
    out = {"pretrained": str(ident.get("repo") or info.get("name"))}
    if ident.get("commit"):
        out["revision"] = str(ident["commit"])
    return out


def usage(model_args: Mapping[str, str], steer_path: Path, tasks: str = "truthfulqa_mc2") -> str:
    args = ",".join([*(f"{k}={v}" for k, v in model_args.items()), f"steer_path={steer_path}", "dtype=float32"])
    return f"lm_eval --model steered --model_args {args} --tasks {tasks}"


_README = """# ITI intervention for lm-evaluation-harness

Steering file for lm-eval's `steered` model (format of lm-eval {version}), written by `itictl export
--format lm-eval` from intervention `{key}`.

    {command}

`{steer}` maps each intervened layer's attention output projection ({hooks}) to
W_o·δ_l (float32, {hidden} values): lm-eval adds it to that module's output at every token, which is
exactly the ITI shift with positions = all (the same edit a baked model carries in its o_proj bias).
Pass `dtype=float32` for exact numbers; in bfloat16/float16 lm-eval rounds the vector to that dtype.
Use any `--tasks`; `--model_args` also takes lm-eval's usual HF options (device, batch size via
`--batch_size`, …). itictl's own multiple-choice evaluation edits answer tokens only, so its scores
differ from lm-eval's by the shift on the prompt tokens, which lm-eval applies too.
"""


def write_lm_eval(store, intervention_art, model_art, model, deltas: Mapping[int, Any], folder: Path) -> dict[str, Any]:
    """steer.pt + lm_eval.json + README.md in `folder`; returns {files, hookpoints, usage, model_args}."""
    import torch

    if not deltas:
        raise BadInputError("the intervention has no layers", "build it with `itictl intervene --heads K`")
    cfg = steer_config(model, deltas)
    folder.mkdir(parents=True, exist_ok=True)
    steer = folder / STEER_FILE
    torch.save(cfg, steer)
    model_args = pretrained_arg(store, model_art)
    cmd = usage(model_args, steer.resolve())
    hidden = next(iter(cfg.values()))["steering_vector"].numel()
    doc = {"format": "lm-eval steered", "lm_eval_version": LM_EVAL_VERSION, "steer_path": STEER_FILE,
           "hookpoints": list(cfg), "layers": sorted(int(l) for l in deltas), "model_args": model_args,
           "usage": cmd, "positions": "all", "intervention": intervention_art.key, "model": model_art.key}
    (folder / "lm_eval.json").write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")
    (folder / "README.md").write_text(_README.format(
        version=LM_EVAL_VERSION, key=intervention_art.key, command=cmd, steer=STEER_FILE,
        hooks=", ".join(f"`{h}`" for h in cfg), hidden=hidden), encoding="utf-8")
    return {"files": [STEER_FILE, "lm_eval.json", "README.md"], "hookpoints": list(cfg),
            "model_args": model_args, "usage": cmd}
