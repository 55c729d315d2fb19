"""Uploading baked models and exported interventions to the Hugging Face Hub.

Owns: repo-name validation, the default repo (`--repo` > $ITICTL_PUSH_REPO > ACCOUNT/<model>-iti, the
account from `whoami`: `default_repo`), token lookup (`--token` > HF_TOKEN > HUGGING_FACE_HUB_TOKEN >
huggingface_hub's stored login; the token is
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


def _stored_token() -> str | None:
    """huggingface_hub's stored login (`hf auth login`; the token file under HF_HOME), if any."""
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:  # noqa: BLE001 - an unreadable login is no login
        return None


def resolve_token(flag: str | None) -> str:
    for value in (flag, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN"), _stored_token()):
        if value:
            register_secret(value)
            return value
    raise AuthError("no Hugging Face token", "set HF_TOKEN, pass --token or run `hf auth login` "
                                             "(a write token from huggingface.co/settings/tokens)")


PUSH_REPO_ENV = "ITICTL_PUSH_REPO"
OWNER_PLACEHOLDER = "USER"  # the owner a --dry-run without a repo shows (it does not ask the Hub)


def repo_suffix(kind: str) -> str:
    return "-iti" if kind == "baked-model" else "-iti-vectors"


def model_short_name(store, art) -> str:
    """The base model's short name for a default repo name: the Hub id's last part (the embedded
    model: SmolLM2-135M-Instruct), else the model's name; only Hub-safe characters."""
    from itictl.publish.modelcard import model_of, model_summary

    inter = store.get(art.parents["intervention"]) if art.kind == "baked-model" else art
    m = model_summary(model_of(store, inter))
    return hub_safe_name(next((m[k] for k in ("repo", "name", "model_type") if isinstance(m.get(k), str) and m[k]),
                              "model"))


def hub_safe_name(name: str) -> str:
    """'org/Some Model..v2/' -> 'Some-Model-v2': the last path part, Hub-safe, at most 80 chars."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", name.rstrip("/").split("/")[-1])
    name = re.sub(r"[-.]{2,}", "-", name).strip("-._")[:80].strip("-._")
    return name or "model"


def hub_account(token: str) -> str:
    """The user name the token belongs to (`whoami`); Hub failures map to itictl errors."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        name = HfApi(endpoint=endpoint(), token=token).whoami(token=token).get("name")
    except (HfHubHTTPError, OfflineModeIsEnabled, ConnectionError, TimeoutError) as e:
        raise _map_error(e, "your account (whoami)") from None
    except Exception as e:
        if not _is_transport_error(e):
            raise
        raise _map_error(e, "your account (whoami)") from None
    if not isinstance(name, str) or not name:
        raise RemoteError("the Hub did not say which account the token belongs to", "pass --repo OWNER/NAME")
    return name


def default_repo(store, art, token: str | None) -> str:
    """ACCOUNT/<model short name>-iti (-iti-vectors for an intervention); the owner is
    OWNER_PLACEHOLDER without a token (--dry-run)."""
    owner = hub_account(token) if token else OWNER_PLACEHOLDER
    return validate_repo_id(f"{owner}/{model_short_name(store, art)}{repo_suffix(art.kind)}")


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


def push_plan(store, art, repo_id: str, *, license: str | None = None, source=None) -> PushPlan:
    """The files and card for pushing a baked model or an intervention (exported as safetensors).
    `source`: the eval or tune the intervention was built from, which the card cites (a baked
    model: default its recorded source, publish.bake.source_of)."""
    from itictl.publish.modelcard import render_card

    if art.kind == "baked-model":
        from itictl.publish.bake import source_of

        source = source if source is not None else source_of(store, art)
        inter = store.get(art.parents["intervention"])
        # From the manifest, each file digest-checked (size-checked above 64 MiB) before it is sent.
        files = {name[len("model/"):]: art.file(name) for name in sorted(art.manifest.files)
                 if name.startswith("model/") and name != "model/README.md"}
        notes = []
        if art.meta.get("enabled_flag"):
            from itictl.publish.bake import BakeInfo

            notes = BakeInfo(layers=art.meta.get("layers", []), enabled_flag=art.meta["enabled_flag"],
                             zero_params=[""] * int(art.meta.get("zero_params", 0))).notes()
        card = render_card(store, inter, what="baked-model", license=license, repo_id=repo_id, notes=notes,
                           source=source)
        return PushPlan("baked-model", art.key, files, card)
    if art.kind == "intervention":
        from itictl.intervene.build import load_deltas
        from itictl.publish.export import write_safetensors
        from itictl.publish.modelcard import intervention_info, model_of

        tmp = Path(tempfile.mkdtemp(prefix="itictl-push-"))
        info = {**intervention_info(art), "itictl_intervention_key": art.key, "model_key": model_of(store, art).key}
        names = write_safetensors(load_deltas(art), info, tmp)
        card = render_card(store, art, what="intervention", license=license, repo_id=repo_id, source=source)
        return PushPlan("intervention", art.key, {n: tmp / n for n in names}, card, _tmp=tmp)
    raise BadInputError(f"{art.key[:12]} is a {art.kind} object; push sends baked models and interventions",
                        "pass a baked-model ref (`itictl bake`) or an intervention ref")


def run_push(store, ref: str | None, repo: str | None, *, token: str | None = None, private: bool = False,
             revision: str | None = None, dry_run: bool = False, license: str | None = None,
             message: str | None = None, out=None, heads: int | None = None,
             alpha: float | None = None) -> dict[str, Any]:
    """`itictl push`: repo name (--repo, else $ITICTL_PUSH_REPO) and token checked first (the token
    is registered for redaction before anything else), then the target (push_target); with no repo
    given, default_repo names it from the account (whoami) and the base model; then its plan and
    the upload (or, with dry_run, the file list and the card: no network). Returns the result
    document, with the repo's `url` and where the repo name came from (`repo_from`)."""
    if token:
        register_secret(token)
    env_repo = os.environ.get(PUSH_REPO_ENV) or None
    source = "--repo" if repo else (PUSH_REPO_ENV if env_repo else "account")
    given = repo or env_repo
    repo_id = validate_repo_id(given) if given else None
    tok = None if dry_run else resolve_token(token)
    art, origin = push_target(store, ref, out, heads=heads, alpha=alpha)
    if repo_id is None:
        repo_id = default_repo(store, art, tok)
    plan = push_plan(store, art, repo_id, license=license, source=origin)
    try:
        doc: dict[str, Any] = {"artifact": art.key, "kind": art.kind, "repo": repo_id, "repo_from": source,
                               "files": plan.names(), "dry_run": dry_run, "revision": revision or "main",
                               "private": private, "url": f"{endpoint()}/{repo_id}"}
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


def push_target(store, ref: str | None, out=None, *, heads: int | None = None, alpha: float | None = None):
    """What `itictl push REF` sends: a baked model or an intervention as named; any other ref goes
    through publish.bake.resolve_intervention (an eval: its intervention), except a tune: the baked
    model of its all-questions intervention (as with no ref); no ref: default_push_ref
    (heads / alpha pick the last eval's setting; they apply only without a ref).
    -> (artifact, source): the eval or tune its intervention was built from when known
    (publish.bake.resolve_intervention), which the card cites; else None."""
    from itictl.publish.bake import resolve_intervention, source_of

    if ref is None:
        return default_push_ref(store, out, heads=heads, alpha=alpha)
    if heads is not None or alpha is not None:
        return resolve_intervention(store, ref, out, heads=heads, alpha=alpha)  # the one-line UsageError
    art = store.open(ref)
    if art.kind in ("baked-model", "intervention"):
        return art, (source_of(store, art) if art.kind == "baked-model" else None)
    if art.kind == "tune":  # as with no ref: the baked model of its all-questions intervention
        from itictl.publish.final import for_tune

        final = for_tune(store, art, out=out)
        return _baked(store, final.intervention, f"tune {art.key[:12]}'s"), final.source
    return resolve_intervention(store, ref, out)


def _baked(store, inter, whose: str):
    """The newest baked model of intervention `inter`; NotFoundError when it is not baked. (Its
    weights depend only on the intervention, the model and the dtype; the pushed card is rendered
    for the caller's `source`, whatever eval the stored README cites.)"""
    mine = [a for a in store.ls(kind="baked-model") if a.parents.get("intervention") == inter.key]
    if mine:
        return mine[-1]
    raise NotFoundError(f"{whose} all-questions intervention {inter.key[:12]} is not baked",
                        "run `itictl bake` first, or pass a REF (e.g. last-bake)")


def default_push_ref(store, out=None, *, heads: int | None = None, alpha: float | None = None):
    """After an eval or a tune: the baked model of the all-questions intervention of the newer of
    last-tune and last-eval (publish.final.last_final, built or reused; heads / alpha pick the eval's
    setting). With neither, or an eval without an intervention: the newest baked model in the store.
    A tune that chose α = 0 is an error, not a fallback.
    -> (baked model, the eval or tune its intervention came from, or None)."""
    from itictl.publish.bake import source_of
    from itictl.publish.final import last_final, newest_source

    baked = store.ls(kind="baked-model")
    name = newest_source(store)
    if name is not None:
        try:
            final = last_final(store, out, heads=heads, alpha=alpha)
        except NotFoundError:  # an α = 0 eval, or its model is gone
            if name == "last-tune":
                raise
            final = None
        if final is not None:
            whose = "the last eval's" if name == "last-eval" else "the last tune's"
            return _baked(store, final.intervention, whose), final.source
    if heads is not None or alpha is not None:
        from itictl.errors import UsageError

        raise UsageError("--heads/--alpha pick the last eval's setting, and there is no eval with an intervention",
                         "run `itictl eval` first, or drop --heads/--alpha")
    if baked:
        return baked[-1], source_of(store, baked[-1])
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
