"""The fast greedy engine (itictl.intervene.generation) against batch-1 model.generate on tiny random
models in float32 on the CPU: shared prefix, left-padded suffixes, several batches, EOS, the
intervention's positions, the fallbacks."""

from __future__ import annotations

import pytest
import torch

from itictl.intervene.generation import (
    GreedyEngine,
    fast_path_ok,
    greedy_generate,
    rows_for,
    shared_prefix_len,
)
from itictl.intervene.steering import intervened, o_proj_list, steered_generate
from tests.helpers import tiny_llama

H, D, VOCAB = 4, 8, 128


@pytest.fixture(scope="module")
def model():
    return tiny_llama(seed=0, layers=2, heads=H, head_dim=D, vocab=VOCAB)


def make_deltas(scale: float = 3.0, seed: int = 1, layers=(0, 1)) -> dict[int, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {l: scale * torch.randn(H * D, generator=g) for l in layers}


def prompts(seed: int = 0, lengths=(1, 5, 9, 3, 7, 2, 12), prefix_len: int = 20) -> list[list[int]]:
    """[bos] + a shared prefix + suffixes of the given lengths (token ids 3..127)."""
    g = torch.Generator().manual_seed(seed)
    prefix = torch.randint(3, VOCAB, (prefix_len,), generator=g).tolist()
    return [[1] + prefix + torch.randint(3, VOCAB, (n,), generator=g).tolist() for n in lengths]


def batch1(model, seq, deltas, n=12, eos=2):
    """Batch-1 model.generate with the 'generated' hooks (the semantics the engine must reproduce)."""
    ids = torch.tensor([seq])
    with (intervened(model, deltas, "generated") if deltas else torch.no_grad()), torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                             do_sample=False, pad_token_id=0, eos_token_id=eos)
    return out[0, len(seq):].tolist()


@pytest.fixture(scope="module")
def expected(model):
    """Batch-1 model.generate continuations of prompts(), plain (None) and steered (make_deltas())."""
    return {d: [batch1(model, s, make_deltas() if d else None) for s in prompts()] for d in (None, "steered")}


@pytest.mark.parametrize("rows", [1, 3, 7])
def test_equals_batch1_generate_with_and_without_the_intervention(model, expected, rows):
    seqs = prompts()
    got = {d: greedy_generate(model, seqs, max_new_tokens=12, eos=[2], pad_id=0, rows=rows,
                              deltas=make_deltas() if d else None) for d in (None, "steered")}
    assert got == expected
    # the intervention changes these continuations (so the equality covers its positions)
    assert got["steered"] != got[None]


def test_shared_prefix_changes_nothing_and_no_common_prefix_works(model):
    seqs = prompts(seed=3)
    deltas = make_deltas(seed=4)
    shared = greedy_generate(model, seqs, max_new_tokens=8, eos=[2], pad_id=0, deltas=deltas, rows=4)
    alone = greedy_generate(model, seqs, max_new_tokens=8, eos=[2], pad_id=0, deltas=deltas, rows=4,
                            share_prefix=False)
    assert shared == alone
    distinct = [[5 + i] + s[1:] for i, s in enumerate(seqs)]  # first tokens differ: prefix length 0
    assert shared_prefix_len(distinct) == 0
    got = greedy_generate(model, distinct, max_new_tokens=8, eos=[2], pad_id=0, deltas=deltas, rows=4)
    assert got == [batch1(model, s, deltas, n=8) for s in distinct]


def test_stops_at_eos_like_generate(model):
    seqs = prompts(seed=5)
    plain = greedy_generate(model, seqs, max_new_tokens=12, eos=[2], pad_id=0)
    eos = plain[3][4]  # a token row 3 emits mid-way: make it the EOS
    got = greedy_generate(model, seqs, max_new_tokens=12, eos=[eos], pad_id=0, rows=3)
    assert got == [batch1(model, s, None, eos=eos) for s in seqs]
    assert got[3] == plain[3][:plain[3].index(eos) + 1]  # cut after the first EOS, kept
    # a batch whose rows all end early stops early (no decode steps past the last EOS)
    with GreedyEngine(model, [], max_suffix=30, max_new_tokens=12, rows=1, eos=[eos], pad_id=0) as eng:
        calls = []
        h = model.register_forward_pre_hook(lambda m, a: calls.append(1))
        try:
            out = eng.run([seqs[3]])
        finally:
            h.remove()
    assert out == [got[3]] and len(calls) == len(got[3])  # one prefill + one call per further token


def test_edits_only_the_last_prompt_token_and_generated_tokens(model):
    # o_proj inputs of layer 0 recorded before the steering hook (pre) and after it (post): their
    # difference is δ_0 exactly where the engine edits and 0 elsewhere
    seqs = prompts(seed=6, lengths=(2, 6, 4))
    P = shared_prefix_len(seqs)
    delta = make_deltas(layers=(0,))
    mod = o_proj_list(model)[0]
    pre: list[torch.Tensor] = []
    post: list[torch.Tensor] = []
    h_pre = mod.register_forward_pre_hook(lambda m, a: pre.append(a[0].detach().clone()))
    try:
        with GreedyEngine(model, seqs[0][:P], max_suffix=6, max_new_tokens=4, rows=3, eos=[], pad_id=0,
                          deltas=delta) as eng:
            h_post = mod.register_forward_pre_hook(lambda m, a: post.append(a[0].detach().clone()))
            try:
                eng.run([s[P:] for s in seqs])
            finally:
                h_post.remove()
    finally:
        h_pre.remove()
    assert len(pre) == len(post) + 1 == 1 + 1 + 3  # the prefix pass (not steered), the prefill, 3 steps
    prefill = (post[0] - pre[1]).abs().amax(-1)  # [R, S]
    assert prefill[:, :-1].max() == 0  # padding and earlier suffix tokens: untouched
    assert torch.allclose(post[0][:, -1] - pre[1][:, -1], delta[0].expand(3, -1), atol=1e-5)  # last prompt token
    for before, after in zip(pre[2:], post[1:]):  # decode steps: every row's new token
        assert torch.allclose(after - before, delta[0].expand_as(before), atol=1e-5)


def test_prefix_and_batch_size_helpers(model):
    assert shared_prefix_len([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]]) == 2
    assert shared_prefix_len([[1, 2, 3], [1, 2, 3]]) == 2  # each keeps a token of its own
    assert shared_prefix_len([]) == 0
    assert rows_for(model, 70, 100, 10) == 24  # CPU: 32 rows at most, evened out to 3 batches of 24/23
    assert rows_for(model, 5, 100, 10) == 5


def test_models_with_extra_greedy_processors_keep_model_generate(model):
    import copy

    m = copy.deepcopy(model)
    m.generation_config.repetition_penalty = 1.5
    assert fast_path_ok(model) and not fast_path_ok(m)
    from tests.models.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    texts = ["w1 w2 w3 w4 w5 w6 w7 w8", "w1 w2 w3 w9"]
    got = steered_generate(m, tok, texts, make_deltas(), max_new_tokens=8)
    ref = steered_generate(m, tok, texts, make_deltas(), max_new_tokens=8, fast=False)
    assert got == ref  # the fallback honours the penalty (the engine would not)
    assert got != steered_generate(model, tok, texts, make_deltas(), max_new_tokens=8, fast=False)


def _tiny(model_type: str):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = AutoConfig.for_model(model_type, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=H, num_key_value_heads=2, head_dim=D, vocab_size=VOCAB,
                               max_position_embeddings=256, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return AutoModelForCausalLM.from_config(cfg).eval()


@pytest.mark.parametrize("model_type", ["mistral", "qwen2", "qwen3", "gemma", "phi3"])
def test_other_fast_architectures_equal_batch1(model_type):
    m = _tiny(model_type)
    assert fast_path_ok(m)
    seqs = prompts(seed=8, lengths=(3, 8, 1, 5))
    deltas = make_deltas(seed=9)
    got = greedy_generate(m, seqs, max_new_tokens=8, eos=[2], pad_id=0, deltas=deltas, rows=3)
    assert got == [batch1(m, s, deltas, n=8) for s in seqs]


def test_eager_attention_takes_the_additive_mask():
    m = tiny_llama(seed=1, layers=2, heads=H, head_dim=D, vocab=VOCAB)
    m.set_attn_implementation("eager")
    assert fast_path_ok(m)
    seqs = prompts(seed=11, lengths=(4, 1, 7))
    deltas = make_deltas(seed=12)
    got = greedy_generate(m, seqs, max_new_tokens=8, eos=[2], pad_id=0, deltas=deltas, rows=2)
    assert got == [batch1(m, s, deltas, n=8) for s in seqs]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_graph_decode_equals_eager_decode(model):
    m = tiny_llama(seed=0, layers=2, heads=H, head_dim=D, vocab=VOCAB).cuda()
    seqs = prompts(seed=10)
    out = {}
    for graphs in (True, False):
        with GreedyEngine(m, seqs[0][:21], max_suffix=12, max_new_tokens=10, rows=4, eos=[2], pad_id=0,
                          deltas=make_deltas(), graphs=graphs) as eng:
            out[graphs] = [eng.run([s[21:] for s in seqs[:4]]), eng.run([s[21:] for s in seqs[4:]])]
            assert (eng.graph is not None) == graphs, eng.graph_error
    assert out[True] == out[False]
