"""gc: explicit roots, and the rules for tmp/ (resumable work of unfinished steps is kept unless
asked, work of a running step is never deleted, a completed step's leftover work is collected)."""

from __future__ import annotations

import numpy as np
import pytest

from itictl.store import Store


def write_payload(text="hello"):
    def build(ctx):
        (ctx.out / "payload.txt").write_text(text)
    return build


def interrupted(store: Store, params: dict) -> str:
    """Run a build that saves resumable work and dies; -> its key (not an object)."""
    def dying(ctx):
        ctx.work.mkdir(parents=True, exist_ok=True)
        (ctx.work / "chunk_000000").write_text("done")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.produce("thing", params, {}, dying)
    key = store.key_for("thing", params, {})
    assert not store.has(key) and (store.work_dir(key) / "chunk_000000").is_file()
    return key


def test_gc_keeps_work_of_an_interrupted_step_until_asked(store):
    key = interrupted(store, {"x": 1})
    res = store.gc()
    assert res["work_kept"] == [f"{key}.work"] and f"{key}.work" not in res["tmp_removed"]
    assert (store.work_dir(key) / "chunk_000000").read_text() == "done"
    dry = store.gc(work=True, dry_run=True)
    assert dry["tmp_removed"] == [f"{key}.work"] and store.work_dir(key).is_dir()
    res = store.gc(work=True)
    assert res["tmp_removed"] == [f"{key}.work"] and res["work_kept"] == []
    assert not store.work_dir(key).exists()


def test_gc_collects_leftover_work_of_a_completed_key(store):
    done, _ = store.produce("thing", {"x": 1}, {}, write_payload())
    store.tag("keep", done.key)
    gone, _ = store.produce("thing", {"x": 2}, {}, write_payload())  # unreachable: removed by this gc
    for key in (done.key, gone.key):  # e.g. a process killed between the commit and removing its work
        store.work_dir(key).mkdir(parents=True)
        (store.work_dir(key) / "chunk_000000").write_text("stale")
    res = store.gc()
    assert sorted(res["tmp_removed"]) == sorted([f"{done.key}.work", f"{gone.key}.work"])
    assert res["work_kept"] == [] and res["removed"] == [gone.key]
    assert not store.work_dir(done.key).exists() and not store.work_dir(gone.key).exists()
    assert store.has(done.key) and not store.has(gone.key)


def test_gc_never_deletes_work_of_a_running_step(store):
    key = interrupted(store, {"x": 1})
    finished, _ = store.produce("thing", {"x": 2}, {}, write_payload())
    store.work_dir(finished.key).mkdir(parents=True)
    with store.key_lock(key), store.key_lock(finished.key):  # both steps are running (another fd)
        res = store.gc(work=True)
    assert sorted(res["work_kept"]) == sorted([f"{key}.work", f"{finished.key}.work"])
    assert store.work_dir(key).is_dir() and store.work_dir(finished.key).is_dir()
    assert store.gc(work=True)["tmp_removed"] == sorted([f"{key}.work", f"{finished.key}.work"])


def test_gc_removes_abandoned_build_dirs_and_trash(store):
    (store.tmp / "0123456789abcdef.1a2b3c4d").mkdir()  # a build killed mid-write
    (store.tmp / "0123456789abcdef.1a2b3c4d" / "half.bin").write_bytes(b"x")
    (store.tmp / "trash.deadbeef").mkdir()
    (store.tmp / "not-a-key.work").mkdir()  # not a work dir of any key
    res = store.gc()
    assert sorted(res["tmp_removed"]) == ["0123456789abcdef.1a2b3c4d", "not-a-key.work", "trash.deadbeef"]
    assert list(store.tmp.iterdir()) == []


def test_gc_keeps_explicit_roots_and_their_parents(store):
    parent, _ = store.produce("parent", {"p": 1}, {}, write_payload())
    child, _ = store.produce("child", {"c": 1}, {"parent": parent.key}, write_payload())
    other, _ = store.produce("other", {"o": 1}, {}, write_payload())
    res = store.gc([child.key])
    assert res["kept"] == sorted([parent.key, child.key]) and res["removed"] == [other.key]
    assert store.has(parent.key) and store.has(child.key) and not store.has(other.key)
    assert store.gc()["removed"] == sorted([parent.key, child.key])  # no roots, no refs: all go


def test_cli_gc_work_flag_and_keep(cli, tmp_path):
    s = Store(tmp_path / "cli-store")
    key = interrupted(s, {"x": 1})
    art, _ = s.produce("thing", {"x": 2}, {}, write_payload())
    r = cli("store", "gc", "--keep", art.key[:10], "--json")
    assert r.code == 0, r.stderr
    doc = r.json()
    assert doc["work_kept"] == [f"{key}.work"] and doc["removed"] == [] and doc["kept"] == [art.key]
    assert s.work_dir(key).is_dir()
    r = cli("store", "gc", "--work")
    assert r.code == 0, r.stderr
    assert not s.work_dir(key).exists() and not s.has(art.key)
    assert cli("store", "gc", "--keep", "nosuchref").code == 3


# ---- an interrupted extraction (tiny model, real CLI) survives gc and resumes ------------------

def _interrupt_extract(cli, monkeypatch, args) -> None:
    import itictl.extract.chunks as chunks

    monkeypatch.setattr(chunks, "CHUNK_PROMPTS", 4)
    real_save, calls = chunks.save_chunk, []

    def dying_save(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while the second chunk is being written
        return real_save(*a, **k)

    monkeypatch.setattr(chunks, "save_chunk", dying_save)
    assert cli(*args).code == 130
    monkeypatch.setattr(chunks, "save_chunk", real_save)


def test_interrupted_extraction_survives_gc_and_resumes(cli, tmp_path, tqa_dir, monkeypatch):
    from itictl.extract import open_activations
    from tests.models.tiny import tiny_folder

    model = tiny_folder(tmp_path / "tiny")
    args = ["extract", "--model", str(model), "--data", str(tqa_dir), "--limit", "12", "--device", "cpu",
            "--batch-tokens", "64", "--json"]
    s = Store(tmp_path / "cli-store")
    _interrupt_extract(cli, monkeypatch, args)
    work = [p for p in s.tmp.iterdir() if p.name.endswith(".work")]
    assert len(work) == 1
    chunks = list(work[0].glob("chunk_*"))
    assert len(chunks) == 1
    saved = set(np.load(chunks[0] / "idx.npy").tolist())

    r = cli("store", "gc", "--json")
    assert r.code == 0, r.stderr
    assert r.json()["work_kept"] == [work[0].name] and list(work[0].glob("chunk_*")) == chunks

    r = cli(*args)
    assert r.code == 0, r.stderr
    art = s.get(r.json()["key"])
    assert work[0].name == f"{art.key}.work" and not work[0].exists()  # the step finished: work gone
    assert len(saved) >= 4 and art.meta["resumed_prompts"] == len(saved)
    assert art.meta["computed_prompts"] == 12 - len(saved)
    with open_activations(art) as a:
        assert a.head_wise.shape == (12, 2, 32) and np.isfinite(a.head_wise[...]).all()


def test_finished_work_folder_is_removed_in_the_background(store):
    """A completed step's work folder leaves tmp/ at once (renamed to trash.*) and is deleted by a
    thread; gc waits for that thread, so it never reports the trash."""
    from itictl.store import later

    def build(ctx):
        ctx.work.mkdir(parents=True, exist_ok=True)
        (ctx.work / "chunk_000000").write_bytes(b"x" * 1000)
        (ctx.out / "a.txt").write_text("a")

    art, cached = store.produce("thing", {"bg": 1}, {}, build)
    assert not cached and not store.work_dir(art.key).exists()
    later.wait()
    assert [p.name for p in store.tmp.iterdir()] == []
    assert store.gc(roots=[art.key])["tmp_removed"] == []
