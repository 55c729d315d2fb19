"""tune's options: LIST|LO..HI parsing and every bad option rejected before any model load, with
nothing written to the store."""

from __future__ import annotations

import pytest

from itictl.errors import BadInputError
from itictl.tune.options import Range, TuneOptions, parse_dim


def test_parse_dim_lists_and_ranges():
    assert parse_dim("16, 8,8,32", "--heads", integer=True) == [8, 16, 32]
    assert parse_dim("8..64", "--heads", integer=True) == Range(8, 64)
    assert parse_dim("0,2.5", "--alpha", integer=False) == [0.0, 2.5]
    assert parse_dim("0..30", "--alpha", integer=False) == Range(0.0, 30.0)
    for bad, integer in (("8..4", True), ("5..5", False), ("a,b", True), ("1.5", True), ("", False), ("0..inf", False),
                         ("nan", False)):
        with pytest.raises(BadInputError):
            parse_dim(bad, "--x", integer=integer)


def _opts(**kw):
    from itictl.evaluate.options import EvalOptions

    ev = kw.pop("eval", {})
    return TuneOptions(eval=EvalOptions(**ev), **kw)


@pytest.mark.parametrize("kw, match", [
    ({"objective": "mc3"}, "unknown --objective"),
    ({"search": "random"}, "unknown --search"),
    ({"max_kl": -0.1, "eval": {"text": __file__}}, "--max-kl must be a finite number ≥ 0"),
    ({"max_ce_increase": float("nan"), "eval": {"text": __file__}}, "--max-ce-increase must be"),
    ({"max_kl": 0.5, "max_ce_increase": 0.1, "eval": {"text": __file__}}, "exclusive"),
    ({"max_kl": 0.5}, "no --text FILE"),
    ({"heads": "0,8"}, "--heads must be ≥ 1"),
    ({"heads": "8..64"}, "--search grid needs comma lists"),
    ({"alpha": "0..30", "search": "grid"}, "--search grid needs comma lists"),
    ({"trials": 5}, "--trials is for --search tpe"),
    ({"trials": 0, "search": "tpe"}, "--trials must be at least 1"),
    ({"directions": ["com", "up"]}, "unknown --direction"),
    ({"objective": "true*info"}, "needs a truth and an info judge"),
    ({"eval": {"sigma_from": "all"}}, "never lets the test fold in"),
])
def test_validate_rejects(kw, match):
    with pytest.raises(BadInputError, match=match):
        _opts(**kw).validate()


def test_validate_sets_the_metrics_a_trial_needs():
    o = _opts(max_kl=0.5, eval={"text": __file__})
    o.validate()
    assert o.eval.metrics == ["mc", "ce", "kl"] and o.budget() == ("kl", 0.5) and o.objective_metric() == "MC2"
    o = _opts(search="tpe", heads="4..32", alpha="0..20")
    o.validate()
    assert o.eval.metrics == ["mc"] and o.budget() is None and o.n_trials() == 20


@pytest.mark.parametrize("args, code, match", [
    (["--max-kl", "-1"], 4, "--max-kl must be"),
    (["--objective", "bogus"], 4, "unknown --objective"),
    (["--heads", "64..8", "--search", "tpe"], 4, "range '64..8' is empty"),
    (["--alpha", "0..x", "--search", "tpe"], 4, "--alpha takes a comma list or a range"),
    (["--heads", "8..64"], 4, "--search grid needs comma lists"),
    (["--max-kl", "0.5", "--text", "/nonexistent/text.txt"], 3, "text file"),
    (["--limit-questions", "3", "--folds", "2"], 4, "3 questions in 2 folds"),  # fold sizes
])
def test_cli_bad_input_before_any_model_load(cli, tmp_path, args, code, match):
    """The --model folder does not exist: any attempt to resolve or load it would fail differently."""
    from tests.tune.conftest import synthetic_questions, write_tqa

    data = write_tqa(tmp_path / "data", synthetic_questions(6))
    text = ["--text", __file__] if "--max-kl" in args and "--text" not in args else []
    r = cli("tune", "--data", str(data), "--model", str(tmp_path / "no-model-needed"), *text, *args)
    assert r.code == code, r.stderr
    assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1 and match in r.stderr
    objects = tmp_path / "cli-store" / "objects"
    assert not objects.exists() or not any(objects.rglob("*"))
