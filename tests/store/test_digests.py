"""External-file digests (store/digests.py): reused while a file's path, size, mtime and inode stay,
recomputed when any of them changes; several files at once (the parallel path) agree with hashlib."""

from __future__ import annotations

import hashlib
import os


def test_digest_reused_while_unchanged_and_redone_on_size_mtime_or_inode(store, tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"a" * 1000)
    st = f.stat()
    d1 = store.file_digest(f)
    assert d1 == hashlib.sha256(b"a" * 1000).hexdigest()
    with open(f, "r+b") as fh:  # same size, same inode, mtime put back: the cache is (knowingly) trusted
        fh.write(b"b")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert store.file_digest(f) == d1
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # mtime changed: hashed again
    assert store.file_digest(f) == hashlib.sha256(b"b" + b"a" * 999).hexdigest()
    st2 = f.stat()
    g = tmp_path / "new"
    g.write_bytes(b"c" * 1000)  # replaced by another file of equal size and mtime: a new inode
    os.utime(g, ns=(st2.st_atime_ns, st2.st_mtime_ns))
    os.replace(g, f)
    assert store.file_digest(f) == hashlib.sha256(b"c" * 1000).hexdigest()
    f.write_bytes(b"c" * 1001)  # size changed
    assert store.file_digest(f) == hashlib.sha256(b"c" * 1001).hexdigest()


def test_several_files_hashed_together_match_and_fill_the_cache(store, tmp_path):
    from itictl.store.digests import content_digests

    files = []
    for i in range(5):
        p = tmp_path / f"shard-{i}.bin"
        p.write_bytes(os.urandom(100_000 + i))
        files.append(p)
    want = [hashlib.sha256(p.read_bytes()).hexdigest() for p in files]
    assert content_digests(files, threads=3) == want
    assert store.file_digests(files[:2]) == want[:2]
    assert store.file_digests(files) == want  # two from the cache, three hashed
    with open(files[4], "r+b") as fh:  # rewritten in place, size and mtime put back: served from the cache
        st = files[4].stat()
        fh.write(b"\0" * 10)
    os.utime(files[4], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert store.file_digests(files)[4] == want[4]


def test_model_folder_identity_reuses_and_invalidates_the_cache(store, tmp_path):
    from itictl.models import resolve_model
    from tests.models.tiny import tiny_folder

    folder = tiny_folder(tmp_path / "m", seed=0)
    a = resolve_model(str(folder), store).identity
    w = folder / "model.safetensors"
    st = w.stat()
    data = bytearray(w.read_bytes())
    data[-1] ^= 0x01
    w.write_bytes(bytes(data))
    os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns))  # same path, size, mtime, inode: not re-hashed
    assert resolve_model(str(folder), store).identity == a
    os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    b = resolve_model(str(folder), store).identity
    assert b["digests"]["model.safetensors"] == hashlib.sha256(bytes(data)).hexdigest() != a["digests"]["model.safetensors"]


def _blocks_reference(data: bytes, block: int) -> str:
    """The block digest written out: sha256 over the blocks' raw sha256 digests, in order."""
    parts = b"".join(hashlib.sha256(data[i:i + block]).digest() for i in range(0, len(data), block))
    return "sha256-blocks64m:" + hashlib.sha256(parts).hexdigest()


def test_large_files_get_the_block_digest_small_ones_plain_sha256(store, tmp_path, monkeypatch):
    from itictl.store import digests

    monkeypatch.setattr(digests, "BLOCK", 4096)
    monkeypatch.setattr(digests, "BLOCKS_MIN", 10_000)
    big, small = tmp_path / "big.safetensors", tmp_path / "config.json"
    data = os.urandom(4096 * 3 + 1234)  # 3 full blocks and a short one
    big.write_bytes(data)
    small.write_bytes(b"x" * 9_999)
    want_big = _blocks_reference(data, 4096)
    assert want_big != "sha256-blocks64m:" + hashlib.sha256(data).hexdigest()
    assert digests.block_digest(big, threads=1) == digests.block_digest(big, threads=4) == want_big
    assert digests.content_digests([small, big], threads=2) == [hashlib.sha256(b"x" * 9_999).hexdigest(), want_big]
    assert store.file_digests([big, small])[0] == want_big
    flipped = bytearray(data)
    flipped[-1] ^= 1  # one bit of the short last block
    big.write_bytes(bytes(flipped))
    assert store.file_digest(big) == _blocks_reference(bytes(flipped), 4096) != want_big
    big.write_bytes(data[:4096 * 3])  # exactly three blocks: no empty fourth block is hashed
    assert digests.block_digest(big) == _blocks_reference(data[:4096 * 3], 4096)


def test_folder_identity_of_a_large_weight_file_uses_the_block_digest(store, tmp_path, monkeypatch):
    from itictl.models.identity import folder_identity
    from itictl.store import digests
    from tests.models.tiny import tiny_folder

    folder = tiny_folder(tmp_path / "m", seed=0)
    w = folder / "model.safetensors"
    plain = folder_identity(store, folder)["digests"]["model.safetensors"]
    assert plain == hashlib.sha256(w.read_bytes()).hexdigest()
    monkeypatch.setattr(digests, "BLOCKS_MIN", 1)
    monkeypatch.setattr(digests, "BLOCK", 1 << 16)
    monkeypatch.setattr(digests, "CACHE_FILE", "digests-test.json")  # not the entry cached above
    got = folder_identity(store, folder)["digests"]
    assert got["model.safetensors"] == _blocks_reference(w.read_bytes(), 1 << 16)
    assert got["config.json"].startswith("sha256-blocks64m:")  # every file from BLOCKS_MIN on


def test_leaving_cores_is_scoped():
    """While a model preload runs, the eval's hash leaves cores to it (leaving_cores); ≥ 1 always,
    nested blocks restore the outer value."""
    from itictl.config import cores
    from itictl.store import digests as G

    n = cores()
    assert G._cores() == n
    with G.leaving_cores(2):
        assert G._cores() == max(1, n - 2)
        with G.leaving_cores(10_000):
            assert G._cores() == 1
        assert G._cores() == max(1, n - 2)
    assert G._cores() == n
