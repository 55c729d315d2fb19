"""Exporting an intervention to small shareable files: safetensors δ vectors, a llama.cpp
control-vector GGUF, pyvene's save format (written by itictl.publish.pyvene_io) and an
lm-evaluation-harness steering file (written by itictl.publish.lm_eval_export).

Owns `write_safetensors`, `write_control_vector`, `read_control_vector`, `run_export` and `export_ref` (the
`itictl export` step; it writes into a user directory, not into the store). Imports go one way:
export uses bake's `residual_shifts` and intervene.build's `load_deltas`; neither imports export.

Control vectors. llama.cpp's loader (common_control_vector_load_one) reads every tensor named
`direction.N` (F32, 1-D, n_embd elements), N >= 1, and adds it to the output of block N (after the
block's FFN residual add), i.e. the residual stream that block N+1 reads; `direction.0` makes the
whole file invalid. ITI adds W_o·δ_l to the residual stream inside block l, right after attention
and before the MLP. The closest llama.cpp site is therefore the output of block l, so HF layer l
is written as `direction.l` (same 0-based numbering); the only difference is that layer l's own MLP
does not see the shift. Layer 0 cannot be expressed and is left out with a warning (recorded in the
metadata key `itictl.skipped_layers`). Metadata follows the convention other control-vector tools
use: general.architecture = "controlvector", controlvector.model_hint, controlvector.layer_count.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from itictl.errors import BadInputError, UnsupportedError
from itictl.publish.bake import residual_shifts

FORMATS = ("safetensors", "control-vector", "pyvene", "lm-eval")


def write_safetensors(deltas: Mapping[int, Any], info: dict[str, Any], folder: Path) -> list[str]:
    """intervention.safetensors (`layer.{l}` -> float32 [H·D]) + intervention.json in `folder`."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"layer.{int(l)}": d.detach().reshape(-1).to("cpu", torch.float32).contiguous()
               for l, d in sorted(deltas.items())}
    save_file(tensors, str(folder / "intervention.safetensors"),
              metadata={"format": "itictl-intervention", "layers": json.dumps(sorted(int(l) for l in deltas))})
    (folder / "intervention.json").write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf-8")
    return ["intervention.safetensors", "intervention.json"]


def write_control_vector(shifts: Mapping[int, Any], path: Path, *, model_hint: str, n_layers: int,
                         extra: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A llama.cpp control-vector GGUF: `direction.{l}` = W_o·δ_l (float32 [hidden]) for l >= 1."""
    import numpy as np
    from gguf import GGUFWriter

    usable = {int(l): s for l, s in shifts.items() if int(l) >= 1}
    skipped = sorted(int(l) for l in shifts if int(l) < 1)
    if not usable:
        raise UnsupportedError("every intervened layer is layer 0, which a llama.cpp control vector cannot address",
                               "use --format safetensors or pyvene")
    path.parent.mkdir(parents=True, exist_ok=True)
    w = GGUFWriter(str(path), arch="controlvector")
    w.add_string("controlvector.model_hint", model_hint)
    w.add_uint32("controlvector.layer_count", n_layers)
    w.add_string("itictl.skipped_layers", json.dumps(skipped))
    for k, v in (extra or {}).items():
        w.add_string(f"itictl.{k}", str(v))
    for layer in sorted(usable):
        arr = usable[layer].detach().reshape(-1).to("cpu").float().numpy().astype(np.float32)
        w.add_tensor(f"direction.{layer}", arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {"layers": sorted(usable), "skipped_layers": skipped}


def read_control_vector(path: Path) -> tuple[dict[str, Any], dict[int, Any]]:
    """(metadata {key: value}, {layer: np.ndarray[hidden]}) from a control-vector GGUF."""
    import numpy as np
    from gguf import GGUFReader

    r = GGUFReader(str(path))
    meta: dict[str, Any] = {}
    for name, f in r.fields.items():
        if name.startswith("GGUF."):
            continue
        try:
            meta[name] = f.contents()
        except Exception:  # pragma: no cover - exotic field types
            continue
    vecs = {}
    for t in r.tensors:
        if not t.name.startswith("direction."):
            raise BadInputError(f"{path}: unexpected tensor {t.name!r}", "not a control-vector GGUF")
        vecs[int(t.name.split(".", 1)[1])] = np.array(t.data, dtype=np.float32).reshape(-1)  # a writable copy
    return meta, vecs


def export_ref(store, ref: str | None, fmt: str, folder: Path, out=None, *, device: str = "auto",
               heads: int | None = None, alpha: float | None = None) -> dict[str, Any]:
    """`itictl export`: the format and folder checked first, then the intervention REF names (an
    intervention, a baked model's, an eval's or a tune's: publish.bake.resolve_intervention; None:
    the all-questions intervention of the newer of last-tune and last-eval, heads / alpha picking an
    eval's setting), then run_export."""
    from itictl.publish.bake import resolve_intervention

    if fmt not in FORMATS:
        raise BadInputError(f"unknown export format {fmt!r}", f"use one of: {', '.join(FORMATS)}")
    if Path(folder).exists() and not Path(folder).is_dir():
        raise BadInputError(f"{folder} exists and is not a directory", "give a directory path")
    inter, source = resolve_intervention(store, ref, out, heads=heads, alpha=alpha)
    return run_export(store, inter, fmt, folder, out, device=device, source=source)


def run_export(store, intervention_art, fmt: str, folder: Path, out=None, *, device: str = "auto",
               source=None) -> dict[str, Any]:
    """Write one export format of an intervention into `folder`; returns a result dict. `source`: the
    eval or tune the intervention was built from, which the safetensors format's card cites."""
    from itictl.intervene.build import load_deltas
    from itictl.publish.modelcard import intervention_info, model_of, render_card

    if fmt not in FORMATS:
        raise BadInputError(f"unknown export format {fmt!r}", f"use one of: {', '.join(FORMATS)}")
    if intervention_art.kind != "intervention":
        raise BadInputError(f"{intervention_art.key[:12]} is a {intervention_art.kind} object, not an intervention",
                            "pass an intervention ref (see `itictl store ls --kind intervention`)")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise BadInputError(f"{folder} exists and is not a directory", "give a directory path")
    deltas = load_deltas(intervention_art)
    model_art = model_of(store, intervention_art)
    doc: dict[str, Any] = {"intervention": intervention_art.key, "format": fmt, "dir": str(folder)}
    if fmt == "safetensors":
        info = {**intervention_info(intervention_art), "itictl_intervention_key": intervention_art.key,
                "model_key": model_art.key}
        files = write_safetensors(deltas, info, folder)
        card = render_card(store, intervention_art, what="intervention", source=source)
        (folder / "README.md").write_text(card, encoding="utf-8")
        files.append("README.md")
    else:
        from itictl.models import load_model

        # W_o is cast to fp32 per layer; lm-eval's vector is W_o·δ_l of the checkpoint's exact weights
        lm = load_model(store, model_art, dtype="float32" if fmt == "lm-eval" else "auto", device=device)
        if fmt == "control-vector":
            from itictl.models.arch import head_layout

            shifts = residual_shifts(lm.model, deltas)
            name = "control_vector.gguf"
            res = write_control_vector(shifts, folder / name, model_hint=str(lm.model.config.model_type),
                                       n_layers=head_layout(lm.model).n_layers,
                                       extra={"intervention": intervention_art.key, "model": model_art.key})
            if res["skipped_layers"] and out is not None:
                out.warn(f"layer(s) {res['skipped_layers']} left out: llama.cpp control vectors cannot address layer 0")
            files = [name]
            doc.update(res)
            doc["usage"] = f"llama-cli -m MODEL.gguf --control-vector {folder / name}"
        elif fmt == "lm-eval":
            from itictl.publish.lm_eval_export import write_lm_eval

            res = write_lm_eval(store, intervention_art, model_art, lm.model, deltas, folder)
            files = res.pop("files")
            doc.update(res)
        else:
            from itictl.publish.pyvene_io import save_pyvene

            folder.mkdir(parents=True, exist_ok=True)
            before = {p for p in folder.rglob("*") if p.is_file()}
            save_pyvene(deltas, lm.model, folder)
            files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p not in before)
    doc["files"] = files
    return doc
