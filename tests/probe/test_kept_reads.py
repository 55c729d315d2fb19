"""An eval reads each activations file once for all folds (itictl.extract.h5.keep_loaded): the
probes and interventions made from the kept copy are byte-identical to the uncached path's."""

from __future__ import annotations

import json

from itictl.store import Store
from tests.probe.test_probes import make_acts_art, make_model_art


def _payloads(store: Store, key: str) -> dict[str, str]:
    m = json.loads((store.object_dir(key) / "manifest.json").read_text())
    return {name: f["sha256"] for name, f in m["files"].items() if not name.endswith(".png")}


def _probes_and_interventions(store: Store):
    """-> (payload digests of fold 0's and fold 1's probes and interventions, the activations)."""
    from itictl.intervene.build import run_intervene
    from itictl.probe.step import run_probe

    model = make_model_art(store)
    acts = make_acts_art(store, model)
    tuning = make_acts_art(store, model, seed=1, fmt="tqa_gen_end_q")
    out = []
    for fold in (0, 1):
        probes, _ = run_probe(store, acts, folds=2, fold=fold, val_ratio=0.2, seed=42, split="random", backend="torch")
        iv, _ = run_intervene(store, probes, tuning, heads=3, alpha=5.0)
        out += [_payloads(store, probes.key), _payloads(store, iv.key)]
    return out, acts


def test_kept_reads_give_identical_probes_and_interventions(tmp_path):
    from itictl.extract.h5 import keep_loaded, keeping, open_activations

    plain, kept = Store(tmp_path / "plain"), Store(tmp_path / "kept")
    plain.ensure()
    kept.ensure()
    want, _ = _probes_and_interventions(plain)
    assert not keeping()
    with keep_loaded():
        got, acts = _probes_and_interventions(kept)
        with open_activations(acts) as a, open_activations(acts) as b:
            assert a.load_head_wise() is b.load_head_wise()  # one read per file inside the block
    assert got == want
    with open_activations(acts) as a, open_activations(acts) as b:
        assert a.load_head_wise() is not b.load_head_wise()  # released after the block

