"""The content-addressed store: objects, atomic writes, locks, refs, listing, verify, gc, rm.

Layout under the root:
  objects/ab/cdef…/   one committed object: manifest.json + payload files (read-only)
  refs/NAME           a human name; the file holds a key
  tmp/                work in progress (random dirs) and resumable work dirs (KEY.work)
  locks/              per-key lock files and the store-wide lease lock
  cache/              digests of external files (GGUF, model folders) by path+size+mtime

The store knows nothing about models: callers give it a kind, params, parent keys and a function
that writes payload files into a directory.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from itictl import __version__
from itictl.errors import BadInputError, CorruptObjectError, NotFoundError, StoreError
from itictl.store.keys import compute_key, is_key, sha256_file
from itictl.store.locks import flock
from itictl.store.manifest import MANIFEST, Manifest, describe_files, seal

REF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MIN_PREFIX = 4
VERIFY_ON_READ_MAX = 64 * 1024 * 1024  # files up to this size are digest-checked on every read


@dataclass
class BuildContext:
    """What a build function gets: `out` (fresh dir for the payload), `work` (persistent across
    crashes, for resumable steps), the key being built, and a dict to fill with extra metadata."""

    key: str
    out: Path
    work: Path
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Artifact:
    store: "Store"
    key: str
    path: Path
    manifest: Manifest

    @property
    def kind(self) -> str:
        return self.manifest.kind

    @property
    def params(self) -> dict[str, Any]:
        return self.manifest.params

    @property
    def parents(self) -> dict[str, str]:
        return self.manifest.parents

    @property
    def meta(self) -> dict[str, Any]:
        return self.manifest.meta

    def file(self, name: str, verify: bool = True) -> Path:
        """Path of a payload file, checked against the manifest (full digest for files up to
        64 MiB, size for larger ones; `itictl store verify` checks those fully)."""
        entry = self.manifest.files.get(name)
        p = self.path / name
        fix = f"run `itictl store rm {self.key[:12]}` and rerun the command that made it"
        if entry is None:
            raise CorruptObjectError(f"object {self.key[:12]} ({self.kind}) has no file {name!r}", fix)
        if not p.is_file():
            raise CorruptObjectError(f"object {self.key[:12]} ({self.kind}) is missing {name}", fix)
        if verify:
            size = p.stat().st_size
            if size != entry["size"]:
                raise CorruptObjectError(f"object {self.key[:12]} ({self.kind}): {name} has the wrong size", fix)
            if size <= VERIFY_ON_READ_MAX and sha256_file(p) != entry["sha256"]:
                raise CorruptObjectError(f"object {self.key[:12]} ({self.kind}): {name} digest mismatch", fix)
        return p

    def read_json(self, name: str) -> Any:
        return json.loads(self.file(name).read_text(encoding="utf-8"))

    def summary(self) -> dict[str, Any]:
        d = self.manifest.doc
        return {
            "key": self.key,
            "kind": self.kind,
            "path": str(self.path),
            "created": d.get("created"),
            "size": sum(f["size"] for f in self.manifest.files.values()),
            "parents": self.parents,
        }


def _utcnow() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _make_read_only(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            p.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


def _store_os_error(e: OSError, root: Path) -> StoreError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return StoreError("the store's disk is full", f"free space under {root} or run `itictl store gc`")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StoreError(f"the store at {root} is not writable", "pass --store PATH or set ITICTL_HOME to a writable directory")
    return StoreError(f"store write failed: {e.strerror or e}", "check the store directory and free space")


def check_ref_name(name: str) -> None:
    """A valid ref name (checked before long work that will end by tagging it)."""
    if not REF_RE.match(name) or ".." in name:
        raise BadInputError(f"invalid ref name {name!r}", "use letters, digits, '.', '_' and '-' only")
    if is_key(name) or (len(name) >= MIN_PREFIX and all(c in "0123456789abcdef" for c in name)):
        raise BadInputError(f"ref name {name!r} looks like a key prefix", "pick a name with a non-hex letter")


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
            raise _store_os_error(e, self.root) from None
        if not os.access(self.root, os.W_OK):
            raise StoreError(f"the store at {self.root} is not writable",
                             "pass --store PATH or set ITICTL_HOME to a writable directory")

    def object_dir(self, key: str) -> Path:
        return self.objects / key[:2] / key[2:]

    # ---- locking ------------------------------------------------------------------------
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
        with flock(self.locks / "store.lease", exclusive=False):
            self._lease_depth = 1
            try:
                yield
            finally:
                self._lease_depth = 0

    def key_lock(self, key: str, on_wait=None):
        return flock(self.locks / f"{key}.lock", exclusive=True, on_wait=on_wait)

    # ---- reading ------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        return (self.object_dir(key) / MANIFEST).is_file()

    def get(self, key: str) -> Artifact:
        d = self.object_dir(key)
        if not d.is_dir():
            raise NotFoundError(f"no object {key[:12]} in the store at {self.root}", "list objects with `itictl store ls`")
        return Artifact(self, key, d, Manifest.read(d / MANIFEST, expected_key=key))

    def find(self, key: str) -> Artifact | None:
        return self.get(key) if self.has(key) else None

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
        if REF_RE.match(ref) and (self.refs_dir / ref).is_file():
            key = (self.refs_dir / ref).read_text().strip()
            if not is_key(key):
                raise CorruptObjectError(f"ref {ref!r} is corrupt", f"retag it with `itictl store tag {ref} KEY`")
            if not self.has(key):
                raise NotFoundError(f"ref {ref!r} points at {key[:12]}, which is not in the store",
                                    "rerun the command that made it")
            return self._check_kind(key, kind, ref)
        low = ref.lower()
        if len(low) >= MIN_PREFIX and all(c in "0123456789abcdef" for c in low):
            if is_key(low):
                if self.has(low):
                    return self._check_kind(low, kind, ref)
            else:
                matches = [k for k in self._keys_with_prefix(low)]
                if len(matches) == 1:
                    return self._check_kind(matches[0], kind, ref)
                if len(matches) > 1:
                    raise BadInputError(f"ref {ref!r} is ambiguous: {len(matches)} objects start with it",
                                        "give more characters of the key")
        if not REF_RE.match(ref):
            raise BadInputError(f"invalid ref {ref!r}", "refs are names of letters, digits, '.', '_', '-' (no '/' or '..'), or key prefixes")
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
                raise BadInputError(f"ref {ref!r} is a {actual} object, not a {kind}", f"pass a {kind} ref (see `itictl store ls --kind {kind}`)")
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
        out.sort(key=lambda a: a.manifest.doc.get("created", ""))
        return out

    # ---- writing ------------------------------------------------------------------------
    def key_for(self, kind: str, params: Mapping[str, Any], parents: Mapping[str, str] | None = None,
                *, schema_version: int = 1, step_version: int = 1) -> str:
        return compute_key(kind, params, parents, schema_version=schema_version, step_version=step_version)

    def work_dir(self, key: str) -> Path:
        return self.tmp / f"{key}.work"

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
            out = self.tmp / f"{key[:16]}.{uuid.uuid4().hex[:8]}"
            ctx = BuildContext(key=key, out=out, work=self.work_dir(key))
            start = time.time()
            try:
                out.mkdir(parents=True)
                build(ctx)
                doc = seal({
                    "key": key,
                    "kind": kind,
                    "schema_version": schema_version,
                    "step_version": step_version,
                    "params": dict(params),
                    "parents": parents,
                    "files": describe_files(out),
                    "meta": ctx.meta,
                    "itictl_version": __version__,
                    "created": _utcnow(),
                    "wall_time_s": round(time.time() - start, 3),
                })
                (out / MANIFEST).write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")
                _make_read_only(out)
                final = self.object_dir(key)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(out, final)
            except OSError as e:
                shutil.rmtree(out, ignore_errors=True)
                raise _store_os_error(e, self.root) from e
            except BaseException:
                shutil.rmtree(out, ignore_errors=True)
                raise
            shutil.rmtree(ctx.work, ignore_errors=True)
            return self.get(key), False

    # ---- refs ---------------------------------------------------------------------------
    def tag(self, name: str, key: str) -> None:
        check_ref_name(name)
        if not self.has(key):
            raise NotFoundError(f"no object {key[:12]}", "list objects with `itictl store ls`")
        self.ensure()
        tmp = self.refs_dir / f".{name}.{uuid.uuid4().hex[:8]}"
        try:
            tmp.write_text(key + "\n")
            os.replace(tmp, self.refs_dir / name)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise _store_os_error(e, self.root) from e

    def refs(self) -> dict[str, str]:
        out = {}
        if self.refs_dir.is_dir():
            for p in sorted(self.refs_dir.iterdir()):
                if p.is_file() and REF_RE.match(p.name):
                    out[p.name] = p.read_text().strip()
        return out

    def untag(self, name: str) -> None:
        if not REF_RE.match(name):
            raise BadInputError(f"invalid ref name {name!r}", "use letters, digits, '.', '_' and '-' only")
        p = self.refs_dir / name
        if not p.is_file():
            raise NotFoundError(f"no ref {name!r}", "list refs with `itictl store ls`")
        p.unlink()

    # ---- lineage, verify, gc, rm --------------------------------------------------------
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
            elif sha256_file(p) != entry["sha256"]:
                problems.append(f"{name}: digest mismatch")
        for extra in sorted(actual - set(m.files)):
            problems.append(f"{extra}: not in the manifest")
        return problems

    def reachable(self) -> set[str]:
        seen: set[str] = set()
        stack = [k for k in self.refs().values() if self.has(k)]
        while stack:
            k = stack.pop()
            if k in seen:
                continue
            seen.add(k)
            try:
                parents = self.get(k).parents.values()
            except CorruptObjectError:
                continue
            stack.extend(p for p in parents if self.has(p))
        return seen

    def gc(self, dry_run: bool = False) -> dict[str, Any]:
        """Mark from refs, sweep the rest (and abandoned tmp dirs). Waits for running commands."""
        self.ensure()
        with flock(self.locks / "store.lease", exclusive=True):
            keep = self.reachable()
            doomed = [k for k in self.iter_keys() if k not in keep]
            freed = 0
            for k in doomed:
                d = self.object_dir(k)
                freed += sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
                if not dry_run:
                    self._remove_dir(d)
            tmp_removed = []
            if self.tmp.is_dir():
                for p in self.tmp.iterdir():
                    tmp_removed.append(p.name)
                    if not dry_run:
                        self._remove_dir(p) if p.is_dir() else p.unlink(missing_ok=True)
            return {"removed": doomed, "kept": sorted(keep), "freed_bytes": freed,
                    "tmp_removed": tmp_removed, "dry_run": dry_run}

    def rm(self, key: str) -> None:
        d = self.object_dir(key)
        if not d.is_dir():
            raise NotFoundError(f"no object {key[:12]}", "list objects with `itictl store ls`")
        with self.key_lock(key):
            self._remove_dir(d)
        for name, k in self.refs().items():
            if k == key:
                (self.refs_dir / name).unlink(missing_ok=True)

    def _remove_dir(self, d: Path) -> None:
        # Rename first so a reader never sees a half-deleted object.
        trash = self.tmp / f"trash.{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(d, trash)
        except OSError:
            trash = d
        for p in trash.rglob("*"):
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(trash, ignore_errors=True)

    # ---- external file digests ------------------------------------------------------------
    def file_digest(self, path: Path) -> str:
        """sha256 of an external file (a GGUF, a weight file), cached by path, size and mtime."""
        path = Path(path).resolve()
        st = path.stat()
        cache_file = self.cache / "digests.json"
        ident = f"{path}|{st.st_size}|{st.st_mtime_ns}"
        try:
            cache = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            cache = {}
        if ident in cache:
            return cache[ident]
        digest = sha256_file(path)
        cache[ident] = digest
        try:
            self.cache.mkdir(parents=True, exist_ok=True)
            tmp = self.cache / f".digests.{uuid.uuid4().hex[:8]}"
            tmp.write_text(json.dumps(cache))
            os.replace(tmp, cache_file)
        except OSError:
            pass
        return digest
