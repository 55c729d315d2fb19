"""The Store: objects, building them (`produce`), reading them (get/open/resolve/ls), work dirs,
the lease, verify and lineage. Refs, gc/rm and external-file digests live in refs.py, gc.py and
digests.py; the Store's methods for them delegate there.

Layout under the root:
  objects/ab/cdef…/   one committed object: manifest.json + payload files (read-only)
  refs/NAME           a human name; the file holds a key
  tmp/                work in progress (random dirs) and resumable work dirs (KEY.work)
  locks/              per-key lock files and the store-wide lease lock
  cache/              digests of external files (GGUF, model folders) by path+size+mtime+inode

The store is input-addressed and content-verified: a key is the hash of what an object is made
from (kind, params, parent keys, versions), and its manifest records the sha256 of every payload
file, checked on read. It knows nothing about models: callers give it a kind, params, parent keys
and a function that writes payload files into a directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from itictl import __version__, hooks
from itictl.errors import BadInputError, CorruptObjectError, NotFoundError, StoreError
from itictl.store import digests
from itictl.store import gc as gc_mod
from itictl.store import refs as refs_mod
from itictl.store.artifact import Artifact, BuildContext
from itictl.store.atomic import commit_dir
from itictl.store.keys import compute_key, is_key
from itictl.store.locks import flock
from itictl.store.manifest import MANIFEST, Manifest, describe_files, seal
from itictl.store.oserrors import NOT_WRITABLE_HINT, store_os_error
from itictl.store.refs import REF_RE, looks_like_prefix


def _utcnow() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _creation_order(art: Artifact) -> tuple[str, int]:
    """ls order, oldest first: the manifest's `created` (whole seconds), then the manifest file's
    mtime (when the object was committed), so objects made within one second keep their order."""
    try:
        return art.manifest.doc.get("created", ""), (art.path / MANIFEST).stat().st_mtime_ns
    except OSError:
        return art.manifest.doc.get("created", ""), 0


def make_read_only(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            p.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


class Store:
    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.refs_dir = self.root / "refs"
        self.tmp = self.root / "tmp"
        self.locks = self.root / "locks"
        self.cache = self.root / "cache"
        self._lease_depth = 0

    # ---- layout -------------------------------------------------------------------------
    def ensure(self) -> None:
        try:
            for d in (self.objects, self.refs_dir, self.tmp, self.locks, self.cache):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise store_os_error(e, self.root) from None
        if not os.access(self.root, os.W_OK):
            raise StoreError(f"the store at {self.root} is not writable", NOT_WRITABLE_HINT)

    def object_dir(self, key: str) -> Path:
        return self.objects / key[:2] / key[2:]

    def work_dir(self, key: str) -> Path:
        """Where a resumable step keeps work that survives a crash (gc keeps it until KEY exists)."""
        return self.tmp / f"{key}.work"

    # ---- locking ------------------------------------------------------------------------
    @property
    def lease_path(self) -> Path:
        return self.locks / "store.lease"

    def lock_path(self, key: str) -> Path:
        return self.locks / f"{key}.lock"

    @contextlib.contextmanager
    def lease(self) -> Iterator[None]:
        """Shared lease held while a command reads parents and writes objects; gc takes it
        exclusively, so gc never deletes what a running command needs."""
        if self._lease_depth:
            self._lease_depth += 1
            try:
                yield
            finally:
                self._lease_depth -= 1
            return
        self.ensure()
        with flock(self.lease_path, exclusive=False):
            self._lease_depth = 1
            try:
                yield
            finally:
                self._lease_depth = 0

    def key_lock(self, key: str, on_wait=None):
        return flock(self.lock_path(key), exclusive=True, on_wait=on_wait)

    # ---- reading ------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        return (self.object_dir(key) / MANIFEST).is_file()

    def get(self, key: str) -> Artifact:
        d = self.object_dir(key)
        if not d.is_dir():
            raise NotFoundError(f"no object {key[:12]} in the store at {self.root}", "list objects with `itictl store ls`")
        return Artifact(self, key, d, Manifest.read(d / MANIFEST, expected_key=key))

    def iter_keys(self) -> Iterator[str]:
        if not self.objects.is_dir():
            return
        for a in sorted(self.objects.iterdir()):
            if a.is_dir() and len(a.name) == 2:
                for b in sorted(a.iterdir()):
                    if b.is_dir() and is_key(a.name + b.name):
                        yield a.name + b.name

    def resolve(self, ref: str, kind: str | None = None) -> str:
        """A key from a ref name, a full key or a unique key prefix (≥ 4 hex chars)."""
        if not ref or "\x00" in ref:
            raise BadInputError("empty or invalid ref", "give a ref name, a key or a key prefix")
        key = refs_mod.read_ref(self, ref)
        if key is not None:
            return self._check_kind(key, kind, ref)
        low = ref.lower()
        if looks_like_prefix(low):
            if is_key(low):
                if self.has(low):
                    return self._check_kind(low, kind, ref)
            else:
                matches = list(self._keys_with_prefix(low))
                if len(matches) == 1:
                    return self._check_kind(matches[0], kind, ref)
                if len(matches) > 1:
                    raise BadInputError(f"ref {ref!r} is ambiguous: {len(matches)} objects start with it",
                                        "give more characters of the key")
        if not REF_RE.match(ref):
            raise BadInputError(f"invalid ref {ref!r}",
                                "refs are names of letters, digits, '.', '_', '-' (no '/' or '..'), or key prefixes")
        raise NotFoundError(f"unknown ref {ref!r}", "list objects and refs with `itictl store ls`")

    def _keys_with_prefix(self, prefix: str) -> Iterator[str]:
        top = self.objects / prefix[:2]
        if not top.is_dir():
            return
        for b in top.iterdir():
            k = prefix[:2] + b.name
            if k.startswith(prefix) and is_key(k):
                yield k

    def _check_kind(self, key: str, kind: str | None, ref: str) -> str:
        if kind is not None:
            actual = self.get(key).kind
            if actual != kind:
                raise BadInputError(f"ref {ref!r} is a {actual} object, not a {kind}",
                                    f"pass a {kind} ref (see `itictl store ls --kind {kind}`)")
        return key

    def open(self, ref: str, kind: str | None = None) -> Artifact:
        return self.get(self.resolve(ref, kind))

    def ls(self, kind: str | None = None) -> list[Artifact]:
        out = []
        for key in self.iter_keys():
            try:
                art = self.get(key)
            except CorruptObjectError:
                continue
            if kind is None or art.kind == kind:
                out.append(art)
        out.sort(key=_creation_order)
        return out

    # ---- writing ------------------------------------------------------------------------
    def key_for(self, kind: str, params: Mapping[str, Any], parents: Mapping[str, str] | None = None,
                *, schema_version: int = 1, step_version: int = 1) -> str:
        return compute_key(kind, params, parents, schema_version=schema_version, step_version=step_version)

    def produce(
        self,
        kind: str,
        params: Mapping[str, Any],
        parents: Mapping[str, str] | None,
        build: Callable[[BuildContext], None],
        *,
        schema_version: int = 1,
        step_version: int = 1,
        on_wait: Callable[[], None] | None = None,
    ) -> tuple[Artifact, bool]:
        """Return (artifact, cached). Builds at most once per key across processes: the build
        writes into a fresh tmp dir, which is renamed into place only when complete."""
        parents = dict(parents or {})
        key = self.key_for(kind, params, parents, schema_version=schema_version, step_version=step_version)
        if self.has(key):
            return self.get(key), True
        self.ensure()
        with self.lease(), self.key_lock(key, on_wait=on_wait):
            if self.has(key):
                return self.get(key), True
            for role, pkey in parents.items():
                if not self.has(pkey):
                    raise NotFoundError(f"parent {role} ({pkey[:12]}) is not in the store", "rerun the step that makes it")
            head = {"key": key, "kind": kind, "schema_version": schema_version, "step_version": step_version,
                    "params": dict(params), "parents": parents}
            self._build_and_commit(head, build)
            gc_mod.remove_later(self, self.work_dir(key))  # the finished step's work, off the critical path
            return self.get(key), False

    def _build_and_commit(self, head: dict[str, Any], build: Callable[[BuildContext], None]) -> None:
        """Run `build` in a fresh tmp dir, write the manifest last, make it read-only and rename it
        into objects/; on any failure remove the tmp dir (the work dir stays for a resume)."""
        key, kind = head["key"], head["kind"]
        out = self.tmp / f"{key[:16]}.{uuid.uuid4().hex[:8]}"
        ctx = BuildContext(key=key, out=out, work=self.work_dir(key))
        start = time.time()
        try:
            out.mkdir(parents=True)
            hooks.fire("store.build_start", kind=kind, key=key)
            build(ctx)
            hooks.fire("store.built", kind=kind, key=key)
            doc = seal({**head, "files": describe_files(out), "meta": ctx.meta, "itictl_version": __version__,
                        "created": _utcnow(), "wall_time_s": round(time.time() - start, 3)})
            (out / MANIFEST).write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")
            hooks.fire("store.sealing", kind=kind, key=key)
            make_read_only(out)
            commit_dir(out, self.object_dir(key))
        except OSError as e:
            shutil.rmtree(out, ignore_errors=True)
            raise store_os_error(e, self.root) from e
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            raise

    # ---- refs, gc, rm, digests (delegated) --------------------------------------------------
    def tag(self, name: str, key: str) -> None:
        refs_mod.tag(self, name, key)

    def untag(self, name: str) -> None:
        refs_mod.untag(self, name)

    def refs(self) -> dict[str, str]:
        return refs_mod.list_refs(self)

    def reachable(self, roots: Iterable[str] = ()) -> set[str]:
        return gc_mod.reachable(self, roots)

    def gc(self, roots: Iterable[str] = (), *, dry_run: bool = False, work: bool = False) -> dict[str, Any]:
        """Remove what neither a ref nor `roots` reaches; see itictl.store.gc for the tmp/ rules."""
        return gc_mod.gc(self, roots, dry_run=dry_run, work=work)

    def rm(self, key: str) -> None:
        gc_mod.rm(self, key)

    def file_digest(self, path: Path | str) -> str:
        """sha256 of an external file (a GGUF, a weight file), cached by path, size and mtime."""
        return digests.file_digest(self.cache, path)

    def file_digests(self, paths) -> list[str]:
        """sha256 of several external files (cached like file_digest; missing ones hashed concurrently)."""
        return digests.file_digests(self.cache, paths)

    # ---- lineage, verify ----------------------------------------------------------------
    def lineage(self, key: str) -> dict[str, Any]:
        art = self.get(key)
        return {
            "key": key,
            "kind": art.kind,
            "params": art.params,
            "parents": {role: (self.lineage(p) if self.has(p) else {"key": p, "missing": True})
                        for role, p in art.parents.items()},
        }

    def verify(self, key: str) -> list[str]:
        """Recompute every digest of one object; return the problems found (empty = clean)."""
        d = self.object_dir(key)
        try:
            m = Manifest.read(d / MANIFEST, expected_key=key)
        except CorruptObjectError as e:
            return [e.message]
        problems = []
        actual = {p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file() and p.name != MANIFEST}
        for name, entry in m.files.items():
            p = d / name
            if not p.is_file():
                problems.append(f"{name}: missing")
            elif p.stat().st_size != entry["size"]:
                problems.append(f"{name}: size {p.stat().st_size} != {entry['size']}")
            elif not digests.entry_matches(p, entry):
                problems.append(f"{name}: digest mismatch")
        for extra in sorted(actual - set(m.files)):
            problems.append(f"{extra}: not in the manifest")
        return problems
