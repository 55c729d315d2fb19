"""extract.h5.offer: the head_wise array an extraction just wrote is handed to keep_loaded() readers
of the committed file (same inode after the store's rename) instead of being read back; anything
that does not match the file is ignored."""

from __future__ import annotations

import os

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


def test_offered_array_is_used_after_a_rename(tmp_path):
    hw = np.random.default_rng(0).normal(size=(10, 3, 8)).astype(np.float16)
    (tmp_path / "build").mkdir()
    _write(tmp_path / "build" / "activations.h5", hw)
    H.offer(tmp_path / "build" / "activations.h5", hw)
    os.replace(tmp_path / "build", tmp_path / "object")  # the store's commit
    with H.keep_loaded(), H.open_activations_file(tmp_path / "object" / "activations.h5") as acts:
        got = acts.load_head_wise()
        assert got is hw
        assert acts.load_head_wise() is hw  # kept for the block
    assert all(v is not hw for v in H._OFFERED.values())  # taken once


def test_an_offer_that_does_not_match_the_file_is_ignored(tmp_path):
    rng = np.random.default_rng(1)
    hw = rng.normal(size=(9, 2, 8)).astype(np.float16)
    _write(tmp_path / "a.h5", hw)
    H._OFFERED.clear()
    wrong = hw.copy()
    wrong[-1, -1, 0] += 1  # another file's data at the same inode would differ like this
    H.offer(tmp_path / "a.h5", wrong)
    with H.keep_loaded(), H.open_activations_file(tmp_path / "a.h5") as acts:
        got = acts.load_head_wise()
    assert got is not wrong and np.array_equal(got, hw)
    H._OFFERED.clear()
    H.offer(tmp_path / "a.h5", hw)
    with H.open_activations_file(tmp_path / "a.h5") as acts:  # outside keep_loaded: read from the file
        assert acts.load_head_wise() is not hw
    H._OFFERED.clear()


def test_at_most_two_offers_are_held(tmp_path):
    H._OFFERED.clear()
    arrs = []
    for i in range(3):
        a = np.full((4, 1, 2), i, dtype=np.float16)
        _write(tmp_path / f"{i}.h5", a)
        H.offer(tmp_path / f"{i}.h5", a)
        arrs.append(a)
    assert len(H._OFFERED) == 2 and not any(v is arrs[0] for v in H._OFFERED.values())
    H._OFFERED.clear()
