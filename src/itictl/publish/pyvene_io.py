"""pyvene interop: write and read pyvene's own IntervenableModel save format for ITI deltas.

Owns `save_pyvene(deltas, model, dir)`, `load_pyvene(dir_or_hub_id)`, `pyvene_component(model, l)` and
`import_pyvene` (the `itictl import pyvene` step: a pyvene save -> an intervention artifact).

The format is what `pyvene.IntervenableModel.save` writes for a config of one
`AdditionIntervention(source_representation=δ_l)` per intervened layer on the component
`<base>.<layers>[l].<o_proj>.input` (for Llama: `model.layers[l].self_attn.o_proj.input`):
config.json (an IntervenableConfig) plus one `intkey_<key>.bin` per intervention holding its
state dict {'source_representation': δ_l}. We let pyvene itself write it, so
`pyvene.IntervenableModel.load(dir, model)` reads it back.

Positions, as pyvene applies them: `pv.generate(..., intervene_on_prompt=True)` with no unit
locations (and a plain forward call) adds δ_l at every position, which is itictl's positions='all';
pyvene's default generate (intervene_on_prompt=False) edits only the tokens fed after the prompt, so
the first generated token is not steered.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping

from itictl.errors import BadInputError, NotFoundError, UnsupportedError
from itictl.models.arch import get_arch

_COMPONENT_RE = re.compile(r"^(?P<pre>[\w.]+)\[(?P<layer>\d+)\]\.(?P<post>[\w.]+)\.input$")


def pyvene_component(model, layer: int) -> str:
    """pyvene's module path of layer `layer`'s o_proj input, e.g. 'model.layers[3].self_attn.o_proj.input'."""
    spec = get_arch(model)
    return f"{spec.layers_path}[{layer}].{spec.o_proj}.input"


def save_pyvene(deltas: Mapping[int, "torch.Tensor"], model, directory: Path | str) -> Path:  # noqa: F821
    """Write deltas {layer: [H·D]} as a pyvene IntervenableModel save (pyvene writes the files)."""
    import pyvene as pv

    directory = Path(directory)
    if not deltas:
        raise BadInputError("the intervention has no layers", "build it with `itictl intervene --heads K`")
    # Saved on CPU (loadable anywhere; pyvene's set_device moves it) in the model's dtype (pyvene adds
    # it to the activation as is, so a float32 delta would upcast a half-precision o_proj input).
    dtype = next(model.parameters()).dtype
    reps = []
    for layer in sorted(int(k) for k in deltas):
        d = deltas[layer].detach().reshape(-1).to(device="cpu", dtype=dtype)
        reps.append({"component": pyvene_component(model, layer),
                     "intervention": pv.AdditionIntervention(source_representation=d, embed_dim=d.numel())})
    pv_model = pv.IntervenableModel(reps, model)
    try:
        pv_model.save(str(directory))
    finally:
        pv_model._cleanup_states()
    return directory


def _fetch(dir_or_hub_id: str) -> Path:
    p = Path(dir_or_hub_id).expanduser()
    if p.is_dir():
        return p
    if not re.match(r"^[\w.-]+/[\w.-]+$", dir_or_hub_id):
        raise NotFoundError(f"no pyvene folder at {dir_or_hub_id}", "give a folder written by pyvene or a Hub id user/name")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=dir_or_hub_id, allow_patterns=["config.json", "intkey_*.bin"]))
    except Exception as e:  # offline, unknown repo, auth
        from itictl.errors import RemoteError

        raise RemoteError(f"could not download {dir_or_hub_id} from the Hugging Face Hub ({e.__class__.__name__})",
                          "check the id and your network, or download the folder and pass its path") from None


def load_pyvene(dir_or_hub_id: str | Path) -> tuple[dict[int, "torch.Tensor"], dict]:  # noqa: F821
    """Read a pyvene save of additive interventions on o_proj inputs -> ({layer: δ [H·D] float32}, info).

    info: {'components': [...], 'source': path}. Other intervention types or components are refused.
    """
    import torch

    root = _fetch(str(dir_or_hub_id))
    cfg_path = root / "config.json"
    if not cfg_path.is_file():
        raise NotFoundError(f"{root} has no config.json", "give a folder written by pyvene's IntervenableModel.save")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise BadInputError(f"{cfg_path} is not valid JSON ({e})", "re-save it with pyvene") from None
    reps = cfg.get("representations") or []
    types = cfg.get("intervention_types") or []
    keys = cfg.get("sorted_keys") or []
    if not reps or len(types) != len(reps) or len(keys) != len(reps):
        raise BadInputError(f"{cfg_path} is not an IntervenableConfig with saved interventions",
                            "give a folder written by pyvene's IntervenableModel.save")
    deltas: dict[int, torch.Tensor] = {}
    comps = []
    for rep, typ, key in zip(reps, types, keys):
        comp = rep[1] if isinstance(rep, list) else rep.get("component")  # saved as a tuple
        if "AdditionIntervention" not in str(typ):
            raise UnsupportedError(f"pyvene intervention type {typ} is not additive",
                                   "only AdditionIntervention on o_proj inputs can become an ITI intervention")
        m = _COMPONENT_RE.match(str(comp))
        from itictl.models.arch_discover import looks_like_o_proj

        if not m or not looks_like_o_proj(m.group("post")):
            raise UnsupportedError(f"pyvene component {comp!r} is not an attention output projection's input",
                                   "itictl imports additive interventions on o_proj inputs only")
        binf = root / f"intkey_{key}.bin"
        if not binf.is_file():
            raise NotFoundError(f"{binf.name} is missing from {root}", "re-download or re-save the intervention")
        state = torch.load(binf, map_location="cpu", weights_only=True)
        src = state.get("source_representation")
        if src is None:
            raise BadInputError(f"{binf.name} has no source_representation",
                                "only constant additive interventions can be imported")
        layer = int(m.group("layer"))
        vec = src.detach().to(torch.float32).reshape(-1)
        deltas[layer] = deltas[layer] + vec if layer in deltas else vec
        comps.append(comp)
    return deltas, {"components": comps, "source": str(root)}


def import_pyvene(store, source: str | Path, model: str | None = None, revision: str | None = None, out=None):
    """`itictl import pyvene`: a pyvene save (folder or Hub id) -> (intervention artifact, cached).
    With `model` (a --model spec) the deltas must fit it (layers, o_proj width) and the artifact
    records it as its model; without, the intervention has no model."""
    from itictl.intervene.build import check_deltas_fit, import_deltas

    deltas, info = load_pyvene(source)
    layout = model_key = None
    if model is not None:
        from itictl.models import ensure_model, model_info

        m_art = ensure_model(store, model, revision=revision, out=out)
        mi = model_info(m_art)
        layout = (int(mi["n_layers"]), int(mi["n_heads"]), int(mi["head_dim"]))
        check_deltas_fit(deltas, layout[0], layout[1] * layout[2], model_label=f"model {model}",
                         hint="pass the --model it was made for")
        model_key = m_art.key
    return import_deltas(store, deltas, layout=layout, model_key=model_key,
                         source={"format": "pyvene", "from": str(source), "components": info["components"]})
