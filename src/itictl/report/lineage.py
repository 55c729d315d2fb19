"""The lineage of a report's artifact: every ancestor in the store (walking manifest parents), one
line of what each is, and a column layout for the inline SVG graph (parents left, children right).

`walk(store, key)` -> Lineage(nodes, edges); nodes are in column order, each with its depth (the
longest parent chain above it), kind, the roles it is reached by, a short label and its layout box.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 210, 46, 56, 14, 10
MAX_BOXES = 14  # per column of the graph; the rest of a column is one "+N more" box (the table lists all)


@dataclass
class Node:
    key: str
    kind: str
    label: str
    params: dict[str, Any]
    roles: list[str] = field(default_factory=list)
    parents: dict[str, str] = field(default_factory=dict)
    missing: bool = False
    hidden: bool = False  # beyond MAX_BOXES in its column: in the table, not drawn
    depth: int = 0
    x: int = 0
    y: int = 0


@dataclass
class Lineage:
    nodes: list[Node]
    edges: list[tuple[str, str, str]]  # (parent key, child key, role)
    width: int
    height: int
    more: list[tuple[int, int, str]] = field(default_factory=list)  # (x, y, text) of "+N more" boxes


def _short(v: Any) -> str:
    s = str(v)
    return s[:12] if len(s) == 64 and all(c in "0123456789abcdef" for c in s) else s


def label(kind: str, params: dict[str, Any]) -> str:
    """One line saying what an artifact is, from its params."""
    p = params
    if kind == "model":
        name = p.get("repo") or p.get("source", "")
        extra = p.get("commit") or p.get("sha256") or ""
        return f"{name} {_short(extra)}".strip()
    if kind == "dataset":
        return f"{p.get('name', '')} digest {_short(p.get('digest', ''))}"
    if kind == "activations":
        return f"{p.get('format', '')} limit {p.get('limit')} {p.get('dtype', '')}".strip()
    if kind == "probes":
        return f"fold {p.get('fold')}/{p.get('folds')} val {p.get('val_ratio')} {p.get('backend', '')}".strip()
    if kind == "intervention":
        return f"K={p.get('heads')} α={p.get('alpha')} {p.get('direction', '')}".strip()
    if kind == "tune-trial":
        return f"{p.get('part')} fold {p.get('fold')} K={p.get('heads')} α={p.get('alpha')} {p.get('direction', '')}".strip()
    if kind == "tune":
        return f"{p.get('objective')} by {p.get('search')}, {p.get('n_questions')} questions"
    if kind == "eval":
        return f"{p.get('n_questions')} questions, {','.join(p.get('metrics') or [])}"
    return ", ".join(f"{k}={_short(v)}" for k, v in list(p.items())[:3])


def walk(store, key: str) -> Lineage:
    nodes: dict[str, Node] = {}
    edges: list[tuple[str, str, str]] = []

    def visit(k: str, role: str) -> None:
        if k in nodes:
            if role not in nodes[k].roles:
                nodes[k].roles.append(role)
            return
        if not store.has(k):
            nodes[k] = Node(k, "?", "not in the store", {}, [role], missing=True)
            return
        art = store.get(k)
        nodes[k] = Node(k, art.kind, label(art.kind, art.params), dict(art.params), [role], dict(art.parents))
        for r, p in sorted(art.parents.items()):
            edges.append((p, k, r))
            visit(p, r)

    visit(key, "report")
    more = _layout(nodes)
    order = sorted(nodes.values(), key=lambda n: (n.depth, n.y))
    width = max((n.x for n in order), default=0) + BOX_W + PAD
    height = max([n.y for n in order if not n.hidden] + [y for _, y, _ in more], default=0) + BOX_H + PAD
    return Lineage(order, edges, width, height, more)


def _layout(nodes: dict[str, Node]) -> list[tuple[int, int, str]]:
    memo: dict[str, int] = {}

    def depth(k: str) -> int:
        if k not in memo:
            ps = [p for p in nodes[k].parents.values() if p in nodes]
            memo[k] = 1 + max(depth(p) for p in ps) if ps else 0
        return memo[k]

    columns: dict[int, list[Node]] = {}
    for n in nodes.values():
        n.depth = depth(n.key)
        columns.setdefault(n.depth, []).append(n)
    more = []
    for d, col in columns.items():
        col.sort(key=lambda n: (n.kind, n.roles[0], n.key))
        for i, n in enumerate(col):
            row = min(i, MAX_BOXES)
            n.x, n.y, n.hidden = PAD + d * (BOX_W + GAP_X), PAD + row * (BOX_H + GAP_Y), i >= MAX_BOXES
        if len(col) > MAX_BOXES:
            kinds = sorted({n.kind for n in col[MAX_BOXES:]})
            more.append((col[MAX_BOXES].x, col[MAX_BOXES].y, f"+{len(col) - MAX_BOXES} more {'/'.join(kinds)}"))
    return more
