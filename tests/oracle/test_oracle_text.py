"""CE loss and KL(original ‖ intervened) on natural text: the samples are exact 128-token windows of
the tokenised text, the kept baseline log-probs are float32, KL(original ‖ original) = 0, and
itictl's batched baseline + ce_kl equal the naive per-sample oracle (run_ce_loss / run_kl_wrt_orig)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.oracle import itictl_side as it
from tests.oracle import reference as ref

TOL = 1e-5


def _text_file(path, n_paragraphs=60, seed=0):
    """Paragraphs of common words (the tiny BPE tokenizer knows them; the word tokenizer maps
    them to <unk>), separated by blank lines, with a wikitext-style heading that is dropped."""
    from tests.evaluate.conftest import CORPUS

    words = " ".join(CORPUS).split()
    rng = np.random.default_rng(seed)
    paras = [" ".join(rng.choice(words, size=int(rng.integers(5, 60)))) for _ in range(n_paragraphs)]
    path.write_text(" = Heading = \n\n" + "\n\n".join(paras) + "\n", encoding="utf-8")
    return path


def _tiny(dtype="float32"):
    import torch

    from tests.evaluate.conftest import make_tokenizer
    from tests.helpers import tiny_llama

    tok = make_tokenizer()
    return tiny_llama(seed=2, vocab=len(tok)).to(getattr(torch, dtype)), tok


def _naive_stream(tok, path) -> list[int]:
    paras = [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n")]
    paras = [p for p in paras if p and not (p.startswith("=") and p.endswith("="))]
    return [i for p in paras for i in tok(p + "\n\n", add_special_tokens=False)["input_ids"]]


def test_samples_are_exact_windows_of_the_tokenised_text(tmp_path):
    from itictl.errors import NotFoundError
    from itictl.evaluate.natural_text import load_samples

    _, tok = _tiny()
    path = _text_file(tmp_path / "text.txt")
    stream = _naive_stream(tok, path)
    bos = tok.convert_tokens_to_ids("<s>")
    samples = load_samples(tok, path, n=6, seed=3)
    assert len(samples) == 6 and all(len(s) == 128 for s in samples)
    starts = []
    for s in samples:  # BOS (this tokenizer adds one) + 127 consecutive tokens at a window boundary
        assert s[0] == bos and bos not in s[1:]
        j = next(j for j in range(0, len(stream) - 126, 127) if stream[j:j + 127] == s[1:])
        starts.append(j)
    assert len(set(starts)) == 6
    assert load_samples(tok, path, n=6, seed=3) == samples and load_samples(tok, path, n=6, seed=4) != samples
    short = tmp_path / "short.txt"
    short.write_text("The cat sat on the mat.\n", encoding="utf-8")
    with pytest.raises(NotFoundError):
        load_samples(tok, short)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_baseline_logprobs_are_float32_and_kl_to_itself_is_zero(tmp_path, dtype):
    import torch

    model, tok = _tiny(dtype)
    from itictl.evaluate.natural_text import load_samples

    samples = load_samples(tok, _text_file(tmp_path / "t.txt"), n=10, seed=0)
    width = model.model.layers[0].self_attn.o_proj.in_features
    base, res = it.text_ce_kl(model, samples, {0: np.zeros(width, dtype=np.float32)})  # a no-op steer
    assert all(lp.dtype == torch.float32 for lp in base["logprobs"].values())
    assert res["kl"] == 0.0 and res["ce"] == pytest.approx(float(np.mean(base["ce"])), abs=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 4.0])
def test_ce_kl_equal_oracle_on_tiny_llama(tmp_path, alpha, record_diff):
    from itictl.evaluate.natural_text import load_samples

    model, tok = _tiny()
    samples = load_samples(tok, _text_file(tmp_path / "t.txt"), n=10, seed=1)
    _check(model, samples, alpha, np.random.default_rng(0).standard_normal((30, *_layout(model))),
           record_diff, f"tiny, α={alpha:g}")


def test_batch_size_changes_no_value(tmp_path):
    """The GPU's 32-sample forwards and the CPU's 8 give the same per-sample CE and KL (every sample
    has exactly n_tokens, so no row is padded)."""
    from itictl.evaluate.natural_text import BATCH_SIZE, load_samples

    model, tok = _tiny()
    samples = load_samples(tok, _text_file(tmp_path / "t.txt", n_paragraphs=200), n=40, seed=3)
    deltas = {1: np.random.default_rng(1).standard_normal(model.model.layers[0].self_attn.o_proj.in_features)}
    got = {bs: it.text_ce_kl(model, samples, deltas, batch_size=bs)[1] for bs in (BATCH_SIZE["cpu"], BATCH_SIZE["cuda"], 1)}
    for bs in (BATCH_SIZE["cuda"], 1):
        for k in ("ce_samples", "kl_samples"):
            np.testing.assert_allclose(got[bs][k], got[BATCH_SIZE["cpu"]][k], atol=TOL, rtol=0)
    assert got[1]["kl"] > 0


def test_ce_kl_equal_oracle_on_embedded_model(embedded, wikitext_path, record_diff):
    from itictl.evaluate.natural_text import load_samples

    model, tok = embedded.model, embedded.tokenizer
    samples = load_samples(tok, wikitext_path, n=3, seed=0)
    assert all(len(s) == 128 for s in samples)
    tuning = ref.collect_head_wise(model, tok, [tok.decode(s[:40]) for s in samples] + ["Q: Can pigs fly? A: No."])
    _check(model, samples, 15.0, tuning, record_diff, "embedded, α=15")


def _layout(model):
    c = model.config
    return c.num_hidden_layers, c.num_attention_heads, c.head_dim


def _check(model, samples, alpha, tuning, record_diff, label):
    from itictl.intervene.build import build_deltas

    L, H, D = tuning.shape[1:]
    rng = np.random.default_rng(5)
    val_acc, com = rng.uniform(0.4, 0.9, (L, H)), rng.standard_normal((L, H, D))
    deltas, _, _ = build_deltas(it.probes_like(val_acc, com), tuning, heads=min(12, L * H), alpha=alpha,
                                direction="com", seed=0)
    heads = ref.top_heads(val_acc, min(12, L * H))
    ivs = ref.interventions(heads, [com[l, h] for l, h in heads], tuning)
    base, res = it.text_ce_kl(model, samples, deltas if alpha else None)
    ces, kls = ref.ce_kl(model, samples, ivs if alpha else None, alpha)
    ce_diff = record_diff(f"CE ({label})", abs(res["ce"] - np.mean(ces)))
    kl_diff = record_diff(f"KL ({label})", abs(res["kl"] - np.mean(kls)))
    if alpha:
        assert np.mean(kls) > 1e-4  # the intervention moves the distribution
    else:
        assert res["kl"] == 0.0 and max(kls) < 1e-12
        record_diff(f"CE per sample, baseline ({label})", np.abs(np.asarray(base["ce"]) - ces).max())
        assert np.allclose(base["ce"], ces, atol=TOL)
    assert ce_diff < TOL and kl_diff < TOL
