"""The architecture matrix's checks, shared by tests/models/test_arch_matrix.py and
scripts/arch_matrix.py (which writes docs/architectures.md from them).

For one model_type, on a tiny random model (tests/models/arch_configs.py) in float32:
  map       get_arch + head_layout: which map (table / discovered) and L, H, D
  extract   itictl.extract.engine on prompts sharing a prefix: head_wise [N, L, H·D], and the
            batched/shared result equals one-prompt-at-a-time extraction
  bake      logits under intervene.steering.intervened(positions='all') equal the logits of
            publish.bake.baked (≤ 1e-4), the intervention changes them, and baking is undone
  generate  intervene.steering.steered_generate runs on a batch (left padding, KV cache)
  pyvene    publish.pyvene_io save/load round-trips the deltas and pyvene itself steers the same
A check is "ok", "unsupported: ..." (itictl refuses with an UnsupportedError, e.g. an o_proj without
a bias to bake into) or "FAIL: ..." (a wrong result or an unexpected exception).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHECKS = ("map", "extract", "bake", "generate", "pyvene")
ATOL = 1e-4
TEXTS = ["w1 w2 w3 w4 w5", "w1 w2 w3 w6", "w1 w2 w3 w7 w8 w9", "w10 w11", "w12 w13 w14 w15 w16 w17 w18"]
PREFIXES = ["w1 w2 w3", "w1 w2 w3", "w1 w2 w3", None, None]


@dataclass
class Row:
    model_type: str
    cls: str = ""
    source: str = ""
    layout: str = ""
    checks: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(self.checks.get(c, "").startswith("ok") for c in CHECKS)

    def first_problem(self) -> str:
        return next((f"{c}: {v}" for c in CHECKS if not (v := self.checks.get(c, "not run")).startswith("ok")), "")


def _why(e: BaseException) -> str:
    from itictl.errors import UnsupportedError

    msg = getattr(e, "message", None) or str(e) or type(e).__name__
    first = msg.splitlines()[0][:160] if msg.strip() else type(e).__name__
    return f"unsupported: {first}" if isinstance(e, UnsupportedError) else f"FAIL: {type(e).__name__}: {first}"


def _deltas(width: int, n_layers: int, seed: int = 1) -> dict[int, Any]:
    import torch

    g = torch.Generator().manual_seed(seed)
    return {layer: 3.0 * torch.randn(width, generator=g) for layer in range(n_layers)}


def _logits(model, ids):
    import torch

    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def check_extract(model, tok, layout) -> str:
    import numpy as np

    from itictl.extract.engine import Tokenized, extract_arrays, extract_items, tokenize_prompts

    got = extract_arrays(model, tok, TEXTS, PREFIXES, batch_tokens=32)
    hw = got["head_wise"]
    if hw.shape != (len(TEXTS), layout.n_layers, layout.width):
        return f"FAIL: head_wise {hw.shape}, expected {(len(TEXTS), layout.n_layers, layout.width)}"
    single = np.concatenate([extract_items(model, [Tokenized(t.ids)])["head_wise"]
                             for t in tokenize_prompts(tok, TEXTS)])
    err = float(np.abs(hw - single).max())
    if not np.isfinite(hw).all() or err > ATOL * max(1.0, float(np.abs(single).max())):
        return f"FAIL: batched/shared extraction differs from one prompt at a time by {err:.2e}"
    return "ok"


def check_bake(model, deltas, ids) -> str:
    import torch

    from itictl.intervene.steering import intervened
    from itictl.publish.bake import baked

    plain = _logits(model, ids)
    with intervened(model, deltas, "all"):
        live = _logits(model, ids)
    if float((live - plain).abs().max()) < 1e-3:
        return "FAIL: the intervention does not change the logits"
    with baked(model, deltas):
        bake = _logits(model, ids)
    err = float((bake - live).abs().max())
    if err > ATOL:
        return f"FAIL: baked logits differ from the live intervention by {err:.2e}"
    if not torch.allclose(_logits(model, ids), plain, atol=1e-6):
        return "FAIL: the model is not restored after baking"
    return "ok"


def check_generate(model, tok, deltas) -> str:
    from itictl.intervene.steering import steered_generate

    outs = steered_generate(model, tok, TEXTS[:3], deltas, max_new_tokens=3)
    return "ok" if len(outs) == 3 and all(isinstance(o, str) for o in outs) else f"FAIL: got {outs!r}"


def check_pyvene(model, deltas, ids) -> str:
    import pyvene as pv
    import torch

    from itictl.intervene.steering import intervened
    from itictl.publish.pyvene_io import load_pyvene, save_pyvene

    with tempfile.TemporaryDirectory() as d:
        save_pyvene(deltas, model, Path(d) / "pv")
        back, _ = load_pyvene(Path(d) / "pv")
        if sorted(back) != sorted(deltas) or any(not torch.allclose(back[k], deltas[k].float()) for k in deltas):
            return "FAIL: load_pyvene(save_pyvene(deltas)) != deltas"
        from pyvene.models.intervenable_modelcard import type_to_dimension_mapping

        if type(model) not in type_to_dimension_mapping:  # pyvene.IntervenableModel.load would KeyError
            return "ok (round trip; pyvene itself cannot load this class)"
        pv_model = pv.IntervenableModel.load(str(Path(d) / "pv"), model)
        try:
            with torch.no_grad():
                _, out = pv_model({"input_ids": ids})
        finally:
            pv_model._cleanup_states()
    with intervened(model, deltas, "all"):
        live = _logits(model, ids)
    err = float((out.logits.float() - live).abs().max())
    return "ok" if err <= ATOL else f"FAIL: pyvene's steered logits differ from itictl's by {err:.2e}"


def _run(row: Row, name: str, fn, *args) -> bool:
    try:
        row.checks[name] = fn(*args)
    except Exception as e:  # noqa: BLE001 (each check's failure is a result of the matrix)
        row.checks[name] = _why(e)
    return row.checks[name] == "ok"


def run_checks(model_type: str) -> Row:
    """Every check on a tiny `model_type` model; never raises."""
    import torch

    from tests.models.arch_configs import build
    from tests.models.tiny import tiny_tokenizer

    t0 = time.time()
    row = Row(model_type)
    box: dict[str, Any] = {}

    def mapping() -> str:
        from itictl.models.arch import get_arch, head_layout

        model = box["model"] = build(model_type)
        row.cls = type(model).__name__
        spec, lay = get_arch(model), head_layout(model)
        box["layout"] = lay
        row.source, row.layout = spec.source, f"{spec.layers_path}[i].{spec.o_proj} L={lay.L} H={lay.H} D={lay.D}"
        return "ok"

    if _run(row, "map", mapping):
        model, lay, tok = box["model"], box["layout"], tiny_tokenizer()
        deltas = _deltas(lay.width, lay.n_layers)
        ids = torch.randint(3, 100, (2, 7), generator=torch.Generator().manual_seed(2))
        _run(row, "extract", check_extract, model, tok, lay)
        _run(row, "bake", check_bake, model, deltas, ids)
        _run(row, "generate", check_generate, model, tok, deltas)
        _run(row, "pyvene", check_pyvene, model, deltas, ids)
    row.seconds = round(time.time() - t0, 2)
    return row


# --- the matrix ------------------------------------------------------------------------------------

def out_of_scope(model_type: str) -> str | None:
    """Why a causal-LM model_type is not a decoder-only model (None when it is one)."""
    import transformers.models.auto.modeling_auto as A

    if (model_type in A.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES or model_type in A.MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES
            or model_type in DECODER_HALVES):
        return "encoder-decoder: its causal LM is the decoder half, with cross-attention"
    if model_type in A.MODEL_FOR_MASKED_LM_MAPPING_NAMES or model_type in ENCODER_LIKE:
        return "encoder (BERT-style): a causal LM only when run as a decoder (is_decoder=True)"
    return None


# not in the seq2seq / masked-LM registries, but of the same kind
DECODER_HALVES = {"trocr"}  # the text decoder of a VisionEncoderDecoderModel
ENCODER_LIKE = {"bert-generation"}


def matrix_types() -> tuple[list[str], dict[str, str], dict[str, str]]:
    """(types to check, {skipped type: reason}, {out-of-scope type: reason}) for the installed
    transformers' causal-LM registry."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from tests.models.arch_configs import SKIPS

    check, skipped, outside = [], {}, {}
    for mt in sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
        if (why := out_of_scope(mt)) is not None:
            outside[mt] = why
        elif mt in SKIPS:
            skipped[mt] = SKIPS[mt]
        else:
            check.append(mt)
    return check, skipped, outside


def run_matrix(types: list[str] | None = None) -> list[Row]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add overhead
    try:
        return [run_checks(mt) for mt in (types if types is not None else matrix_types()[0])]
    finally:
        torch.set_num_threads(threads)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(rows: list[Row], skipped: dict[str, str], outside: dict[str, str]) -> str:
    """docs/architectures.md from the matrix rows (deterministic: no timings)."""
    from importlib.metadata import version as v

    from itictl.models.arch import SUPPORTED

    passed = [r for r in rows if r.passed]
    lines = [
        "# Architectures",
        "",
        "<!-- generated by scripts/arch_matrix.py from tests/models/arch_checks.py; do not edit -->",
        "",
        f"Every causal-LM `model_type` registered in transformers {v('transformers')} (torch {v('torch').split('+')[0]},"
        f" pyvene {v('pyvene')}), built as a tiny random model (2 layers, hidden 32, 4 heads; see",
        "tests/models/arch_configs.py) and run through itictl in float32:",
        "",
        "- **map**: where o_proj is (`table`: the explicit entry in src/itictl/models/arch_table.py; `discovered`:",
        "  found by structure and verified with one forward, see docs/architecture.md) and L, H, D;",
        "- **extract**: head-wise activations [N, L, H·D], batched/prefix-shared equal to one prompt at a time;",
        "- **bake**: logits of the live intervention (positions='all') equal the baked model's, within 1e-4;",
        "- **generate**: steered generation runs (left padding, KV cache);",
        "- **pyvene**: the pyvene export round-trips, and pyvene itself steers identically where it can load the family.",
        "",
        "`ok` passes; `unsupported` means itictl refuses with a one-line error (exit code 8) instead of computing",
        "something wrong. Any other model can be mapped by hand with `--arch-map JSON`",
        "(`{\"layers\": \"model.layers\", \"o_proj\": \"self_attn.o_proj\", \"heads\": H, \"head_dim\": D}`).",
        "",
        f"**{len(passed)} of {len(rows)} checked types pass every check**; {len(SUPPORTED)} types have a table entry.",
        "",
        "| model_type | class | map | extract | bake | generate | pyvene |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        where = f"{r.source}: `{r.layout}`" if r.source else ""
        note = r.checks["map"] if r.checks["map"] != "ok" else ""
        cells = [where + ("; " if where and note else "") + note]
        cells += [r.checks.get(c, "") for c in CHECKS[1:]]
        lines.append(f"| {'**' + r.model_type + '**' if r.passed else r.model_type} | {r.cls} | "
                     + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", "## Not checked", "", "Skipped (a tiny model cannot be built offline on a CPU):", ""]
    lines += [f"- `{mt}`: {why}" for mt, why in skipped.items()] or ["- none"]
    lines += ["", "Not decoder-only (outside what ITI on a causal LM means here):", ""]
    lines += [f"- `{mt}`: {why}" for mt, why in outside.items()]
    return "\n".join(lines) + "\n"
