"""`itictl push`: upload a baked model (or an intervention, exported as safetensors) with a model
card to the Hugging Face Hub. Thin: itictl.publish.push.run_push resolves the ref, builds the plan and
uploads it."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from itictl.cli import complete
from itictl.cli.common import state
from itictl.cli.options import ShipAlphaOpt, ShipHeadsOpt

HELP = """Upload a baked model or an intervention to the Hugging Face Hub, with a model card.

REF defaults to the baked model of the all-questions intervention of the newer of `last-tune` and
`last-eval` (what `itictl bake` with no REF makes; --heads/--alpha pick the eval's setting when it
has several), else, with neither, the newest baked model. A tune REF pushes the baked model of its
chosen setting.
The repo is --repo, else $ITICTL_PUSH_REPO, else ACCOUNT/<base model>-iti (-iti-vectors for an
intervention), ACCOUNT being the token's Hub user. Creates the repo if needed, uploads every file
in one commit and prints the repo URL. The token comes from --token, HF_TOKEN or the stored
`hf auth login`, and is never written anywhere. --dry-run lists the files and prints the card,
offline.
"""


def push(
    ctx: typer.Context,
    ref: Annotated[Optional[str], typer.Argument(autocompletion=complete.push_ref,
                                                 help="Baked-model or intervention ref, or an eval ref (its "
                                                      "intervention); default: see above.")] = None,
    repo: Annotated[Optional[str], typer.Option("--repo", help="Hub repo OWNER/NAME (default: see above).")] = None,
    private: Annotated[bool, typer.Option("--private", help="Create the repo as private.")] = False,
    revision: Annotated[Optional[str], typer.Option("--revision", help="Branch to commit to (created if missing).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List files and print the card; no network.")] = False,
    token: Annotated[Optional[str], typer.Option("--token", help="Hub token (else HF_TOKEN). Never stored.")] = None,
    license: Annotated[Optional[str], typer.Option(
        "--license", help="License id for the card (default: the base model's, else 'other').")] = None,
    message: Annotated[Optional[str], typer.Option("--message", "-m", help="Commit message.")] = None,
    heads: ShipHeadsOpt = None, alpha: ShipAlphaOpt = None,
) -> None:
    from itictl.publish.push import run_push

    st = state(ctx)
    doc = run_push(st.store, ref, repo, token=token, private=private, revision=revision, dry_run=dry_run,
                   license=license, message=message, out=st.out, heads=heads, alpha=alpha)

    def render(console):
        if dry_run:
            owner = " (USER: your Hub account)" if doc["repo_from"] == "account" else ""
            console.print(f"dry run: would push {doc['kind']} {doc['artifact'][:12]} to {doc['repo']}{owner} "
                          f"({doc['revision']}):")
            for f in doc["files"]:
                console.print(f"  {f}")
            console.print("--- README.md ---")
            console.print(doc["card"], markup=False, highlight=False)
        else:
            console.print(f"pushed {len(doc['files'])} files to {doc['url']} (commit {doc['commit'][:12]})")

    st.out.result(doc, render)
