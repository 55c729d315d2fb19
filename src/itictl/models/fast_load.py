"""Fast weight loading of a local safetensors folder onto one device (issue 14: cold eval time).

Owns `weight_files(folder)` (which safetensors files from_pretrained would read, or None),
`eligible(...)`, `read_safetensors(files, device) -> {name: tensor}` and `Loading(folder, device).model(dtype)`.

transformers' from_pretrained moves safetensors weights with 4 threads that slice memory-mapped
tensors and copy pageable memory to the device (13.76 GB of a Llama-2-7B-shaped fp16 folder in
2.52 s on the H200 host once its modules are imported, 5.5 GB/s; here 0.85 s, benchmarks/weights.py).
Here every tensor is allocated on the device once and its
bytes are read with `preadv` by up to 8 threads in ≤ 32 MiB pieces; on a GPU each thread reads into
two page-locked staging buffers in turn and copies them to the device on its own stream (the read
of one piece overlaps the copy of the previous); on the CPU the bytes are read straight into the
tensors. The tensors then go to `from_pretrained(None, config=…, state_dict=…)`, so transformers
still builds the model (meta-device init, non-persistent buffers such as rotary frequencies, tied
weights, key renamings, the dtype, the attention implementation): only the transport of the bytes
differs. tests/models/test_fast_load.py checks parameters, buffers, config, generation config and
logits against from_pretrained(folder).

Used for a local folder (a folder model, or the embedded model's cached hf/ folder) whose weights
are all safetensors of plain dtypes, floating ones stored in the load's dtype (an fp32 checkpoint
loaded as fp16 converts tensor by tensor in from_pretrained, without a 1.5x peak on the device),
without a quantization config, adapter or remote code, loaded onto one GPU (no device map). On the
CPU from_pretrained memory-maps the files, which a read cannot beat (benchmarks/weights.py: 0.03 s
against 0.5 s for 0.8 GB once the modules are imported).
Everything else, and `ITICTL_FAST_LOAD=0`, uses from_pretrained(folder).
"""

from __future__ import annotations

import json
import os
import struct
import threading
from pathlib import Path
from typing import Any

PIECE = 32 << 20  # bytes per read
THREADS = 8
ENV = "ITICTL_FAST_LOAD"
WARM_ENV = "ITICTL_WARM_KERNELS"
_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
           "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def weight_files(folder: Path) -> list[Path] | None:
    """The safetensors files from_pretrained(folder) would read (the index's shards, else
    model.safetensors); None when the folder has none (then it is not ours to load)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        files = [folder / n for n in names]
        return files if files and all(f.is_file() for f in files) else None
    single = folder / "model.safetensors"
    return [single] if single.is_file() else None


def eligible(where: str, kwargs: dict[str, Any], dev: str, dmap: Any, trust_remote_code: bool,
             dtype: str | None = None) -> bool:
    """Whether Loading may stand in for from_pretrained(where, **kwargs) on `dev` (module docstring).
    `dtype` (the load's): every floating tensor must already be stored in it. Loading puts the file's
    tensors on the device as they are, so an fp32 checkpoint loaded as fp16 would briefly need 1.5×
    the fp32 size there, where from_pretrained converts tensor by tensor; such folders take its path."""
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if kwargs or dmap is not None or trust_remote_code or not str(dev).startswith("cuda:"):
        return False  # on the CPU from_pretrained memory-maps the files (nothing to gain); 'cuda' is sharded
    folder = Path(where)
    if not (folder / "config.json").is_file() or (folder / "adapter_config.json").exists() or weight_files(folder) is None:
        return False
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(config, dict) or "quantization_config" in config or "auto_map" in config:
        return False
    try:  # every tensor of a dtype read_safetensors knows, floating ones in the load's (headers only)
        kinds = {info.get("dtype") for f in weight_files(folder) for info in _header(f)[1].values()}
    except (OSError, ValueError, struct.error, AttributeError):
        return False
    floats = {_DTYPES[k] for k in kinds & set(_DTYPES) if k.startswith(("F", "BF"))}
    return kinds <= set(_DTYPES) and (dtype is None or floats <= {dtype})


def _header(path: Path) -> tuple[int, dict[str, Any]]:
    """(offset of the data region, {name: {dtype, shape, data_offsets}}) of one safetensors file."""
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        head = json.loads(fh.read(n))
    head.pop("__metadata__", None)
    return 8 + n, head


def _pread_into(fd: int, view, offset: int) -> None:
    """Fill the writable buffer `view` (a memoryview of bytes) from `offset` of `fd`."""
    done, n = 0, len(view)
    while done < n:
        got = os.preadv(fd, [view[done:]], offset + done)
        if got <= 0:
            raise OSError(f"unexpected end of a safetensors file at byte {offset + done}")
        done += got


def _plan(files: list[Path], device) -> tuple[dict[str, Any], list[tuple[int, Any, int, int, int]], list[int]]:
    """Allocate every tensor on `device`; -> (tensors, pieces (fd, byte view, start, end, file offset), fds)."""
    import torch

    tensors: dict[str, Any] = {}
    pieces: list[tuple[int, Any, int, int, int]] = []
    fds: list[int] = []
    for path in files:
        base, head = _header(path)
        fd = os.open(path, os.O_RDONLY)
        fds.append(fd)
        for name, info in head.items():
            if info["dtype"] not in _DTYPES:
                raise ValueError(f"{path.name}: tensor {name} has dtype {info['dtype']}, not one fast loading reads")
            t = torch.empty(info["shape"], dtype=getattr(torch, _DTYPES[info["dtype"]]), device=device)
            begin, end = info["data_offsets"]
            if end - begin != t.numel() * t.element_size():
                raise ValueError(f"{path.name}: tensor {name} has {end - begin} bytes for shape {info['shape']}")
            tensors[name] = t
            raw = t.reshape(-1).view(torch.uint8) if t.numel() else None
            for a in range(0, end - begin, PIECE):
                pieces.append((fd, raw, a, min(a + PIECE, end - begin), base + begin + a))
    return tensors, pieces, fds


def read_safetensors(files: list[Path], device: str = "cpu", threads: int = THREADS) -> dict[str, Any]:
    """{name: tensor on `device`} of every tensor in `files`, read as the module docstring says."""
    import torch

    dev = torch.device(device)
    tensors, pieces, fds = _plan(files, dev)
    pieces.sort(key=lambda p: p[3] - p[2])  # take() pops from the end: big pieces first, the threads finish together
    lock = threading.Lock()
    errors: list[BaseException] = []

    def take():
        with lock:
            return pieces.pop() if pieces and not errors else None

    def work() -> None:
        try:
            (_gpu_worker if dev.type == "cuda" else _cpu_worker)(take, dev)
        except BaseException as e:  # re-raised below, once every thread stopped
            with lock:
                errors.append(e)

    pool = [threading.Thread(target=work, name=f"itictl-load-{i}", daemon=True)
            for i in range(max(1, min(threads, len(pieces))))]
    try:
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    finally:
        for fd in fds:
            os.close(fd)
    if errors:
        raise errors[0]
    return tensors


def _cpu_worker(take, dev) -> None:
    while (p := take()) is not None:
        fd, raw, a, b, off = p
        _pread_into(fd, memoryview(raw[a:b].numpy()), off)


def _gpu_worker(take, dev) -> None:
    """Read pieces into two page-locked buffers in turn; copy each to the device on this thread's stream.
    The buffers go back to torch's page-locked cache (reused by the extraction's device->host copies)."""
    import torch

    stream = torch.cuda.Stream(dev)
    staging = [torch.empty(PIECE, dtype=torch.uint8, pin_memory=True) for _ in range(2)]
    landed: list[Any] = [None, None]
    k = 0
    while (p := take()) is not None:
        fd, raw, a, b, off = p
        if landed[k] is not None:
            landed[k].synchronize()  # the copy out of this buffer finished: it may be overwritten
        buf = staging[k][: b - a]
        _pread_into(fd, memoryview(buf.numpy()), off)
        with torch.cuda.stream(stream):
            raw[a:b].copy_(buf, non_blocking=True)
            landed[k] = torch.cuda.Event()
            landed[k].record(stream)
        k ^= 1
    stream.synchronize()


class Loading:
    """One fast load: the reads start at construction (in a thread: they release the GIL, so the
    caller's imports, tokenizer and config go on meanwhile); model(dt) builds the model from them."""

    def __init__(self, folder: Path | str, dev: str):
        self.folder, self.dev = Path(folder), dev
        self._box: dict[str, Any] = {}
        self.seconds: dict[str, Any] = {}  # read_s, warm_s (or warm_error), once the reader finished
        self._reader = threading.Thread(target=self._read, name="itictl-load", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        import time

        t = time.perf_counter()
        try:
            self._box["sd"] = read_safetensors(weight_files(self.folder), self.dev)
        except BaseException as e:  # re-raised by model()
            self._box["error"] = e
            return
        self.seconds["read_s"] = round(time.perf_counter() - t, 3)
        if self.dev.startswith("cuda") and os.environ.get(WARM_ENV, "1") != "0":
            t = time.perf_counter()
            try:
                if warm_kernels(self._box["sd"], self.folder, self.dev):
                    self.seconds["warm_s"] = round(time.perf_counter() - t, 3)
                else:
                    self.seconds["warm_skipped"] = "less than 4 GiB free on the GPU"
            except Exception as e:  # only a head start: the steps pay these costs themselves otherwise
                self.seconds["warm_error"] = f"{type(e).__name__}: {str(e)[:120]}"

    def model(self, dt: str):
        """from_pretrained(folder, dtype=dt) on the device, from the tensors read (module docstring)."""
        from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

        from itictl.models.devices import torch_dtype

        folder = self.folder
        config = AutoConfig.from_pretrained(folder)
        cls = AutoModelForCausalLM._model_mapping[type(config)]  # the class the auto class picks (imports it now)
        try:
            gen = GenerationConfig.from_pretrained(folder)
        except OSError:  # as from_pretrained: a generation config made from config.json
            gen = GenerationConfig.from_pretrained(folder, config_file_name="config.json", _from_model_config=True)
        self._reader.join()
        if "error" in self._box:
            raise self._box.pop("error")
        kwargs: dict[str, Any] = {"device_map": {"": self.dev}} if self.dev != "cpu" else {}
        model = cls.from_pretrained(None, config=config, state_dict=self._box.pop("sd"), dtype=torch_dtype(dt),
                                    generation_config=gen, **kwargs)
        model.name_or_path = model.config.name_or_path = str(folder)  # as from_pretrained(folder) sets them
        return model


def warm_kernels(sd: dict[str, Any], folder: Path, dev: str, tokens: int = 8192) -> bool:
    """Pay the GPU's first-use costs while the caller still imports transformers (the reads are
    done by then): cuBLAS/cuBLASLt and the matmul kernels of the model's weight shapes at a
    forward's token count, scaled-dot-product attention with a boolean mask at the model's head
    size, the elementwise kernels of a decoder layer and of log-softmax, and cuSOLVER's Cholesky
    (the probe solver's). Throwaway tensors (~1.5 GB at most for a 7B shape); nothing of the model is
    changed. Skipped (-> False) when the GPU has less than 4 GiB free; ITICTL_WARM_KERNELS=0 turns it off."""
    import torch
    import torch.nn.functional as F

    if str(dev).startswith("cuda") and torch.cuda.mem_get_info(dev)[0] < (4 << 30):
        return False

    cfg = json.loads((folder / "config.json").read_text())
    mats = {tuple(t.shape): t for n, t in sd.items() if t.dim() == 2 and t.is_floating_point() and t.shape[0] < 65536
            and "embed" not in n and "lm_head" not in n}
    heads = int(cfg.get("num_attention_heads") or 1)
    head_dim = int(cfg.get("head_dim") or cfg.get("hidden_size", heads) // heads)
    with torch.inference_mode():
        for (_, n_in), w in list(mats.items())[:8]:
            x = torch.randn(tokens, n_in, device=dev, dtype=w.dtype)
            y = F.linear(x, w)
            h = x.float()
            h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-5)
            (F.silu(y) * y + y).to(torch.float32).log_softmax(-1)
        dt = next(iter(mats.values())).dtype if mats else torch.float16
        q = torch.randn(2, heads, 256, head_dim, device=dev, dtype=dt)
        mask = torch.ones(256, 256, dtype=torch.bool, device=dev).tril_()[None, None].expand(2, 1, 256, 256)
        F.scaled_dot_product_attention(q, q, q, attn_mask=mask)
        torch.cat([-q[..., head_dim // 2:], q[..., : head_dim // 2]], dim=-1).mul_(2).add_(q)
        a = torch.eye(4, device=dev, dtype=torch.float64)[None].repeat(2, 1, 1)
        torch.cholesky_solve(torch.ones(2, 4, 1, device=dev, dtype=torch.float64), torch.linalg.cholesky_ex(a)[0])
    if str(dev).startswith("cuda"):
        torch.cuda.synchronize(dev)
    return True
