"""pyvene interop (itictl.publish.pyvene_io): our save loads in pyvene itself and steers identically."""

from __future__ import annotations

import pytest
import torch

from itictl.errors import UnsupportedError
from tests.helpers import tiny_llama

H, D = 4, 8


@pytest.fixture(scope="module")
def model():
    return tiny_llama(seed=3).double()


def deltas(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {0: 4 * torch.randn(H * D, generator=g, dtype=torch.float64),
            1: 4 * torch.randn(H * D, generator=g, dtype=torch.float64)}


def test_pyvene_loads_our_save_and_matches_itictl_steering(model, tmp_path):
    import pyvene as pv

    from itictl.intervene.steering import intervened
    from itictl.publish.pyvene_io import save_pyvene

    d = deltas()
    save_pyvene(d, model, tmp_path / "pv")
    assert (tmp_path / "pv" / "config.json").is_file()
    pv_model = pv.IntervenableModel.load(str(tmp_path / "pv"), model)
    ids = torch.randint(3, 128, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        _, pv_out = pv_model({"input_ids": ids})
        with intervened(model, d, "all"):
            ours = model(input_ids=ids).logits
    assert torch.allclose(pv_out.logits, ours, atol=1e-10)
    assert not torch.allclose(plain, ours, atol=1e-3)
    with torch.no_grad():
        _, pv_gen = pv_model.generate({"input_ids": ids}, intervene_on_prompt=True, max_new_tokens=6,
                                      do_sample=False, pad_token_id=0)
        with intervened(model, d, "all"):
            our_gen = model.generate(input_ids=ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
        base_gen = model.generate(input_ids=ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert torch.equal(pv_gen, our_gen)
    assert not torch.equal(base_gen, our_gen)


def test_load_pyvene_round_trip_and_import_artifact(model, tmp_path, store):
    from itictl.intervene.build import import_deltas, load_deltas, read_intervention
    from itictl.publish.pyvene_io import load_pyvene, save_pyvene

    d = {1: torch.zeros(H * D, dtype=torch.float64)}
    d[1][2 * D:3 * D] = torch.arange(D, dtype=torch.float64) + 1  # only head 2 of layer 1
    save_pyvene(d, model, tmp_path / "pv")
    got, info = load_pyvene(tmp_path / "pv")
    assert sorted(got) == [1] and torch.equal(got[1], d[1].float())
    assert info["components"] == ["model.layers[1].self_attn.o_proj.input"]
    art, cached = import_deltas(store, got, layout=(2, H, D), source={"format": "pyvene", "path": "x"})
    assert not cached
    assert read_intervention(art)["heads"] == [[1, 2]]
    assert torch.equal(load_deltas(art)[1], d[1].float())
    again, cached = import_deltas(store, got, layout=(2, H, D), source={"format": "pyvene", "path": "y"})
    assert cached and again.key == art.key  # same tensors -> same artifact


def test_foreign_pyvene_save_is_read_and_non_additive_refused(model, tmp_path):
    import pyvene as pv

    from itictl.publish.pyvene_io import load_pyvene

    # written by pyvene directly, the way the seed's honest-llama port builds it
    vec = torch.randn(H * D, dtype=torch.float64)
    cfg = [{"component": "model.layers[0].self_attn.o_proj.input",
            "intervention": pv.AdditionIntervention(source_representation=vec, embed_dim=H * D)}]
    pv.IntervenableModel(cfg, model).save(str(tmp_path / "foreign"))
    got, _ = load_pyvene(tmp_path / "foreign")
    assert torch.allclose(got[0], vec.float())

    cfg = [{"component": "model.layers[0].self_attn.o_proj.input",
            "intervention": pv.SubtractionIntervention(source_representation=vec, embed_dim=H * D)}]
    pv.IntervenableModel(cfg, model).save(str(tmp_path / "sub"))
    with pytest.raises(UnsupportedError):
        load_pyvene(tmp_path / "sub")
