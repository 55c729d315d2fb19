"""generate_answers (itictl.evaluate.generate) against the reference's one-question loop
(honest_llama's tqa_run_answers, re-implemented below): same prompts, same answers, intervention on."""

from __future__ import annotations

import math

import torch

from itictl.evaluate.generate import clean_answer, generate_answers
from itictl.evaluate.presets import generation_prompt

QUESTIONS = ["What is the cat?", "Who sat on the mat?", "What happens if you eat watermelon seeds?",
             "Is it true?", "What is human life expectancy in the United States?", "Why?", "Where is the real world?"]


def head_deltas(model, heads: int, scale: float, seed: int = 0) -> dict[int, torch.Tensor]:
    """δ_l: random unit directions times `scale` on `heads` random heads."""
    from itictl.models.arch import head_layout

    lay = head_layout(model)
    g = torch.Generator().manual_seed(seed)
    deltas: dict[int, torch.Tensor] = {}
    for p in torch.randperm(lay.n_layers * lay.n_heads, generator=g)[:heads].tolist():
        layer, head = divmod(p, lay.n_heads)
        u = torch.randn(lay.head_dim, generator=g)
        d = deltas.setdefault(layer, torch.zeros(lay.n_heads * lay.head_dim))
        d[head * lay.head_dim:(head + 1) * lay.head_dim] = scale * u / u.norm()
    return deltas


def reference_answers(model, tok, questions, deltas, instruction="default", preset="qa", n=50) -> list[str]:
    """One prompt at a time through model.generate (greedy), δ_l added to the last token of every
    forward (the last prompt token, then each generated token), answer cleaned as the reference does."""
    from itictl.models.arch import o_proj_modules

    mods = list(o_proj_modules(model))

    def hook_for(delta):
        def hook(_m, args):
            x = args[0].clone()
            x[:, -1] += delta.to(x.dtype)
            return (x, *args[1:])
        return hook

    handles = [mods[l].register_forward_pre_hook(hook_for(d)) for l, d in (deltas or {}).items()]
    out = []
    try:
        for q in questions:
            ids = tok(generation_prompt(q, instruction, preset), return_tensors="pt").input_ids
            with torch.no_grad():
                gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                                     pad_token_id=tok.pad_token_id)
            out.append(clean_answer(tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True)))
    finally:
        for h in handles:
            h.remove()
    return out


def test_answers_equal_the_reference_loop_in_batches(tiny_model, tiny_tok):
    deltas = head_deltas(tiny_model, heads=4, scale=4.0)
    stats: dict = {}
    got = generate_answers(tiny_model, tiny_tok, QUESTIONS, instruction="default", preset="qa", deltas=deltas,
                           batch_size=3, stats=stats, max_new_tokens=16)
    assert got == reference_answers(tiny_model, tiny_tok, QUESTIONS, deltas, n=16)
    assert stats["engine"] == "greedy" and stats["batches"] == math.ceil(len(QUESTIONS) / 3)
    assert stats["prefix_tokens"] > 100  # instruction + primer computed once
    plain = generate_answers(tiny_model, tiny_tok, QUESTIONS, instruction="default", preset="qa", batch_size=3,
                             max_new_tokens=16)
    assert plain == reference_answers(tiny_model, tiny_tok, QUESTIONS, None, n=16)
    assert plain != got  # the intervention changes answers (so the first equality covers its positions)


def test_other_presets_and_progress(tiny_model, tiny_tok):
    deltas = head_deltas(tiny_model, heads=3, scale=3.0, seed=1)
    done: list[int] = []
    got = generate_answers(tiny_model, tiny_tok, QUESTIONS[:5], instruction="none", preset="null", deltas=deltas,
                           progress=done.append, max_new_tokens=12)
    assert got == reference_answers(tiny_model, tiny_tok, QUESTIONS[:5], deltas, "none", "null", n=12)
    assert sum(done) == 5
    assert generate_answers(tiny_model, tiny_tok, [], instruction="none", preset="null") == []


def test_models_the_engine_does_not_serve_use_model_generate(tiny_tok):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tiny_tok), n_embd=32, n_layer=2, n_head=4,
                                       n_positions=512, bos_token_id=1, eos_token_id=2)).eval()
    deltas = head_deltas(model, heads=3, scale=4.0)
    stats: dict = {}
    got = generate_answers(model, tiny_tok, QUESTIONS[:4], instruction="none", preset="null", deltas=deltas,
                           stats=stats, max_new_tokens=10)
    assert stats["engine"] == "model.generate"
    assert got == reference_answers(model, tiny_tok, QUESTIONS[:4], deltas, "none", "null", n=10)


def test_embedded_model_answers_equal_the_reference_loop(embedded, tqa_dir):
    """The embedded model in float32 on the CPU, TruthfulQA questions with the QA primer, the
    intervention on: token-identical to one-question-at-a-time model.generate."""
    from itictl.data import load_truthfulqa

    qs = load_truthfulqa(tqa_dir).questions
    questions = [qs[i].question for i in (0, 300, 600)]
    deltas = head_deltas(embedded.model, heads=24, scale=3.0)
    stats: dict = {}
    got = generate_answers(embedded.model, embedded.tokenizer, questions, instruction="default", preset="qa",
                           deltas=deltas, batch_size=2, stats=stats, max_new_tokens=24)
    assert stats["engine"] == "greedy"
    assert got == reference_answers(embedded.model, embedded.tokenizer, questions, deltas, n=24)
    plain = generate_answers(embedded.model, embedded.tokenizer, questions, instruction="default", preset="qa",
                             max_new_tokens=24)
    assert all(got) and all(plain)  # real answers, not empty strings
    assert plain != got  # the intervention changed at least one answer
