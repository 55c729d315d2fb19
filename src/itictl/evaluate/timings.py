"""Per-phase wall times of one `itictl eval` run (issue 14): `PhaseTimer`.

The library marks its expensive phases with `itictl.hooks.timed(name)` (models: identity_hash,
model_load; extract: extract:FORMAT; the runner: plan, model_artifact, imports (torch's first
import), probes, interventions,
eval_setup, write; the evaluator: mc, generation, judge_truth, judge_info, bleu_rouge, ce_kl). While
a PhaseTimer is entered it listens to those hooks and adds up seconds per phase:

- exclusive times: a phase nested in another (the model load inside the first extraction, the
  identity hash inside the model artifact) is subtracted from its parent, so the phases plus
  `other_s` add up to `total_s`;
- only the thread that entered the timer counts (worker threads never mark phases);
- a CUDA device is synchronised at every phase boundary once torch has started CUDA, so queued GPU
  work lands in the phase that queued it;
- `probes` keeps one entry per probe step (per fold), the rest are sums.

`result()` -> {"plan_s": …, "identity_hash_s": …, …, "probes_s": [...], "other_s": …, "total_s": …}
(phases that never ran are left out), plus `background` when work overlapped in another thread
(the model folder's preload during its identity hash: models/preload.py). The eval runner puts it
in the artifact's manifest meta and in the --json document, never in eval.json (payloads are
reproducible) nor in the key.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from itictl import hooks

ORDER = ("plan", "identity_hash", "model_artifact", "imports", "model_load", "extract_tqa_mc2", "extract_tuning", "probes",
         "interventions", "eval_setup", "mc", "generation", "judge_truth", "judge_info", "bleu_rouge", "ce_kl",
         "write")
LIST_PHASES = ("probes",)


def _sync() -> None:
    """Wait for queued CUDA work, if this process started CUDA (torch may be half-imported by the
    model preload's thread: only a fully imported torch.cuda is asked)."""
    cuda = getattr(sys.modules.get("torch"), "cuda", None)
    initialized = getattr(cuda, "is_initialized", None)
    if initialized is not None and initialized():
        cuda.synchronize()


class PhaseTimer:
    """Collects `hooks.timed` phases of this thread while entered (see the module docstring).
    rename: phase name -> reported name (e.g. 'extract:tqa_gen_end_q' -> 'extract_tuning')."""

    def __init__(self, rename: dict[str, str] | None = None):
        self._rename = dict(rename or {})
        self._stack: list[list[Any]] = []  # [name, start, seconds of nested phases]
        self._sums: dict[str, float] = {}
        self._lists: dict[str, list[float]] = {}
        self._thread = threading.get_ident()
        self._t0 = time.perf_counter()
        self._wall0 = time.time()
        self._removers: list = []
        self.background: dict[str, Any] = {}  # work overlapped in other threads (not in total_s)

    def rename(self, mapping: dict[str, str]) -> None:
        """Report phase names in `mapping` under their new names."""
        self._rename.update(mapping)

    def __enter__(self) -> "PhaseTimer":
        self._thread = threading.get_ident()
        self._t0 = time.perf_counter()
        self._wall0 = time.time()
        self._removers = [hooks.register("timing.start", self._start), hooks.register("timing.end", self._end)]
        return self

    def __exit__(self, *exc) -> None:
        for remove in self._removers:
            remove()
        self._removers = []

    def _start(self, phase: str, **_: Any) -> None:
        name = phase
        if threading.get_ident() == self._thread:
            _sync()
            self._stack.append([name, time.perf_counter(), 0.0])

    def _end(self, phase: str, **_: Any) -> None:
        name = phase
        if threading.get_ident() != self._thread or not any(e[0] == name for e in self._stack):
            return
        _sync()
        now = time.perf_counter()
        while self._stack:  # a phase left by an exception without its end: closed here too
            top, start, nested = self._stack.pop()
            elapsed = now - start
            if self._stack:
                self._stack[-1][2] += elapsed
            self._add(top, elapsed - nested)
            if top == name:
                break

    def _add(self, name: str, seconds: float) -> None:
        name = self._rename.get(name, name).replace(":", "_")
        if name in LIST_PHASES:
            self._lists.setdefault(name, []).append(seconds)
        else:
            self._sums[name] = self._sums.get(name, 0.0) + seconds

    def result(self) -> dict[str, Any]:
        """Seconds per phase (3 decimals), `other_s` (not in any phase) and `total_s` so far."""
        _sync()
        total = time.perf_counter() - self._t0
        names = [n for n in ORDER if n in self._sums or n in self._lists]
        names += sorted(n for n in {*self._sums, *self._lists} if n not in ORDER)
        doc: dict[str, Any] = {}
        for n in names:
            doc[f"{n}_s"] = [round(x, 3) for x in self._lists[n]] if n in self._lists else round(self._sums[n], 3)
        spent = sum(self._sums.values()) + sum(sum(v) for v in self._lists.values())
        doc["other_s"] = round(max(total - spent, 0.0), 3)
        doc["total_s"] = round(total, 3)
        if self.background:
            doc["background"] = dict(self.background)
        return doc

    def startup(self) -> dict[str, float]:
        """{"before_s": seconds from the process importing itictl to this timer's start} (Python's
        own start, the CLI's imports and option handling: not in total_s)."""
        import itictl

        return {"before_s": round(max(self._wall0 - itictl.STARTED, 0.0), 3)}


def rows(timings: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(phase, seconds, share of the total) rows for a human table; list phases show their parts."""
    total = float(timings.get("total_s") or 0.0)
    out = []
    for k, v in timings.items():
        if not k.endswith("_s") or k == "total_s":
            continue
        parts = v if isinstance(v, list) else [v]
        s = float(sum(parts))
        label = k[:-2] + (f" ({' + '.join(f'{x:.2f}' for x in parts)})" if isinstance(v, list) and len(v) > 1 else "")
        out.append((label, f"{s:.2f}", f"{100 * s / total:.0f}%" if total > 0 else "-"))
    out.append(("total", f"{total:.2f}", "100%"))
    return out
