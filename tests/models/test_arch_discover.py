"""Structural discovery, its verification and the --arch-map escape hatch (itictl.models.arch /
arch_discover), on a hand-written toy model (no transformers class) and on tiny HF models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from itictl.errors import BadInputError, UnsupportedError
from itictl.models import arch
from itictl.models.arch import (
    arch_record,
    current_arch_map,
    decoder_layers,
    decoder_stack,
    get_arch,
    head_layout,
    hidden_size,
    o_proj_modules,
    use_arch_map,
)
from itictl.models.arch_discover import discover
from itictl.models.arch_map import parse_arch_map

HIDDEN, H, D, VOCAB = 12, 2, 4, 40  # H·D = 8 != hidden, so q/k/v (12 -> 8) are never candidates


class ToyConfig:
    model_type = "toy"
    num_attention_heads = H
    head_dim = D
    hidden_size = HIDDEN
    num_hidden_layers = 2
    vocab_size = VOCAB


class ToyAttention(nn.Module):
    """Causal attention whose output goes through TWO projections of H·D -> hidden (summed), plus a
    projection that is computed but never used."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(HIDDEN, H * D) for _ in range(3))
        self.mix_a, self.mix_b, self.unused = (nn.Linear(H * D, HIDDEN) for _ in range(3))

    def forward(self, x):  # x [B, T, hidden]
        B, T, _ = x.shape
        q, k, v = (f(x).view(B, T, H, D).transpose(1, 2) for f in (self.q, self.k, self.v))
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        ctx = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=causal)
        ctx = ctx.transpose(1, 2).reshape(B, T, H * D)  # [B, T, H·D]
        self.unused(ctx)
        return self.mix_a(ctx) + self.mix_b(ctx)


class ToyLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = ToyAttention()
        self.norm = nn.LayerNorm(HIDDEN)

    def forward(self, x):
        return x + self.attn(self.norm(x))


class ToyStack(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, HIDDEN)
        self.blocks = nn.ModuleList(ToyLayer() for _ in range(2))

    def forward(self, input_ids=None, **_):
        x = self.embed(input_ids)
        for b in self.blocks:
            x = b(x)
        return type("Out", (), {"last_hidden_state": x})()


class ToyLM(nn.Module):
    def __init__(self, seed: int = 0):
        torch.manual_seed(seed)
        super().__init__()
        self.config = ToyConfig()
        self.body = ToyStack()
        self.head = nn.Linear(HIDDEN, VOCAB)

    def get_input_embeddings(self):
        return self.body.embed

    def forward(self, input_ids=None, **kw):
        return type("Out", (), {"logits": self.head(self.body(input_ids).last_hidden_state)})()


MAP = {"layers": "body.blocks", "o_proj": "attn.mix_a", "heads": H, "head_dim": D}


def test_two_plausible_projections_is_a_one_line_error_naming_them():
    with pytest.raises(UnsupportedError) as e:
        get_arch(ToyLM())
    msg, hint = e.value.message, e.value.hint
    assert "attn.mix_a" in msg and "attn.mix_b" in msg and "attn.unused" in msg and "\n" not in msg
    assert "--arch-map" in hint
    suggested = json.loads(hint.split("'")[1])  # the hint's JSON is a valid map for this model
    assert suggested["layers"] == "body.blocks" and suggested["heads"] == H and suggested["head_dim"] == D
    with pytest.raises(UnsupportedError):
        head_layout(ToyLM())


def test_arch_map_makes_the_same_model_work_end_to_end():
    from itictl.extract.engine import Tokenized, extract_items
    from itictl.intervene.steering import intervened
    from itictl.publish.bake import baked

    model = ToyLM().eval()
    ids = torch.randint(0, VOCAB, (2, 6), generator=torch.Generator().manual_seed(1))
    with use_arch_map(json.dumps(MAP)):
        spec = get_arch(model)
        assert (spec.source, spec.layers_path, spec.o_proj) == ("arch-map", "body.blocks", "attn.mix_a")
        assert head_layout(model) == arch.HeadLayout(2, H, D) and hidden_size(model) == HIDDEN
        assert o_proj_modules(model) == [b.attn.mix_a for b in model.body.blocks]
        assert decoder_stack(model) is model.body and decoder_layers(model) == list(model.body.blocks)
        got = extract_items(model, [Tokenized([1, 5, 9, 3]), Tokenized([2, 7])])["head_wise"]
        seen = []
        h = model.body.blocks[1].attn.mix_a.register_forward_pre_hook(lambda m, a: seen.append(a[0][0, -1]))
        with torch.no_grad():
            model(input_ids=torch.tensor([[2, 7]]))
        h.remove()
        assert got.shape == (2, 2, H * D)
        np.testing.assert_allclose(got[1, 1], seen[0].numpy(), atol=1e-6)
        deltas = {0: torch.randn(H * D), 1: torch.randn(H * D)}
        with torch.no_grad():
            plain = model(input_ids=ids).logits
            with intervened(model, deltas, "all"):
                live = model(input_ids=ids).logits
            with baked(model, deltas):
                bake = model(input_ids=ids).logits
        assert not torch.allclose(plain, live, atol=1e-3)
        torch.testing.assert_close(bake, live, atol=1e-5, rtol=1e-5)
        assert arch_record(model) == {"source": "arch-map", "model_type": "toy", "layers": "body.blocks",
                                      "o_proj": "attn.mix_a", "n_layers": 2, "heads": H, "head_dim": D}
    assert current_arch_map() is None
    with pytest.raises(UnsupportedError):  # outside the block the model is unmapped again
        get_arch(model)


@pytest.mark.parametrize("o_proj,why", [("attn.unused", "does not change"), ("attn.q", "expected [B, T, 8]"),
                                        ("norm", "not a Linear")])
def test_a_wrong_map_fails_verification(o_proj, why):
    with pytest.raises((UnsupportedError, BadInputError)) as e:
        with use_arch_map({**MAP, "o_proj": o_proj}):
            get_arch(ToyLM())
    assert why in e.value.message


@pytest.mark.parametrize("text,why", [("{", "not valid JSON"), ('{"layers": "model.layers"}', '"o_proj"'),
                                      ('{"layers": "a", "o_proj": "b", "heads": 0}', "positive"),
                                      ('{"layers": "a", "o_proj": "b", "extra": 1}', "unknown key"),
                                      ("/no/such/file.json", "neither JSON nor a file"), ("[1]", "object")])
def test_bad_arch_map_text(text, why):
    with pytest.raises(BadInputError) as e:
        parse_arch_map(text)
    assert why in e.value.message and "--arch-map" in e.value.message


def test_arch_map_from_a_file(tmp_path):
    p = tmp_path / "map.json"
    p.write_text(json.dumps(MAP))
    assert parse_arch_map(str(p)).as_dict() == MAP


def test_a_model_with_no_layer_list_is_refused():
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = ToyConfig()
            self.proj = nn.Linear(H * D, HIDDEN)

    with pytest.raises(UnsupportedError) as e:
        get_arch(Flat())
    assert "no list of 2 decoder layers" in e.value.message


def _tiny(kind: str):
    import transformers as t

    torch.manual_seed(0)
    if kind == "llama":  # hidden == H·D: q_proj and o_proj both read H·D and write hidden
        cfg = t.LlamaConfig(hidden_size=32, num_attention_heads=4, num_key_value_heads=4, num_hidden_layers=2,
                            intermediate_size=32, vocab_size=64)
        return t.LlamaForCausalLM(cfg).eval()
    if kind == "opt":  # q/k/v/out_proj all 32 -> 32, with biases
        cfg = t.OPTConfig(hidden_size=32, num_attention_heads=4, num_hidden_layers=2, ffn_dim=32, vocab_size=64,
                          word_embed_proj_dim=32, max_position_embeddings=64)
        return t.OPTForCausalLM(cfg).eval()
    cfg = t.GPT2Config(n_embd=32, n_head=4, n_layer=2, vocab_size=64, n_positions=64)  # Conv1D
    return t.GPT2LMHeadModel(cfg).eval()


@pytest.mark.parametrize("kind", ["llama", "opt", "gpt2"])
def test_discovery_finds_what_the_table_says(kind):
    model = _tiny(kind)
    table = get_arch(model)
    found = discover(model)
    assert table.source == "table" and found.source == "discovered"
    assert found.o_proj == table.o_proj
    assert found.layers_path.endswith(table.layers) and found.layout == head_layout(model)
    assert found.hidden_n == hidden_size(model)


def test_unknown_config_gets_a_generic_layout():
    import transformers as t

    cfg = t.LlamaConfig(hidden_size=48, num_attention_heads=4, head_dim=6, num_hidden_layers=3)
    cfg.model_type = "brand_new"
    assert head_layout(cfg) == arch.HeadLayout(3, 4, 6) and hidden_size(cfg) == 48
    with pytest.raises(UnsupportedError) as e:
        get_arch(cfg)
    assert "brand_new" in e.value.message and "--arch-map" in e.value.hint
    with use_arch_map({"layers": "model.layers", "o_proj": "self_attn.o_proj", "heads": 8, "head_dim": 3}):
        assert head_layout(cfg) == arch.HeadLayout(3, 8, 3)
