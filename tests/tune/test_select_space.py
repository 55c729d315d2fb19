"""The choice rule, the budget, the Pareto front, the grid and the seeded TPE search (optuna)."""

from __future__ import annotations

from itictl.pipeline import Setting
from itictl.tune import select
from itictl.tune.options import Range
from itictl.tune.space import BASELINE, Space, canonical, search

KL, CE = select.KL, select.CE


def _m(mc2, kl, ce=2.0):
    return {"MC2": mc2, KL: kl, CE: ce}


def test_choose_maximises_the_objective_within_the_kl_budget():
    a, b, c = Setting(8, 5.0, "com"), Setting(16, 10.0, "com"), Setting(32, 20.0, "com")
    entries = [(BASELINE, _m(0.50, 0.0)), (a, _m(0.52, 0.1)), (b, _m(0.55, 0.4)), (c, _m(0.60, 1.2))]
    assert select.choose(entries, "MC2", ("kl", 0.5), 2.0) == b
    assert select.choose(entries, "MC2", ("kl", 0.05), 2.0) == BASELINE  # nothing else fits
    assert select.choose(entries, "MC2", None, 2.0) == c
    # CE budget: the increase over α = 0
    ce_entries = [(BASELINE, _m(0.5, 0.0, 2.0)), (a, _m(0.52, 0.1, 2.05)), (b, _m(0.55, 0.4, 2.3))]
    assert select.choose(ce_entries, "MC2", ("ce", 0.1), 2.0) == a
    assert select.violation(_m(0.55, 0.4, 2.3), ("ce", 0.1), 2.0) > 0


def test_ties_go_to_the_smaller_change():
    a, b = Setting(8, 5.0, "com"), Setting(16, 5.0, "com")
    entries = [(BASELINE, _m(0.5, 0.0)), (b, _m(0.6, 0.2)), (a, _m(0.6, 0.2))]
    assert select.choose(entries, "MC2", None, 2.0) == a
    assert select.choose([(BASELINE, _m(0.6, 0.0)), (a, _m(0.6, 0.2))], "MC2", None, 2.0) == BASELINE


def test_pareto_front():
    s = [Setting(k, 1.0, "com") for k in (1, 2, 3, 4)]
    entries = [(BASELINE, _m(0.5, 0.0)), (s[0], _m(0.55, 0.2)), (s[1], _m(0.54, 0.3)), (s[2], _m(0.6, 0.5)),
               (s[3], _m(0.6, 0.9))]
    assert select.pareto(entries, "MC2") == [BASELINE, s[0], s[2]]


def test_grid_has_the_baseline_once_and_every_point():
    sp = Space([8, 16], [0.0, 5.0, 10.0], ("com", "probe"))
    g = sp.grid()
    assert g[0] == BASELINE and len(g) == 1 + 2 * 2 * 2 and len(set(g)) == len(g)
    assert canonical(Setting(48, 0.0, "probe")) == BASELINE


def _fake_score(calls):
    """MC2 grows with α·K, KL with α²·K / 1000: the best feasible point under KL ≤ 1 is interior."""
    def score(s):
        calls.append(s)
        obj = 0.5 + 0.001 * s.alpha * s.heads ** 0.5
        kl = s.alpha ** 2 * s.heads / 1000
        return obj, kl - 1.0

    return score


def test_tpe_is_seeded_resumable_and_extendable():
    sp = Space(Range(2, 64), Range(0.0, 30.0), ("com",))
    runs = []
    for n in (6, 6, 9):
        calls = []
        search(sp, _fake_score(calls), kind="tpe", n_trials=n, seed=3)
        runs.append(calls)
    assert runs[0] == runs[1]  # same seed, same told values: the same points (cached trials on a rerun)
    assert runs[2][:len(runs[0])] == runs[0]  # more trials extend the same sequence
    assert runs[0][0] == BASELINE and all(2 <= s.heads <= 64 for s in runs[2][1:] if s != BASELINE)
    assert all(s == BASELINE or 0 <= s.alpha <= 30 for s in runs[2])
    other = []
    search(sp, _fake_score(other), kind="tpe", n_trials=6, seed=4)
    assert other != runs[0]


def test_progress_bar_text_can_change():
    """tune's one bar shows the best-so-far: advance(n, description=...) replaces the bar's text."""
    import io

    from rich.console import Console

    from itictl.output import Output

    buf = io.StringIO()
    out = Output(_console=Console(file=buf, force_terminal=False, width=120))
    with out.progress("tune", 2, "trial") as advance:
        advance(1, description="tune fold 0 · best MC2 0.5100")
        advance(1)
    assert "best MC2 0.5100" in buf.getvalue()
    with Output(quiet=True).progress("tune", 1) as advance:
        advance(1, description="ignored")
