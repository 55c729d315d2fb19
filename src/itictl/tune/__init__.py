"""`itictl tune`: choosing K, α and direction by nested cross-validation under a budget on how much
the model changes (KL wrt the original, or CE increase, on natural text).

Modules: options (TuneOptions, parsing LIST|LO..HI), space (the space, grid and TPE searches),
trials (one `tune-trial` artifact per candidate evaluation), select (budget, choice rule, Pareto
front), run (run_tune: the nested CV and the `tune` artifact, tagged `last-tune`), report (the
document: trials, choices, outer-fold CIs), plots (pareto.png). docs/tuning.md has the method.
"""

from __future__ import annotations

__all__ = ["run_tune", "TuneOptions"]


def __getattr__(name: str):  # lazy: `itictl --help` imports nothing heavy
    if name == "run_tune":
        from itictl.tune.run import run_tune

        return run_tune
    if name == "TuneOptions":
        from itictl.tune.options import TuneOptions

        return TuneOptions
    raise AttributeError(name)
