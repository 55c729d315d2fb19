"""The activations.h5 payload: writing it from chunk folders, and the Activations reader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

H5_NAME = "activations.h5"



def digest16(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def write_h5(path: Path, files: list[Path], prompts, n_tokens: np.ndarray, *, fmt: str, dtype: str,
              store_dtype: str, layer_wise: bool, layout, hidden: int, model_key: str) -> None:
    import h5py

    n = len(prompts)
    np_dt = np.float16 if store_dtype == "float16" else np.float32
    rows = min(n, 512)
    with h5py.File(path, "w") as f:
        specs = [("head_wise", "head", (n, layout.n_layers, layout.width))]
        if layer_wise:
            specs.append(("layer_wise", "resid", (n, layout.n_layers + 1, hidden)))
        for name, key, shape in specs:
            full = np.empty(shape, dtype=np_dt)
            seen = np.zeros(n, dtype=bool)
            for p in files:
                idx = np.load(p / "idx.npy", allow_pickle=False)
                full[idx] = np.load(p / f"{key}.npy", mmap_mode="r", allow_pickle=False)
                seen[idx] = True
            if not seen.all():
                raise RuntimeError(f"extraction incomplete: {int((~seen).sum())} prompts missing")
            f.create_dataset(name, data=full, chunks=(rows, 1, shape[2]))
            del full
        f.create_dataset("label", data=np.array([int(p.label) for p in prompts], dtype=np.int8))
        f.create_dataset("question_index", data=np.array([p.question_index for p in prompts], dtype=np.int32))
        f.create_dataset("answer_index", data=np.array([p.answer_index for p in prompts], dtype=np.int32))
        f.create_dataset("n_tokens", data=n_tokens)
        cats = [getattr(p, "category", None) for p in prompts]
        if any(c is not None for c in cats):
            f.create_dataset("category", data=[c or "" for c in cats], dtype=h5py.string_dtype())
        f.attrs.update({"model": model_key, "L": layout.n_layers, "H": layout.n_heads, "D": layout.head_dim,
                        "hidden": hidden, "format": fmt, "dtype": dtype,
                        "store_dtype": store_dtype, "n_prompts": n})


# ---- reading ----------------------------------------------------------------------------------

@dataclass
class Activations:
    """An open activations.h5. head_wise / layer_wise are h5py datasets (lazy); the per-prompt
    columns are numpy arrays. Use as a context manager or call close()."""

    file: Any
    head_wise: Any               # h5py.Dataset [N, L, H·D]
    layer_wise: Any | None       # h5py.Dataset [N, L+1, hidden] or None
    label: np.ndarray            # [N] int8 (1 = true answer)
    question_index: np.ndarray   # [N] int32
    answer_index: np.ndarray     # [N] int32
    n_tokens: np.ndarray         # [N] int32
    category: np.ndarray | None  # [N] str or None
    L: int
    H: int
    D: int
    format: str
    model: str

    @property
    def n(self) -> int:
        return int(self.head_wise.shape[0])

    def layer(self, l: int) -> np.ndarray:
        """[N, H·D] head-wise activations of layer l for all prompts."""
        return self.head_wise[:, l, :]

    def heads(self, l: int) -> np.ndarray:
        """[N, H, D] the same, split per head."""
        return self.layer(l).reshape(self.n, self.H, self.D)

    def head(self, l: int, h: int) -> np.ndarray:
        """[N, D] one head of one layer."""
        return self.head_wise[:, l, h * self.D:(h + 1) * self.D]

    def load_head_wise(self) -> np.ndarray:
        """[N, L, H·D] everything in memory."""
        return self.head_wise[...]

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "Activations":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_activations(art) -> Activations:
    """Open an `activations` artifact's HDF5 (digest-checked) for reading."""
    return open_activations_file(art.file(H5_NAME))


def open_activations_file(path: Path | str) -> Activations:
    import h5py

    f = h5py.File(path, "r")
    cat = None
    if "category" in f:
        cat = np.array([c.decode() if isinstance(c, bytes) else c for c in f["category"][...]], dtype=object)
    a = f.attrs
    return Activations(file=f, head_wise=f["head_wise"], layer_wise=f["layer_wise"] if "layer_wise" in f else None,
                       label=f["label"][...], question_index=f["question_index"][...],
                       answer_index=f["answer_index"][...], n_tokens=f["n_tokens"][...], category=cat,
                       L=int(a["L"]), H=int(a["H"]), D=int(a["D"]), format=str(a["format"]), model=str(a["model"]))
