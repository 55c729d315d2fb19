"""`itictl push`: upload a baked model (or an intervention, exported as safetensors) with a model
card to the Hugging Face Hub. Thin: itictl.publish.push builds the plan and uploads it."""

from __future__ import annotations

from typing import Optional

import typer

from itictl.cli.common import state

HELP = """Upload a baked model or an intervention to the Hugging Face Hub, with a model card.

REF defaults to the baked model of `last-eval`'s intervention (else the newest baked model).
Creates the repo if needed and uploads every file in one commit. The token comes from --token or
HF_TOKEN and is never written anywhere. --dry-run lists the files and prints the card, offline.
"""


def push(
    ctx: typer.Context,
    ref: Optional[str] = typer.Argument(None, help="Baked-model or intervention ref (default: see above)."),
    repo: Optional[str] = typer.Option(None, "--repo", help="Hub repo OWNER/NAME (required)."),
    private: bool = typer.Option(False, "--private", help="Create the repo as private."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Branch to commit to (created if missing)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List files and print the card; no network."),
    token: Optional[str] = typer.Option(None, "--token", help="Hub token (else HF_TOKEN). Never stored."),
    license: Optional[str] = typer.Option(None, "--license", help="License id for the card (default: the base model's, else 'other')."),
    message: Optional[str] = typer.Option(None, "--message", "-m", help="Commit message."),
) -> None:
    from itictl.publish import push as hub
    st = state(ctx)
    if token:
        from itictl.secrets import register_secret

        register_secret(token)
    repo_id = hub.validate_repo_id(repo)
    tok = None if dry_run else hub.resolve_token(token)
    store = st.store
    art = store.open(ref) if ref else hub.default_push_ref(store, st.out)
    plan = hub.push_plan(store, art, repo_id, license=license)
    try:
        files = plan.names()
        doc = {"artifact": art.key, "kind": art.kind, "repo": repo_id, "files": files,
               "dry_run": dry_run, "revision": revision or "main", "private": private}
        if dry_run:
            doc["card"] = plan.card
        else:
            st.out.info(f"pushing {len(files)} files to {repo_id}")
            doc.update(hub.upload(plan, repo_id, token=tok, private=private, revision=revision,
                                  commit_message=message))
    finally:
        plan.cleanup()

    def render(console):
        if dry_run:
            console.print(f"dry run: would push {art.kind} {art.key[:12]} to {repo_id} ({doc['revision']}):")
            for f in files:
                console.print(f"  {f}")
            console.print("--- README.md ---")
            console.print(plan.card, markup=False, highlight=False)
        else:
            console.print(f"pushed {len(files)} files to {doc['url']} (commit {doc['commit'][:12]})")

    st.out.result(doc, render)
