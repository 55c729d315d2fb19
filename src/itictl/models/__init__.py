"""itictl.models: aliases, resolving a --model spec, `model` artifacts, loading, and (in arch.py)
per-architecture maps of where the attention heads live.

Importing this package is cheap (no torch/transformers); they are imported inside the functions.
"""

from itictl.models.aliases import EMBEDDED_ALIASES, EMBEDDED_NAME, all_aliases, close_matches, lookup_alias
from itictl.models.identity import ModelRef, resolve_model
from itictl.models.loading import (
                                   DEVICE_MAPS,
                                   DTYPES,
                                   LoadedModel,
                                   clear_memo,
                                   ensure_model,
                                   hf_folder,
                                   input_device,
                                   load_model,
                                   model_info,
                                   model_spec_of,
                                   parse_device_map,
                                   resolve_device,
                                   resolve_dtype,
                                   revision_of,
                                   set_load_quiet,
)

__all__ = [
    "DEVICE_MAPS", "DTYPES", "EMBEDDED_ALIASES", "EMBEDDED_NAME", "LoadedModel", "ModelRef", "all_aliases",
    "clear_memo", "close_matches", "ensure_model", "hf_folder", "input_device", "load_model", "lookup_alias",
    "model_info", "model_spec_of", "parse_device_map", "resolve_device", "resolve_dtype", "resolve_model",
    "revision_of", "set_load_quiet",
]

from itictl.models.arch import HeadLayout, decoder_stack, get_arch, head_layout, o_proj_modules, out_proj_matrix

__all__ += ["HeadLayout", "decoder_stack", "get_arch", "head_layout", "o_proj_modules", "out_proj_matrix"]
