"""Extraction: engine exactness on tiny random models (unit) and the activations artifact on the
embedded model (integration)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from itictl.extract.engine import Tokenized, count_tokens, extract_items, plan_batches, tokenize_prompts
from tests.helpers import tiny_llama


def _items(seed: int = 0, questions: int = 6):
    g = torch.Generator().manual_seed(seed)
    items = []
    for _ in range(questions):
        pre = torch.randint(3, 120, (int(torch.randint(3, 10, (1,), generator=g)),), generator=g).tolist()
        for _ in range(int(torch.randint(1, 5, (1,), generator=g))):
            suf = torch.randint(3, 120, (int(torch.randint(1, 7, (1,), generator=g)),), generator=g).tolist()
            items.append(Tokenized([1] + pre + suf, prefix_len=1 + len(pre)))
    return items


def _single(model, items, **kw):
    outs = [extract_items(model, [Tokenized(t.ids)], **kw) for t in items]
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def test_batched_and_shared_equal_single_prompt():
    model = tiny_llama(layers=3)
    items = _items()
    single = _single(model, items, layer_wise=True)
    shared = extract_items(model, items, layer_wise=True, batch_tokens=48)
    plain = extract_items(model, [Tokenized(t.ids) for t in items], layer_wise=True, batch_tokens=48)
    assert shared["head_wise"].shape == (len(items), 3, 4 * 8)  # H·D = 32, hidden is 40
    assert shared["layer_wise"].shape == (len(items), 4, 40)
    for out in (shared, plain):
        np.testing.assert_allclose(out["head_wise"], single["head_wise"], atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(out["layer_wise"], single["layer_wise"], atol=1e-5, rtol=1e-4)
    # the shared plan really shares: fewer real tokens than the unshared total
    c = count_tokens(items, plan_batches(items, range(len(items)), 48))
    assert c["real"] < c["unshared"]


def test_matches_hf_hidden_states_and_o_proj_input():
    model = tiny_llama(layers=2)
    ids = [1, 5, 9, 33, 7, 80]
    got = extract_items(model, [Tokenized(ids)], layer_wise=True)
    seen = {}
    hooks = [layer.self_attn.o_proj.register_forward_pre_hook(
        lambda m, a, i=i: seen.__setitem__(i, a[0][0, -1].clone())) for i, layer in enumerate(model.model.layers)]
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    for h in hooks:
        h.remove()
    ref_resid = torch.stack([h[0, -1] for h in out.hidden_states]).numpy()
    ref_head = torch.stack([seen[0], seen[1]]).numpy()
    np.testing.assert_allclose(got["layer_wise"][0], ref_resid, atol=1e-6)
    np.testing.assert_allclose(got["head_wise"][0], ref_head, atol=1e-6)


def test_bfloat16_batched_within_dtype_tolerance():
    model = tiny_llama(layers=2).to(torch.bfloat16)
    items = _items(seed=1, questions=4)
    single = _single(model, items)
    shared = extract_items(model, items, batch_tokens=40)
    np.testing.assert_allclose(shared["head_wise"], single["head_wise"], atol=3e-2, rtol=3e-2)


def test_plan_respects_budget_and_covers_everything():
    items = _items(seed=2, questions=12) + [Tokenized(list(range(3, 3 + n))) for n in (4, 9, 2, 15)]
    todo = [i for i in range(len(items)) if i % 5]
    R = max(len(items[i].ids) for i in todo)
    batches = plan_batches(items, todo, 3 * R, row_tokens=R)
    rows = sorted(r for b in batches for r in b.rows)
    assert rows == sorted(todo)
    assert plan_batches(items, todo, 3 * R, row_tokens=R) == batches  # deterministic
    for b in batches:
        assert b.packed and len(b.outs) == len(b.rows)
        fills = [sum(b.units[u].length for u in row) for row in b.layout]
        assert len(fills) == 1 or len(fills) * max(fills) <= 3 * R
        for row, f in zip(b.layout, fills):
            assert len(row) == 1 or f <= R
        assert sorted(u for row in b.layout for u in row) == list(range(len(b.units)))
        for i, (u, s) in zip(b.rows, b.outs):  # each prompt = its segment's ancestors + itself
            unit, chain = b.units[u], []
            while s >= 0:
                chain.insert(0, unit.segs[s])
                s = unit.parents[s]
            assert sum(chain, []) == items[i].ids
    # shared prefixes are computed once per unit: fewer real tokens than the prompts hold
    c = count_tokens(items, batches)
    assert c["real"] < c["unshared"] and c["padded"] >= c["real"]
    plain = plan_batches(items, todo, 30, packed=False)
    assert sorted(r for b in plain for r in b.rows) == sorted(todo)
    for b in plain:
        assert not b.packed
        assert len(b.rows) == 1 or len(b.rows) * max(len(items[i].ids) for i in b.rows) <= 30


def test_eager_attention_packed_equals_single():
    model = tiny_llama(layers=2)
    model.config._attn_implementation = "eager"
    items = _items(seed=3, questions=5)
    single = _single(model, items, layer_wise=True)
    packed = extract_items(model, items, layer_wise=True, batch_tokens=64)
    np.testing.assert_allclose(packed["head_wise"], single["head_wise"], atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(packed["layer_wise"], single["layer_wise"], atol=1e-5, rtol=1e-4)


def test_models_without_tree_masks_get_plain_budgeted_batches(monkeypatch):
    """An attention implementation that cannot take a 4D mask (flash-attention-2, say) is planned
    without packing: every forward stays within its padded-token budget, results are unchanged."""
    import itictl.compute.packing as packing
    import itictl.extract.engine as engine

    model = tiny_llama(layers=2)
    items = _items(seed=5, questions=6)
    packed = extract_items(model, items, layer_wise=True, batch_tokens=40)
    monkeypatch.setattr(packing, "TREE_MASK_ATTN", ())  # the model now "cannot" take a tree mask
    seen = []
    real_run = engine.run_batches

    def run(model, items, batches, **kw):
        seen.extend(batches)
        return real_run(model, items, batches, **kw)

    monkeypatch.setattr(engine, "run_batches", run)
    plain = extract_items(model, items, layer_wise=True, batch_tokens=40)
    assert seen and not any(b.packed for b in seen)
    assert all(len(b.rows) == 1 or len(b.rows) * max(len(items[i].ids) for i in b.rows) <= 40 for b in seen)
    np.testing.assert_allclose(plain["head_wise"], packed["head_wise"], atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(plain["layer_wise"], packed["layer_wise"], atol=1e-5, rtol=1e-4)


def _bpe_tokenizer():
    from tokenizers import Tokenizer
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(["<s>", "a", "b", "c", "d", "bc", "ab", "cd"])}
    # merge order: b+c before a+b, so "abc" -> [a, bc] while the prefix "ab" -> [ab]
    tk = Tokenizer(BPE(vocab=vocab, merges=[("b", "c"), ("a", "b"), ("c", "d")]))
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>")


def test_tokenize_matches_plain_call_and_shares_only_on_token_boundary():
    tok = _bpe_tokenizer()
    texts = ["abc", "abdd", "abcd"]
    items = tokenize_prompts(tok, texts, ["ab", "ab", "ab"])
    assert [t.ids for t in items] == [tok(t).input_ids for t in texts]
    assert [t.prefix_len for t in items] == [0, 1, 0]  # BPE merges across the boundary -> no sharing
    assert tokenize_prompts(tok, texts, ["ab"] * 3, share=False)[1].prefix_len == 0


# ---- the HDF5 payload and resuming (tiny model, hand-made prompts) ------------------------------

from collections import namedtuple  # noqa: E402

P = namedtuple("P", "text prefix label question_index answer_index category")
WORDS = ["<pad>", "<s>", "Q", "A", ":", "?"] + [f"w{i}" for i in range(60)]


def _word_tokenizer():
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", pad_token="<pad>")


def _prompts(n_q=7, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for q in range(n_q):
        question = " ".join(f"w{i}" for i in rng.integers(0, 60, rng.integers(2, 8))) + " ?"
        prefix = f"Q: {question} A:"
        for a in range(int(rng.integers(1, 5))):
            ans = " ".join(f"w{i}" for i in rng.integers(0, 60, rng.integers(1, 5)))
            out.append(P(f"{prefix} {ans}", prefix, int(a == 0), q, a, f"cat{q % 2}"))
    return out


def _run(tmp_path, name, prompts, **kw):
    from itictl.extract import extract_to_h5

    model = tiny_llama(layers=3, vocab=len(WORDS))
    args = dict(fmt="tqa_mc2", model_key="m" * 64, dtype="float32", layer_wise=True, store_dtype="float32",
                batch_tokens=40, device="cpu")
    args.update(kw)
    h5 = tmp_path / f"{name}.h5"
    meta = extract_to_h5(model, _word_tokenizer(), prompts, h5, tmp_path / f"{name}.work", **args)
    return h5, meta


def test_h5_layout_and_reader(tmp_path):
    from itictl.extract import open_activations_file

    prompts = _prompts()
    h5, meta = _run(tmp_path, "a", prompts)
    assert meta["prefix_shared_prompts"] > 0 and meta["tokens_real"] < meta["tokens_unshared"]
    with open_activations_file(h5) as acts:
        n = len(prompts)
        assert acts.head_wise.shape == (n, 3, 32) and acts.layer_wise.shape == (n, 4, 40)
        assert (acts.L, acts.H, acts.D, acts.format) == (3, 4, 8, "tqa_mc2")
        assert acts.head_wise.chunks[1] == 1  # one layer per chunk: a layer reads contiguously
        assert list(acts.label) == [p.label for p in prompts]
        assert list(acts.question_index) == [p.question_index for p in prompts]
        assert list(acts.answer_index) == [p.answer_index for p in prompts]
        assert list(acts.category) == [p.category for p in prompts]
        tok = _word_tokenizer()
        assert list(acts.n_tokens) == [len(tok(p.text).input_ids) for p in prompts]
        assert acts.heads(1).shape == (n, 4, 8)
        np.testing.assert_array_equal(acts.head(2, 3), acts.layer(2)[:, 24:32])
        # rows are in prompt order: row i equals prompt i run alone
        model = tiny_llama(layers=3, vocab=len(WORDS))
        for i in (0, n // 2, n - 1):
            alone = extract_items(model, [Tokenized(tok(prompts[i].text).input_ids)], layer_wise=True)
            np.testing.assert_allclose(acts.layer(1)[i], alone["head_wise"][0, 1], atol=1e-5, rtol=1e-4)
            np.testing.assert_allclose(acts.layer_wise[i], alone["layer_wise"][0], atol=1e-5, rtol=1e-4)


def test_float16_storage(tmp_path):
    from itictl.extract import open_activations_file

    h5, _ = _run(tmp_path, "h", _prompts(n_q=3), store_dtype="float16", layer_wise=False)
    with open_activations_file(h5) as acts:
        assert acts.head_wise.dtype == np.float16 and acts.layer_wise is None


def test_killed_run_resumes_from_last_complete_chunk(tmp_path, monkeypatch):
    import itictl.extract.chunks as ex
    from itictl import hooks
    from itictl.extract import open_activations_file

    prompts = _prompts(n_q=10, seed=3)
    ref_h5, _ = _run(tmp_path, "ref", prompts)
    monkeypatch.setattr(ex, "CHUNK_PROMPTS", 4)
    saved = []

    def killed_after_first_chunk(path, **_):
        saved.append(path)
        raise KeyboardInterrupt  # Ctrl-C right after the first chunk was committed

    remove = hooks.register("extract.chunk_saved", killed_after_first_chunk)
    try:
        with pytest.raises(KeyboardInterrupt):
            _run(tmp_path, "b", prompts, batch_tokens=16)
    finally:
        remove()
    assert list((tmp_path / "b.work").glob("chunk_*")) == saved and len(saved) == 1
    h5, meta = _run(tmp_path, "b", prompts, batch_tokens=64)  # another batch size may resume too
    assert meta["resumed_prompts"] >= 4 and meta["resumed_prompts"] + meta["computed_prompts"] == len(prompts)
    with open_activations_file(h5) as a, open_activations_file(ref_h5) as r:
        np.testing.assert_allclose(a.head_wise[...], r.head_wise[...], atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(a.layer_wise[...], r.layer_wise[...], atol=1e-5, rtol=1e-4)


# ---- integration: the embedded model and real TruthfulQA prompts -------------------------------

def _tqa_prompts(tqa_dir, fmt="tqa_mc2", n=24):
    from itictl.data import build_prompts, load_truthfulqa

    return build_prompts(load_truthfulqa(tqa_dir), fmt)[:n]


def test_chunk_folders_are_whole_or_absent(tmp_path):
    """A chunk is written block by block as one .npy per array and renamed into place: the parts
    read back as their concatenation; a truncated array, a half-written partial_N folder and a
    chunk from another plan are dropped (their prompts are redone)."""
    import itictl.extract.chunks as ex

    plan = {"n": 9, "layer_wise": True}
    ex.load_done(tmp_path, plan)
    rng = np.random.default_rng(0)
    heads = [rng.standard_normal((n, 2, 6)).astype(np.float16) for n in (3, 2)]
    resids = [rng.standard_normal((n, 3, 4)).astype(np.float16) for n in (3, 2)]
    idx = [np.array([4, 0, 7]), np.array([2, 8])]
    first = ex.save_chunk(tmp_path, 0, idx, heads, resids)
    assert first.name == "chunk_000000" and not list(tmp_path.glob("partial_*"))
    np.testing.assert_array_equal(np.load(first / "head.npy"), np.concatenate(heads))
    np.testing.assert_array_equal(np.load(first / "resid.npy"), np.concatenate(resids))
    second = ex.save_chunk(tmp_path, 1, [np.array([1])], [heads[0][:1]], [resids[0][:1]])
    (tmp_path / "partial_000002").mkdir()  # killed while writing chunk 2
    assert ex.load_done(tmp_path, plan)["done"] == {4, 0, 7, 2, 8, 1}
    assert not (tmp_path / "partial_000002").exists()

    with open(second / "resid.npy", "r+b") as f:  # a short file: rows missing
        f.truncate(f.seek(0, 2) - 8)
    state = ex.load_done(tmp_path, plan)
    assert state["done"] == {4, 0, 7, 2, 8} and not second.exists() and state["files"] == [first]
    assert ex.load_done(tmp_path, plan | {"n": 10})["done"] == set() and not first.exists()


def test_embedded_batched_shared_equal_single(embedded, tqa_dir):
    from itictl.extract.engine import extract_arrays

    prompts = _tqa_prompts(tqa_dir, n=16)
    texts, prefixes = [p.text for p in prompts], [p.prefix for p in prompts]
    tok = embedded.tokenizer
    items = tokenize_prompts(tok, texts, prefixes)
    assert sum(1 for t in items if t.prefix_len) >= len(items) // 2  # sharing really happens here
    assert [t.ids for t in items] == [tok(t).input_ids for t in texts]
    shared = extract_arrays(embedded.model, tok, texts, prefixes, layer_wise=True, batch_tokens=256)
    plain = extract_arrays(embedded.model, tok, texts, prefixes, layer_wise=True, batch_tokens=256, share=False)
    single = _single(embedded.model, [Tokenized(t.ids) for t in items], layer_wise=True)
    assert shared["head_wise"].shape == (16, 30, 576) and shared["layer_wise"].shape == (16, 31, 576)
    for out in (shared, plain):
        np.testing.assert_allclose(out["head_wise"], single["head_wise"], atol=2e-4, rtol=1e-3)
        np.testing.assert_allclose(out["layer_wise"], single["layer_wise"], atol=2e-3, rtol=1e-3)


def test_run_extract_limit_rows_cache_and_reuse(session_store, embedded, tqa_dir, monkeypatch):
    import time

    import itictl.models as models
    from itictl.extract import open_activations, run_extract

    kw = dict(layer_wise=False, dtype="float32", device="cpu", batch_tokens=512, seed=5, store_dtype="auto")
    small, cached = run_extract(session_store, None, "tqa_mc2", tqa_dir, limit=9, **kw)
    big, _ = run_extract(session_store, None, "tqa_mc2", tqa_dir, limit=20, **kw)
    assert small.key != big.key and small.params["seed"] is None and small.params["dtype"] == "float32"
    assert set(small.parents) == {"model", "dataset"}
    with open_activations(small) as a, open_activations(big) as b:
        assert a.head_wise.shape == (9, 30, 576) and b.head_wise.shape == (20, 30, 576)
        assert a.head_wise.dtype == np.float32 and (a.L, a.H, a.D) == (30, 9, 64)
        np.testing.assert_allclose(a.head_wise[...], b.head_wise[:9], atol=2e-4, rtol=1e-3)
        np.testing.assert_array_equal(a.question_index, b.question_index[:9])
        np.testing.assert_array_equal(a.label, [p.label for p in _tqa_prompts(tqa_dir, n=9)])

    def no_load(*a, **k):
        raise AssertionError("the model must not be loaded for a cached extract")

    monkeypatch.setattr(models, "load_model", no_load)
    t = time.time()
    again, cached = run_extract(session_store, None, "tqa_mc2", tqa_dir, limit=9,
                                **{**kw, "batch_tokens": 64, "seed": 1})  # neither is part of the key
    assert cached and again.key == small.key and time.time() - t < 2.0
    off, cached = run_extract(session_store, None, "tqa_mc2", tqa_dir, limit=9, **kw, fuse="off")
    assert cached and off.key == small.key  # off is the default: no `fuse` in the key

    from itictl.extract.step import _key_inputs

    ks = dict(limit=9, layer_wise=False, dtype="float32", device="cpu", seed=5, store_dtype="auto", out=None, revision=None)
    p_off, m, d = _key_inputs(session_store, None, "tqa_mc2", tqa_dir, **ks)
    p_compile, _, _ = _key_inputs(session_store, None, "tqa_mc2", tqa_dir, **ks, fuse="compile")
    assert "fuse" not in p_off and p_compile == {**p_off, "fuse": "compile"}  # compiled fp16 layers differ more than
    parents = {"model": m.key, "dataset": d.key}  # the tolerance that keeps batch size and device out of the key
    assert session_store.key_for("activations", p_off, parents, step_version=1) == small.key
    assert session_store.key_for("activations", p_compile, parents, step_version=1) != small.key


def test_cli_extract_json_and_errors(cli, tqa_dir, session_store, monkeypatch):
    import os

    monkeypatch.setenv("ITICTL_HOME", str(session_store.root))
    r = cli("extract", "--dataset", "tqa_mc2,tqa_gen_end_q", "--limit", "3", "--data", str(tqa_dir),
            "--device", "cpu", "--seed", "2", "--layer-wise", "--json")
    assert r.code == 0, r.stderr
    docs = r.json()
    assert [d["format"] for d in docs] == ["tqa_mc2", "tqa_gen_end_q"]
    for d in docs:
        assert d["kind"] == "activations" and os.path.isdir(d["path"])
        assert d["shapes"] == {"head_wise": [3, 30, 576], "layer_wise": [3, 31, 576]}
    assert session_store.get(docs[1]["key"]).params["seed"] == 2
    bad = cli("extract", "--dataset", "tqa_nope", "--data", str(tqa_dir), "--json")
    assert bad.code == 4 and bad.stdout == "" and "tqa_nope" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert cli("extract", "--limit", "0").code == 2


@pytest.mark.parametrize("mt", ["gpt2", "gpt_neox", "opt", "qwen3", "gemma2", "phi3"])
def test_other_architectures_shared_equal_single(mt):
    from transformers import AutoModelForCausalLM

    from tests.models.test_arch import _config

    cfg, (L, H, D) = _config(mt)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    items = [Tokenized([min(i, 60) for i in t.ids], t.prefix_len) for t in _items(seed=4, questions=4)]
    single = _single(model, items, layer_wise=True)
    shared = extract_items(model, items, layer_wise=True, batch_tokens=40)
    assert shared["head_wise"].shape == (len(items), L, H * D)
    np.testing.assert_allclose(shared["head_wise"], single["head_wise"], atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(shared["layer_wise"], single["layer_wise"], atol=1e-4, rtol=1e-4)
