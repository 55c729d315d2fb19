"""The atomic-write helper: a file is absent, old or complete new, never partial; no temp left."""

from __future__ import annotations

import multiprocessing as mp
import os

import pytest

from itictl.store.atomic import atomic_path, commit_dir, write_bytes_atomic, write_text_atomic


def test_write_creates_and_replaces_without_leftovers(tmp_path):
    p = tmp_path / "ref"
    write_text_atomic(p, "first\n")
    assert p.read_text() == "first\n"
    write_text_atomic(p, "ünïcode\n")
    assert p.read_text(encoding="utf-8") == "ünïcode\n"
    write_bytes_atomic(p, b"\x00\xff")
    assert p.read_bytes() == b"\x00\xff"
    assert [q.name for q in tmp_path.iterdir()] == ["ref"]


def test_temp_path_is_a_hidden_sibling(tmp_path):
    p = tmp_path / "plan.json"
    with atomic_path(p) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.name.endswith(".tmp")
        assert not list(tmp_path.glob("plan*"))  # a glob for the final name never sees the temp file
        tmp.write_text("{}")
        assert not p.exists()  # nothing visible until the block ends
    assert p.read_text() == "{}"


def test_error_mid_write_keeps_the_old_content(tmp_path):
    p = tmp_path / "digests.json"
    write_text_atomic(p, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half of the ne")
            raise RuntimeError("disk gone")
    assert p.read_text() == "old" and [q.name for q in tmp_path.iterdir()] == ["digests.json"]


def test_missing_temp_file_is_an_error_and_keeps_the_old_content(tmp_path):
    p = tmp_path / "x"
    write_text_atomic(p, "old")
    with pytest.raises(FileNotFoundError):
        with atomic_path(p):
            pass  # the caller wrote nothing
    assert p.read_text() == "old"


def _die_mid_write(path: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write("partial")
            f.flush()
        os._exit(9)  # killed: no cleanup runs


def test_killed_writer_leaves_the_old_content(tmp_path):
    p = tmp_path / "ref"
    write_text_atomic(p, "old")
    proc = mp.get_context("fork").Process(target=_die_mid_write, args=(str(p),))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 9
    assert p.read_text() == "old"
    leftovers = [q for q in tmp_path.iterdir() if q.name != "ref"]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".ref.")  # only a hidden temp file


def test_commit_dir_publishes_a_whole_folder(tmp_path):
    src = tmp_path / "build"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.bin").write_bytes(b"abc")
    dst = tmp_path / "objects" / "ab" / "cdef"
    commit_dir(src, dst)
    assert not src.exists() and (dst / "sub" / "a.bin").read_bytes() == b"abc"
    other = tmp_path / "other"
    other.mkdir()
    (other / "b").write_text("x")
    with pytest.raises(OSError):
        commit_dir(other, dst)  # never merges into or replaces a non-empty object
    assert (dst / "sub" / "a.bin").read_bytes() == b"abc"


def test_commit_dir_fsyncs_the_parent_in_the_background(tmp_path, monkeypatch):
    """The rename is visible at once; the parent's fsync runs in a non-daemon thread that
    store.later.wait joins (Python joins it at exit too)."""
    import threading

    from itictl.store import atomic, later

    gate, synced = threading.Event(), []

    def slow_fsync(d):
        gate.wait(10)
        synced.append(d)

    monkeypatch.setattr(atomic, "_fsync_dir", slow_fsync)
    src = tmp_path / "build"
    src.mkdir()
    dst = tmp_path / "objects" / "k"
    commit_dir(src, dst)
    assert dst.is_dir() and synced == []  # published before its fsync finished
    assert later.pending() and all(not t.daemon for t in later.pending())
    gate.set()
    later.wait()
    assert synced == [dst.parent] and later.pending() == []
