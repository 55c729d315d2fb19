"""evaluate/stats.py against hand-computed cases: percentile bootstrap CIs of means, paired CIs of
changes, the within-fold resampling of a mean of fold means, seeding, and the eval's tables."""

import numpy as np
import pytest

from itictl.evaluate import stats as S


def test_percentile_ci_of_known_small_datasets():
    # mean of 2 draws from {0, 1}: 0 / 0.5 / 1 with p = 1/4, 1/2, 1/4 -> the 2.5 % and 97.5 % points are 0 and 1
    assert S.bootstrap_ci([0.0, 1.0], seed=3) == [0.0, 1.0]
    # mean of 4 draws from {0,0,0,1}: P(0) = 81/256 > 2.5 %; P(>= 0.75) = 13/256 > 2.5 % > P(1) = 1/256
    assert S.bootstrap_ci([0.0, 0.0, 0.0, 1.0], seed=3) == [0.0, 0.75]
    assert S.bootstrap_ci([0.7] * 5) == [pytest.approx(0.7), pytest.approx(0.7)]


def test_constant_paired_difference_has_a_zero_width_ci_at_that_value():
    rng = np.random.default_rng(0)
    base = rng.random(50)
    d = S.paired_delta(base + 0.125, base, seed=1)
    assert d["delta"] == pytest.approx(0.125)
    assert d["ci95"] == [pytest.approx(0.125), pytest.approx(0.125)] and d["excludes_zero"] is True
    same = S.paired_delta(base, base, seed=1)
    assert same["ci95"] == [0.0, 0.0] and same["excludes_zero"] is False


def test_pairing_cancels_the_shared_per_question_spread():
    rng = np.random.default_rng(1)
    difficulty = rng.random(200)  # large spread shared by both settings
    base = difficulty + rng.normal(0, 0.01, 200)
    new = difficulty + 0.02 + rng.normal(0, 0.01, 200)
    d = S.paired_delta(new, base, seed=0)
    lo, hi = S.bootstrap_ci(new, seed=0)
    assert d["excludes_zero"] and d["ci95"][0] > 0.015 and d["ci95"][1] < 0.025
    assert (hi - lo) > 10 * (d["ci95"][1] - d["ci95"][0])
    assert lo < np.mean(base) < hi  # unpaired intervals would overlap: the change needs the pairing


def test_seeded_reproducibility():
    v = np.random.default_rng(2).random(40)
    assert S.bootstrap_ci(v, seed=7) == S.bootstrap_ci(v, seed=7)
    assert S.bootstrap_ci(v, seed=7) != S.bootstrap_ci(v, seed=8)
    lo, hi = S.bootstrap_ci(v, seed=7)
    assert lo < v.mean() < hi


def test_questions_are_resampled_within_folds():
    # fold 0 all right, fold 1 all wrong: every within-fold resample gives a mean of fold means of 0.5
    # (a pooled resample would not); folds of unequal size weigh equally, as in the reported mean
    rows = [{"fold": 0, "question_index": i, "MC1": 1.0, "True": 1.0, "Info": 0.5} for i in range(3)]
    rows += [{"fold": 1, "question_index": 10 + i, "MC1": 0.0, "True": 0.5, "Info": 1.0} for i in range(5)]
    out = S.setting_stats(rows, None)
    assert out["ci95"]["MC1"] == [0.5, 0.5]
    assert out["ci95"]["True*Info"] == [pytest.approx(0.5), pytest.approx(0.5)]  # (1*.5 + .5*1) / 2
    assert "delta_vs_alpha0" not in out
    assert S.bootstrap_ci([1.0] * 3 + [0.0] * 5, groups=[0] * 3 + [1] * 5) == [0.5, 0.5]


def _rows(k, a, values):
    return [{"heads": k, "alpha": a, "fold": i % 2, "question_index": i, "MC2": v} for i, v in enumerate(values)]


def test_attach_pairs_settings_with_alpha0_and_samples():
    rng = np.random.default_rng(3)
    base = rng.random(20)
    rows = _rows(0, 0.0, base) + _rows(4, 5.0, base + 0.1) + _rows(8, 5.0, base[::-1].copy())
    ce0 = list(rng.random(6) + 3)
    samples = {(0, 0.0): {0: {"ce": ce0, "kl": [0.0] * 6}, 1: {"ce": ce0, "kl": [0.0] * 6}},
               (4, 5.0): {0: {"ce": [c + 0.5 for c in ce0], "kl": [0.2] * 6},
                          1: {"ce": [c + 1.5 for c in ce0], "kl": [0.4] * 6}}}
    results = [{"heads": 0, "alpha": 0.0}, {"heads": 4, "alpha": 5.0}, {"heads": 8, "alpha": 5.0}]
    S.attach(results, rows, samples, n_resamples=2000, seed=0)
    b, iv, rev = results
    assert "delta_vs_alpha0" not in b and set(b["ci95"]) == {"MC2", "CE Loss", "KL wrt Original"}
    assert b["ci95"]["KL wrt Original"] == [0.0, 0.0]
    d = iv["delta_vs_alpha0"]
    assert d["MC2"]["delta"] == pytest.approx(0.1) and d["MC2"]["ci95"] == [pytest.approx(0.1)] * 2
    # per sample: mean over the folds' interventions (+0.5, +1.5) -> a constant change of 1.0
    assert d["CE Loss"]["delta"] == pytest.approx(1.0) and d["CE Loss"]["ci95"] == [pytest.approx(1.0)] * 2
    assert d["KL wrt Original"]["ci95"] == [pytest.approx(0.3)] * 2
    # the same values on swapped folds: the two fold means trade places, so the change is 0 (not excluded)
    r = rev["delta_vs_alpha0"]["MC2"]
    assert r["delta"] == pytest.approx(0.0, abs=1e-12) and r["ci95"][0] < 0 < r["ci95"][1] and not r["excludes_zero"]
    assert "CE Loss" not in rev["ci95"] and "CE Loss" not in rev["delta_vs_alpha0"]  # no samples kept for it
    # without an α = 0 setting: intervals of the means only
    alone = [{"heads": 4, "alpha": 5.0}]
    S.attach(alone, rows, samples, n_resamples=2000, seed=0)
    assert "delta_vs_alpha0" not in alone[0] and alone[0]["ci95"]["MC2"][0] < np.mean(base + 0.1)


def test_tables_mark_changes_whose_ci_includes_zero():
    from rich.console import Console

    from itictl.cli.eval import _uncertainty_tables

    doc = {"settings": [
        {"heads": 0, "alpha": 0.0, "mean": {"MC2": 0.4437}, "ci95": {"MC2": [0.43, 0.46]}},
        {"heads": 48, "alpha": 15.0, "mean": {"MC2": 0.5101}, "ci95": {"MC2": [0.489, 0.531]},
         "delta_vs_alpha0": {"MC2": {"delta": 0.0664, "ci95": [0.051, 0.082], "excludes_zero": True}}},
        {"heads": 8, "alpha": 5.0, "mean": {"MC2": 0.45}, "ci95": {"MC2": [0.43, 0.47]},
         "delta_vs_alpha0": {"MC2": {"delta": 0.006, "ci95": [-0.004, 0.016], "excludes_zero": False}}}]}
    con = Console(record=True, width=200)
    for t in _uncertainty_tables(doc):
        con.print(t)
    text = con.export_text()
    assert "0.5101 [0.489, 0.531]" in text and "+0.0664 [+0.051, +0.082]" in text
    lines = text.splitlines()
    assert any("+0.0060 [-0.004, +0.016] n.s." in ln for ln in lines)
    assert not any("+0.0664" in ln and "n.s." in ln for ln in lines)
    assert _uncertainty_tables({"settings": [{"heads": 0, "alpha": 0.0, "mean": {"MC2": 0.4}}]}) == []
