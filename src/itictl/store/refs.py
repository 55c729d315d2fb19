"""Refs: human names for keys, one file refs/NAME per name holding a key.

Owns the name rule (`check_ref_name`: letters, digits, '.', '_', '-'; never '/' or '..'; never
something that looks like a key prefix, so a name cannot shadow a key), tagging (an atomic write
of the ref file), untagging, listing, reading one ref, and when a ref was last tagged
(`tagged_at`). The functions take the Store; Store.tag, Store.untag and Store.refs delegate here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from itictl.errors import BadInputError, CorruptObjectError, NotFoundError
from itictl.store.atomic import write_text_atomic
from itictl.store.keys import is_key
from itictl.store.oserrors import store_os_error

if TYPE_CHECKING:
    from itictl.store.store import Store

REF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MIN_PREFIX = 4  # shortest key prefix accepted as a ref
NAME_HINT = "use letters, digits, '.', '_' and '-' only"


def looks_like_prefix(text: str) -> bool:
    """True for text that could be a key prefix (≥ MIN_PREFIX lowercase hex characters)."""
    return len(text) >= MIN_PREFIX and all(c in "0123456789abcdef" for c in text)


def check_ref_name(name: str) -> None:
    """A valid ref name (checked before long work that will end by tagging it)."""
    if not REF_RE.match(name) or ".." in name:
        raise BadInputError(f"invalid ref name {name!r}", NAME_HINT)
    if is_key(name) or looks_like_prefix(name):
        raise BadInputError(f"ref name {name!r} looks like a key prefix", "pick a name with a non-hex letter")


def tag(store: "Store", name: str, key: str) -> None:
    check_ref_name(name)
    if not store.has(key):
        raise NotFoundError(f"no object {key[:12]}", "list objects with `itictl store ls`")
    store.ensure()
    try:
        write_text_atomic(store.refs_dir / name, key + "\n")
    except OSError as e:
        raise store_os_error(e, store.root) from e


def untag(store: "Store", name: str) -> None:
    if not REF_RE.match(name):
        raise BadInputError(f"invalid ref name {name!r}", NAME_HINT)
    p = store.refs_dir / name
    if not (p.is_file() or p.is_symlink()):
        raise NotFoundError(f"no ref {name!r}", "list refs with `itictl store ls`")
    p.unlink()


def list_refs(store: "Store") -> dict[str, str]:
    """{name: key} of every ref (temp files of an interrupted tag are not names, so are skipped)."""
    out = {}
    if store.refs_dir.is_dir():
        for p in sorted(store.refs_dir.iterdir()):
            if p.is_file() and not p.is_symlink() and REF_RE.match(p.name):  # never read outside refs/
                out[p.name] = p.read_text().strip()
    return out


def tagged_at(store: "Store", name: str) -> int | None:
    """When ref `name` was last tagged (ns since the epoch): its file's mtime — `tag` rewrites the
    file atomically each time, so this is the time of the latest tag. None when there is no such ref."""
    p = store.refs_dir / name
    if not (REF_RE.match(name) and p.is_file() and not p.is_symlink()):
        return None
    return p.stat().st_mtime_ns


def read_ref(store: "Store", name: str) -> str | None:
    """The key ref `name` holds, or None when there is no such ref; a corrupt ref file, a symbolic
    link or a ref pointing at a missing object is an error."""
    p = store.refs_dir / name
    if REF_RE.match(name) and p.is_symlink():  # itictl never writes one; never read through it
        raise CorruptObjectError(f"ref {name!r} is a symbolic link", f"remove it with `itictl store untag {name}`")
    if not (REF_RE.match(name) and p.is_file()):
        return None
    key = p.read_text().strip()
    if not is_key(key):
        raise CorruptObjectError(f"ref {name!r} is corrupt", f"retag it with `itictl store tag {name} KEY`")
    if not store.has(key):
        raise NotFoundError(f"ref {name!r} points at {key[:12]}, which is not in the store",
                            "rerun the command that made it")
    return key
