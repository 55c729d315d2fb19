"""Resolving a `--model` spec to a ModelRef and its identity (what goes into artifact keys).

Cheap: no weights are loaded. Identities:
  hub      {source: hub, repo, commit}        commit resolved via the Hub API, or the local HF cache
                                              when HF_HUB_OFFLINE is set
  folder   {source: folder, digests: {file: digest}}   config, tokenizer and weight files (sha256;
                                              from 1 GiB on the block digest, store/digests.py)
  gguf     {source: gguf, sha256}             the file digest (the embedded default too)
The Hub is asked once, with a short timeout and no retries; when it cannot be reached the error is
a one-line RemoteError that says to pass a local folder or fix the network.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from itictl import hooks
from itictl.errors import AuthError, BadInputError, NotFoundError, RemoteError
from itictl.models.aliases import EMBEDDED_NAME, close_matches, lookup_alias
from itictl.models.embedded import check_gguf_model, embedded_gguf_path

HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
HUB_TIMEOUT_S = float(os.environ.get("ITICTL_HUB_TIMEOUT", "8"))

# Files of a model folder that determine its behaviour (weights, config, tokenizer, generation).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
CONFIG_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "tokenizer.model", "special_tokens_map.json", "added_tokens.json", "vocab.json",
                "merges.txt", "chat_template.jinja", "chat_template.json")


@dataclass(frozen=True)
class ModelRef:
    """A resolved model spec. `location`: repo id (hub), folder path (folder), GGUF path (gguf,
    embedded). `revision`: the requested Hub revision (None = main)."""

    name: str
    source: str  # 'embedded' | 'hub' | 'folder' | 'gguf'
    location: str
    revision: str | None
    identity: dict[str, Any] = field(default_factory=dict)


# ---- environment ------------------------------------------------------------------------------

def _truthy(v: str | None) -> bool:
    return (v or "").strip().lower() in ("1", "true", "yes", "on")


def hub_offline() -> bool:
    return _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE"))


def hub_endpoint() -> str:
    """Read at call time (huggingface_hub reads HF_ENDPOINT once, at import)."""
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def hub_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "huggingface" / "hub"


# ---- Hub --------------------------------------------------------------------------------------

def cached_commit(repo: str, revision: str | None) -> str | None:
    """The commit the local HF cache has for repo@revision, or None."""
    repo_dir = hub_cache_dir() / f"models--{repo.replace('/', '--')}"
    rev = revision or "main"
    if COMMIT_RE.match(rev):
        return rev if (repo_dir / "snapshots" / rev).is_dir() else None
    ref = repo_dir / "refs" / rev
    try:
        commit = ref.read_text().strip()
    except OSError:
        return None
    return commit if COMMIT_RE.match(commit) and (repo_dir / "snapshots" / commit).is_dir() else None


def _offline_hint() -> str:
    return "pass a local model folder or .gguf file with --model, or connect to the network (and unset HF_HUB_OFFLINE)"


def hub_commit(repo: str, revision: str | None) -> str:
    """Resolve repo@revision to a commit: the Hub API (one request, short timeout), or the local
    cache when offline. One-line errors for every failure."""
    rev_txt = f"@{revision}" if revision else ""
    if hub_offline():
        commit = cached_commit(repo, revision)
        if commit:
            return commit
        raise RemoteError(f"HF_HUB_OFFLINE is set and {repo}{rev_txt} is not in the local Hugging Face cache",
                          _offline_hint())
    from huggingface_hub import HfApi
    from huggingface_hub import errors as hf_errors

    api = HfApi(endpoint=hub_endpoint())
    try:
        info = api.model_info(repo, revision=revision, timeout=HUB_TIMEOUT_S)
    except hf_errors.RevisionNotFoundError:
        raise NotFoundError(f"revision {revision!r} not found in {repo}", "check --revision (a branch, tag or commit)") from None
    except hf_errors.GatedRepoError:
        raise AuthError(f"{repo} is gated", "accept its licence on the Hub and set HF_TOKEN") from None
    except hf_errors.RepositoryNotFoundError:
        raise NotFoundError(f"model {repo!r} not found on the Hub (or private)",
                            "check the id; for a private repo set HF_TOKEN") from None
    except hf_errors.HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            raise AuthError(f"the Hub refused access to {repo} (HTTP {status})", "set a valid HF_TOKEN") from None
        raise RemoteError(f"the Hub failed for {repo} (HTTP {status})", _offline_hint()) from None
    except Exception as e:  # network: connection refused, DNS, timeout (httpx/requests/OSError)
        if not _is_network_error(e):
            raise
        commit = cached_commit(repo, revision)
        if commit:  # unreachable, but the cache knows the revision: same answer as offline mode
            return commit
        raise RemoteError(f"cannot reach the Hugging Face Hub at {hub_endpoint()} to resolve {repo}{rev_txt} "
                          f"({type(e).__name__})", _offline_hint()) from None
    if not info.sha:
        raise RemoteError(f"the Hub gave no commit for {repo}{rev_txt}", _offline_hint())
    return info.sha


def _is_network_error(e: BaseException) -> bool:
    if isinstance(e, (OSError, TimeoutError)):
        return True
    mod = type(e).__module__
    return mod.startswith(("httpx", "httpcore", "requests", "urllib3")) or "Connect" in type(e).__name__ \
        or "Timeout" in type(e).__name__ or type(e).__name__ == "OfflineModeIsEnabled"


# ---- folders and files ------------------------------------------------------------------------

def folder_files(folder: Path) -> list[Path]:
    """The config, tokenizer and weight files of a model folder (top level, sorted)."""
    out = []
    for p in sorted(folder.iterdir()):
        if p.is_file() and (p.name in CONFIG_FILES or p.name.endswith(WEIGHT_SUFFIXES)
                            or p.name.endswith(".index.json")):
            out.append(p)
    return out


def folder_identity(store, folder: Path) -> dict[str, Any]:
    """Every file's digest (store/digests.py content_digests; through the store's cache when given)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise BadInputError(f"{folder} has no config.json, so it is not a Hugging Face model folder",
                            "pass a folder made by save_pretrained, a .gguf file or a Hub id")
    files = folder_files(folder)
    if not any(p.name.endswith(WEIGHT_SUFFIXES) for p in files):
        raise BadInputError(f"{folder} has no weight files (*.safetensors, *.bin)", "pass a complete model folder")
    from itictl.store.digests import content_digests

    with hooks.timed("identity_hash"):  # cached by path, size, mtime and inode; files hashed in parallel
        digests = store.file_digests(files) if store is not None else content_digests(files)
    return {"source": "folder", "digests": {p.name: d for p, d in zip(files, digests)}}


def gguf_identity(store, path: Path) -> dict[str, Any]:
    with hooks.timed("identity_hash"):
        return {"source": "gguf", "sha256": store.file_digest(path)}


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~")) or spec.endswith(".gguf") or os.sep + os.sep in spec \
        or spec.count("/") > 1 or spec in (".", "..")


def _missing(spec: str, what: str) -> NotFoundError:
    near = close_matches(Path(spec).name if "/" in spec else spec)
    hint = (f"did you mean {', '.join(near)}?" if near else "aliases: llama2_chat_7B, llama3_8B_instruct, smollm2, …") + \
        " A Hub model is ORG/NAME; a local model is a folder or a .gguf file"
    return NotFoundError(f"{what} {spec!r}", hint)


# ---- resolving --------------------------------------------------------------------------------

def resolve_model(spec: str | None, store, revision: str | None = None) -> ModelRef:
    """Resolve a --model value (None = the embedded default) without loading weights."""
    spec = (spec or "").strip() or None
    if revision is not None and not revision.strip():
        revision = None
    if spec is None:
        return _embedded(store, revision)
    alias = lookup_alias(spec)
    if alias is not None:
        if alias.kind == "embedded":
            return _embedded(store, revision)
        if alias.kind == "hub":
            return _hub(alias.name, alias.target, revision)
        for cand in alias.candidates:
            if Path(cand).is_dir():
                return _folder(store, alias.name, Path(cand), revision)
        raise NotFoundError(f"alias {alias.name!r} names a local folder, but neither {alias.candidates[0]} nor "
                            f"{alias.candidates[1]} exists",
                            "set ITICTL_LOCAL_MODELS to the folder holding your baked models")
    path = Path(spec).expanduser()
    if path.is_dir():
        return _folder(store, str(path), path, revision)
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise BadInputError(f"{spec} is a file but not a .gguf model", "pass a .gguf file, a model folder or a Hub id")
        _no_revision(revision, spec)
        check_gguf_model(path)
        return ModelRef(path.name, "gguf", str(path.resolve()), None, gguf_identity(store, path))
    if _looks_like_path(spec):
        raise _missing(spec, "no model file or folder at")
    if HUB_ID_RE.match(spec):
        return _hub(spec, spec, revision)
    raise _missing(spec, "unknown model alias")


def _no_revision(revision: str | None, spec: str) -> None:
    if revision is not None:
        raise BadInputError(f"--revision applies to Hub models only, not to {spec}", "drop --revision")


def _embedded(store, revision: str | None) -> ModelRef:
    _no_revision(revision, "the embedded model")
    path = embedded_gguf_path()
    return ModelRef(EMBEDDED_NAME, "embedded", str(path), None, gguf_identity(store, path))


def _folder(store, name: str, folder: Path, revision: str | None) -> ModelRef:
    _no_revision(revision, str(folder))
    folder = folder.resolve()
    return ModelRef(name, "folder", str(folder), None, folder_identity(store, folder))


def _hub(name: str, repo: str, revision: str | None) -> ModelRef:
    commit = hub_commit(repo, revision)
    return ModelRef(name, "hub", repo, revision, {"source": "hub", "repo": repo, "commit": commit})
