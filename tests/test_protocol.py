"""The itictl and reference protocols: switch bundles, explicit switches winning, and artifact keys
that only change when a switch leaves itictl's value (itictl.protocol, ChainSpec, EvalOptions,
probe and intervene params)."""

from __future__ import annotations

import numpy as np
import pytest

from itictl.errors import BadInputError
from itictl.protocol import SWITCHES, non_default, resolve

REFERENCE = {"split": "contiguous", "val_draw": "stream", "backend": "sklearn", "sigma_from": "all",
             "tie_break": "argsort", "mc_positions": "reference"}
ITICTL = {"split": "random", "val_draw": "seeded", "backend": "torch", "sigma_from": "train",
          "tie_break": "lower", "mc_positions": "answer"}


def test_bundles_and_explicit_switches_win():
    assert vars(resolve("itictl")) == ITICTL and vars(resolve("reference")) == REFERENCE
    mixed = resolve("reference", split="random", mc_positions="answer")
    assert vars(mixed) == {**REFERENCE, "split": "random", "mc_positions": "answer"}
    assert vars(resolve("itictl", sigma_from="all")) == {**ITICTL, "sigma_from": "all"}


@pytest.mark.parametrize("kwargs,match", [({"protocol": "paper"}, "--protocol"), ({"sigma_from": "test"}, "--sigma-from"),
                                          ({"mc_positions": "x"}, "--mc-positions"), ({"backend": "jax"}, "--backend")])
def test_bad_protocol_or_switch_is_a_one_line_error(kwargs, match):
    protocol = kwargs.pop("protocol", "itictl")
    with pytest.raises(BadInputError, match=match):
        resolve(protocol, **kwargs)


def test_non_default_names_only_what_leaves_itictl():
    assert non_default("itictl", ITICTL) == {}
    assert non_default("reference", ITICTL) == {"protocol": "reference"}
    assert non_default("itictl", {**ITICTL, "val_draw": "stream"}) == {"val_draw": "stream"}
    assert set(non_default("reference", REFERENCE)) == {"protocol", *SWITCHES}


def test_chain_spec_takes_the_protocol():
    from itictl.pipeline import ChainSpec

    s = ChainSpec()
    assert (s.split, s.backend, s.val_draw, s.sigma_from, s.tie_break) == ("random", "torch", "seeded", "train", "lower")
    r = ChainSpec(protocol="reference", backend="torch")
    assert (r.split, r.backend, r.val_draw, r.sigma_from, r.tie_break) == ("contiguous", "torch", "stream", "all",
                                                                           "argsort")
    for bad, text in [(ChainSpec(protocol="honest"), "--protocol"), (ChainSpec(sigma_from="test"), "--sigma-from"),
                      (ChainSpec(tie_break="x"), "--tie-break"), (ChainSpec(val_draw="x"), "--val-draw")]:
        with pytest.raises(BadInputError, match=text):  # at check(), before any work
            bad.check()


def test_eval_key_unchanged_for_itictl_and_marked_for_reference():
    from itictl.evaluate.options import EvalOptions
    from itictl.evaluate.runner import _params, _Plan

    plan = _Plan(n=4, settings=[(2, 5.0)], judges={}, skipped={}, text_digest=None, transfer=None, tqa=None)
    plain = _params(EvalOptions(), plan)
    assert plain["split"] == "random" and not set(plain) & {"protocol", *SWITCHES} - {"split"}
    assert _params(EvalOptions(protocol="itictl", sigma_from="train", mc_positions="answer"), plan) == plain
    ref = _params(EvalOptions(protocol="reference"), plan)
    assert ref == {**plain, "split": "contiguous", "protocol": "reference",
                   **{k: v for k, v in REFERENCE.items() if k != "split"}}
    one = _params(EvalOptions(mc_positions="reference"), plan)
    assert one == {**plain, "mc_positions": "reference"}
    spec = EvalOptions(protocol="reference", backend="torch").chain_spec()
    assert (spec.protocol, spec.split, spec.backend, spec.sigma_from) == ("reference", "contiguous", "torch", "all")


def test_reference_mc_positions_are_not_harness_scoring():
    from itictl.evaluate.options import EvalOptions

    for kw, text in [({"protocol": "paper"}, "--protocol"), ({"mc_positions": "all"}, "--mc-positions")]:
        with pytest.raises(BadInputError, match=text):
            EvalOptions(**kw).validate()

    with pytest.raises(BadInputError, match="--mc-positions"):
        EvalOptions(protocol="reference", mc_style="harness").validate()
    EvalOptions(protocol="reference", mc_style="harness", mc_positions="answer").validate()


def test_probe_and_intervention_keys_unchanged_by_default():
    from itictl.probe.step import probe_params

    base = dict(folds=2, fold=0, val_ratio=0.2, seed=42, split="random", backend="torch")
    assert probe_params(**base) == {**base, "fold": 0}
    assert probe_params(**base, val_draw="stream") == {**base, "val_draw": "stream"}


def test_stream_draw_continues_one_generator():
    from itictl.data.folds import stream_train_val_split, train_val_split

    parts = np.array_split(np.arange(50), 2)
    t0, v0 = stream_train_val_split(parts, 0, 0.2, seed=9)
    assert t0.tolist() == train_val_split(parts[1], 0.2, 9)[0].tolist()  # fold 0: the same draw
    t1, v1 = stream_train_val_split(parts, 1, 0.2, seed=9)
    rng = np.random.RandomState(9)
    rng.choice(parts[1], 20, replace=False)  # fold 0's draw advances the stream
    assert t1.tolist() == rng.choice(parts[0], 20, replace=False).tolist()
    assert sorted(t1.tolist() + v1.tolist()) == parts[0].tolist()
    assert t1.tolist() != train_val_split(parts[0], 0.2, 9)[0].tolist()


def test_tie_break_argsort_is_the_references_order():
    from itictl.intervene.build import top_heads

    acc = np.array([[0.5, 0.7, 0.7], [0.7, 0.6, 0.5]])
    assert top_heads(acc, 2) == [(0, 1), (0, 2)]  # ties: lower (layer, head) first
    flat = np.argsort(acc.reshape(-1))[::-1][:2]
    assert top_heads(acc, 2, "argsort") == [(int(i // 3), int(i % 3)) for i in flat]
    assert top_heads(acc, 1, "argsort") != top_heads(acc, 1)  # numpy does not put the lower index first here


CLI_CASES = [(cmd, bad, flag) for cmd in (["eval"], ["probe"], ["intervene", "--heads", "2", "--alpha", "1"])
             for bad, flag in ((["--protocol", "paper"], "--protocol"), (["--sigma-from", "test"], "--sigma-from"),
                               (["--val-draw", "fold"], "--val-draw"), (["--tie-break", "upper"], "--tie-break"))
             if cmd[0] != "probe" or flag in ("--protocol", "--val-draw")]  # probe has no σ or head choice


@pytest.mark.parametrize("cmd,bad,flag", CLI_CASES)
def test_cli_rejects_a_bad_protocol_or_switch_before_any_work(tmp_path, cmd, bad, flag):
    from itictl.errors import EXIT_BAD_INPUT
    from tests.helpers import run_cli

    r = run_cli("--store", str(tmp_path / "s"), *cmd, *bad, "--data", str(tmp_path / "nowhere"))
    assert r.code == EXIT_BAD_INPUT and flag in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s" / "objects").exists() or not any((tmp_path / "s" / "objects").iterdir())
