"""Loading a local model folder while its identity is hashed (issue 14: cold-store eval time).

A folder model's identity is a digest of every file (models/identity.py; files from 1 GiB on get
the block digest of store/digests.py, hashed on many cores), computed once per store and then cached
by path, size, mtime and inode. On a cold store that hash takes a while (a 13.8 GB Llama-2-7B
folder: 1.3-2.3 s on the 16-core H200 host from the page cache; the disk's read time when cold) and
everything after it needs the model key. What does not need the key is importing torch and
transformers and moving the weights onto the device, so `start(...)` runs those in a background
thread (torch first, then the weights' reads of models/fast_load.py beside transformers' import,
which takes models/tf_imports.LOCK) while the caller hashes, leaving it cores
(store.digests.leaving_cores: evaluate/runner.py), and `adopt(...)` hands the loaded model to
load_model's memo once the `model` artifact exists, so the extraction and the eval find it there
instead of loading again. When adopt refuses a load, `why` says why (the eval's timings record it).

Safety: the files' (size, mtime, inode) are read before the background load starts and again after
the hash; the loaded model is adopted only if every one is unchanged (the same trust the digest cache
puts in them), the artifact names this folder, and the dtype/device are the ones the caller will ask
for. Otherwise, or when the background load failed, it is dropped and the normal path loads (and
reports any error). Nothing starts when every file's digest is already cached (then the hash is
instant and the model may not be needed at all), for non-folder models, device maps or torchrun.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any


def _stats(folder: Path) -> dict[str, tuple[int, int, int]]:
    from itictl.models.identity import folder_files

    return {p.name: (st.st_size, st.st_mtime_ns, st.st_ino) for p in folder_files(folder) for st in (p.stat(),)}


def _hash_cached(store, folder: Path) -> bool:
    from itictl.models.identity import folder_files
    from itictl.store.digests import all_cached

    return all_cached(store.cache, folder_files(folder))


class Preload:
    """A background load of one folder (see the module docstring); `seconds` once it finished."""

    def __init__(self, folder: Path, dtype: str, device: str):
        self.folder, self.dtype, self.device = folder, dtype, device  # as given; resolved in the thread
        self.stats = _stats(folder)
        self.lm: Any = None
        self.error: BaseException | None = None
        self.why: str | None = None  # why adopt() refused the load
        self.seconds: dict[str, Any] = {}  # seconds; the loader's warm_error / warm_skipped are text
        self.thread = threading.Thread(target=self._run, name="itictl-preload", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            t = time.perf_counter()
            import torch  # noqa: F401 (transformers is imported by from_pretrained, while the weights are read)

            from itictl.models.devices import resolve_device, resolve_dtype
            from itictl.models.loading import from_pretrained, hf_quiet

            self.seconds["import_torch_s"] = round(time.perf_counter() - t, 3)
            self.device = resolve_device(self.device)  # as load_model resolves them
            self.dtype = resolve_dtype(self.dtype, self.device)
            if self.device == "cuda":  # several GPUs: 'auto' shards with a device map, not ours to guess
                return
            t = time.perf_counter()
            from itictl.models import fast_load
            from itictl.models.tf_imports import import_for_loading

            fast = (fast_load.Loading(self.folder, self.device)  # the reads go on while transformers is imported
                    if fast_load.eligible(str(self.folder), {}, self.device, None, False, self.dtype) else None)
            import_for_loading(self.folder)  # under the lock the main thread's config read takes too
            with hf_quiet(None):
                self.lm = from_pretrained(str(self.folder), {}, {"name": self.folder.name}, self.dtype, self.device,
                                          fast=fast)
            self.seconds["model_load_s"] = round(time.perf_counter() - t, 3)
            if fast is not None:
                self.seconds.update({f"fast_{k}": v for k, v in fast.seconds.items()})
        except BaseException as e:  # the normal path loads again and reports it
            self.error = e

    def adopt(self, store, model_art) -> bool:
        """Wait for the load; give it to load_model's memo when it is safe (see the module docstring).
        When it is not, `why` says so (the eval's timings record it)."""
        self.thread.join()
        lm, self.lm = self.lm, None
        info = model_art.read_json("model.json")
        self.why = self._refusal(lm, info)
        if self.why is None:
            from itictl.models.loading import remember

            remember(store, model_art, lm, self.device)
        return self.why is None

    def _refusal(self, lm, info: dict) -> str | None:
        if lm is None:
            if self.error is not None:
                first = (str(self.error).splitlines() or [""])[0][:160]
                return f"load failed: {type(self.error).__name__}: {first}"
            return "not loaded (several GPUs: sharded by the normal path)"
        if info.get("source") != "folder" or info.get("weights") != "folder":
            return "the model artifact is not this folder's"
        if Path(info.get("location", "")).resolve() != self.folder:
            return "the model artifact names another folder"
        if _stats(self.folder) != self.stats:
            return "the folder's files changed while it was loaded"
        return None


def start(store, model_spec: str | None, dtype: str, device: str) -> Preload | None:
    """A Preload of `model_spec` when it is a local folder whose digests are not cached yet, else None.
    dtype / device: the --dtype / --device the run's load_model calls will pass (resolved in the
    thread: importing torch is part of what overlaps the hash)."""
    if not model_spec:
        return None
    folder = Path(model_spec).expanduser()
    if not (folder / "config.json").is_file() or _hash_cached(store, folder):
        return None
    return Preload(folder.resolve(), dtype, device)
