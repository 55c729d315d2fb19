"""The --arch-map escape hatch (ArchMap, parse_arch_map, the spec a map gives a bare config) and
reading a config's layout generically (num_hidden_layers / num_attention_heads / v_head_dim, head_dim
or hidden÷H, also under their other spellings), for model types outside the table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itictl.errors import BadInputError, UnsupportedError
from itictl.models.arch import ArchSpec, HeadLayout

MAP_EXAMPLE = '{"layers": "model.layers", "o_proj": "self_attn.o_proj", "heads": H, "head_dim": D}'


@dataclass(frozen=True)
class ArchMap:
    """A user's map (--arch-map): layer list path from the loaded model, o_proj path from one
    layer, and optionally heads and head_dim (else from the config)."""

    layers: str
    o_proj: str
    heads: int | None = None
    head_dim: int | None = None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"layers": self.layers, "o_proj": self.o_proj}
        if self.heads is not None:
            d["heads"] = self.heads
        if self.head_dim is not None:
            d["head_dim"] = self.head_dim
        return d


def _map_error(why: str) -> BadInputError:
    return BadInputError(f"bad --arch-map: {why}", f"give JSON like {MAP_EXAMPLE} (or a path to such a file)")


def parse_arch_map(value: Any) -> ArchMap:
    """An ArchMap from an ArchMap, a dict, a JSON string or a path to a JSON file."""
    if isinstance(value, ArchMap):
        return value
    if isinstance(value, (str, Path)):
        text = str(value).strip()
        if not text.startswith(("{", "[")):
            p = Path(text).expanduser()
            if not p.is_file():
                raise _map_error(f"{text!r} is neither JSON nor a file")
            text = p.read_text(encoding="utf-8")
        try:
            value = json.loads(text)
        except ValueError as e:
            raise _map_error(f"not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise _map_error("not a JSON object")
    unknown = sorted(set(value) - {"layers", "o_proj", "heads", "head_dim"})
    if unknown:
        raise _map_error(f"unknown key(s) {', '.join(unknown)}")
    for k in ("layers", "o_proj"):
        if not isinstance(value.get(k), str) or not value[k].strip():
            raise _map_error(f'"{k}" must be a module path such as "model.layers" / "self_attn.o_proj"')
    for k in ("heads", "head_dim"):
        v = value.get(k)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise _map_error(f'"{k}" must be a positive integer')
    return ArchMap(value["layers"].strip(), value["o_proj"].strip(), value.get("heads"), value.get("head_dim"))


# --- config attributes, read generically --------------------------------------------------------

def _text_config(cfg: Any) -> Any:
    get = getattr(cfg, "get_text_config", None)
    return get() if callable(get) else cfg


def _cfg_int(cfg: Any, *names: str) -> int | None:
    for n in names:
        try:
            v = getattr(cfg, n, None)
        except Exception:  # noqa: BLE001 (configs may refuse ambiguous per-layer attributes)
            v = None
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def _cfg_heads(c: Any) -> int | None:
    return _cfg_int(c, "num_attention_heads", "n_head", "num_heads", "n_heads")


def _cfg_hidden(c: Any) -> int | None:
    return _cfg_int(c, "hidden_size", "n_embd", "d_model", "dim")


def _cfg_layers(c: Any) -> int | None:
    return _cfg_int(c, "num_hidden_layers", "n_layer", "num_layers", "n_layers")


def _cfg_head_dim(c: Any, heads: int | None) -> int | None:
    d = _cfg_int(c, "v_head_dim", "head_dim", "dim_head", "attention_head_dim", "kv_channels")
    hidden = _cfg_hidden(c)
    if d is None and heads and hidden and hidden % heads == 0:
        d = hidden // heads
    return d


def _need(value: int | None, what: str, mt: Any) -> int:
    if value is None:
        raise UnsupportedError(f"cannot read the number of {what} of model_type {mt!r} from its config",
                               f"pass --arch-map '{MAP_EXAMPLE}'")
    return value


def generic_layout(cfg: Any, arch_map: ArchMap | None = None) -> HeadLayout:
    """(L, H, D) from a config's generic attributes (and a map's heads/head_dim when given)."""
    c, mt = _text_config(cfg), getattr(cfg, "model_type", None)
    heads = (arch_map.heads if arch_map else None) or _cfg_heads(c)
    d = (arch_map.head_dim if arch_map else None) or _cfg_head_dim(c, heads)
    return HeadLayout(_need(_cfg_layers(c), "layers", mt), _need(heads, "attention heads", mt), _need(d, "head_dim", mt))


def generic_hidden(cfg: Any) -> int:
    return _need(_cfg_hidden(_text_config(cfg)), "hidden features", getattr(cfg, "model_type", None))


def config_spec(cfg: Any, arch_map: ArchMap) -> ArchSpec:
    """The spec a map gives for a bare config (no model to verify against yet)."""
    lay = generic_layout(cfg, arch_map)
    base, layers = arch_map.layers.rpartition(".")[::2]
    return ArchSpec(str(getattr(cfg, "model_type", "?")), base, layers, arch_map.o_proj, source="arch-map",
                    layout=lay, hidden_n=_cfg_hidden(_text_config(cfg)))
