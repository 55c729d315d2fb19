"""Model parallel (`device_map`): loading with accelerate maps, and interventions / bakes on models
whose layers are dispatched by accelerate (all on the CPU here, but through accelerate's hooks, so
the code paths are those of a real multi-GPU split). The GPU version is benchmarks/device_map.py."""

from __future__ import annotations

import json

import pytest
import torch

from itictl.errors import BadInputError
from itictl.models import clear_memo, ensure_model, load_model, parse_device_map
from tests.helpers import tiny_llama
from tests.models.tiny import tiny_folder

TOL = 1e-5


@pytest.fixture(autouse=True)
def _fresh_memo():
    from itictl.models import set_load_quiet

    clear_memo()
    yield
    clear_memo()
    set_load_quiet(False)


def logits(model, ids, **kw):
    with torch.no_grad():
        return model(input_ids=ids, **kw).logits.float()


def full_map(n_layers: int, split_o_proj: bool = False) -> dict[str, str]:
    """An explicit map naming every top-level module of a Llama (optionally o_proj on its own)."""
    m = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.norm": "cpu", "lm_head": "cpu"}
    for l in range(n_layers):
        if split_o_proj and l == n_layers - 1:
            for sub in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                        "mlp", "input_layernorm", "post_attention_layernorm"):
                m[f"model.layers.{l}.{sub}"] = "cpu"
        else:
            m[f"model.layers.{l}"] = "cpu"
    return m


def dispatched(seed: int = 0, layers: int = 3, split_o_proj: bool = True):
    """(plain model, the same weights dispatched by accelerate with hooks on every mapped module)."""
    import copy

    from accelerate import dispatch_model

    plain = tiny_llama(seed=seed, layers=layers)
    split = dispatch_model(copy.deepcopy(plain), device_map=full_map(layers, split_o_proj), force_hooks=True)
    assert hasattr(split.model.layers[0], "_hf_hook")  # accelerate really manages it
    return plain, split


def random_deltas(model, layers, seed=1, scale=2.0):
    from itictl.models.arch import head_layout

    g = torch.Generator().manual_seed(seed)
    width = head_layout(model).width
    return {l: torch.randn(width, generator=g) * scale for l in layers}


IDS = torch.tensor([[3, 17, 9, 44, 5, 81, 12, 7], [1, 2, 3, 4, 5, 6, 7, 8]])


# ---- parsing --------------------------------------------------------------------------------------

def test_parse_device_map_accepts_names_and_json_objects():
    assert parse_device_map(None) is None and parse_device_map("  ") is None
    assert parse_device_map("Auto") == "auto" and parse_device_map("balanced") == "balanced"
    assert parse_device_map("sequential") == "sequential"
    assert parse_device_map('{"model": "cpu", "lm_head": "CPU"}') == {"model": "cpu", "lm_head": "cpu"}
    assert parse_device_map({"": "cpu"}) == {"": "cpu"}


@pytest.mark.parametrize("bad,match", [
    ("fastest", "unknown device map"),
    ("{model: cpu}", "not valid JSON"),
    ('["cpu"]', "unknown device map"),
    ("{}", "non-empty"),
    ('{"lm_head": "disk"}', "disk"),
    ('{"lm_head": "tpu"}', "not a device"),
    ('{"lm_head": true}', "not a device"),
])
def test_parse_device_map_rejects_bad_maps(bad, match):
    with pytest.raises(BadInputError, match=match):
        parse_device_map(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only check")
def test_parse_device_map_rejects_gpus_that_are_not_there():
    with pytest.raises(BadInputError, match="0 GPU"):
        parse_device_map({"lm_head": 1})
    with pytest.raises(BadInputError, match="0 GPU"):
        parse_device_map('{"model": "cuda:0"}')


# ---- loading --------------------------------------------------------------------------------------

def test_auto_map_on_cpu_equals_plain_load(tmp_path, store):
    art = ensure_model(store, str(tiny_folder(tmp_path / "m", seed=4)))
    plain = load_model(store, art, dtype="float32", device="cpu")
    auto = load_model(store, art, dtype="float32", device_map="auto")
    assert auto is not plain  # the map is part of the memo key
    assert load_model(store, art, dtype="float32", device_map="AUTO") is auto
    assert auto.device == "cpu" and auto.dtype == "float32"
    if not torch.cuda.is_available():
        assert {p.device.type for p in auto.model.parameters()} == {"cpu"}
    ids = torch.tensor([[1, 5, 9, 11, 40]])
    assert torch.equal(logits(auto.model, ids.to(auto.device)).cpu(), logits(plain.model, ids))
    # the default dtype follows where the map puts the model: fp32 when nothing goes to a GPU
    assert load_model(store, art, device_map="auto").dtype == ("float16" if torch.cuda.is_available() else "float32")


def test_explicit_dict_map_loads_and_is_checked(tmp_path, store):
    art = ensure_model(store, str(tiny_folder(tmp_path / "m", seed=2)))
    plain = load_model(store, art, dtype="float32", device="cpu")
    dmap = full_map(2, split_o_proj=True)
    lm = load_model(store, art, dtype="float32", device_map=dmap)
    assert lm.device == "cpu"
    assert load_model(store, art, dtype="float32", device_map=json.dumps(dmap)) is lm  # same map, same memo
    ids = torch.tensor([[1, 5, 9, 11, 40, 3]])
    assert torch.equal(logits(lm.model, ids), logits(plain.model, ids))
    missing = {k: v for k, v in dmap.items() if k != "model.layers.0"}
    with pytest.raises(BadInputError, match=r"no device for \d+ tensor\(s\), e.g. model.layers.0"):
        load_model(store, art, device_map=missing)
    with pytest.raises(BadInputError, match="does not have: model.layers.7"):
        load_model(store, art, device_map={**dmap, "model.layers.7": "cpu"})
    # a map need not place non-persistent buffers (rotary inv_freq): transformers rebuilds them
    no_rotary = {k: v for k, v in dmap.items() if k != "model.rotary_emb"}
    lm2 = load_model(store, art, dtype="float32", device_map=no_rotary)
    assert torch.equal(logits(lm2.model, ids), logits(plain.model, ids))


def test_cli_bad_device_map_exits_4(cli):
    r = cli("bake", "--device-map", "fastest")
    assert r.code == 4 and "unknown device map" in r.stderr and r.stderr.count("\n") == 1
    r = cli("intervene", "-K", "2", "-A", "5", "--device-map", '{"lm_head": "disk"}')
    assert r.code == 4 and "disk" in r.stderr and r.stderr.count("\n") == 1


def test_quiet_cli_keeps_transformers_progress_off_stderr(cli, tmp_path):
    """`itictl -q bake` loads a model: transformers' "Loading weights" bar must not reach stderr."""
    from itictl.store import Store
    from tests.publish.test_bake import make_intervention

    store = Store(tmp_path / "cli-store")
    store.ensure()
    art = ensure_model(store, str(tiny_folder(tmp_path / "m", seed=6)))
    inter = make_intervention(store, art, {1: torch.ones(32)}, [[1, 0]], alpha=2.0)
    loud = cli("bake", inter.key, "--dtype", "float32")
    assert loud.code == 0, loud.stderr
    assert "Loading weights" in loud.stderr  # transformers shows it by default: the check below can fail
    other = make_intervention(store, art, {0: torch.ones(32)}, [[0, 0]], alpha=3.0)
    quiet = cli("-q", "bake", other.key, "--dtype", "float32", "--device-map", "auto")
    assert quiet.code == 0, quiet.stderr
    assert quiet.stderr == ""


# ---- interventions on dispatched models --------------------------------------------------------------

def test_steering_on_dispatched_model_equals_undispatched():
    from itictl.intervene.steering import AnswerPositions, intervened, steered_generate

    plain, split = dispatched(seed=5)
    deltas = random_deltas(plain, [0, 2], scale=3.0)
    assert torch.allclose(logits(split, IDS), logits(plain, IDS), atol=TOL)
    for positions in ("all", AnswerPositions(start=torch.tensor([5, 3]))):
        with intervened(plain, deltas, positions):
            want = logits(plain, IDS)
        with intervened(split, deltas, positions):
            got = logits(split, IDS)
        assert not torch.allclose(want, logits(plain, IDS), atol=1e-3)  # the intervention does something
        assert torch.allclose(got, want, atol=TOL), (got - want).abs().max()
    # generation ('generated' positions, KV cache) through the hooks
    from tests.models.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    tok.pad_token = tok.eos_token
    prompts = ["w1 w2 w3", "w7 w8 w9 w10 w11"]
    assert steered_generate(split, tok, prompts, deltas, max_new_tokens=6) == \
        steered_generate(plain, tok, prompts, deltas, max_new_tokens=6)


def test_bake_on_dispatched_model_equals_undispatched(tmp_path):
    from transformers import AutoModelForCausalLM

    from itictl.intervene.steering import intervened
    from itictl.publish.bake import bake_folder, baked, residual_shifts

    plain, split = dispatched(seed=7)
    deltas = random_deltas(plain, [1, 2], seed=3, scale=2.5)
    for l, s in residual_shifts(split, deltas).items():
        assert s.device.type == "cpu"
        assert torch.allclose(s, residual_shifts(plain, deltas)[l], atol=TOL)
    with intervened(plain, deltas, "all"):
        live = logits(plain, IDS)
    with baked(split, deltas) as info:
        assert info.layers == [1, 2] and info.enabled_flag == "attention_bias"
        assert torch.allclose(logits(split, IDS), live, atol=1e-4)
    assert split.model.layers[1].self_attn.o_proj.bias is None  # restored
    assert torch.allclose(logits(split, IDS), logits(plain, IDS), atol=TOL)
    # saving the dispatched model: a plain folder whose tensors equal the undispatched bake's
    bake_folder(split, None, deltas, tmp_path / "split")
    bake_folder(plain, None, deltas, tmp_path / "plain")
    from safetensors.torch import load_file

    a = load_file(tmp_path / "split" / "model.safetensors")
    b = load_file(tmp_path / "plain" / "model.safetensors")
    assert sorted(a) == sorted(b)
    for k in b:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    cfg = json.loads((tmp_path / "split" / "config.json").read_text())
    assert cfg["attention_bias"] is True and "device_map" not in json.dumps(cfg)
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "split", dtype=torch.float32).eval()
    assert torch.allclose(logits(again, IDS), live, atol=1e-4)


def test_hooks_place_deltas_on_the_o_proj_device_and_dtype():
    """On a bfloat16 model whose o_proj has its own accelerate hook, layer l's o_proj receives
    exactly x + δ_l cast to bfloat16 (δ_l pre-placed for that module)."""
    import copy

    from accelerate import dispatch_model

    from itictl.intervene.steering import intervened, module_device

    plain = tiny_llama(seed=9, layers=3).to(torch.bfloat16)
    split = dispatch_model(copy.deepcopy(plain), device_map=full_map(3, split_o_proj=True), force_hooks=True)
    o = split.model.layers[2].self_attn.o_proj
    assert hasattr(o, "_hf_hook")  # the split map gave o_proj its own accelerate hook
    assert module_device(o) == (torch.device("cpu"), torch.bfloat16)
    deltas = random_deltas(plain, [2], seed=4)

    def record(mod, store):
        return mod.register_forward_pre_hook(lambda m, a: store.setdefault("x", a[0].clone()))

    got: dict = {}
    with intervened(split, deltas, "all"):
        h = record(o, got)  # registered after intervened's hook, so it sees x + δ
        try:
            logits(split, IDS)
        finally:
            h.remove()
    want: dict = {}
    h = record(plain.model.layers[2].self_attn.o_proj, want)
    try:
        logits(plain, IDS)
    finally:
        h.remove()
    assert got["x"].dtype == torch.bfloat16
    assert torch.equal(got["x"], want["x"] + deltas[2].to(torch.bfloat16))


def test_embedded_model_with_device_map_equals_plain(session_store, embedded):
    """The embedded model's cached hf/ folder loads through accelerate's map like any folder."""
    lm = load_model(session_store, embedded.art, dtype="float32", device_map="auto")
    assert lm is not embedded and lm.device == "cpu"
    ids = torch.tensor([embedded.tokenizer("Q: What is the capital of France? A: Paris")["input_ids"]])
    assert torch.equal(logits(lm.model, ids), logits(embedded.model, ids))
