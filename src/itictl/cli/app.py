"""Wires the command modules into one Typer app and maps errors to exit codes.

Global options (--store, --json, -q/--quiet, -v/--verbose) may appear anywhere on the command
line (`itictl store ls --json` and `itictl --json store ls` are the same); `main` moves them in
front of the subcommand before Typer parses.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from itictl import __version__
from itictl.cli import bake, export, extract, import_, intervene, judge, probe, push, report, store
from itictl.cli import eval as eval_cmd
from itictl.cli import tune as tune_cmd
from itictl.cli.common import AppState, state

HELP = """Inference-Time Intervention (ITI) on language models, as a reproducible workflow.

Steps write content-addressed artifacts to a local store; repeated work is skipped.

  itictl extract  ->  itictl probe  ->  itictl intervene  ->  itictl eval  ->  itictl bake  ->  itictl push

Exit codes: 0 ok, 1 internal, 2 usage, 3 not found, 4 bad input, 5 store, 6 remote,
7 auth, 8 unsupported, 130 interrupted (docs/exit-codes.md).
"""

app = typer.Typer(
    name="itictl",
    help=HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"itictl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    store_path: Optional[str] = typer.Option(None, "--store", metavar="PATH",
                                             help="Store root (else $ITICTL_HOME, else the user data dir)."),
    json_mode: bool = typer.Option(False, "--json", help="Print one JSON document on stdout and nothing else there."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress or tables on stderr."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="More detail on stderr."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    st = state(ctx)
    st.store_path = store_path
    st.out.json_mode = json_mode
    st.out.quiet = quiet
    st.out.verbose = verbose
    from itictl.models.quiet import set_load_quiet  # torch-free import

    # transformers' own progress bars and warnings: off under -q and --json (progress goes through `out`)
    set_load_quiet(quiet or json_mode)


app.command("extract", help=extract.HELP)(extract.extract)
app.command("probe", help=probe.HELP)(probe.probe)
app.command("intervene", help=intervene.HELP)(intervene.intervene)
app.command("eval", help=eval_cmd.HELP)(eval_cmd.eval_)
app.command("tune", help=tune_cmd.HELP)(tune_cmd.tune)
app.command("bake", help=bake.HELP)(bake.bake)
app.command("push", help=push.HELP)(push.push)
app.command("export", help=export.HELP)(export.export)
app.command("import", help=import_.HELP)(import_.import_)
app.command("report", help=report.HELP)(report.report)
app.add_typer(judge.app, name="judge", help=judge.HELP)
app.add_typer(store.app, name="store", help=store.HELP)

_FLAGS = {"--json", "-q", "--quiet", "-v", "--verbose"}


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move global options found after the subcommand to the front."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            rest.extend(argv[i:])
            break
        if a in _FLAGS:
            front.append(a)
        elif a == "--store" and i + 1 < len(argv):
            front.extend([a, argv[i + 1]])
            i += 1
        elif a.startswith("--store="):
            front.append(a)
        else:
            rest.append(a)
        i += 1
    return front + rest


def fast_exit(code) -> None:
    """After a command that started CUDA (a loaded model: interpreter and CUDA teardown take
    seconds), leave with os._exit once itictl's background threads (commit fsyncs, work-folder
    removal) finished and the output is flushed; otherwise return (the normal exit). Not under
    torchrun (WORLD_SIZE), not for a non-integer exit code; ITICTL_FAST_EXIT=0 turns it off."""
    import os

    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if (os.environ.get("ITICTL_FAST_EXIT", "1") == "0" or os.environ.get("WORLD_SIZE")
            or not (code is None or isinstance(code, int)) or cuda is None or not cuda.is_initialized()):
        return
    import logging

    from itictl.store import later

    later.wait()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code or 0)


def _fail(code: int, line: str) -> None:
    from itictl.cli.common import release_leases
    from itictl.secrets import redact

    release_leases()
    sys.stderr.write(redact(f"error: {line}") + "\n")
    sys.stderr.flush()
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    from itictl.cli.common import release_leases
    from itictl.config import debug_enabled
    from itictl.errors import describe

    args = hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    try:
        app(args=args, prog_name="itictl", standalone_mode=True)
    except SystemExit as e:
        release_leases()
        if argv is None:  # the process's own command line (not a caller's main([...]))
            fast_exit(e.code)
        raise
    except BaseException as e:  # noqa: BLE001 - one line and a documented exit code for everything
        if debug_enabled() and not isinstance(e, KeyboardInterrupt):
            import traceback

            traceback.print_exc()
        _fail(*describe(e))


__all__ = ["app", "main", "AppState"]
