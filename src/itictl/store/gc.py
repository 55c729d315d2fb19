"""Deleting from the store: `gc` (mark from explicit roots, sweep the rest) and `rm`.

Roots are every ref plus the keys the caller passes (`roots=`); whatever their parents reach is
kept, every other object is removed. gc takes the store lease exclusively, so it waits for running
commands (they hold it shared) and never deletes what they read or write.

tmp/ holds three kinds of entries:
  KEY16.RAND/   the build dir of a build that died (a live build holds the lease): removed
  trash.*       leftovers of an interrupted delete: removed
  KEY.work/     resumable work of a step (extract's chunks). While KEY is not an object it is
                kept, so an interrupted step resumes from it, unless `work=True` (`itictl store gc
                --work`); once KEY is an object it is a completed step's leftover and is removed.
                Never removed while KEY's lock is held (a running step): gc tests the lock without
                waiting and removes the folder only while holding it.
Directories are renamed into tmp/trash.* before deletion, so a reader never sees half an object.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from itictl.errors import CorruptObjectError, NotFoundError
from itictl.store import later
from itictl.store.keys import is_key
from itictl.store.locks import flock, try_flock
from itictl.store.refs import list_refs

if TYPE_CHECKING:
    from itictl.store.store import Store

WORK_SUFFIX = ".work"


def reachable(store: "Store", roots: Iterable[str] = ()) -> set[str]:
    """Keys reachable through parents from every ref and from `roots` (keys not in the store are ignored)."""
    seen: set[str] = set()
    stack = [k for k in [*list_refs(store).values(), *roots] if store.has(k)]
    while stack:
        k = stack.pop()
        if k in seen:
            continue
        seen.add(k)
        try:
            parents = store.get(k).parents.values()
        except CorruptObjectError:
            continue
        stack.extend(p for p in parents if store.has(p))
    return seen


def gc(store: "Store", roots: Iterable[str] = (), *, dry_run: bool = False, work: bool = False) -> dict[str, Any]:
    """Mark from refs + `roots`, sweep the other objects and the tmp/ entries the rules above allow.
    Returns {removed, kept, freed_bytes, tmp_removed, work_kept, dry_run}."""
    store.ensure()
    later.wait()  # this process's remove_later threads: their trash is never in the report
    with flock(store.lease_path, exclusive=True):
        keep = reachable(store, roots)
        doomed = [k for k in store.iter_keys() if k not in keep]
        freed = sum(_tree_size(store.object_dir(k)) for k in doomed)
        tmp_removed, work_kept = _sweep_tmp(store, work=work, dry_run=dry_run)  # before objects go
        if not dry_run:
            for k in doomed:
                remove_tree(store, store.object_dir(k))
        return {"removed": doomed, "kept": sorted(keep), "freed_bytes": freed,
                "tmp_removed": tmp_removed, "work_kept": work_kept, "dry_run": dry_run}


def _work_key(p: Path) -> str | None:
    """KEY for a tmp/KEY.work folder, else None."""
    if p.name.endswith(WORK_SUFFIX) and is_key(p.name[: -len(WORK_SUFFIX)]):
        return p.name[: -len(WORK_SUFFIX)]
    return None


def _sweep_tmp(store: "Store", *, work: bool, dry_run: bool) -> tuple[list[str], list[str]]:
    """-> (names removed from tmp/, names of work folders kept)."""
    removed: list[str] = []
    kept: list[str] = []
    if not store.tmp.is_dir():
        return removed, kept
    for p in sorted(store.tmp.iterdir()):
        key = _work_key(p)
        if key is None:
            removed.append(p.name)
            if not dry_run:
                remove_tree(store, p) if p.is_dir() else p.unlink(missing_ok=True)
            continue
        if not (work or store.has(key)):
            kept.append(p.name)  # an interrupted step resumes from it
            continue
        with try_flock(store.lock_path(key)) as free:
            if not free:
                kept.append(p.name)  # a running step is writing it
                continue
            removed.append(p.name)
            if not dry_run:
                remove_tree(store, p)
    return removed, kept


def _tree_size(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


def rm(store: "Store", key: str) -> None:
    """Delete one object (under its key lock) and every ref pointing at it."""
    d = store.object_dir(key)
    if not d.is_dir():
        raise NotFoundError(f"no object {key[:12]}", "list objects with `itictl store ls`")
    with store.key_lock(key):
        remove_tree(store, d)
    for name, k in list_refs(store).items():
        if k == key:
            (store.refs_dir / name).unlink(missing_ok=True)


def remove_later(store: "Store", d: Path) -> None:
    """Rename a folder into tmp/trash.* now and delete it in a background thread (store/later.py: the
    process waits for it at exit; a process killed before leaves the trash.* to gc). For leftovers such as
    a finished step's work folder (1.5 GB of chunk files after a 7B extraction: ~0.6 s of unlinks)."""
    if not d.exists():
        return
    trash = store.tmp / f"trash.{uuid.uuid4().hex[:8]}"
    try:
        os.replace(d, trash)
    except OSError:
        shutil.rmtree(d, ignore_errors=True)
        return
    later.later(shutil.rmtree, trash, True, name="itictl-remove")  # True: ignore_errors


def remove_tree(store: "Store", d: Path) -> None:
    """Delete a folder, renaming it into tmp/trash.* first so a reader never sees it half-deleted."""
    trash = store.tmp / f"trash.{uuid.uuid4().hex[:8]}"
    store.tmp.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(d, trash)
    except OSError:
        trash = d
    for p in trash.rglob("*"):
        if p.is_dir():
            p.chmod(0o755)
    shutil.rmtree(trash, ignore_errors=True)
