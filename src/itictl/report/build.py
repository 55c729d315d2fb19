"""`build_report(store, ref, path)`: one self-contained HTML file (no network needed to view it;
figures inline as base64 PNG, the lineage graph as inline SVG) from an eval or tune artifact
(source.py's readers). Everything is read and drawn before the file is written (atomically); a bad ref or kind
writes nothing."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from itictl.errors import BadInputError
from itictl.report import figures, sections
from itictl.report.lineage import BOX_H, BOX_W, walk
from itictl.report.source import ReportSource, load_source

TEMPLATE = "report.html.j2"
KIND_COLORS = {"model": "#e7f5ff", "dataset": "#f3f0ff", "activations": "#fff4e6", "probes": "#ebfbee",
               "intervention": "#fff0f6", "eval": "#fff9db", "?": "#ffe3e3"}


def check_output(path: Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise BadInputError(f"{path} is a directory", "give a file name, e.g. -o report.html")
    if not path.parent.is_dir():
        raise BadInputError(f"the folder {path.parent} does not exist", "create it, or write the report elsewhere")
    return path


def _heatmap(store, src: ReportSource) -> str | None:
    if not (src.probes_key and src.intervention_key and store.has(src.probes_key) and store.has(src.intervention_key)):
        return None
    acc = store.get(src.probes_key).read_json("probes.json").get("val_acc")
    heads = store.get(src.intervention_key).read_json("intervention.json").get("heads") or []
    return figures.probe_heatmap(acc, heads) if acc else None


def _plots(src: ReportSource) -> list[tuple[str, str]]:
    wanted = (("MC2 and True×Info against α", ("MC1", "MC2", "True*Info")),
              ("CE loss against α", ("CE Loss",)), ("KL wrt the unsteered model against α", ("KL wrt Original",)))
    out = []
    for title, metrics in wanted:
        uri = figures.metrics_vs_alpha(src.curves, metrics, title)
        if uri is not None:
            out.append((title, uri))
    return out + list(src.figures)


def context(store, src: ReportSource, samples: int) -> dict[str, Any]:
    """Everything the template shows."""
    lin = walk(store, src.key)
    by_key = {n.key: n for n in lin.nodes}
    focus_name = src.focus or ""
    metric, cats = sections.category_rows(src)
    return {
        "kind": src.kind, "key": src.key, "ref": src.ref, "created": src.created, "version": src.version,
        "params": [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in sorted(src.params.items())],
        "skipped": sorted(src.skipped.items()), "uncertainty": src.uncertainty,
        "judges": ", ".join(f"{k}: {v}" for k, v in sorted(src.judges.items())),
        "lineage": lin, "edges": [(by_key[p], by_key[c], r) for p, c, r in lin.edges
                                   if not (by_key[p].hidden or by_key[c].hidden)],
        "box_w": BOX_W, "box_h": BOX_H, "colors": KIND_COLORS,
        "summary": sections.summary_table(src.settings), "plots": _plots(src),
        "heatmap": _heatmap(store, src), "probes_key": src.probes_key or "", "intervention_key": src.intervention_key or "",
        "focus_name": focus_name, "category_metric": metric,
        "categories_img": figures.category_bars(cats, metric, focus_name) if metric else None,
        "categories": cats, "answers": sections.answer_samples(src, samples),
    }


def render(ctx: dict[str, Any]) -> str:
    import jinja2

    text = resources.files("itictl.report").joinpath(TEMPLATE).read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string(text).render(**ctx)


def build_report(store, ref: str | None, path: Path, *, setting: tuple[int, float] | None = None,
                 samples: int = 12, out=None) -> dict[str, Any]:
    """Read `ref` (default last-eval), draw, write `path`; returns the result document."""
    from itictl.store import write_text_atomic

    if samples < 0:
        raise BadInputError(f"--samples must be ≥ 0, got {samples}", "pass e.g. --samples 12")
    path = check_output(path)
    src = load_source(store, ref, setting)
    if out is not None:
        out.info(f"drawing the report of {src.kind} {src.key[:12]}")
    ctx = context(store, src, samples)
    html = render(ctx)
    write_text_atomic(path, html)
    images = len(ctx["plots"]) + bool(ctx["heatmap"]) + bool(ctx["categories_img"])
    return {"path": str(path.resolve()), "key": src.key, "kind": src.kind, "ref": src.ref, "bytes": len(html.encode()),
            "images": images, "settings": len(src.settings), "lineage": [n.key for n in ctx["lineage"].nodes],
            "focus": src.focus, "answers": len(ctx["answers"])}
