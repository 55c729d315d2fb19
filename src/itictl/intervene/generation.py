"""Fast greedy decoding with a live intervention: the engine behind eval's answers and `itictl intervene`.

Owns `GreedyEngine` (one model, one intervention, a fixed number of rows: a shared prompt prefix
computed once, a static KV cache (compute.slot_cache), one prefill per batch, decode steps replayed
from a CUDA graph when the model sits on one GPU), `greedy_generate` (token ids in, token ids out,
any number of prompts), `shared_prefix_len`, `rows_for` (batch size from free device memory),
`eos_ids` and `fast_path_ok` (which models the engine serves; others keep model.generate).

Layout of one batch (R rows, P shared prefix tokens, S = the batch's longest suffix; columns are
cache slots, the same for every row):
  [0, P)          the prefix: computed once (batch 1, no intervention), copied into every row
  [P, P+S)        each row's suffix, left padded (pads first, its last token at slot P+S-1)
  [P+S, P+S+n)    generated tokens, one slot per step
Position ids count real tokens only (a suffix starts at position P); the 4D mask lets a token see
the real slots up to its own (a pad sees the prefix and itself, so no attention row is empty). Each
row therefore computes what it would alone, and the output equals batch-1 greedy decoding
(model.generate, do_sample=False) up to floating-point summation order (token-identical in float32
on the CPU in the tests). The intervention (positions='generated') is a steering TokenMask: the
last suffix column in the prefill and every decode token; never a pad or a prefix token.
A sequence ends at its first EOS (kept, as model.generate keeps it); a batch stops once every row
has ended or after max_new_tokens.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from itictl.intervene.steering import TokenMask, intervened

# model types whose decoders take a custom 4D mask, explicit position ids and a Cache object (and
# tested here); others keep model.generate
FAST_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "phi3")
CPU_ROWS = 32  # rows per batch on the CPU (no memory signal worth sizing from)
MAX_ROWS = 1024
MEMORY_SHARE = 0.7  # of the free device memory the cache and activations may take
# generation_config fields that make model.generate's greedy search differ from a plain argmax
_PROCESSORS = {"repetition_penalty": (None, 1.0), "no_repeat_ngram_size": (None, 0), "min_length": (None, 0),
               "min_new_tokens": (None, 0), "bad_words_ids": (None,), "suppress_tokens": (None,),
               "begin_suppress_tokens": (None,), "forced_bos_token_id": (None,), "forced_eos_token_id": (None,),
               "sequence_bias": (None,), "encoder_repetition_penalty": (None, 1.0),
               "exponential_decay_length_penalty": (None,)}


def fast_path_ok(model, max_len: int | None = None) -> bool:
    """True when GreedyEngine reproduces model.generate's greedy search for this model."""
    from itictl.compute.packing import supports_tree_masks

    cfg = model.config
    if getattr(cfg, "model_type", None) not in FAST_TYPES or not supports_tree_masks(model):
        return False
    window = getattr(cfg, "sliding_window", None)
    if window and max_len and max_len > int(window):  # the engine's mask is full attention
        return False
    gc = getattr(model, "generation_config", None)
    return all(getattr(gc, k, None) in ok for k, ok in _PROCESSORS.items())


def eos_ids(model, tokenizer) -> list[int]:
    """The ids that end a sequence: the generation config's, else the tokenizer's."""
    e = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if e is None:
        e = getattr(tokenizer, "eos_token_id", None)
    if e is None:
        return []
    return [int(x) for x in (e if isinstance(e, (list, tuple)) else [e])]


def shared_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    """Longest common token prefix of all sequences, leaving each at least one token of its own."""
    if not seqs:
        return 0
    first, n = seqs[0], min(len(s) for s in seqs) - 1
    for s in seqs[1:]:
        i = 0
        while i < n and s[i] == first[i]:
            i += 1
        n = i
    return max(n, 0)


def rows_for(model, n: int, max_len: int, max_suffix: int) -> int:
    """Rows per batch: what fits in MEMORY_SHARE of the free memory of the model's GPUs (KV cache
    of max_len tokens + a prefill of max_suffix tokens per row), CPU_ROWS on the CPU; then evened
    out so the batches are equal (the last one is not mostly padding)."""
    from itictl.compute.slot_cache import kv_bytes_per_token

    devs = {p.device for p in model.parameters() if p.device.type == "cuda"}
    if not devs:
        rows = CPU_ROWS
    else:
        elt = next(model.parameters()).element_size()
        cfg = model.config
        width = 4 * cfg.hidden_size + 3 * getattr(cfg, "intermediate_size", 4 * cfg.hidden_size)
        per_row = kv_bytes_per_token(cfg, elt) * max_len + max_suffix * width * elt + 8 * cfg.vocab_size
        free = min(torch.cuda.mem_get_info(d)[0] for d in devs)
        rows = max(1, min(MAX_ROWS, int(free * MEMORY_SHARE // per_row)))
    rows = max(1, min(rows, n))
    return math.ceil(n / math.ceil(n / rows))


def _graphs_possible(model, device: str) -> bool:
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return False
    devs = {p.device for p in model.parameters()} | {b.device for b in model.buffers()}
    return len(devs) == 1 and not getattr(model, "hf_device_map", None)


class _Buffers:
    """The decode state, static in memory (a CUDA graph replays reads and writes of these)."""

    def __init__(self, rows: int, max_len: int, n_new: int, mask_dtype, device: str):
        long = {"dtype": torch.long, "device": device}
        self.ids = torch.zeros(rows, 1, **long)      # [R, 1] the token each row feeds next
        self.pos = torch.zeros(rows, 1, **long)      # [R, 1] its position id
        self.slot = torch.zeros(1, **long)           # [1] its cache column (shared by the rows)
        self.t = torch.zeros(1, **long)              # [1] its index among the generated tokens
        self.out = torch.zeros(rows, n_new, **long)  # [R, n] generated tokens
        self.done = torch.zeros(rows, dtype=torch.bool, device=device)  # [R] row has emitted EOS
        self.mask = torch.zeros(rows, 1, 1, max_len, dtype=mask_dtype, device=device)  # [R, 1, 1, M]

    def state(self) -> dict[str, Tensor]:
        return {k: v for k, v in vars(self).items() if isinstance(v, Tensor)}


class GreedyEngine:
    """Greedy continuations of suffixes that follow one shared prefix, `rows` at a time.

    with GreedyEngine(model, prefix_ids, max_suffix=…, max_new_tokens=…, rows=…, eos=…, pad_id=…,
                      deltas=…) as eng:
        eng.run(list_of_suffix_ids) -> list of generated ids (≤ rows suffixes per call)
    graphs: None = a CUDA graph for decode steps when the model is on one GPU; False = never.
    """

    def __init__(self, model, prefix: Sequence[int], *, max_suffix: int, max_new_tokens: int, rows: int,
                 eos: Sequence[int], pad_id: int, deltas: Mapping[int, Tensor] | None = None,
                 graphs: bool | None = None):
        from itictl.compute.packing import mask_dtype_for
        from itictl.compute.slot_cache import cache_kwarg
        from itictl.models.devices import input_device

        self.model, self.prefix, self.rows = model, list(prefix), rows
        self.P, self.n_new = len(self.prefix), max_new_tokens
        self.max_len = self.P + max_suffix + max_new_tokens
        self.dev = input_device(model)
        self.pad_id, self.kw = int(pad_id), cache_kwarg(model)
        self.eos = torch.tensor(sorted(set(eos)) or [-1], dtype=torch.long, device=self.dev)
        self.deltas = dict(deltas) if deltas else None
        self.mask_dtype = mask_dtype_for(model)
        self.use_graphs = _graphs_possible(model, self.dev) if graphs is None else bool(graphs)
        self.graph = None
        self.graph_error: str | None = None
        self.buf = _Buffers(rows, self.max_len, max_new_tokens, self.mask_dtype, self.dev)
        # decode steps edit every row's token; a CUDA graph reads this very tensor, so it is kept
        self.every_row = torch.ones(rows, 1, dtype=torch.bool, device=self.dev)  # [R, 1]
        self.steer = TokenMask(self.every_row)
        self.cache = None
        self._stack = contextlib.ExitStack()

    # ---- lifetime -------------------------------------------------------------------------------
    def __enter__(self) -> GreedyEngine:
        from itictl.compute.slot_cache import SlotCache

        pre = self._prefix_cache() if self.P else None  # before the hooks: the prefix is never edited
        self.cache = SlotCache(self.model.config, self.max_len, self.rows, prefix=pre)
        if self.deltas:  # the hooks (and the δ tensors they hold) live as long as the graph
            self._stack.enter_context(intervened(self.model, self.deltas, self.steer))
        return self

    def __exit__(self, *exc) -> None:
        self.graph = None
        self.cache = None
        self._stack.close()

    def _forward(self, ids: Tensor, pos: Tensor, mask: Tensor, cache) -> Tensor:
        out = self.model(input_ids=ids, position_ids=pos, attention_mask=mask, use_cache=True,
                         logits_to_keep=1, **{self.kw: cache})
        return out.logits[:, -1]  # [R, V]

    def _prefix_cache(self):
        from itictl.compute.slot_cache import SlotCache

        P = self.P
        cache = SlotCache(self.model.config, P, 1)
        cache.slots = torch.arange(P, device=self.dev)
        causal = torch.ones(P, P, dtype=torch.bool, device=self.dev).tril_()
        with torch.no_grad():
            self._forward(torch.tensor([self.prefix], device=self.dev), torch.arange(P, device=self.dev)[None],
                          self._as_mask(causal[None, None]), cache)
        return cache

    def _as_mask(self, allowed: Tensor) -> Tensor:
        """A bool 'may attend' mask in the model's mask format (bool for sdpa, additive for eager)."""
        if self.mask_dtype == torch.bool:
            return allowed
        return torch.zeros(allowed.shape, dtype=self.mask_dtype, device=allowed.device).masked_fill_(
            ~allowed, torch.finfo(self.mask_dtype).min)

    # ---- one batch ------------------------------------------------------------------------------
    @torch.no_grad()
    def run(self, suffixes: Sequence[Sequence[int]]) -> list[list[int]]:
        """Greedy continuations (≤ max_new_tokens ids each, ending at the first EOS) of ≤ rows suffixes."""
        if self.cache is None:
            raise RuntimeError("GreedyEngine.run outside its `with` block")
        n = len(suffixes)
        if not 0 < n <= self.rows:
            raise ValueError(f"GreedyEngine.run takes 1..{self.rows} suffixes, got {n}")
        if self.n_new < 1:
            return [[] for _ in range(n)]
        self._prefill(suffixes)
        if self.use_graphs and self.graph is None and self.graph_error is None:
            self._capture()
        steps = 1
        while steps < self.n_new and not bool(self.buf.done.all()):
            if self.graph is not None:
                self.graph.replay()
            else:
                self._step()
            steps += 1
        return self._collect(n, steps)

    def _prefill(self, suffixes: Sequence[Sequence[int]]) -> None:
        """Run the batch's suffixes (rows beyond them: one pad token, already done) and set the decode state."""
        P, R, M = self.P, self.rows, self.max_len
        rows = [list(s) for s in suffixes] + [[self.pad_id]] * (R - len(suffixes))
        lens = torch.tensor([len(r) for r in rows])
        S = int(lens.max())
        if P + S + self.n_new > M:
            raise ValueError(f"a suffix of {S} tokens is longer than the engine's max_suffix {M - P - self.n_new}")
        ids = torch.full((R, S), self.pad_id, dtype=torch.long)
        pos = torch.full((R, S), P, dtype=torch.long)
        real = torch.zeros(R, M, dtype=torch.bool)  # [R, M] slots holding a real token after the prefill
        real[:, :P] = True
        for b, r in enumerate(rows):
            ids[b, S - len(r):] = torch.tensor(r)
            pos[b, S - len(r):] = torch.arange(P, P + len(r))
            real[b, P + S - len(r):P + S] = True
        q = torch.arange(P, P + S)  # [S] slot of each query column
        k = torch.arange(M)
        allowed = (real[:, None, :] & (k[None, None, :] <= q[None, :, None])) | (k[None, None, :] == q[None, :, None])
        self.cache.slots, self.cache.seen = torch.arange(P, P + S, device=self.dev), P
        last = torch.zeros(R, S, dtype=torch.bool)
        last[:, -1] = True
        self.steer.mask = last.to(self.dev)  # prefill: the last prompt token of every row
        first = self._forward(ids.to(self.dev), pos.to(self.dev), self._as_mask(allowed[:, None].to(self.dev)),
                              self.cache).argmax(-1)  # [R]
        b = self.buf
        b.mask.copy_(self._as_mask(real[:, None, None, :].to(self.dev)))
        b.ids.copy_(first[:, None])
        b.pos.copy_((P + lens)[:, None])
        b.slot.fill_(P + S)
        b.t.fill_(1)
        b.out.fill_(self.pad_id)
        b.out[:, 0] = first
        b.done.copy_(torch.isin(first, self.eos))
        b.done[len(suffixes):] = True
        self.cache.slots, self.cache.seen = b.slot, P + S
        self.steer.mask = self.every_row  # decode: every token

    def _step(self) -> None:
        """One decode step on the static buffers (what the CUDA graph records)."""
        b = self.buf
        b.mask.index_fill_(3, b.slot, True if self.mask_dtype == torch.bool else 0.0)  # the new token sees itself
        nxt = self._forward(b.ids, b.pos, b.mask, self.cache).argmax(-1)  # [R]
        b.out.index_copy_(1, b.t, nxt[:, None])
        b.done.logical_or_(torch.isin(nxt, self.eos))
        b.ids.copy_(nxt[:, None])
        b.pos.add_(1)
        b.slot.add_(1)
        b.t.add_(1)

    def _capture(self) -> None:
        """Record _step as a CUDA graph (after warm-up steps whose effects are undone); on failure
        keep stepping eagerly and remember why (graph_error)."""
        saved = {k: v.clone() for k, v in self.buf.state().items()}

        def restore():
            for k, v in self.buf.state().items():
                v.copy_(saved[k])

        try:
            side = torch.cuda.Stream(device=self.dev)
            side.wait_stream(torch.cuda.current_stream(self.dev))
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._step()
            torch.cuda.current_stream(self.dev).wait_stream(side)
            restore()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._step()
            self.graph = graph
        except Exception as e:
            self.graph, self.graph_error = None, f"{type(e).__name__}: {e}".splitlines()[0]
            torch.cuda.synchronize(self.dev)
        restore()  # warm-up steps moved the state; capture may have touched nothing, or something

    def _collect(self, n: int, steps: int) -> list[list[int]]:
        eos = set(self.eos.tolist())
        result = []
        for row in self.buf.out[:n, :steps].tolist():
            cut = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
            result.append(row[:cut])
        return result


def greedy_generate(model, seqs: Sequence[Sequence[int]], *, max_new_tokens: int, eos: Sequence[int],
                    pad_id: int, deltas: Mapping[int, Tensor] | None = None, rows: int | None = None,
                    graphs: bool | None = None, share_prefix: bool = True,
                    progress: Callable[[int], None] | None = None) -> list[list[int]]:
    """Greedy continuations of token sequences (shortest first, `rows` at a time), in input order."""
    if not seqs:
        return []
    P = shared_prefix_len(seqs) if share_prefix else 0
    max_suffix = max(len(s) for s in seqs) - P
    rows = rows or rows_for(model, len(seqs), P + max_suffix + max_new_tokens, max_suffix)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    done: dict[int, list[int]] = {}
    with GreedyEngine(model, seqs[0][:P], max_suffix=max_suffix, max_new_tokens=max_new_tokens,
                      rows=rows, eos=eos, pad_id=pad_id, deltas=deltas, graphs=graphs) as eng:
        for i in range(0, len(order), rows):
            idx = order[i:i + rows]
            for j, out in zip(idx, eng.run([seqs[j][P:] for j in idx])):
                done[j] = out
            if progress:
                progress(len(idx))
    return [done[j] for j in range(len(seqs))]
