"""The chain (itictl.pipeline): fold-size checks agree with the probe step's real split, limits count
the right prompts, and `intervene`, `probe` and `eval` build the very same artifacts through it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from itictl.errors import BadInputError
from itictl.pipeline import ChainSpec, Setting, check_folds, questions_held
from tests.helpers import run_cli


def _split_ok(n: int, folds: int, val_ratio: float) -> bool:
    """Whether probe.step.split_questions succeeds for every fold (the ground truth check_folds mirrors)."""
    from itictl.probe.step import split_questions

    try:
        for fold in range(folds):
            ids = split_questions(np.arange(n), folds=folds, fold=fold, val_ratio=val_ratio, seed=3, split="random")
            if not ids["train"] or not ids["val"]:
                return False
    except BadInputError:
        return False
    return True


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 9, 11])
@pytest.mark.parametrize("folds", [2, 3, 4])
@pytest.mark.parametrize("val_ratio", [0.1, 0.2, 0.5, 0.9])
def test_check_folds_agrees_with_the_probe_split(n, folds, val_ratio):
    if folds > n:
        with pytest.raises(BadInputError, match="cannot make"):
            check_folds(n, folds, val_ratio)
        return
    ok = _split_ok(n, folds, val_ratio)
    if ok:
        check_folds(n, folds, val_ratio)
    else:
        with pytest.raises(BadInputError, match="part empty"):
            check_folds(n, folds, val_ratio)


def test_spec_and_setting_checks():
    for spec, text in [(ChainSpec(folds=1), "--folds"), (ChainSpec(val_ratio=1.0), "--val-ratio"),
                       (ChainSpec(split="zigzag"), "split"), (ChainSpec(dataset="tqa_nope"), "tqa_nope"),
                       (ChainSpec(limit=0), "--limit"), (ChainSpec(dtype="int3"), "dtype"),
                       (ChainSpec(device="tpu"), "device"), (ChainSpec(device_map="everywhere"), "device map")]:
        with pytest.raises(BadInputError, match=text):
            spec.check()
    with pytest.raises(BadInputError, match="--fold"):
        ChainSpec(folds=3).check_fold(3)
    ChainSpec(folds=3).check_fold(None)  # all questions (the final intervention): tests/probe/test_all_questions.py
    with pytest.raises(BadInputError, match="more than the model"):
        Setting(13, 1.0).check(3, 4)
    with pytest.raises(BadInputError, match="finite"):
        Setting(2, float("nan")).check()


def test_limits_count_questions_and_prompts(tqa_dir):
    from itictl.data import build_prompts, load_truthfulqa
    from itictl.pipeline import _prompt_limit

    tqa = load_truthfulqa(tqa_dir)
    mc2 = build_prompts(tqa, "tqa_mc2")
    assert questions_held(ChainSpec(limit=len(mc2[0:1])), tqa) == 1
    assert questions_held(ChainSpec(limit=25), tqa) == len({p.question_index for p in mc2[:25]})
    assert questions_held(ChainSpec(limit_questions=7, limit=3), tqa) == 7  # questions win over prompts
    assert questions_held(ChainSpec(), tqa) == len(tqa.questions)
    spec = ChainSpec(limit_questions=5, seed=9)
    for fmt in ("tqa_mc2", "tqa_gen_end_q"):
        prompts = build_prompts(tqa, fmt, seed=9)
        n = _prompt_limit(spec, tqa, fmt)
        assert {p.question_index for p in prompts[:n]} == set(range(5)) and prompts[n].question_index == 5
    assert _prompt_limit(ChainSpec(limit_questions=10 ** 6), tqa, "tqa_mc2") is None  # all of them: no limit


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from tests.reliability.tinymodel import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "m")


def test_eval_intervene_and_probe_build_the_same_chain(tiny_dir, tqa_dir, tmp_path):
    """eval's fold-0 intervention == intervene's (same prompts, same tuning set); eval's fold-1
    probes == probe --fold 1's: one chain, equal keys, nothing built twice."""
    from itictl.data import build_prompts, load_truthfulqa

    store = tmp_path / "s"
    common = ["--data", str(tqa_dir), "--device", "cpu", "--seed", "5"]
    ev = run_cli("--store", str(store), "eval", "--model", str(tiny_dir), "--limit-questions", "8", "--heads", "3",
                 "--alpha", "4", "--metrics", "mc", *common, "--json", "-q")
    assert ev.code == 0, ev.stderr[-2000:]
    parents = json.loads((store / "objects" / ev.json()["key"][:2] / ev.json()["key"][2:] / "manifest.json")
                         .read_text())["parents"]
    n_prompts = sum(1 for p in build_prompts(load_truthfulqa(tqa_dir), "tqa_mc2") if p.question_index < 8)
    iv = run_cli("--store", str(store), "intervene", "-m", str(tiny_dir), "-K", "3", "-A", "4", "--limit",
                 str(n_prompts), "--tuning", parents["tuning"], *common, "--json", "-q")
    assert iv.code == 0, iv.stderr[-2000:]
    assert iv.json()["cached"] is True and iv.json()["key"] == parents["intervention.fold0.k3.a4"]
    pr = run_cli("--store", str(store), "probe", "-a", parents["activations"], "--fold", "1", "--seed", "5",
                 "--json", "-q")
    assert pr.code == 0 and pr.json()["cached"] is True
    fold1 = json.loads((store / "objects" / parents["intervention.fold1.k3.a4"][:2] /
                        parents["intervention.fold1.k3.a4"][2:] / "manifest.json").read_text())["parents"]
    assert fold1["probes"] == pr.json()["key"]
