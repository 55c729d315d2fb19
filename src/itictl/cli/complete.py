"""Dynamic shell completion: the values a user types most, offered by Tab (bash, zsh, fish).

Owns the completion callbacks the CLI's options and arguments name (`autocompletion=`): store refs
and key prefixes of the right kind (`refs(kind, …)`, for REF arguments and --probes/--activations/
--tuning), model aliases (`models`, `model_list` for comma lists), prompt formats, and the fixed
choices of --direction --metrics --mc-style --protocol --format … (`choices`, `comma_choices`).

Fast by construction: standard library only at import; the store is read directly (ref files, key
directory names, and the `"kind"` line of a manifest, found without parsing or digest checks), never
created and never leased; with an empty word, key prefixes are listed only for a small store (refs
always), so a store of thousands of objects answers in milliseconds. Every callback swallows its
own errors: a completion never prints a traceback into the shell. Lists whose modules are slow to
import (prompt formats and directions import numpy) are mirrored here; tests/cli/test_complete.py
checks that they equal the originals.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

Candidate = tuple[str, str]  # (value, help): bash shows the value, zsh and fish the help too

PROMPT_FORMATS = ("tqa_mc2", "tqa_gen", "tqa_gen_end_q")  # itictl.data.prompts.FORMATS
DIRECTIONS = ("com", "probe", "random")  # itictl.intervene.build.DIRECTIONS
METRICS = ("mc", "judge", "info", "bleu", "rouge", "ce", "kl")  # itictl.evaluate.options.ALL_METRICS
MC_STYLES = ("truthfulqa", "harness")  # itictl.evaluate.options.MC_STYLES
EXPORT_FORMATS = ("safetensors", "control-vector", "pyvene", "lm-eval")  # itictl.publish.export.FORMATS
KINDS = ("model", "dataset", "activations", "probes", "intervention", "eval", "baked-model", "judge", "tune",
         "tune-trial")  # what the steps produce (store ls --kind)

KEY_PREFIX = 12  # characters of a key offered (store refs accept any unique prefix of 4 or more)
SMALL_STORE = 20  # with an empty word, key prefixes too when the store holds at most this many objects
_HEX = frozenset("0123456789abcdef")
_KIND_RE = re.compile(r'^  "kind": "([^"]*)"', re.M)  # manifests are written with indent=2, sorted keys
_CREATED_RE = re.compile(r'^  "created": "([^"]*)"', re.M)


def _safe(fn: Callable[..., list[Candidate]]) -> Callable[..., list[Candidate]]:
    """`fn`, answering [] instead of raising (its signature kept: Typer reads it)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> list[Candidate]:
        try:
            return fn(*args, **kwargs)
        except Exception:  # noqa: BLE001 - a completion shows nothing rather than a traceback
            return []

    return wrapper


def _matching(values: Iterable[str], incomplete: str, helps: dict[str, str] | None = None) -> list[Candidate]:
    return [(v, (helps or {}).get(v, "")) for v in values if v.startswith(incomplete)]


def choices(*values: str) -> Callable[[str], list[Candidate]]:
    """A callback offering `values` that start with the word typed."""
    def complete(incomplete: str) -> list[Candidate]:
        return _matching(values, incomplete or "")

    return complete


def comma_choices(values: Iterable[str] | Callable[[], Iterable[str]],
                  helps: dict[str, str] | None = None) -> Callable[[str], list[Candidate]]:
    """A callback for a comma list ('mc,ju' -> 'mc,judge'): completes the last item, without the
    items already given. `values` may be a function (read when completing)."""
    def complete(incomplete: str) -> list[Candidate]:
        head, _, last = (incomplete or "").rpartition(",")
        done = set(head.split(",")) if head else set()
        prefix = head + "," if head else ""
        pool = values() if callable(values) else values
        return [(prefix + v, h) for v, h in _matching(pool, last, helps) if v not in done]

    return _safe(complete)


# ---- models -------------------------------------------------------------------------------------
def _alias_table() -> tuple[list[str], dict[str, str]]:
    from itictl.models.aliases import EMBEDDED_ALIASES, HONEST_ALIASES, HUB_ALIASES, LOCAL_ALIASES

    helps = {**HUB_ALIASES, **HONEST_ALIASES, **{a: "locally baked model folder" for a in LOCAL_ALIASES},
             **{a: "embedded SmolLM2-135M-Instruct (the default)" for a in EMBEDDED_ALIASES}}
    return list(helps), helps


@_safe
def models(incomplete: str) -> list[Candidate]:
    """--model: the alias table (models/aliases.py), with each alias' Hub id as its help."""
    names, helps = _alias_table()
    return _matching(names, incomplete or "", helps)


model_list = comma_choices(lambda: _alias_table()[0], None)  # --model M[,M2] (extract)
prompt_format = choices(*PROMPT_FORMATS)
prompt_formats = comma_choices(PROMPT_FORMATS)  # --dataset FMT[,FMT2] (extract)
direction = choices(*DIRECTIONS)
directions = comma_choices(DIRECTIONS)  # tune --direction com,probe
metrics = comma_choices(METRICS)
mc_style = choices(*MC_STYLES)
export_format = choices(*EXPORT_FORMATS)
kind = choices(*KINDS)


@_safe
def protocol(incomplete: str) -> list[Candidate]:
    from itictl.protocol import PROTOCOLS

    return _matching(PROTOCOLS, incomplete or "")


def switch(name: str) -> Callable[[str], list[Candidate]]:
    """The values of one protocol switch (itictl.protocol.SWITCHES: --split, --val-draw, …)."""
    @_safe
    def complete(incomplete: str) -> list[Candidate]:
        from itictl.protocol import SWITCHES

        mine, ref, values = SWITCHES[name]
        helps = {mine: "the itictl protocol's", ref: "the reference protocol's"}
        return _matching(values, incomplete or "", helps)

    return complete


# ---- the store ----------------------------------------------------------------------------------
def _store_flag_in_words() -> str | None:
    """--store PATH (or --store=PATH) anywhere in the words being completed: global options may
    follow the subcommand (cli.app hoists them when running, not when completing)."""
    import shlex

    line = os.environ.get("COMP_WORDS") or os.environ.get("_TYPER_COMPLETE_ARGS") or ""
    try:
        words = shlex.split(line)
    except ValueError:  # an unclosed quote in the word being typed
        words = line.split()
    found = None
    for i, w in enumerate(words):
        if w == "--store" and i + 1 < len(words):
            found = words[i + 1]
            if found == "=" and i + 2 < len(words):  # bash splits `--store=PATH` at '='
                found = words[i + 2]
        elif w.startswith("--store="):
            found = w.split("=", 1)[1]
    return found


def store_root_of(ctx: Any) -> Path:
    """The store a command line names: --store, else $ITICTL_HOME, else the default (config)."""
    from itictl.config import store_root

    root = ctx.find_root() if ctx is not None else None
    return store_root((root.params.get("store_path") if root is not None else None) or _store_flag_in_words())


def _keys(root: Path, prefix: str) -> Iterator[str]:
    """Keys in the store starting with `prefix` (lowercase hex), from directory names only."""
    objects = root / "objects"
    try:
        tops = sorted(d for d in os.listdir(objects) if len(d) == 2 and d.startswith(prefix[:2]))
    except OSError:
        return
    for top in tops:
        try:
            names = sorted(os.listdir(objects / top))
        except OSError:
            continue
        for name in names:
            key = top + name
            if len(key) == 64 and key.startswith(prefix) and set(key) <= _HEX:
                yield key


def _head(root: Path, key: str) -> tuple[str, str] | None:
    """(kind, created) of an object from its manifest's top-level lines; None if unreadable."""
    try:
        text = (root / "objects" / key[:2] / key[2:] / "manifest.json").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    k, c = _KIND_RE.search(text), _CREATED_RE.search(text)
    if k:
        return k.group(1), c.group(1) if c else ""
    try:  # not itictl's own layout: parse it
        import json

        doc = json.loads(text)
        return (str(doc["kind"]), str(doc.get("created", ""))) if isinstance(doc, dict) and "kind" in doc else None
    except ValueError:
        return None


def _refs(root: Path) -> dict[str, str]:
    from itictl.store.refs import REF_RE

    out = {}
    try:
        for name in sorted(os.listdir(root / "refs")):
            p = root / "refs" / name
            if REF_RE.match(name) and not p.is_symlink() and p.is_file():
                out[name] = p.read_text().strip()
    except OSError:
        pass
    return out


def store_candidates(root: Path, kinds: tuple[str, ...] | None, incomplete: str) -> list[Candidate]:
    """Refs (then key prefixes) naming an object of one of `kinds` (None: any), starting with
    `incomplete`. Key prefixes come once a hex character is typed, or for a store of at most
    SMALL_STORE objects; each is KEY_PREFIX characters (or as many as typed)."""
    refs = _refs(root)
    names: dict[str, list[str]] = {}
    out: list[Candidate] = []
    for name, key in refs.items():
        names.setdefault(key, []).append(name)
        head = _head(root, key) if name.startswith(incomplete) else None
        if head and (kinds is None or head[0] in kinds):
            out.append((name, f"{head[0]} {key[:KEY_PREFIX]}"))
    low = incomplete.lower()
    if not set(low) <= _HEX:
        return out
    keys = list(_keys(root, low))
    if not low and len(keys) > SMALL_STORE:
        return out
    width = max(KEY_PREFIX, len(incomplete))
    for key in keys:
        head = _head(root, key)
        if head and (kinds is None or head[0] in kinds):
            label = " ".join(filter(None, [head[0], head[1], ", ".join(names.get(key, []))]))
            out.append((incomplete + key[len(incomplete):width], label))
    return out


def refs(*kinds: str) -> Callable[[Any, str], list[Candidate]]:
    """A callback for a REF of one of `kinds` (none given: any kind) in the command line's store."""
    @_safe
    def complete(ctx: Any, incomplete: str) -> list[Candidate]:
        return store_candidates(store_root_of(ctx), tuple(kinds) or None, incomplete or "")

    return complete


@_safe
def ref_names(ctx: Any, incomplete: str) -> list[Candidate]:
    """Existing ref names (`store untag NAME`, `store tag NAME`)."""
    return [(n, k[:KEY_PREFIX]) for n, k in _refs(store_root_of(ctx)).items() if n.startswith(incomplete or "")]


JUDGE_SPECS = {"local": "the last `itictl judge train` of this role", "local:": "a judge in the store: local:REF",
               "hf:": "a Hugging Face judge model: hf:ID_OR_PATH[@REV]", "openai:": "an OpenAI judge: openai:MODEL"}


@_safe
def judge_specs(ctx: Any, incomplete: str) -> list[Candidate]:
    """`--judge` / `--info-judge`: the spec kinds, and after `local:` the store's judges."""
    inc = incomplete or ""
    if inc.startswith("local:"):
        return [("local:" + v, h) for v, h in store_candidates(store_root_of(ctx), ("judge",), inc[len("local:"):])]
    return _matching(JUDGE_SPECS, inc, JUDGE_SPECS)


any_ref = refs()  # store show/lineage/verify/rm/path/tag
ship_ref = refs("intervention", "baked-model", "eval", "tune")  # bake, export (push: baked model first)
push_ref = refs("baked-model", "intervention", "eval", "tune")
eval_ref = refs("eval", "tune")  # report
