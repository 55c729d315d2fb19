"""`itictl store …`: inspect and maintain the artifact store (ls, show, lineage, verify, gc, rm,
tag, untag, path). Thin: every operation is a method of itictl.store.Store."""

from __future__ import annotations

from typing import Optional

import typer

from itictl.cli import complete
from itictl.cli.common import state

HELP = "Inspect and maintain the artifact store (ls, show, lineage, verify, gc, rm, tag, path)."
app = typer.Typer(no_args_is_help=True)


def _human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


@app.command("ls", help="List objects (newest last) and refs.")
def ls(ctx: typer.Context, kind: Optional[str] = typer.Option(None, "--kind", autocompletion=complete.kind,
                                                                  help="Only objects of this kind.")) -> None:
    st = state(ctx)
    store = st.store
    arts = store.ls(kind)
    refs = store.refs()
    by_key: dict[str, list[str]] = {}
    for name, key in refs.items():
        by_key.setdefault(key, []).append(name)
    doc = {"store": str(store.root),
           "objects": [{**a.summary(), "refs": by_key.get(a.key, [])} for a in arts],
           "refs": refs}

    def render(console):
        from rich.table import Table

        t = Table(title=f"store {store.root}")
        for col in ("key", "kind", "created", "size", "refs"):
            t.add_column(col)
        for o in doc["objects"]:
            t.add_row(o["key"][:12], o["kind"], o["created"] or "", _human_size(o["size"]), ", ".join(o["refs"]))
        console.print(t)

    st.out.result(doc, render)


@app.command("show", help="Show one object's manifest.")
def show(ctx: typer.Context, ref: str = typer.Argument(..., autocompletion=complete.any_ref,
                                                   help="Ref name, key or key prefix.")) -> None:
    st = state(ctx)
    art = st.store.open(ref)
    doc = {**art.manifest.doc, "path": str(art.path)}

    def render(console):
        import json

        from rich.syntax import Syntax

        console.print(Syntax(json.dumps(doc, indent=2, sort_keys=True), "json", word_wrap=True))

    st.out.result(doc, render)


@app.command("lineage", help="Show the tree of parents an object was made from.")
def lineage(ctx: typer.Context, ref: str = typer.Argument(..., autocompletion=complete.any_ref,
                                                      help="Ref name, key or key prefix.")) -> None:
    st = state(ctx)
    key = st.store.resolve(ref)
    doc = st.store.lineage(key)

    def render(console):
        from rich.tree import Tree

        def label(node, role=None):
            params = ", ".join(f"{k}={v}" for k, v in node.get("params", {}).items()
                               if not isinstance(v, (dict, list)))
            if len(params) > 120:
                params = params[:117] + "..."
            head = f"[bold]{node.get('kind', '?')}[/bold] {node['key'][:12]}"
            if role:
                head = f"{role}: " + head
            if node.get("missing"):
                head += " [red](missing)[/red]"
            return head + (f" [dim]{params}[/dim]" if params else "")

        def add(tree, node):
            for role, child in node.get("parents", {}).items():
                add(tree.add(label(child, role)), child)

        root = Tree(label(doc))
        add(root, doc)
        console.print(root)

    st.out.result(doc, render)


@app.command("verify", help="Recompute digests of one object, or of every object.")
def verify(ctx: typer.Context, ref: Optional[str] = typer.Argument(
        None, autocompletion=complete.any_ref, help="Ref, key or prefix (default: all).")) -> None:
    from itictl.errors import CorruptObjectError

    st = state(ctx)
    store = st.store
    keys = [store.resolve(ref)] if ref else list(store.iter_keys())
    results = {k: store.verify(k) for k in keys}
    bad = {k: v for k, v in results.items() if v}
    doc = {"checked": len(keys), "ok": not bad, "corrupt": bad}
    if bad:
        if st.out.json_mode:
            st.out.result(doc)
        first = next(iter(bad))
        raise CorruptObjectError(
            f"{len(bad)} of {len(keys)} objects are corrupt; first {first[:12]}: {bad[first][0]}",
            f"run `itictl store rm {first[:12]}` and rerun the command that made it")

    def render(console):
        console.print(f"[green]ok[/green]: {len(keys)} objects verified")

    st.out.result(doc, render)


@app.command("gc", short_help="Delete objects no ref reaches (mark-and-sweep) and abandoned tmp work.",
             help="Delete objects no ref reaches (mark-and-sweep) and abandoned tmp work. The resumable "
                  "work of an unfinished step (tmp/KEY.work) stays until the step finishes, unless --work.")
def gc(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would go; delete nothing."),
    work: bool = typer.Option(False, "--work", help="Also delete the resumable work (tmp/KEY.work) of "
                              "interrupted steps, so a rerun starts afresh. Work of a running step is never deleted."),
    keep: list[str] = typer.Option([], "--keep", metavar="REF",
                                   help="Also keep this ref, key or prefix and its parents (repeatable)."),
) -> None:
    st = state(ctx)
    st.lease = False  # gc takes the store lease exclusively
    roots = [st.store.resolve(r) for r in keep]
    doc = st.store.gc(roots, dry_run=dry_run, work=work)

    def render(console):
        verb = "would remove" if dry_run else "removed"
        console.print(f"{verb} {len(doc['removed'])} objects ({_human_size(doc['freed_bytes'])}), "
                      f"{len(doc['tmp_removed'])} tmp entries; kept {len(doc['kept'])}")
        for k in doc["removed"]:
            console.print(f"  {k[:12]}")
        if doc["work_kept"]:
            console.print(f"kept {len(doc['work_kept'])} resumable work dirs of unfinished steps "
                          "(`itictl store gc --work` deletes them)")

    st.out.result(doc, render)


@app.command("rm", help="Delete one object (and refs pointing at it).")
def rm(ctx: typer.Context, ref: str = typer.Argument(..., autocompletion=complete.any_ref, help="Ref, key or prefix.")) -> None:
    st = state(ctx)
    key = st.store.resolve(ref)
    kind = st.store.get(key).kind if st.store.has(key) else None
    st.store.rm(key)
    st.out.result({"removed": key, "kind": kind}, lambda c: c.print(f"removed {key[:12]} ({kind})"))


@app.command("tag", help="Give an object a name (a ref).")
def tag(ctx: typer.Context, name: str = typer.Argument(..., autocompletion=complete.ref_names),
        ref: str = typer.Argument(..., autocompletion=complete.any_ref)) -> None:
    st = state(ctx)
    key = st.store.resolve(ref)
    st.store.tag(name, key)
    st.out.result({"ref": name, "key": key}, lambda c: c.print(f"{name} -> {key[:12]}"))


@app.command("untag", help="Remove a ref (the object stays until gc).")
def untag(ctx: typer.Context, name: str = typer.Argument(..., autocompletion=complete.ref_names)) -> None:
    st = state(ctx)
    st.store.untag(name)
    st.out.result({"untagged": name}, lambda c: c.print(f"removed ref {name}"))


@app.command("path", help="Print the directory of an object (for scripts: `cd $(itictl store path REF)`).")
def path(ctx: typer.Context, ref: str = typer.Argument(..., autocompletion=complete.any_ref)) -> None:
    st = state(ctx)
    art = st.store.open(ref)
    if st.out.json_mode:
        st.out.result({"key": art.key, "kind": art.kind, "path": str(art.path)})
    else:
        typer.echo(str(art.path))
