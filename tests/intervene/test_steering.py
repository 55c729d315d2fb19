"""Live interventions (itictl.intervene.steering) on tiny random Llamas: positions, batching, KV cache, dtype."""

from __future__ import annotations

import pytest
import torch

from itictl.errors import BadInputError
from itictl.intervene.steering import AnswerPositions, TokenMask, intervened, o_proj_list
from tests.helpers import tiny_llama

H, D = 4, 8


@pytest.fixture(scope="module")
def model():
    return tiny_llama(seed=0, layers=2, heads=H, head_dim=D).double()


def make_deltas(scale: float = 3.0, seed: int = 1) -> dict[int, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {0: scale * torch.randn(H * D, generator=g), 1: scale * torch.randn(H * D, generator=g)}


def token_logprobs(model, ids, attn=None):
    """log p(ids[:, t] | ids[:, :t]) for t ≥ 1 -> [B, T-1]."""
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attn).logits
    lp = torch.log_softmax(logits[:, :-1], dim=-1)
    return lp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)


def test_answer_positions_change_answer_tokens_only_in_every_row(model):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 128, (3, 12), generator=g)
    start = torch.tensor([5, 7, 9])  # first answer token of each row
    base = token_logprobs(model, ids)
    with intervened(model, make_deltas(), AnswerPositions(start)):
        steered = token_logprobs(model, ids)
    for b in range(3):
        s = int(start[b])
        # lp[:, t-1] scores token t from positions < t; tokens up to s (inclusive) see only prompt positions
        assert torch.allclose(base[b, : s], steered[b, : s], atol=1e-10), f"row {b}: prompt scores moved"
        assert (base[b, s:] - steered[b, s:]).abs().min() > 1e-6, f"row {b}: some answer token unchanged"


def test_token_mask_edits_exactly_the_marked_tokens(model):
    # two disjoint spans in one row (packed scoring) and none in the other: layer 1's o_proj output
    # (seen after the steering pre-hook) changes exactly at the marked tokens
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(3, 128, (2, 10), generator=g)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[0, 2:4] = True
    mask[0, 7:9] = True
    mod = o_proj_list(model)[1]
    outs: list[torch.Tensor] = []
    h = mod.register_forward_hook(lambda m, a, o: outs.append(o.detach().clone()))
    try:
        with torch.no_grad():
            model(input_ids=ids)
            with intervened(model, {1: make_deltas()[1]}, TokenMask(mask)):
                model(input_ids=ids)
    finally:
        h.remove()
    changed = (outs[1] - outs[0]).abs().amax(-1) > 1e-9
    assert torch.equal(changed, mask)


def test_answer_positions_end_bounds_the_edit(model):
    ids = torch.randint(3, 128, (1, 10), generator=torch.Generator().manual_seed(3))
    deltas = make_deltas()
    outs = {}
    for name, pos in {"s4e6": AnswerPositions(torch.tensor([4]), torch.tensor([6])),
                      "all": "all"}.items():
        with intervened(model, deltas, pos), torch.no_grad():
            outs[name] = model(input_ids=ids, output_hidden_states=True).hidden_states[1]  # after layer 0
    with torch.no_grad():
        base = model(input_ids=ids, output_hidden_states=True).hidden_states[1]
    diff = (outs["s4e6"] - base).abs().amax(-1)[0]  # [T]: layer 0 output only mixes positions via attention
    assert diff[:4].max() < 1e-10
    assert diff[4:6].min() > 1e-6
    assert diff[6:].max() < 1e-10  # layer 0's own edit stops at end; positions 6+ are not edited
    assert (outs["all"] - base).abs().amax(-1)[0].min() > 1e-6


def test_all_positions_equal_adding_w_o_delta_to_o_proj_bias(model):
    import copy

    deltas = make_deltas()
    ids = torch.randint(3, 128, (2, 9), generator=torch.Generator().manual_seed(5))
    with intervened(model, deltas, "all"), torch.no_grad():
        live = model(input_ids=ids).logits
    baked = copy.deepcopy(model)
    for layer, d in deltas.items():
        lin = o_proj_list(baked)[layer]
        extra = lin.weight.detach() @ d.to(lin.weight.dtype)  # [hidden]
        lin.bias = torch.nn.Parameter(extra if lin.bias is None else lin.bias.detach() + extra)
    with torch.no_grad():
        baked_logits = baked(input_ids=ids).logits
        plain = model(input_ids=ids).logits
    assert torch.allclose(live, baked_logits, atol=1e-9)
    assert not torch.allclose(live, plain, atol=1e-3)


def _generate(model, ids, attn, deltas, use_cache, n=6):
    with intervened(model, deltas, "generated"), torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=attn, max_new_tokens=n, do_sample=False,
                             use_cache=use_cache, pad_token_id=0)
    return out[:, ids.shape[1]:]


def _left_pad(rows):
    T = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), T, dtype=torch.long)
    attn = torch.zeros(len(rows), T, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, T - len(r):] = torch.tensor(r)
        attn[i, T - len(r):] = 1
    return ids, attn


def test_generation_batched_equals_unbatched_and_cache_equals_no_cache(model):
    g = torch.Generator().manual_seed(7)
    rows = [torch.randint(3, 128, (n,), generator=g).tolist() for n in (5, 9, 7)]
    deltas = make_deltas(scale=4.0)
    ids, attn = _left_pad(rows)
    batched = _generate(model, ids, attn, deltas, use_cache=True)
    no_cache = _generate(model, ids, attn, deltas, use_cache=False)
    assert torch.equal(batched, no_cache)
    for i, r in enumerate(rows):
        single = _generate(model, torch.tensor([r]), torch.ones(1, len(r), dtype=torch.long), deltas, True)
        assert torch.equal(single[0], batched[i]), f"row {i} differs batched vs alone"
    # the intervention matters for these tokens (otherwise the equalities above prove nothing)
    with torch.no_grad():
        plain = model.generate(input_ids=ids, attention_mask=attn, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert not torch.equal(plain[:, ids.shape[1]:], batched)


def test_generated_positions_leave_earlier_prompt_tokens_untouched(model):
    # One prompt pass: only the last real token of each row is edited (left and right padding).
    deltas = make_deltas()
    g = torch.Generator().manual_seed(9)
    rows = [torch.randint(3, 128, (n,), generator=g).tolist() for n in (4, 7)]
    for side in ("left", "right"):
        T = 7
        ids = torch.zeros(2, T, dtype=torch.long)
        attn = torch.zeros(2, T, dtype=torch.long)
        for i, r in enumerate(rows):
            sl = slice(T - len(r), T) if side == "left" else slice(0, len(r))
            ids[i, sl] = torch.tensor(r)
            attn[i, sl] = 1
        with torch.no_grad():
            base = model(input_ids=ids, attention_mask=attn).logits
        with intervened(model, deltas, "generated"), torch.no_grad():
            st = model(input_ids=ids, attention_mask=attn).logits
        changed = (st - base).abs().amax(-1) > 1e-8  # [B, T]
        for i, r in enumerate(rows):
            last = T - 1 if side == "left" else len(r) - 1
            assert changed[i, last], f"{side}: last prompt token of row {i} not edited"
            real = attn[i].bool().clone()
            real[last] = False
            assert not changed[i][real].any(), f"{side}: an earlier prompt token of row {i} changed"


def test_deltas_cast_to_module_dtype():
    m = tiny_llama(seed=2).to(torch.bfloat16)
    ids = torch.randint(3, 128, (1, 6), generator=torch.Generator().manual_seed(0))
    with intervened(m, {1: torch.randn(H * D, dtype=torch.float32) * 5}, "all"), torch.no_grad():
        out = m(input_ids=ids).logits
    assert out.dtype == torch.bfloat16
    with torch.no_grad():
        assert not torch.equal(out, m(input_ids=ids).logits)


def test_hooks_removed_and_bad_deltas_rejected(model):
    ids = torch.randint(3, 128, (1, 6), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(input_ids=ids).logits
        with intervened(model, make_deltas(), "all"):
            pass
        assert torch.equal(before, model(input_ids=ids).logits)
    with pytest.raises(BadInputError):
        with intervened(model, {5: torch.zeros(H * D)}):
            pass
    with pytest.raises(BadInputError):
        with intervened(model, {0: torch.zeros(H * D + 1)}):
            pass
    with pytest.raises(BadInputError):
        with intervened(model, {0: torch.zeros(H * D)}, "prompt"):
            pass


def test_steered_generate_engine_equals_model_generate(model):
    from itictl.intervene.steering import steered_generate
    from tests.models.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    m = tiny_llama(seed=0, layers=2, heads=H, head_dim=D)  # vocab 128 = the tiny tokenizer's
    texts = ["w5 w6 w7 w8 w9 w10 w11", "w5 w6 w7 w40", "w5 w6 w7 w8 w9 w60 w61 w62 w63"]
    for deltas in (None, make_deltas(scale=4.0)):
        fast = steered_generate(m, tok, texts, deltas, max_new_tokens=8)
        assert fast == steered_generate(m, tok, texts, deltas, max_new_tokens=8, fast=False)
    assert fast != steered_generate(m, tok, texts, None, max_new_tokens=8)
