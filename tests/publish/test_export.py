"""Exports: safetensors δ vectors, llama.cpp control-vector GGUF (read back with gguf), pyvene."""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import tiny_llama


def fake_model_art(store, tag="tiny"):
    return store.produce("model", {"source": "folder", "repo": "test-org/tiny-llama", "commit": tag}, {},
                         lambda ctx: (ctx.out / "model.json").write_text("{}"))[0]


def fake_intervention(store, model_art, deltas, heads):
    from safetensors.torch import save_file

    def build(ctx):
        save_file({f"layer.{l}": d.float().contiguous() for l, d in deltas.items()}, str(ctx.out / "intervention.safetensors"))
        (ctx.out / "intervention.json").write_text(json.dumps({"heads": heads, "alpha": 15.0, "direction": "com",
                                                               "model": model_art.key}))

    return store.produce("intervention", {"heads": len(heads), "alpha": 15.0, "direction": "com", "seed": 0},
                         {"model": model_art.key}, build)[0]


def test_control_vector_gguf_reads_back(tmp_path):
    from gguf import GGMLQuantizationType, GGUFReader

    from itictl.models.arch import o_proj_modules
    from itictl.publish.bake import residual_shifts
    from itictl.publish.export import read_control_vector, write_control_vector

    model = tiny_llama(layers=3)  # hidden 40 != H·D 32
    g = torch.Generator().manual_seed(0)
    deltas = {l: torch.randn(32, generator=g) for l in (0, 1, 2)}
    shifts = residual_shifts(model, deltas)
    res = write_control_vector(shifts, tmp_path / "cv.gguf", model_hint="llama", n_layers=3,
                               extra={"intervention": "abc"})
    assert res == {"layers": [1, 2], "skipped_layers": [0]}

    meta, vecs = read_control_vector(tmp_path / "cv.gguf")
    assert meta["general.architecture"] == "controlvector"
    assert meta["controlvector.model_hint"] == "llama"
    assert meta["controlvector.layer_count"] == 3
    assert json.loads(meta["itictl.skipped_layers"]) == [0]
    assert sorted(vecs) == [1, 2]
    for l in (1, 2):
        w = o_proj_modules(model)[l].weight  # [hidden 40, H·D 32]
        assert vecs[l].shape == (40,)
        assert torch.allclose(torch.from_numpy(vecs[l]), w @ deltas[l], atol=1e-5)
    # what llama.cpp checks: every tensor named direction.N (N >= 1), F32, one dimension, same n_embd
    r = GGUFReader(str(tmp_path / "cv.gguf"))
    for t in r.tensors:
        assert t.name.startswith("direction.") and int(t.name.split(".")[1]) >= 1
        assert t.tensor_type == GGMLQuantizationType.F32
        assert len([d for d in t.shape if d > 1]) == 1 and int(t.n_elements) == 40


def test_control_vector_only_layer0_is_unsupported(tmp_path):
    from itictl.errors import UnsupportedError
    from itictl.publish.export import write_control_vector

    with pytest.raises(UnsupportedError):
        write_control_vector({0: torch.ones(8)}, tmp_path / "x.gguf", model_hint="llama", n_layers=2)
    assert not (tmp_path / "x.gguf").exists()


def test_cli_export_safetensors_roundtrip(cli, tmp_path):
    from safetensors.torch import load_file

    from itictl.store import Store

    store = Store(tmp_path / "cli-store")
    store.ensure()
    m = fake_model_art(store)
    deltas = {2: torch.arange(32, dtype=torch.float32), 5: -torch.ones(32)}
    inter = fake_intervention(store, m, deltas, [[2, 0], [5, 3]])
    out_dir = tmp_path / "exp"
    r = cli("export", inter.key[:10], str(out_dir), "--format", "safetensors", "--json")
    assert r.code == 0, r.stderr
    doc = r.json()
    assert sorted(doc["files"]) == ["README.md", "intervention.json", "intervention.safetensors"]
    back = load_file(str(out_dir / "intervention.safetensors"))
    assert sorted(back) == ["layer.2", "layer.5"]
    assert torch.equal(back["layer.2"], deltas[2]) and torch.equal(back["layer.5"], deltas[5])
    info = json.loads((out_dir / "intervention.json").read_text())
    assert info["itictl_intervention_key"] == inter.key and info["heads"] == [[2, 0], [5, 3]]
    card = (out_dir / "README.md").read_text()
    assert card.startswith("---\n") and "base_model: \"test-org/tiny-llama\"" in card
    assert "- inference-time-intervention" in card and "- truthfulqa" in card


def test_cli_export_bad_input_writes_nothing(cli, tmp_path):
    from itictl.store import Store

    store = Store(tmp_path / "cli-store")
    store.ensure()
    m = fake_model_art(store)
    out_dir = tmp_path / "nothing"
    r = cli("export", m.key[:10], str(out_dir), "--format", "safetensors")
    assert r.code == 4 and "not an intervention" in r.stderr and r.stderr.count("\n") == 1
    r = cli("export", m.key[:10], str(out_dir), "--format", "onnx")
    assert r.code == 4 and "unknown export format" in r.stderr
    assert not out_dir.exists()


def test_embedded_control_vector_export(session_store, embedded, tmp_path):
    from itictl.models.arch import head_layout, o_proj_modules, out_proj_matrix
    from itictl.publish.export import read_control_vector, run_export
    from tests.publish.test_bake import embedded_deltas, make_intervention

    heads = [[0, 1], [4, 2], [12, 0]]
    deltas = embedded_deltas(embedded, heads)
    inter = make_intervention(session_store, embedded.art, deltas, heads, alpha=7.0)
    doc = run_export(session_store, inter, "control-vector", tmp_path / "cv")
    assert doc["layers"] == [4, 12] and doc["skipped_layers"] == [0]
    meta, vecs = read_control_vector(tmp_path / "cv" / "control_vector.gguf")
    assert meta["controlvector.layer_count"] == head_layout(embedded.model).n_layers
    assert meta["controlvector.model_hint"] == embedded.model.config.model_type
    hidden = embedded.model.config.hidden_size
    for l in (4, 12):
        w = out_proj_matrix(o_proj_modules(embedded.model)[l]).float()
        assert vecs[l].shape == (hidden,)
        assert torch.allclose(torch.from_numpy(vecs[l]), w @ deltas[l], atol=1e-4)


def test_embedded_pyvene_export_loads_and_steers_like_itictl(session_store, embedded, tmp_path):
    """The pyvene export, loaded by pyvene itself on the embedded model, gives the logits of
    itictl's own steering with the same deltas (and not the plain model's)."""
    import pyvene

    from itictl.intervene.steering import intervened
    from itictl.publish.export import run_export
    from tests.publish.test_bake import embedded_deltas, make_intervention

    heads = [[5, 1]]
    deltas = embedded_deltas(embedded, heads)
    inter = make_intervention(session_store, embedded.art, deltas, heads, alpha=3.0)
    doc = run_export(session_store, inter, "pyvene", tmp_path / "pv")
    assert sorted(doc["files"]) == sorted(p.relative_to(tmp_path / "pv").as_posix()
                                          for p in (tmp_path / "pv").rglob("*") if p.is_file())
    assert "config.json" in doc["files"]
    loaded = pyvene.IntervenableModel.load(str(tmp_path / "pv"), model=embedded.model)
    ids = embedded.tokenizer("Q: Are bats blind? A: No, bats can see.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        plain = embedded.model(input_ids=ids).logits
        _, pv_out = loaded({"input_ids": ids})
        with intervened(embedded.model, deltas, "all"):
            ours = embedded.model(input_ids=ids).logits
    torch.testing.assert_close(pv_out.logits, ours, atol=1e-4, rtol=0)
    assert (ours - plain).abs().max().item() > 1e-2
    with torch.no_grad():  # pyvene's hooks are gone again: the shared model is unchanged
        assert torch.equal(embedded.model(input_ids=ids).logits, plain)
