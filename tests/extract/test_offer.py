"""extract.h5.offer: the head-wise array an extraction just committed is handed to keep_loaded()
readers of that object file instead of being read back; outside keep_loaded the file is read."""

from __future__ import annotations

import h5py
import numpy as np

from itictl.extract import h5 as H


def _write(path, hw: np.ndarray) -> None:
    n = hw.shape[0]
    with h5py.File(path, "w") as f:
        f.create_dataset("head_wise", data=hw, chunks=(4, 1, hw.shape[2]))
        for name, dt in (("label", np.int8), ("question_index", np.int32), ("answer_index", np.int32),
                         ("n_tokens", np.int32)):
            f.create_dataset(name, data=np.zeros(n, dtype=dt))
        f.attrs.update({"L": hw.shape[1], "H": 2, "D": hw.shape[2] // 2, "format": "tqa_mc2", "model": "m"})


def test_offered_array_is_taken_once_by_keep_loaded_readers(tmp_path):
    H._OFFERED.clear()
    hw = np.random.default_rng(0).normal(size=(10, 3, 8)).astype(np.float16)
    _write(tmp_path / "a.h5", hw)
    H.offer(tmp_path / "a.h5", hw)
    with H.open_activations_file(tmp_path / "a.h5") as acts:  # outside keep_loaded: read from the file
        got = acts.load_head_wise()
        assert got is not hw and np.array_equal(got, hw)
    with H.keep_loaded(), H.open_activations_file(tmp_path / "a.h5") as acts:
        assert acts.load_head_wise() is hw
        assert acts.load_head_wise() is hw  # kept for the block
    assert H._OFFERED == {}  # taken


def test_at_most_two_offers_are_held(tmp_path):
    H._OFFERED.clear()
    arrs = [np.full((4, 1, 2), i, dtype=np.float16) for i in range(3)]
    for i, a in enumerate(arrs):
        H.offer(tmp_path / f"{i}.h5", a)
    assert len(H._OFFERED) == 2 and not any(v is arrs[0] for v in H._OFFERED.values())
    H._OFFERED.clear()


def test_run_extract_offers_the_committed_file(store, tmp_path, tqa_dir):
    """A single-process extraction offers its head-wise array under the committed object's path."""
    from itictl.extract import open_activations, run_extract
    from itictl.extract.h5 import read_all
    from tests.models.tiny import tiny_folder

    H._OFFERED.clear()
    model = tiny_folder(tmp_path / "tiny")
    art, cached = run_extract(store, str(model), "tqa_mc2", tqa_dir, limit=12, device="cpu", batch_tokens=256)
    assert not cached and list(H._OFFERED) == [str((art.path / "activations.h5").resolve())]
    offered = next(iter(H._OFFERED.values()))
    with H.keep_loaded(), open_activations(art) as acts:
        assert acts.load_head_wise() is offered
        assert np.array_equal(offered, read_all(acts.head_wise))
    again, cached = run_extract(store, str(model), "tqa_mc2", tqa_dir, limit=12, device="cpu")
    assert cached and H._OFFERED == {}  # a cached artifact offers nothing
