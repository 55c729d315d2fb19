"""The one output object: rich tables and progress bars for people on stderr, one JSON document
on stdout with --json.

Commands never print directly; they build a result dict and call `Output.result(doc, render)`.
In JSON mode stdout receives exactly `json.dumps(doc)` and nothing else; in human mode `render`
draws tables on stderr (or the doc is shown as a key/value table).
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from itictl.secrets import redact


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(o, "__fspath__"):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@dataclass
class Output:
    json_mode: bool = False
    quiet: bool = False
    verbose: bool = False
    _console: Any = field(default=None, repr=False)
    _emitted: bool = field(default=False, repr=False)

    @property
    def console(self):
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False, soft_wrap=False)
        return self._console

    # ---- messages (stderr) ----------------------------------------------------------------
    def info(self, msg: str) -> None:
        if not self.quiet:
            self.console.print(redact(msg))

    def debug(self, msg: str) -> None:
        if self.verbose and not self.quiet:
            self.console.print(f"[dim]{redact(msg)}[/dim]")

    def warn(self, msg: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {redact(msg)}")

    def status(self, msg: str):
        """A spinner for a short wait (model load). A no-op context when quiet."""
        if self.quiet or not self.console.is_terminal:
            if not self.quiet:
                self.console.print(f"[dim]{redact(msg)}[/dim]")
            return contextlib.nullcontext()
        return self.console.status(redact(msg))

    @contextlib.contextmanager
    def progress(self, description: str, total: int | None, unit: str = "it") -> Iterator[Callable[[int], None]]:
        """Yields advance(n, description=None) (a new description replaces the bar's text). Shows a
        bar with rate and ETA on stderr unless quiet."""
        if self.quiet:
            yield lambda n=1, description=None: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        class _Rate(TextColumn):
            def render(self, task):  # type: ignore[override]
                from rich.text import Text

                speed = task.finished_speed or task.speed
                return Text(f"{speed:,.1f} {unit}/s" if speed else f"- {unit}/s", style="cyan")

        cols = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                _Rate(""), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
        with Progress(*cols, console=self.console, transient=False) as prog:
            task = prog.add_task(description, total=total)
            yield lambda n=1, description=None: prog.update(task, advance=n, **(
                {"description": description} if description is not None else {}))

    # ---- the result (stdout for JSON) ----------------------------------------------------
    def result(self, doc: dict[str, Any], render: Callable[[Any], None] | None = None) -> None:
        if self._emitted:
            raise RuntimeError("Output.result called twice")
        self._emitted = True
        if self.json_mode:
            sys.stdout.write(redact(json.dumps(doc, default=_json_default, indent=None)) + "\n")
            sys.stdout.flush()
            return
        if self.quiet:
            return
        if render is not None:
            render(self.console)
        else:
            self.console.print(kv_table(doc))


def kv_table(doc: dict[str, Any], title: str | None = None):
    from rich.table import Table

    t = Table(title=title, show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    for k, v in doc.items():
        if isinstance(v, float):
            v = f"{v:.4g}"
        elif isinstance(v, (dict, list)):
            v = json.dumps(v, default=_json_default)
            if len(v) > 200:
                v = v[:197] + "..."
        t.add_row(str(k), redact(str(v)))
    return t
