"""Write docs/cli.md and completions/itictl.{bash,zsh,fish} from the app (run by `make docs`)."""

from pathlib import Path

from itictl.cli.reference import SHELLS, cli_reference_markdown, completion_script

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    (ROOT / "docs" / "cli.md").write_text(cli_reference_markdown())
    for shell in SHELLS:
        (ROOT / "completions" / f"itictl.{shell}").write_text(completion_script(shell))
    print("wrote docs/cli.md and completions/")
