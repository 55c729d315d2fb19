"""One rule for which intervention a ref means (publish.bake.resolve_intervention, used by bake,
export and push), and the refs the library steps set: bake tags `last-bake` (+ --tag) itself."""

from __future__ import annotations

import pytest

from itictl.errors import BadInputError, NotFoundError, UsageError
from itictl.output import Output
from tests.helpers import tiny_llama
from tests.publish.test_bake import make_intervention, random_deltas


@pytest.fixture
def populated(store, tmp_path):
    """A tiny model folder, two interventions and an eval whose parents hold both (one per fold)."""
    from itictl.models import ensure_model
    from tests.models.tiny import tiny_tokenizer

    model = tiny_llama(layers=3)
    folder = tmp_path / "tiny"
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    m = ensure_model(store, str(folder))
    a = make_intervention(store, m, random_deltas(model, [0], seed=1), [[0, 1]])
    b = make_intervention(store, m, random_deltas(model, [2], seed=2), [[2, 3]], alpha=5.0)
    ev = store.produce("eval", {"t": 1}, {"model": m.key, "intervention": a.key, "intervention.fold0.k1.a15": a.key,
                                         "intervention.fold1.k1.a15": b.key},
                       lambda ctx: (ctx.out / "eval.json").write_text("{}"))[0]
    return store, m, a, b, ev


class _Warnings(Output):
    def __init__(self):
        super().__init__(quiet=True)
        self.warned: list[str] = []

    def warn(self, msg: str) -> None:
        self.warned.append(msg)


def test_resolve_intervention_one_rule(populated):
    from itictl.publish.bake import resolve_intervention

    store, m, a, b, ev = populated
    with pytest.raises(NotFoundError, match="last-eval"):
        resolve_intervention(store, None)
    store.tag("last-eval", ev.key)
    with pytest.raises(NotFoundError, match="α = 0 only"):  # no REF: the all-questions refit (test_final.py)
        resolve_intervention(store, None)
    out = _Warnings()
    assert resolve_intervention(store, ev.key[:10], out)[0].key == a.key  # role `intervention`, with a warning
    assert len(out.warned) == 1 and a.key[:12] in out.warned[0]
    assert resolve_intervention(store, b.key[:10])[0].key == b.key
    with pytest.raises(BadInputError, match="not an intervention"):
        resolve_intervention(store, m.key[:10])
    bare = store.produce("eval", {"t": 2}, {"model": m.key}, lambda ctx: (ctx.out / "eval.json").write_text("{}"))[0]
    with pytest.raises(BadInputError, match="no intervention"):
        resolve_intervention(store, bare.key[:10])
    with pytest.raises(UsageError, match="do not apply to a REF"):
        resolve_intervention(store, ev.key[:10], heads=1)


def test_bake_export_push_share_the_rule_and_bake_tags(populated, tmp_path):
    from itictl.publish.bake import bake_ref, resolve_intervention
    from itictl.publish.export import export_ref
    from itictl.publish.push import push_target, run_push

    store, m, a, b, ev = populated
    with pytest.raises(BadInputError, match="invalid ref name"):  # the tag is checked before the ref
        bake_ref(store, "no-such-ref", tag="a/b")
    inter, baked, cached = bake_ref(store, ev.key[:10], dtype="float32", device="cpu", tag="mine")
    assert inter.key == a.key and not cached and baked.parents["intervention"] == a.key
    assert store.refs()["last-bake"] == baked.key and store.refs()["mine"] == baked.key
    assert resolve_intervention(store, baked.key[:10])[0].key == a.key  # a baked model's intervention
    assert bake_ref(store, "mine", dtype="float32", device="cpu")[1:] == (baked, True)  # baked -> same bake
    doc = export_ref(store, ev.key[:10], "safetensors", tmp_path / "x")
    assert doc["intervention"] == a.key and (tmp_path / "x" / "intervention.safetensors").is_file()
    assert push_target(store, ev.key[:10])[0].key == a.key  # an eval pushes its intervention
    assert push_target(store, baked.key[:10])[0].key == baked.key
    store.tag("last-eval", ev.key)
    assert push_target(store, None)[0].key == baked.key  # default: the baked model of last-eval's intervention
    dry = run_push(store, None, "me/tiny", dry_run=True)
    assert dry["artifact"] == baked.key and "README.md" in dry["files"] and dry["card"]
