"""Keeps secrets (HF_TOKEN, OPENAI_API_KEY, tokens passed on the command line) out of output.

`register_secret` records a value given by flag; `redact` replaces every known secret value in a
string. The CLI passes every error message and log line through `redact`, and manifests are
built from explicit parameter dicts that never include tokens.
"""

from __future__ import annotations

import os

SECRET_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY", "ITICTL_OPENAI_API_KEY")
_registered: set[str] = set()


def register_secret(value: str | None) -> None:
    if value and len(value) >= 4:
        _registered.add(value)


def known_secrets() -> list[str]:
    values = set(_registered)
    for name in SECRET_ENV_VARS:
        v = os.environ.get(name)
        if v and len(v) >= 4:
            values.add(v)
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    for value in known_secrets():
        text = text.replace(value, "***")
    return text
