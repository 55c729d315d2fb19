"""The reference's MC positions (evaluate/mc_positions.py): tqa_run_probs' prompts for every preset,
and `itictl eval --protocol reference` end to end on the embedded model (protocol in the JSON, the
table title and the key; an explicit switch wins over the protocol's)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from itictl.evaluate.mc import groups_for, mc_items
from itictl.evaluate.presets import INSTRUCTIONS, QA_PRIMER

Q = SimpleNamespace(question="Can pigs fly?", best_answer="No", correct_answers="No", incorrect_answers="Yes")


def test_reference_prompts_are_tqa_run_probs():
    items = mc_items([Q])
    _, (g,) = groups_for(items, "default", "qa", None, positions="reference")
    assert g.context == INSTRUCTIONS["default"] + "\n\n" + QA_PRIMER + "\n\nQ: Can pigs fly?"
    assert g.continuations == ["\nA: No.", "\nA: Yes."]
    _, (a,) = groups_for(items, "default", "qa", None)
    assert a.context + a.continuations[0] == g.context + g.continuations[0].replace("\nA: ", "\nA: ", 1)
    _, (n,) = groups_for(items, "none", "null", "PREFIX ", positions="reference")
    assert n.context == "PREFIX Q: Can pigs fly?\n\nA:" and n.continuations == [" No.", " Yes."]


def test_unknown_positions_is_a_one_line_error():
    from itictl.errors import BadInputError

    with pytest.raises(BadInputError, match="--mc-positions"):
        groups_for(mc_items([Q]), "default", "qa", None, positions="answers")


def test_eval_reference_protocol_end_to_end(embedded, session_store, tqa_dir):
    from tests.helpers import run_cli

    base = ["--store", str(session_store.root), "eval", "--data", str(tqa_dir), "--limit-questions", "8",
            "--heads", "4", "--alpha", "10", "--metrics", "mc", "--device", "cpu", "--dtype", "float32"]
    ref = run_cli(*base, "--protocol", "reference", "--json")
    assert ref.code == 0, ref.stderr
    d = ref.json()
    assert d["protocol"] == "reference" and d["switches"]["mc_positions"] == "reference"
    assert d["switches"]["backend"] == "sklearn" and d["folds"] == [4, 4]
    art = session_store.get(d["key"])
    assert art.params["protocol"] == "reference" and art.params["split"] == "contiguous"
    probes = session_store.get(session_store.get(art.parents["intervention"]).parents["probes"])
    assert probes.params["backend"] == "sklearn" and probes.params["val_draw"] == "stream"
    iv = session_store.get(art.parents["intervention"])
    assert iv.params["sigma_from"] == "all" and iv.params["tie_break"] == "argsort"
    mixed = run_cli(*base, "--protocol", "reference", "--mc-positions", "answer", "--backend", "torch", "--json")
    m = mixed.json()
    assert m["switches"] == {**d["switches"], "mc_positions": "answer", "backend": "torch"} and m["key"] != d["key"]
    table = run_cli(*base, "--protocol", "reference")  # cached: the human table names the protocol
    assert table.code == 0 and "protocol reference" in table.stderr
