"""compute.fuse: compiled decoder layers give the unfused activations (CPU, float32), the o_proj
capture keeps working inside compiled layers, bad modes are rejected, auto resolves per device and
architecture, and a compile failure falls back to the unfused layers with one warning."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from itictl.compute.fuse import FUSE_MODES, Fuser, check_fuse, inductor_available, resolve_fuse
from itictl.errors import BadInputError
from itictl.extract.engine import Tokenized, extract_items, plan_batches, run_batches
from tests.extract.test_extract import _items
from tests.helpers import tiny_llama


@pytest.fixture(scope="module")
def inductor_cpu():
    """Skip when TorchInductor cannot build a CPU kernel here (no C compiler, unsupported Python).
    Kernels are compiled in this process (no worker pool to start: most of a tiny model's compile)."""
    import torch._inductor.config as ic

    mp = pytest.MonkeyPatch()
    mp.setattr(ic, "compile_threads", 1)
    try:
        got = torch.compile(lambda x: x * 2 + 1, dynamic=False)(torch.ones(3))
    except Exception as e:  # noqa: BLE001 - any failure means: cannot compile on this machine
        pytest.skip(f"torch.compile (inductor) does not work on this machine: {type(e).__name__}: {e}"[:300])
    assert torch.equal(got, torch.full((3,), 3.0))
    yield
    mp.undo()


def _fused_run(model, items, batch_tokens=48):
    """run_batches with a compiled Fuser -> (head [N, L, H·D], resid [N, L+1, hidden], fuser)."""
    batches = plan_batches(items, range(len(items)), batch_tokens)
    head = resid = None
    with Fuser(model, "compile") as fz:
        for rows, h, r in run_batches(model, items, batches, layer_wise=True, device="cpu", pad_id=0, fuse=fz):
            if head is None:
                head = np.zeros((len(items), *h.shape[1:]), np.float32)
                resid = np.zeros((len(items), *r.shape[1:]), np.float32)
            head[rows], resid[rows] = h.numpy(), r.numpy()
    return head, resid, fz


def _arch_model(mt: str):
    from transformers import AutoModelForCausalLM

    from tests.models.test_arch import _config

    cfg, _ = _config(mt)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg).eval()


@pytest.mark.parametrize("mt", ["llama", "mistral", "qwen2", "qwen3"])  # arch_table._FUSE_OK
def test_compiled_layers_equal_unfused_on_cpu(inductor_cpu, mt):
    model = tiny_llama(layers=2) if mt == "llama" else _arch_model(mt)
    items = [Tokenized([min(i, 60) for i in t.ids], t.prefix_len) for t in _items(seed=3, questions=5)]
    ref = extract_items(model, items, layer_wise=True, batch_tokens=48)
    head, resid, fz = _fused_run(model, items)
    assert fz.used and fz.fallback is None
    np.testing.assert_allclose(head, ref["head_wise"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(resid, ref["layer_wise"], atol=1e-4, rtol=0)
    assert np.abs(ref["head_wise"]).max() > 0.1  # real values, not all zeros
    layer = model.model.layers[0]
    assert "forward" not in layer.__dict__  # the model's own forwards are back after the run


def test_models_of_one_class_share_compiled_code_not_weights(inductor_cpu):
    import copy

    from itictl.compute.fuse import COMPILED

    items = _items(seed=6, questions=3)
    a = tiny_llama(layers=2, seed=1)
    b = copy.deepcopy(a)  # a copy (as bake makes) with other weights
    with torch.no_grad():
        for p in b.parameters():
            p.mul_(1.5)
    head_a, _, fa = _fused_run(a, items)
    head_b, _, fb = _fused_run(b, items)
    assert fa.used and fb.used and (type(a.model.layers[0]), "compile") in COMPILED
    np.testing.assert_allclose(head_a, extract_items(a, items)["head_wise"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(head_b, extract_items(b, items)["head_wise"], atol=1e-4, rtol=0)
    assert np.abs(head_a - head_b).max() > 0.1


@torch.library.custom_op("itictl_test::plain_silu", mutates_args=())
def _plain_silu(x: torch.Tensor) -> torch.Tensor:
    """A custom kernel without a fake (meta) implementation: runs eagerly, cannot be compiled."""
    return torch.nn.functional.silu(x)


class _CustomAct(torch.nn.Module):
    def forward(self, x):
        return _plain_silu(x)


def test_compile_failure_falls_back_to_unfused_with_one_warning(inductor_cpu):
    model = tiny_llama(layers=2)
    for layer in model.model.layers:
        layer.mlp.act_fn = _CustomAct()
    items = _items(seed=5, questions=3)
    ref = extract_items(model, items, layer_wise=True, batch_tokens=32)
    assert len(plan_batches(items, range(len(items)), 32)) > 1  # later batches run unfused without retrying
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        head, resid, fz = _fused_run(model, items, batch_tokens=32)
    ours = [w for w in caught if "--fuse compile failed" in str(w.message)]
    assert len(ours) == 1 and issubclass(ours[0].category, RuntimeWarning)
    assert fz.fallback and not fz.active and not fz.used
    assert "forward" not in model.model.layers[0].__dict__
    np.testing.assert_allclose(head, ref["head_wise"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(resid, ref["layer_wise"], atol=1e-6, rtol=0)


def test_modes_are_checked():
    assert check_fuse(None) == "auto" and check_fuse(" Compile ") == "compile"
    assert set(FUSE_MODES) == {"auto", "off", "compile", "max-autotune"}
    with pytest.raises(BadInputError) as e:
        check_fuse("liger")
    assert "liger" in e.value.message and "max-autotune" in e.value.hint
    with pytest.raises(ValueError):
        Fuser(tiny_llama(layers=1), "auto")  # callers resolve auto first


def test_auto_depends_on_device_and_architecture():
    from itictl.models.arch import use_arch_map

    model = tiny_llama(layers=1)
    assert resolve_fuse("auto", model, "cpu") == "off"
    assert resolve_fuse("auto", model, "cuda:0") == ("compile" if inductor_available("cuda") else "off")
    assert resolve_fuse("compile", model, "cpu") == "compile"  # explicit modes are honoured anywhere
    assert resolve_fuse("off", model, "cuda") == "off"
    assert resolve_fuse("auto", _arch_model("gpt2"), "cuda") == "off"  # no fuse flag in its table entry
    model.config._attn_implementation = "flash_attention_2"  # no packed rows: one shape per prompt length
    assert resolve_fuse("auto", model, "cuda") == "off"
    model.config._attn_implementation = "sdpa"
    with use_arch_map({"layers": "model.layers", "o_proj": "self_attn.o_proj"}):
        assert resolve_fuse("auto", model, "cuda") == "off"


def test_off_fuser_runs_the_model_as_it_is():
    model = tiny_llama(layers=1)
    with Fuser(model, "off") as fz:
        assert fz.run(lambda: 7) == 7
    assert not fz.used and fz.fallback is None and "forward" not in model.model.layers[0].__dict__


def test_cli_rejects_unknown_fuse_mode(cli):
    res = cli("extract", "--fuse", "fastest", "--limit", "2")
    assert res.code == BadInputError.exit_code and res.stdout == ""
    assert "fastest" in res.stderr and len(res.stderr.strip().splitlines()) == 1
