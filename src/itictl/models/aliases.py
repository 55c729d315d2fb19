"""Model aliases: the reference's names (honest_llama's HF_NAMES table) and the embedded default.

Three families, exactly as in the reference (likenneth/honest_llama, validation/validate_2fold.py):
  - the 10 base names (llama_7B … llama3_70B_instruct) -> their Hugging Face Hub ids;
  - `honest_*` -> the published models with ITI baked in (K=48 heads, alpha=15);
  - `local_*` -> folders of locally baked models, looked up under $ITICTL_LOCAL_MODELS
    (default: ./results_dump/edited_models_dump, the reference's layout) as
    `<base>_seed_42_top_48_heads_alpha_15` (the reference's folder name) or plain `<base>`.
Plus `smollm2` / `smollm2_135M_instruct`: the embedded SmolLM2-135M-Instruct GGUF (the default).
No imports beyond the standard library: the CLI's completion uses this module.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

HUB_ALIASES: dict[str, str] = {
    "llama_7B": "huggyllama/llama-7b",
    "alpaca_7B": "circulus/alpaca-7b",
    "vicuna_7B": "AlekseyKorshuk/vicuna-7b",
    "llama2_chat_7B": "meta-llama/Llama-2-7b-chat-hf",
    "llama2_chat_13B": "meta-llama/Llama-2-13b-chat-hf",
    "llama2_chat_70B": "meta-llama/Llama-2-70b-chat-hf",
    "llama3_8B": "meta-llama/Meta-Llama-3-8B",
    "llama3_8B_instruct": "meta-llama/Meta-Llama-3-8B-Instruct",
    "llama3_70B": "meta-llama/Meta-Llama-3-70B",
    "llama3_70B_instruct": "meta-llama/Meta-Llama-3-70B-Instruct",
}

# The published baked models (ITI with K=48 heads, alpha=15), as listed by the reference.
BAKED_BASES = ("llama_7B", "llama2_chat_7B", "llama2_chat_13B", "llama2_chat_70B",
               "llama3_8B_instruct", "llama3_70B_instruct")
HONEST_ALIASES: dict[str, str] = {f"honest_{b}": f"jujipotle/honest_{b}" for b in BAKED_BASES}
LOCAL_ALIASES: tuple[str, ...] = tuple(f"local_{b}" for b in BAKED_BASES)
LOCAL_SUFFIX = "_seed_42_top_48_heads_alpha_15"
LOCAL_ENV = "ITICTL_LOCAL_MODELS"
LOCAL_DEFAULT = Path("results_dump") / "edited_models_dump"

EMBEDDED_NAME = "smollm2_135M_instruct"
EMBEDDED_ALIASES: tuple[str, ...] = ("smollm2", EMBEDDED_NAME)


@dataclass(frozen=True)
class Alias:
    """What an alias names: kind 'hub' (target = repo id), 'local' (target = folder candidates'
    first entry; `candidates` lists all) or 'embedded' (target = '')."""

    name: str
    kind: str
    target: str
    candidates: tuple[str, ...] = ()


def local_root() -> Path:
    env = os.environ.get(LOCAL_ENV)
    return Path(env).expanduser() if env else LOCAL_DEFAULT


def all_aliases() -> list[str]:
    return [*HUB_ALIASES, *HONEST_ALIASES, *LOCAL_ALIASES, *EMBEDDED_ALIASES]


def lookup_alias(name: str) -> Alias | None:
    """The alias `name` names (exact match first, then case-insensitive), or None."""
    if name not in all_aliases():
        folded = {a.lower(): a for a in all_aliases()}
        name = folded.get(name.lower(), "")
        if not name:
            return None
    if name in HUB_ALIASES:
        return Alias(name, "hub", HUB_ALIASES[name])
    if name in HONEST_ALIASES:
        return Alias(name, "hub", HONEST_ALIASES[name])
    if name in EMBEDDED_ALIASES:
        return Alias(name, "embedded", "")
    base = name[len("local_"):]
    root = local_root()
    cands = (str(root / f"{base}{LOCAL_SUFFIX}"), str(root / base))
    return Alias(name, "local", cands[0], cands)


def close_matches(name: str, n: int = 4) -> list[str]:
    names = all_aliases()
    hits = difflib.get_close_matches(name, names, n=n, cutoff=0.5)
    if not hits:
        low = name.lower()
        hits = [a for a in names if low and (low in a.lower() or a.lower() in low)][:n]
    return hits
