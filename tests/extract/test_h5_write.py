"""activations.h5 written from the arrays assembled in memory during the extraction, as raw chunks
with parallel pwritev: the same datasets, values, chunking and attributes as merging the chunk
folders and writing through h5py (the old path, still the fallback), fresh and resumed."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from tests.extract.test_extract import WORDS, _prompts, _run
from tests.helpers import tiny_llama


@pytest.fixture
def small_chunks(monkeypatch):
    """4 prompts per resumable chunk folder, 8 rows per HDF5 chunk: several of each, partial last ones."""
    import itictl.extract.chunks as chunks
    import itictl.extract.h5 as h5

    monkeypatch.setattr(chunks, "CHUNK_PROMPTS", 4)
    monkeypatch.setattr(h5, "CHUNK_ROWS", 8)


def _old_path(monkeypatch, h5_new, work, prompts, out, *, raw=False):
    """The same extraction's h5 written the old way: merged from its chunk folders, h5py writes
    (raw: with raw chunk writes, as a data-parallel run's rank 0 merges)."""
    from itictl.extract import h5_write
    from itictl.extract.chunks import chunk_dirs
    from itictl.extract.h5 import write_h5
    from itictl.models.arch import head_layout, hidden_size

    model = tiny_llama(layers=3, vocab=len(WORDS))
    with h5py.File(h5_new, "r") as f:
        a, n_tokens, layer_wise = dict(f.attrs), f["n_tokens"][...], "layer_wise" in f
    with monkeypatch.context() as m:
        if not raw:
            m.setattr(h5_write, "raw_supported", lambda: False)
        write_h5(out, chunk_dirs(work), prompts, n_tokens, fmt=a["format"], dtype=a["dtype"],
                 store_dtype=a["store_dtype"], layer_wise=layer_wise, layout=head_layout(model),
                 hidden=hidden_size(model), model_key=a["model"])
    return out


def _assert_same_h5(path, ref, *, raw: bool):
    from itictl.extract.h5 import _raw_chunks, read_all

    with h5py.File(path, "r") as f, h5py.File(ref, "r") as r:
        assert sorted(f) == sorted(r) and dict(f.attrs) == dict(r.attrs)
        for name in r:
            d, e = f[name], r[name]
            assert (d.shape, d.dtype, d.chunks, d.compression) == (e.shape, e.dtype, e.chunks, e.compression), name
            assert np.array_equal(d[...], e[...]), name
        for name in ("head_wise", "layer_wise"):
            if name not in r:
                continue
            d = f[name]
            early = d.id.get_create_plist().get_alloc_time() == h5py.h5d.ALLOC_TIME_EARLY
            assert early == raw, name  # the raw path was (not) taken
            assert _raw_chunks(d) is not None  # the probes' parallel raw reads apply
            assert np.array_equal(read_all(d, threads=3), r[name][...])


@pytest.mark.parametrize("layer_wise,store_dtype", [(False, "float16"), (True, "float32")])
def test_extraction_h5_equals_merging_the_chunk_files(tmp_path, monkeypatch, small_chunks, layer_wise, store_dtype):
    prompts = _prompts(n_q=9, seed=1)
    assert len(prompts) % 8 and len(prompts) > 16  # partial last HDF5 chunk, several chunk folders
    h5, meta = _run(tmp_path, "a", prompts, layer_wise=layer_wise, store_dtype=store_dtype)
    assert len(list((tmp_path / "a.work").glob("chunk_*"))) > 2
    assert {"write_s", "write_h5_s", "write_assemble_s"} <= set(meta)
    ref = _old_path(monkeypatch, h5, tmp_path / "a.work", prompts, tmp_path / "ref.h5")
    _assert_same_h5(h5, ref, raw=True)
    merged = _old_path(monkeypatch, h5, tmp_path / "a.work", prompts, tmp_path / "merged.h5", raw=True)
    assert merged.read_bytes() == h5.read_bytes()  # a data-parallel run's payload digest stays the same
    with h5py.File(h5, "r") as f:
        assert f["head_wise"].chunks == (8, 1, 32)
        assert f["head_wise"].dtype == (np.float16 if store_dtype == "float16" else np.float32)


def _killed_after(tmp_path, name, prompts, k, **kw):
    from itictl import hooks

    saved = []

    def kill(path, **_):
        saved.append(path)
        if len(saved) == k:
            raise KeyboardInterrupt

    remove = hooks.register("extract.chunk_saved", kill)
    try:
        with pytest.raises(KeyboardInterrupt):
            _run(tmp_path, name, prompts, **kw)
    finally:
        remove()


def test_resumed_extraction_h5_identical(tmp_path, monkeypatch, small_chunks):
    prompts = _prompts(n_q=10, seed=3)
    full, _ = _run(tmp_path, "full", prompts, batch_tokens=16)
    _killed_after(tmp_path, "b", prompts, 2, batch_tokens=16)
    h5, meta = _run(tmp_path, "b", prompts, batch_tokens=16)  # the same plan: bit-identical
    assert meta["resumed_prompts"] >= 8 and meta["computed_prompts"] > 0
    _assert_same_h5(h5, full, raw=True)

    _killed_after(tmp_path, "c", prompts, 2, batch_tokens=16)
    h5, meta = _run(tmp_path, "c", prompts, batch_tokens=64)  # another batch size: rows redone twice
    work = tmp_path / "c.work"
    rows = sum(len(np.load(p / "idx.npy")) for p in work.glob("chunk_*"))
    assert rows > len(prompts)  # some prompts are in two folders: the newest one's rows count
    _assert_same_h5(h5, _old_path(monkeypatch, h5, work, prompts, tmp_path / "ref.h5"), raw=True)


def test_assembly_completes_like_the_file_merge(tmp_path):
    """Earlier folders fill the rows not in memory, the last folder of a prompt wins (also a
    folder after this run's, as rank folders sort), and folders whose rows are all filled
    already are not read (their arrays may even be gone)."""
    from itictl.extract.chunks import Assembly, chunk_dirs, save_chunk
    from itictl.extract.h5 import merge_chunk_files

    rng = np.random.default_rng(0)
    n, shape = 10, (2, 3)
    rows = [[0, 1, 2], [2, 3, 4], [5, 6, 7, 8, 9], [8], [0, 1, 2]]  # folder 2: this run's
    heads = [rng.standard_normal((len(r), *shape)).astype(np.float32) for r in rows]
    asm = Assembly(n, {"head": shape}, np.float32)
    for seq, (idx, head) in enumerate(zip(rows, heads)):
        path = save_chunk(tmp_path, seq, [np.array(idx)], [head], None)
        if seq == 2:
            asm.put(np.array(idx), head, None)
            asm.saved.add(path)
    files = chunk_dirs(tmp_path)
    want = merge_chunk_files(files, "head", (n, *shape), np.float32)
    (files[0] / "head.npy").unlink()  # every row of folder 0 is in folder 4: never read
    got = asm.complete(files)["head"]
    assert np.array_equal(got, want)
    assert np.array_equal(got[8], heads[3][0]) and np.array_equal(got[2], heads[4][2])
    with pytest.raises(RuntimeError, match="1 prompts missing"):
        Assembly(n + 1, {"head": shape}, np.float32).complete(files)


def test_raw_chunk_writes_and_fallbacks(tmp_path, monkeypatch):
    """create_big + write_chunks read back equal through h5py (a partial last chunk, zero-padded
    on disk like HDF5's fill) and the raw reader; without early allocation or chunk addresses the
    data goes through h5py and reads back equal too."""
    from itictl.extract import h5 as h5mod
    from itictl.extract import h5_write
    from itictl.extract.h5 import _raw_chunks, read_all

    a = np.random.default_rng(1).standard_normal((1300, 5, 48)).astype(np.float16)

    def write(name):
        with h5py.File(tmp_path / name, "w") as f:
            job = h5_write.create_big(f, "x", a, (512, 1, 48))
            f.create_dataset("y", data=np.arange(3))
        h5_write.write_chunks(tmp_path / name, [job] if job else [], threads=3)
        with h5py.File(tmp_path / name, "r") as f:
            assert np.array_equal(f["x"][...], a) and list(f["y"][...]) == [0, 1, 2]
            assert np.array_equal(f["x"][1024:], a[1024:])  # the partial last chunk
            assert np.array_equal(read_all(f["x"], threads=2), a) and _raw_chunks(f["x"]) is not None
            early = f["x"].id.get_create_plist().get_alloc_time() == h5py.h5d.ALLOC_TIME_EARLY
            last = [c for c in _raw_chunks(f["x"]) if c[0] == (1024, 4, 0)][0]
        with open(tmp_path / name, "rb") as fh:
            fh.seek(last[1])
            chunk = np.frombuffer(fh.read(last[2]), dtype=np.float16).reshape(512, 48)
        assert np.array_equal(chunk[:276], a[1024:, 4]) and not chunk[276:].any()
        return job, early

    job, early = write("raw.h5")
    assert job is not None and early
    with monkeypatch.context() as m:
        m.setattr(h5_write, "raw_supported", lambda: False)  # old h5py / HDF5
        assert write("old.h5") == (None, False)
    with monkeypatch.context() as m:
        m.setattr(h5mod, "_raw_chunks", lambda ds: None)  # allocated, but no usable chunk addresses
        assert write("noinfo.h5") == (None, False)


def test_warm_batches_first_change_no_value(tmp_path, monkeypatch, small_chunks):
    """On a GPU the first batch of each shape runs first, timed as warm-up and kept (resumable.warm_first):
    forced here on the CPU, the payload equals the plan-order run's, fresh and after a resume."""
    import itictl.extract.engine as E
    import itictl.extract.resumable as R

    monkeypatch.setattr(E, "DEFAULT_ROW_TOKENS", 32)  # forwards of 3 rows and a last one of 1: two shapes
    prompts = _prompts(n_q=30, seed=5)
    plain, meta = _run(tmp_path, "plain", prompts, batch_tokens=96)
    assert meta["warmup_s"] == 0
    monkeypatch.setattr(R, "_warms", lambda device, fuser: True)
    orders = []
    real = R._Extraction.warm_first

    def spy(self):
        before = [id(b) for b in self.mine]
        real(self)
        orders.append((before, [id(b) for b in self.mine], self.n_warm))

    monkeypatch.setattr(R._Extraction, "warm_first", spy)
    warm, meta = _run(tmp_path, "warm", prompts, batch_tokens=96)
    before, after, n_warm = orders[-1]
    assert n_warm == 2 and after != before and after[1] == before[-1]  # the last, 1-row forward ran second
    assert meta["warmup_s"] > 0 and meta["prompts_per_s"] > 0
    _assert_same_h5(warm, plain, raw=True)
    _killed_after(tmp_path, "r", prompts, 2, batch_tokens=96)
    resumed, meta = _run(tmp_path, "r", prompts, batch_tokens=96)
    assert meta["resumed_prompts"] > 0
    _assert_same_h5(resumed, plain, raw=True)
