"""Judge specs: `check_judge_spec` (syntax only, no I/O) and `parse_judge` (spec -> Judge).

Specs: `openai:MODEL` (key from OPENAI_API_KEY, base URL from --openai-base-url / OPENAI_BASE_URL),
`hf:ID_OR_PATH[@REVISION]` or `hf:ALIAS` (judge/hf.py HF_JUDGES), `local:REF` (a `judge` artifact
trained by `itictl judge train`: a ref name, key or key prefix) and bare `local` (the
`last-judge-truth` / `last-judge-info` ref of the judge's role).
"""

from __future__ import annotations

from itictl.errors import BadInputError
from itictl.judge.base import Judge

SCHEMES = ("openai", "hf", "local")
ROLES = ("truth", "info")


def _usage(spec: str) -> BadInputError:
    from itictl.judge.hf import HF_JUDGES

    return BadInputError(f"invalid judge spec {spec!r}",
                         "use openai:MODEL, hf:ID_OR_PATH[@REVISION] (aliases: " + ", ".join(HF_JUDGES)
                         + "), local (the last `itictl judge train`) or local:REF")


def check_judge_spec(spec: str) -> tuple[str, str]:
    """(scheme, rest) of a well-formed spec; `local` alone gives ('local', ''). No I/O."""
    if (spec or "").strip() == "local":
        return "local", ""
    scheme, _, rest = (spec or "").partition(":")
    if scheme not in SCHEMES or not rest.strip():
        raise _usage(spec)
    return scheme, rest


def parse_judge(spec: str, *, role: str | None = None, base_url: str | None = None, device: str = "cpu",
                store=None, max_retries: int = 2, timeout: float = 60.0) -> Judge:
    """Build a judge from its spec. Cheap for openai (no request is made); lazy for hf and local
    (the weights load on first use; a local ref is resolved now). `role` ('truth' | 'info', the
    flag it came from) picks bare `local`'s ref, and a local judge of the other kind is refused."""
    if role is not None and role not in ROLES:
        raise ValueError(f"role {role!r}")
    scheme, rest = check_judge_spec(spec)
    if scheme == "openai":
        from itictl.judge.remote import openai_judge

        return openai_judge(rest, base_url=base_url, max_retries=max_retries, timeout=timeout)
    if scheme == "hf":
        from itictl.judge.hf import hf_judge

        return hf_judge(rest, device=device, store=store)
    from itictl.judge.local import local_judge

    return local_judge(store, rest or None, role=role, device=device)
