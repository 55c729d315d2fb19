"""--arch-map on the command line: it overrides the table for the whole command, enters the
activations key, and the artifact records which map located o_proj (manifest meta and h5 attrs)."""

from __future__ import annotations

import json

import h5py

from tests.models.tiny import tiny_folder

MAP = {"layers": "model.layers", "o_proj": "self_attn.o_proj", "heads": 4, "head_dim": 8}


def _extract(cli, folder, tqa_dir, *extra):
    r = cli("--json", "extract", "-m", str(folder), "--limit", "2", "--data", str(tqa_dir), *extra)
    return r, (r.json() if r.code == 0 else None)


def test_arch_map_on_extract(cli, tmp_path, tqa_dir):
    from itictl.models.arch import current_arch_map
    from itictl.store import Store

    folder = tiny_folder(tmp_path / "m")  # a tiny Llama (hidden 40, 4 heads x 8)
    r, mapped = _extract(cli, folder, tqa_dir, "--arch-map", json.dumps(MAP))
    assert r.code == 0, r.stderr
    assert current_arch_map() is None  # the override ended with the command
    r, plain = _extract(cli, folder, tqa_dir)
    assert r.code == 0, r.stderr
    assert mapped["key"] != plain["key"] and mapped["shapes"]["head_wise"] == plain["shapes"]["head_wise"]
    store = Store(tmp_path / "cli-store")
    head_wise = {}
    for doc, source in ((mapped, "arch-map"), (plain, "table")):
        art = store.get(doc["key"])
        rec = art.meta["arch"]
        assert rec == {"source": source, "model_type": "llama", "layers": "model.layers",
                       "o_proj": "self_attn.o_proj", "n_layers": 2, "heads": 4, "head_dim": 8}
        with h5py.File(art.path / "activations.h5") as f:
            assert json.loads(f.attrs["arch"]) == rec
            head_wise[source] = f["head_wise"][:]
    assert (head_wise["arch-map"] == head_wise["table"]).all()  # the table's paths: the same activations


def test_bad_arch_maps_are_one_line_errors(cli, tmp_path, tqa_dir):
    folder = tiny_folder(tmp_path / "m")
    r, _ = _extract(cli, folder, tqa_dir, "--arch-map", '{"layers": "model.layers"}')
    assert r.code == 4 and "--arch-map" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    wrong = json.dumps({**MAP, "o_proj": "self_attn.q_proj"})  # reads hidden (40) features, not 4 x 8
    r, _ = _extract(cli, folder, tqa_dir, "--arch-map", wrong)
    assert r.code == 8 and "expected [B, T, 32]" in r.stderr
