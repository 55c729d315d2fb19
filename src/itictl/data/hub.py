"""Downloading dataset files from the Hugging Face Hub, failing fast and clearly when offline.

Owns: `hub_download(repo, filename)` and `hub_list(repo)` for *dataset* repos, the reachability
probe and the mapping of Hub failures to `RemoteError` / `NotFoundError`.

huggingface_hub retries an unreachable host for about 25 s before giving up, so before any request
we probe the endpoint with one TCP connection (2 s timeout). Offline (HF_HUB_OFFLINE set, or the
probe fails) we still serve files already in the Hugging Face cache; otherwise a one-line
RemoteError tells the user to pass --data DIR / set ITICTL_DATA. HF_ENDPOINT, HF_HUB_OFFLINE and
HF_HUB_CACHE / HF_HOME are read at call time (tests point HF_ENDPOINT at a local fake Hub).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from itictl.errors import NotFoundError, RemoteError

PROBE_TIMEOUT_S = 2.0
OFFLINE_HINT = "pass --data DIR (a folder with TruthfulQA.csv and mc_task.json) or set ITICTL_DATA"


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def offline_mode() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def cache_dir() -> str | None:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None  # huggingface_hub's default


def reachable(url: str | None = None, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One TCP connection to the endpoint's host and port; False on DNS or connect failure."""
    u = urlparse(url or endpoint())
    host = u.hostname
    if not host:
        return False
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def hub_download(repo: str, filename: str, *, hint: str = OFFLINE_HINT, revision: str | None = None) -> Path:
    """Local path of `filename` in dataset repo `repo` (from the HF cache when offline)."""
    from huggingface_hub import hf_hub_download

    kw = dict(repo_type="dataset", revision=revision, cache_dir=cache_dir(), endpoint=endpoint())
    online = not offline_mode() and reachable()
    try:
        if not online:
            return Path(hf_hub_download(repo, filename, local_files_only=True, **kw))
        return Path(hf_hub_download(repo, filename, etag_timeout=10, **kw))
    except Exception as e:  # noqa: BLE001 - mapped to one-line errors below
        raise _map_error(e, repo, filename, online, hint) from None


def hub_list(repo: str, *, hint: str = OFFLINE_HINT, revision: str | None = None) -> list[str]:
    """File paths in dataset repo `repo`. Offline: the files of its newest cached snapshot."""
    if offline_mode() or not reachable():
        files = _cached_files(repo)
        if files:
            return files
        why = "offline mode is on (HF_HUB_OFFLINE)" if offline_mode() else f"cannot reach {endpoint()}"
        raise RemoteError(f"cannot list the Hub dataset {repo}: {why} and it is not in the Hugging Face cache", hint)
    from huggingface_hub import HfApi

    try:
        return sorted(HfApi(endpoint=endpoint()).list_repo_files(repo, repo_type="dataset", revision=revision))
    except Exception as e:  # noqa: BLE001
        raise _map_error(e, repo, None, True, hint) from None


def _cached_files(repo: str) -> list[str]:
    from huggingface_hub import constants

    root = Path(cache_dir() or constants.HF_HUB_CACHE) / ("datasets--" + repo.replace("/", "--")) / "snapshots"
    if not root.is_dir():
        return []
    snaps = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    if not snaps:
        return []
    return sorted(p.relative_to(snaps[-1]).as_posix() for p in snaps[-1].rglob("*") if p.is_file())


def _map_error(e: Exception, repo: str, filename: str | None, online: bool, hint: str) -> Exception:
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    what = f"{repo}/{filename}" if filename else repo
    if isinstance(e, (OfflineModeIsEnabled, LocalEntryNotFoundError)) or not online:
        why = "offline mode is on (HF_HUB_OFFLINE)" if offline_mode() else f"cannot reach {endpoint()}"
        return RemoteError(f"cannot download the Hub dataset file {what}: {why} and it is not in the Hugging Face cache",
                           hint)
    if isinstance(e, (RepositoryNotFoundError, RevisionNotFoundError)):
        return NotFoundError(f"Hub dataset {repo} not found (or not public)", hint)
    if isinstance(e, EntryNotFoundError):
        return NotFoundError(f"Hub dataset {repo} has no file {filename}", hint)
    if isinstance(e, HfHubHTTPError):
        status = getattr(getattr(e, "response", None), "status_code", None)
        return RemoteError(f"the Hub failed while downloading {what} (HTTP {status})", "retry later, or " + hint)
    return RemoteError(f"cannot download {what} from {endpoint()}: {type(e).__name__}", hint)
