"""Bake: baked logits == live intervention logits (positions='all'), on tiny random models of several
architectures (unit) and on the embedded model (integration); bad input writes nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.helpers import tiny_llama

ATOL = 1e-4


def tiny_gpt2(seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    m = GPT2LMHeadModel(GPT2Config(n_embd=32, n_head=4, n_layer=3, vocab_size=128, n_positions=64)).eval()
    with torch.no_grad():  # non-zero existing c_proj biases, so "+ existing bias" is exercised
        for blk in m.transformer.h:
            blk.attn.c_proj.bias.normal_(0, 0.5)
    return m


def tiny_opt(seed: int = 0):
    from transformers import OPTConfig, OPTForCausalLM

    torch.manual_seed(seed)
    cfg = OPTConfig(hidden_size=32, num_attention_heads=4, num_hidden_layers=2, ffn_dim=64, vocab_size=128,
                    max_position_embeddings=64, word_embed_proj_dim=32, pad_token_id=1)
    m = OPTForCausalLM(cfg).eval()
    with torch.no_grad():
        for layer in m.model.decoder.layers:
            layer.self_attn.out_proj.bias.normal_(0, 0.5)
    return m


def random_deltas(model, layers, seed=1, scale=2.0):
    from itictl.models.arch import head_layout

    g = torch.Generator().manual_seed(seed)
    width = head_layout(model).width
    return {l: torch.randn(width, generator=g) * scale for l in layers}


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


IDS = torch.tensor([[3, 17, 9, 44, 5, 81, 12, 7], [1, 2, 3, 4, 5, 6, 7, 8]])


@pytest.mark.parametrize("make,layers", [(tiny_llama, [0, 1]), (tiny_gpt2, [0, 2]), (tiny_opt, [1])],
                         ids=["llama-gqa", "gpt2-conv1d", "opt-bias"])
def test_baked_equals_live_intervention(tmp_path, make, layers):
    from transformers import AutoModelForCausalLM

    from itictl.intervene.steering import intervened
    from itictl.publish.bake import bake_folder

    model = make()
    deltas = random_deltas(model, layers)
    base = logits(model, IDS)
    with intervened(model, deltas, positions="all"):
        live = logits(model, IDS)
    info = bake_folder(model, None, deltas, tmp_path / "baked")
    assert info.layers == layers
    # the in-memory model is restored
    assert torch.equal(logits(model, IDS), base)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "baked", dtype=torch.float32).eval()
    baked = logits(reloaded, IDS)
    assert (baked - live).abs().max().item() < ATOL
    assert (baked - base).abs().max().item() > 1e-2
    # no custom code: the config names a stock transformers class
    cfg = json.loads((tmp_path / "baked" / "config.json").read_text())
    assert "auto_map" not in cfg


def test_llama_bake_uses_attention_bias_with_zero_qkv(tmp_path):
    from safetensors.torch import load_file

    from itictl.models.arch import out_proj_matrix
    from itictl.publish.bake import bake_folder

    model = tiny_llama(layers=3)
    deltas = random_deltas(model, [1])
    info = bake_folder(model, None, deltas, tmp_path / "b")
    assert info.enabled_flag == "attention_bias"
    assert json.loads((tmp_path / "b" / "config.json").read_text())["attention_bias"] is True
    assert model.config.attention_bias is False and model.model.layers[1].self_attn.o_proj.bias is None
    sd = {}
    for f in (tmp_path / "b").glob("*.safetensors"):
        sd.update(load_file(str(f)))
    for l in range(3):
        for p in ("q_proj", "k_proj", "v_proj"):
            assert torch.count_nonzero(sd[f"model.layers.{l}.self_attn.{p}.bias"]) == 0
    assert torch.count_nonzero(sd["model.layers.0.self_attn.o_proj.bias"]) == 0
    expected = out_proj_matrix(model.model.layers[1].self_attn.o_proj).float() @ deltas[1]
    assert torch.allclose(sd["model.layers.1.self_attn.o_proj.bias"], expected, atol=1e-5)
    # The reference's edit (bias = δ_l itself) is a different edit: shapes do not even agree here.
    assert deltas[1].numel() != expected.numel()


def test_gpt2_bake_adds_to_existing_bias(tmp_path):
    from safetensors.torch import load_file

    from itictl.publish.bake import bake_folder

    model = tiny_gpt2()
    old = model.transformer.h[2].attn.c_proj.bias.detach().clone()
    deltas = random_deltas(model, [2])
    info = bake_folder(model, None, deltas, tmp_path / "g")
    assert info.enabled_flag is None
    sd = load_file(str(next((tmp_path / "g").glob("*.safetensors"))))
    w = model.transformer.h[2].attn.c_proj.weight  # Conv1D [in, out]
    assert torch.allclose(sd["transformer.h.2.attn.c_proj.bias"], old + w.t() @ deltas[2], atol=1e-5)
    assert torch.equal(sd["transformer.h.0.attn.c_proj.bias"], model.transformer.h[0].attn.c_proj.bias)


def test_bake_unsupported_arch_and_wrong_width(tmp_path):
    from transformers import MistralConfig, MistralForCausalLM

    from itictl.errors import BadInputError, UnsupportedError
    from itictl.publish.bake import bake_folder

    m = MistralForCausalLM(MistralConfig(hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                                         num_hidden_layers=2, intermediate_size=64, vocab_size=128)).eval()
    with pytest.raises(UnsupportedError):
        bake_folder(m, None, {0: torch.ones(32)}, tmp_path / "m")
    assert not any((tmp_path / "m").glob("*.safetensors"))
    assert all(layer.self_attn.o_proj.bias is None for layer in m.model.layers)
    with pytest.raises(BadInputError):
        bake_folder(tiny_llama(), None, {0: torch.ones(5)}, tmp_path / "w")
    with pytest.raises(BadInputError):
        bake_folder(tiny_llama(), None, {7: torch.ones(32)}, tmp_path / "w")


def test_bake_of_non_intervention_ref_writes_nothing(cli, tmp_path):
    from itictl.store import Store

    r = cli("bake")
    assert r.code == 3 and "last-eval" in r.stderr and r.stderr.count("\n") == 1
    store = Store(tmp_path / "cli-store")
    art, _ = store.produce("dataset", {"name": "x"}, {}, lambda ctx: (ctx.out / "t.json").write_text("{}"))
    before = set(store.iter_keys())
    r = cli("bake", art.key[:8])
    assert r.code == 4, r.stderr
    assert "not an intervention" in r.stderr and r.stderr.count("\n") == 1
    assert set(store.iter_keys()) == before and "last-bake" not in store.refs()


# ---- integration: the embedded model ------------------------------------------------------------

def make_intervention(store, model_art, deltas, heads, alpha=15.0, direction="com", seed=0):
    """An intervention artifact in the documented format (for tests that need no probing)."""
    from safetensors.torch import save_file

    def build(ctx):
        save_file({f"layer.{l}": d.float().contiguous() for l, d in deltas.items()},
                  str(ctx.out / "intervention.safetensors"))
        (ctx.out / "intervention.json").write_text(json.dumps(
            {"heads": heads, "alpha": alpha, "direction": direction, "model": model_art.key, "seed": seed}))

    return store.produce("intervention", {"heads": len(heads), "alpha": alpha, "direction": direction, "seed": seed,
                                          "test": True}, {"model": model_art.key}, build)[0]


def embedded_deltas(lm, heads, seed=3, scale=4.0):
    from itictl.models.arch import head_layout

    lay = head_layout(lm.model)
    g = torch.Generator().manual_seed(seed)
    out: dict[int, torch.Tensor] = {}
    for l, h in heads:
        d = out.setdefault(l, torch.zeros(lay.width))
        d[h * lay.D:(h + 1) * lay.D] = torch.randn(lay.D, generator=g) * scale
    return out


def test_embedded_bake_equals_live_and_reloads_in_fresh_process(session_store, embedded, tmp_path):
    from transformers import AutoModelForCausalLM

    from itictl.intervene.steering import intervened
    from itictl.publish.bake import run_bake

    heads = [[3, 1], [3, 5], [10, 2], [20, 7]]
    deltas = embedded_deltas(embedded, heads)
    inter = make_intervention(session_store, embedded.art, deltas, heads)
    art, cached = run_bake(session_store, inter, dtype="float32")
    art2, cached2 = run_bake(session_store, inter, dtype="float32")
    assert art2.key == art.key and cached2
    folder = art.path / "model"
    card = (art.path / "README.md").read_text()
    assert "prompt tokens included" in card and "inference-time-intervention" in card
    assert "alpha | 15.0" in card and "(10, 2)" in card

    tok = embedded.tokenizer
    ids = tok(["Q: What happens if you eat watermelon seeds? A:", "Q: Are bats blind? A: No"],
              return_tensors="pt", padding=True)
    model = embedded.model
    with torch.no_grad():
        base = model(**ids).logits.float()
        with intervened(model, deltas, positions="all"):
            live = model(**ids).logits.float()
    baked_model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        baked = baked_model(**ids).logits.float()
    mask = ids["attention_mask"].bool()
    diff = (baked - live).abs()[mask].max().item()
    assert diff < ATOL, diff
    assert (baked - base).abs()[mask].max().item() > 1e-2

    # a fresh process with plain transformers (no itictl) generates what the live intervention does
    script = ("import json, sys, torch\n"
              "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
              "p = sys.argv[1]\n"
              "m = AutoModelForCausalLM.from_pretrained(p); t = AutoTokenizer.from_pretrained(p)\n"
              "ids = t('Q: Are bats blind? A:', return_tensors='pt')\n"
              "out = m.generate(**ids, max_new_tokens=8, do_sample=False)\n"
              "print(json.dumps(out[0, ids['input_ids'].shape[1]:].tolist()))\n")
    p = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    prompt = tok("Q: Are bats blind? A:", return_tensors="pt")
    with torch.no_grad(), intervened(model, deltas, positions="all"):
        live_gen = model.generate(**prompt, max_new_tokens=8, do_sample=False)[0, prompt["input_ids"].shape[1]:]
    assert json.loads(p.stdout.strip().splitlines()[-1]) == live_gen.tolist()


def tiny_tokenizer():
    """A word-level fast tokenizer with a 128-token vocabulary (matches tiny_llama's vocab)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{f"w{i}": i for i in range(4, 128)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")


def test_cli_bake_last_eval_then_push_dry_run(cli, tmp_path):
    """`itictl bake last-eval && itictl push --repo … --dry-run` (an eval REF: its fold-0 intervention;
    with no REF bake refits on all questions: tests/publish/test_final.py)."""
    from transformers import AutoModelForCausalLM

    from itictl.intervene.steering import intervened
    from itictl.models import ensure_model
    from itictl.store import Store

    model = tiny_llama(layers=3)
    folder = tmp_path / "tiny-folder"
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    store = Store(tmp_path / "cli-store")
    store.ensure()
    m = ensure_model(store, str(folder))
    deltas = random_deltas(model, [0, 2])
    inter = make_intervention(store, m, deltas, [[0, 1], [2, 3]])
    ev = store.produce("eval", {"t": 1}, {"model": m.key, "intervention": inter.key},
                       lambda ctx: (ctx.out / "eval.json").write_text(json.dumps({"mean": {"MC2": 0.61}})))[0]
    store.tag("last-eval", ev.key)

    r = cli("bake", "last-eval", "--dtype", "float32", "--json")
    assert r.code == 0, r.stderr
    doc = r.json()
    assert doc["kind"] == "baked-model" and doc["intervention"] == inter.key and doc["cached"] is False
    assert doc["layers"] == [0, 2] and doc["enabled_flag"] == "attention_bias"
    assert store.refs()["last-bake"] == doc["key"]
    assert cli("bake", "last-eval", "--dtype", "float32", "--json").json()["cached"] is True

    with intervened(model, deltas, positions="all"):
        live = logits(model, IDS)
    baked = logits(AutoModelForCausalLM.from_pretrained(doc["model_dir"], dtype=torch.float32).eval(), IDS)
    assert (baked - live).abs().max().item() < ATOL
    card = (store.get(doc["key"]).path / "README.md").read_text()
    assert "| MC2 | 0.61 |" in card and "(2, 3)" in card

    r = cli("push", "--repo", "me/honest-tiny", "--dry-run", "--json")
    assert r.code == 0, r.stderr
    pushed = r.json()
    assert pushed["artifact"] == doc["key"]
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= set(pushed["files"])
