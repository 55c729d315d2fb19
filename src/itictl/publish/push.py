"""Uploading baked models and exported interventions to the Hugging Face Hub.

Owns: repo-name validation, token lookup (`--token` > HF_TOKEN > HUGGING_FACE_HUB_TOKEN; the token is
registered with itictl.secrets so it is redacted everywhere and never stored), the list of files a
push sends (`push_target`: which artifact a REF means; `push_plan`), the whole step (`run_push`), the
upload itself (`upload`: create the repo if needed, create the branch
if asked, one commit with every file) and the mapping of Hub failures to itictl errors (401/403 ->
AuthError, anything network or server side -> RemoteError). The endpoint is read from HF_ENDPOINT at
call time (tests point it at a local fake Hub).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from itictl.errors import AuthError, BadInputError, NotFoundError, RemoteError
from itictl.secrets import redact, register_secret

_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
REPO_RE = re.compile(rf"^{_PART}/{_PART}$")


def validate_repo_id(repo: str | None) -> str:
    if not repo:
        raise BadInputError("no Hub repo given", "pass --repo OWNER/NAME")
    if not REPO_RE.match(repo) or "--" in repo or ".." in repo or len(repo) > 96:
        raise BadInputError(f"invalid Hub repo name {repo!r}",
                            "use OWNER/NAME with letters, digits, '-', '_' and '.' (no '--' or '..', max 96 chars)")
    return repo


def resolve_token(flag: str | None) -> str:
    for value in (flag, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")):
        if value:
            register_secret(value)
            return value
    raise AuthError("no Hugging Face token", "set HF_TOKEN or pass --token (a write token from huggingface.co/settings/tokens)")


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


@dataclass
class PushPlan:
    """What one push sends: files[path_in_repo] = local path, and the README card text."""

    what: str  # 'baked-model' | 'intervention'
    artifact: str
    files: dict[str, Path]
    card: str
    _tmp: Path | None = field(default=None, repr=False)

    def names(self) -> list[str]:
        return sorted([*self.files, "README.md"])

    def cleanup(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def push_plan(store, art, repo_id: str, *, license: str | None = None) -> PushPlan:
    """The files and card for pushing a baked model or an intervention (exported as safetensors)."""
    from itictl.publish.modelcard import render_card

    if art.kind == "baked-model":
        inter = store.get(art.parents["intervention"])
        # From the manifest, each file digest-checked (size-checked above 64 MiB) before it is sent.
        files = {name[len("model/"):]: art.file(name) for name in sorted(art.manifest.files)
                 if name.startswith("model/") and name != "model/README.md"}
        notes = []
        if art.meta.get("enabled_flag"):
            from itictl.publish.bake import BakeInfo

            notes = BakeInfo(layers=art.meta.get("layers", []), enabled_flag=art.meta["enabled_flag"],
                             zero_params=[""] * int(art.meta.get("zero_params", 0))).notes()
        card = render_card(store, inter, what="baked-model", license=license, repo_id=repo_id, notes=notes)
        return PushPlan("baked-model", art.key, files, card)
    if art.kind == "intervention":
        from itictl.intervene.build import load_deltas
        from itictl.publish.export import write_safetensors
        from itictl.publish.modelcard import intervention_info, model_of

        tmp = Path(tempfile.mkdtemp(prefix="itictl-push-"))
        info = {**intervention_info(art), "itictl_intervention_key": art.key, "model_key": model_of(store, art).key}
        names = write_safetensors(load_deltas(art), info, tmp)
        card = render_card(store, art, what="intervention", license=license, repo_id=repo_id)
        return PushPlan("intervention", art.key, {n: tmp / n for n in names}, card, _tmp=tmp)
    raise BadInputError(f"{art.key[:12]} is a {art.kind} object; push sends baked models and interventions",
                        "pass a baked-model ref (`itictl bake`) or an intervention ref")


def run_push(store, ref: str | None, repo: str | None, *, token: str | None = None, private: bool = False,
             revision: str | None = None, dry_run: bool = False, license: str | None = None,
             message: str | None = None, out=None) -> dict[str, Any]:
    """`itictl push`: repo name and token checked first (the token is registered for redaction
    before anything else), then the target (push_target), its plan, and the upload (or, with
    dry_run, the file list and the card: no network). Returns the result document."""
    if token:
        register_secret(token)
    repo_id = validate_repo_id(repo)
    tok = None if dry_run else resolve_token(token)
    art = push_target(store, ref, out)
    plan = push_plan(store, art, repo_id, license=license)
    try:
        doc: dict[str, Any] = {"artifact": art.key, "kind": art.kind, "repo": repo_id, "files": plan.names(),
                               "dry_run": dry_run, "revision": revision or "main", "private": private}
        if dry_run:
            doc["card"] = plan.card
        else:
            if out is not None:
                out.info(f"pushing {len(doc['files'])} files to {repo_id}")
            doc.update(upload(plan, repo_id, token=tok, private=private, revision=revision,
                              commit_message=message))
    finally:
        plan.cleanup()
    return doc


def push_target(store, ref: str | None, out=None):
    """What `itictl push REF` sends: a baked model or an intervention as named; any other ref goes
    through publish.bake.resolve_intervention (an eval: its intervention); no ref: default_push_ref."""
    if ref is None:
        return default_push_ref(store, out)
    art = store.open(ref)
    if art.kind in ("baked-model", "intervention"):
        return art
    from itictl.publish.bake import resolve_intervention

    return resolve_intervention(store, ref, out)


def default_push_ref(store, out=None):
    """The baked model of last-eval's intervention, else the newest baked model in the store."""
    baked = store.ls(kind="baked-model")
    if "last-eval" in store.refs():
        from itictl.publish.bake import resolve_intervention

        try:
            inter = resolve_intervention(store, None)
        except NotFoundError:
            inter = None
        if inter is not None:
            mine = [a for a in baked if a.parents.get("intervention") == inter.key]
            if mine:
                return mine[-1]
    if baked:
        return baked[-1]
    raise NotFoundError("nothing to push: no baked model in the store", "run `itictl bake` first or pass a ref")


def _is_transport_error(e: Exception) -> bool:
    """A connection/timeout error of the HTTP client huggingface_hub uses (httpx2 in 2.4)."""
    return type(e).__module__.split(".")[0] in ("httpx2", "httpx", "httpcore", "requests", "urllib3")


def _map_error(e: Exception, repo_id: str) -> Exception:
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(e, OfflineModeIsEnabled):
        return RemoteError("Hugging Face Hub offline mode is on (HF_HUB_OFFLINE)", "unset HF_HUB_OFFLINE to push")
    if isinstance(e, HfHubHTTPError):
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            return AuthError(f"the Hub rejected the token for {repo_id} (HTTP {status})",
                             "check that HF_TOKEN / --token is a valid write token for that owner")
        first = redact(str(e)).splitlines()[0][:200] if str(e) else ""
        return RemoteError(f"the Hub failed while pushing {repo_id} (HTTP {status}): {first}",
                           "retry later; check HF_ENDPOINT")
    return RemoteError(f"cannot reach the Hub at {endpoint()}: {type(e).__name__}",
                       "check your network connection or HF_ENDPOINT")


def upload(plan: PushPlan, repo_id: str, *, token: str, private: bool = False, revision: str | None = None,
           commit_message: str | None = None) -> dict[str, Any]:
    """Create the repo if needed (and the branch), then commit every file of the plan at once."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    api = HfApi(endpoint=endpoint(), token=token)
    ops = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in sorted(plan.files.items())]
    ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=plan.card.encode("utf-8")))
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
        info = api.create_commit(repo_id, ops, commit_message=commit_message or f"itictl push {plan.what} {plan.artifact[:12]}",
                                 revision=revision, repo_type="model")
    except (HfHubHTTPError, OfflineModeIsEnabled, ConnectionError, TimeoutError) as e:
        raise _map_error(e, repo_id) from None
    except Exception as e:
        if not _is_transport_error(e):
            raise
        raise _map_error(e, repo_id) from None
    return {"repo": repo_id, "url": str(url), "commit": info.oid, "commit_url": info.commit_url,
            "revision": revision or "main", "private": private}
