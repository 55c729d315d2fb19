"""One lock around transformers' first imports while a model loads in a background thread.

transformers' lazy modules are not safe to initialise from two threads at once: a thread that looks
up `transformers.AutoModelForCausalLM` while another thread is still importing the package can get
"ImportError: cannot import name 'AutoModelForCausalLM' from 'transformers'" (reproduced: 2 of 3
cold runs of a folder eval, where models/preload.py's thread and ensure_model's config read in the
main thread both import it). The preload thread (`import_for_loading`) and the code that may run
beside it (ensure_model's config read) hold `LOCK` for their imports and lookups; once one of them
finished, the modules are initialised and the other finds them complete.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

LOCK = threading.RLock()


def import_for_loading(folder: Path | None = None) -> Any:
    """Under LOCK: import what from_pretrained needs (the auto classes, the tokenizer and generation
    config classes) and, for a folder, its config and model class (the modeling module, imported
    lazily by transformers otherwise). -> the config (None without a folder)."""
    with LOCK:
        import transformers  # noqa: F401
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig  # noqa: F401
        from transformers.utils import logging  # noqa: F401 (hf_quiet)

        if folder is None:
            return None
        config = AutoConfig.from_pretrained(folder)
        AutoModelForCausalLM._model_mapping[type(config)]  # noqa: B018 (imports the modeling module)
        return config
