"""The lm-eval export: lm-evaluation-harness's own `steered` model, run on a tiny local model and a
tiny local multiple-choice task, gives the log-likelihoods of itictl's intervened scoring with
positions = all (fp32), and not the plain model's."""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import tiny_llama

CONTEXTS = ["w3 w4 w5 w6", "w3 w4 w9", "w3 w4 w20 w21 w22"]
CHOICES = [["w7 w8", "w9", "w10 w11 w12"], ["w30", "w31 w32"], ["w40 w41", "w42", "w43 w44"]]


def _deltas(layers=(0, 1), width=32, scale=2.0, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {l: scale * torch.randn(width, generator=g) for l in layers}


def test_steer_config_hooks_give_itictl_all_positions():
    """lm-eval's own `steer` context manager with our config = itictl's intervened(..., 'all')."""
    from lm_eval.models.hf_steered import SteeredModel, steer

    from itictl.intervene.steering import intervened
    from itictl.models.arch import o_proj_modules
    from itictl.publish.lm_eval_export import lm_eval_hookpoints, steer_config

    model = tiny_llama(layers=3)  # hidden 40 != H·D 32: W_o is not square
    assert lm_eval_hookpoints(model) == [f"layers.{l}.self_attn.o_proj" for l in range(3)]
    deltas = _deltas(layers=(0, 2))
    cfg = steer_config(model, deltas)
    assert sorted(cfg) == ["layers.0.self_attn.o_proj", "layers.2.self_attn.o_proj"]
    for l in (0, 2):
        entry = cfg[f"layers.{l}.self_attn.o_proj"]
        assert entry["action"] == "add" and entry["steering_coefficient"] == 1.0 and entry["bias"] is None
        assert entry["steering_vector"].dtype == torch.float32 and entry["steering_vector"].shape == (40,)
        torch.testing.assert_close(entry["steering_vector"], o_proj_modules(model)[l].weight @ deltas[l])
    hooks = {h: (lambda acts, v=e["steering_vector"]: SteeredModel.add(acts, v, None)) for h, e in cfg.items()}
    ids = torch.tensor([[1, 5, 9, 14, 3, 7]])
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        with steer(model, hooks):
            theirs = model(input_ids=ids).logits
        with intervened(model, deltas, "all"):
            ours = model(input_ids=ids).logits
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    assert (ours - plain).abs().max().item() > 1e-2


def _task_dir(tmp_path):
    data = tmp_path / "task" / "data.jsonl"
    data.parent.mkdir(parents=True)
    data.write_text("".join(json.dumps({"question": c, "choices": ch, "label": 0}) + "\n"
                            for c, ch in zip(CONTEXTS, CHOICES)), encoding="utf-8")
    (tmp_path / "task" / "itictl_tiny_mc.yaml").write_text(f"""task: itictl_tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
target_delimiter: " "
metric_list:
  - metric: acc
""", encoding="utf-8")
    return tmp_path / "task"


def _lm_eval_loglikelihoods(model_args: str, task_dir) -> list[list[float]]:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    res = simple_evaluate(model="steered" if "steer_path" in model_args else "hf", model_args=model_args,
                          tasks=["itictl_tiny_mc"], task_manager=TaskManager(include_path=str(task_dir), include_defaults=False),
                          batch_size=2, log_samples=True, bootstrap_iters=0)
    rows = sorted(res["samples"]["itictl_tiny_mc"], key=lambda s: s["doc_id"])
    return [[float(r[0]) for r in s["filtered_resps"]] for s in rows]


def test_lm_eval_steered_matches_itictl_positions_all(cli, tmp_path, monkeypatch):
    from itictl.evaluate.mc import Group, score_groups
    from itictl.intervene.steering import intervened
    from itictl.models import ensure_model, load_model
    from itictl.store import Store
    from tests.models.tiny import tiny_folder
    from tests.publish.test_export import fake_intervention

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "ds-cache"))
    store = Store(tmp_path / "cli-store")  # the store `cli` runs on
    store.ensure()
    folder = tiny_folder(tmp_path / "tiny", seed=3)
    m_art = ensure_model(store, str(folder))
    deltas = _deltas()
    inter = fake_intervention(store, m_art, deltas, [[0, 1], [1, 2]])
    r = cli("export", inter.key[:12], str(tmp_path / "exp"), "--format", "lm-eval", "--device", "cpu", "--json")
    assert r.code == 0, r.stderr
    doc = r.json()
    assert doc["files"] == ["steer.pt", "lm_eval.json", "README.md"]
    assert doc["model_args"] == {"pretrained": str(folder)}
    assert doc["usage"].startswith("lm_eval --model steered --model_args pretrained=")
    meta = json.loads((tmp_path / "exp" / "lm_eval.json").read_text())
    assert meta["hookpoints"] == ["layers.0.self_attn.o_proj", "layers.1.self_attn.o_proj"] and meta["positions"] == "all"

    task_dir = _task_dir(tmp_path)
    args = f"pretrained={folder},dtype=float32,device=cpu"
    theirs = _lm_eval_loglikelihoods(f"{args},steer_path={tmp_path / 'exp' / 'steer.pt'}", task_dir)
    plain_theirs = _lm_eval_loglikelihoods(args, task_dir)

    lm = load_model(store, m_art, dtype="float32", device="cpu")
    groups = [Group(context=c, continuations=[" " + a for a in ch]) for c, ch in zip(CONTEXTS, CHOICES)]
    ours = score_groups(lm.model, lm.tokenizer, "w3 w4", groups, steer=lambda _pos: intervened(lm.model, deltas, "all"))
    plain_ours = score_groups(lm.model, lm.tokenizer, "w3 w4", groups)
    assert [len(r) for r in theirs] == [len(ch) for ch in CHOICES]
    for t, o in zip(theirs, ours):
        assert t == pytest.approx(o, abs=1e-4, rel=0)
    for t, o in zip(plain_theirs, plain_ours):
        assert t == pytest.approx(o, abs=1e-4, rel=0)
    assert max(abs(a - b) for t, p in zip(theirs, plain_theirs) for a, b in zip(t, p)) > 1e-2
