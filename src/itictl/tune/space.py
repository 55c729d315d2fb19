"""The search space and the two searches over it, for one outer fold.

Owns `Space` (heads, alpha, directions; `grid()`, `check(L, H)`), `BASELINE` (α = 0: the unchanged
model, one trial per fold) and `search(space, score, ...)`: a grid evaluates every point; TPE
(optuna's TPESampler, seeded; imported only here, only when asked for) asks `n_trials` points,
with the budget as its constraint (`constraints_func`: violation ≤ 0 is feasible). Every score call
is a store artifact (tune/trials.py), so a rerun with the same seed asks the same points, finds
them cached and tells the sampler the same values: an interrupted or extended TPE search resumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from itictl.errors import BadInputError
from itictl.pipeline import Setting
from itictl.tune.options import Dim, Range

BASELINE = Setting(0, 0.0, "none")  # α = 0: no intervention (K and direction do not apply)
ALPHA_DECIMALS = 2  # sampled α are rounded, so close proposals share one trial artifact


def canonical(s: Setting) -> Setting:
    """Every α = 0 setting is the baseline."""
    return BASELINE if float(s.alpha) == 0 else Setting(int(s.heads), float(s.alpha), s.direction)


def label(s: Setting) -> str:
    return "α=0 (baseline)" if s == BASELINE else f"K={s.heads} α={s.alpha:g} {s.direction}"


@dataclass(frozen=True)
class Space:
    heads: Dim
    alpha: Dim
    directions: tuple[str, ...]

    def grid(self) -> list[Setting]:
        """The baseline first, then every (direction, K, α ≠ 0) point."""
        assert isinstance(self.heads, list) and isinstance(self.alpha, list)
        pts = [BASELINE]
        for d in self.directions:
            for k in self.heads:
                pts.extend(Setting(int(k), float(a), d) for a in self.alpha if a != 0)
        return pts

    def check(self, n_layers: int, n_heads: int) -> None:
        """K within the model's L·H heads (before any extraction)."""
        top = self.heads.hi if isinstance(self.heads, Range) else max(self.heads)
        if top > n_layers * n_heads:
            raise BadInputError(f"--heads {top:g} is more than the model's {n_layers}×{n_heads} = {n_layers * n_heads} "
                                "heads", f"use at most {n_layers * n_heads}")

    def doc(self) -> dict:
        def d(x):
            return x.doc() if isinstance(x, Range) else list(x)

        return {"heads": d(self.heads), "alpha": d(self.alpha), "directions": list(self.directions)}

    def suggest(self, trial) -> Setting:
        """One optuna trial's point (lists are categorical, ranges int (log) / float)."""
        h, a = self.heads, self.alpha
        k = trial.suggest_int("heads", int(h.lo), int(h.hi), log=True) if isinstance(h, Range) \
            else trial.suggest_categorical("heads", list(h))
        alpha = trial.suggest_float("alpha", a.lo, a.hi) if isinstance(a, Range) \
            else trial.suggest_categorical("alpha", list(a))
        d = trial.suggest_categorical("direction", list(self.directions)) if len(self.directions) > 1 \
            else self.directions[0]
        return canonical(Setting(int(k), round(float(alpha), ALPHA_DECIMALS), d))


# score(setting) -> (objective or None, budget violation or None): violation ≤ 0 is within budget
ScoreFn = Callable[[Setting], tuple[float | None, float | None]]


def search(space: Space, score: ScoreFn, *, kind: str, n_trials: int, seed: int) -> list[Setting]:
    """The settings evaluated, in order (the baseline always first)."""
    score(BASELINE)
    if kind == "grid":
        pts = space.grid()[1:]
        for s in pts:
            score(s)
        return [BASELINE, *pts]
    return [BASELINE, *_tpe(space, score, n_trials, seed)]


def _tpe(space: Space, score: ScoreFn, n_trials: int, seed: int) -> list[Setting]:
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def constraints(frozen) -> list[float]:
        return [float(frozen.user_attrs.get("violation", 0.0))]

    with warnings.catch_warnings():  # constraints_func is marked experimental in optuna 4
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=seed, constraints_func=constraints)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    done = []
    for _ in range(n_trials):
        t = study.ask()
        s = space.suggest(t)
        value, violation = score(s)
        t.set_user_attr("violation", 0.0 if violation is None else float(violation))
        if value is None:
            study.tell(t, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(t, float(value))
        done.append(s)
    return done
