"""A `judge` artifact (trained by `itictl judge train`) as a Judge evaluate can use.

Owns: resolving `local` / `local:REF` to a judge artifact (bare `local` is the last trained judge
of the role: the `last-judge-truth` / `last-judge-info` ref), reading its probe, and scoring:
the judge prompts run through the extraction engine on the judge's own model (tree-packed, the
question once per row), the probe's layer is read at each prompt's last token, standardised,
and P(yes) = sigmoid(w·x + b). The judge's model may differ from the evaluated model; when they
are the same (same dtype and device) the loaded model is shared (load_model's memo).
Identity (what an eval key sees): {"type": "local", "key": the judge artifact's key}.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from itictl.errors import BadInputError, NotFoundError
from itictl.judge.base import Judge

LAST_REF = {"truth": "last-judge-truth", "info": "last-judge-info"}
FLAG = {"truth": "--judge", "info": "--info-judge"}
PAYLOAD_JSON = "judge.json"
PAYLOAD_WEIGHTS = "judge.safetensors"


def open_judge(store, ref: str | None, role: str | None = None):
    """The `judge` artifact of `local:REF` (ref None: the last judge trained for `role`)."""
    if store is None:
        raise BadInputError("local judges live in the store", "run through the CLI or pass a store")
    if ref is None:
        if role is None:
            raise BadInputError("bare `local` needs a role (truth or info)", "pass local:REF")
        try:
            art = store.open(LAST_REF[role], kind="judge")
        except NotFoundError:
            raise NotFoundError(f"no local {role} judge in the store (ref {LAST_REF[role]} is not set)",
                                f"train one: `itictl judge train --kind {role}`, or pass {FLAG[role]} local:REF"
                                ) from None
    else:
        art = store.open(ref, kind="judge")
    kind = art.params.get("kind")
    if role is not None and kind != role:
        raise BadInputError(f"judge {ref or LAST_REF[role]} ({art.key[:12]}) is a {kind} judge, not a {role} judge",
                            f"pass a {role} judge to {FLAG[role]} (`itictl judge train --kind {role}`)")
    return art


def read_probe(art):
    """-> (judge.json document, fit.Probe)."""
    from safetensors.numpy import load_file

    from itictl.judge.fit import Probe

    doc = art.read_json(PAYLOAD_JSON)
    t = load_file(str(art.file(PAYLOAD_WEIGHTS)))
    probe = Probe(int(doc["layer"]), float(doc["C"]), t["weight"].astype(np.float64), float(t["bias"][0]),
                  t["mean"].astype(np.float64), t["std"].astype(np.float64))
    return doc, probe


def scoring_dtype(trained: str, device: str) -> str:
    """The dtype the judge's model runs in: its training dtype, but float32 on a CPU."""
    return "float32" if device == "cpu" else trained


def local_judge(store, ref: str | None, *, role: str | None = None, device: str = "auto",
                batch_tokens: int | None = None) -> Judge:
    """A Judge over a `judge` artifact; the model loads on first use."""
    art = open_judge(store, ref, role)
    state: dict[str, Any] = {}

    def score(prompts: list[str]) -> list[float]:
        from itictl.judge.features import prompt_features
        from itictl.models import load_model, resolve_device

        if "lm" not in state:
            doc, probe = read_probe(art)
            dev = resolve_device(device)
            model_art = store.get(art.parents["model"])
            state.update(doc=doc, probe=probe,
                         lm=load_model(store, model_art, dtype=scoring_dtype(art.params["dtype"], dev), device=dev))
        lm, probe = state["lm"], state["probe"]
        X = prompt_features(lm.model, lm.tokenizer, prompts, features=state["doc"]["features"], layers=[probe.layer],
                            device=lm.device, batch_tokens=batch_tokens)  # [N, 1, W]
        return [float(p) for p in probe.predict(X[:, 0])]

    return Judge(spec=f"local:{art.key[:12]}", identity={"type": "local", "key": art.key}, _score=score,
                 kind=art.params.get("kind"))
