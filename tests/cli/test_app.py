import json
import subprocess
import sys

import pytest

from itictl import __version__
from itictl.cli.app import hoist_global_options
from itictl.cli.reference import SHELLS, cli_reference_markdown, completion_script
from itictl.store import Store
from tests.helpers import ROOT, run_cli_subprocess


def test_help_does_not_import_heavy_libraries():
    code = ("import sys, io, contextlib\n"
            "from itictl.cli.app import main\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            "    try: main(['--help'])\n"
            "    except SystemExit: pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'h5py', 'sklearn', 'pyvene', 'numpy') if m in sys.modules]\n"
            "print(heavy)\n"
            "assert 'extract' in buf.getvalue()\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "[]"


def test_help_lists_every_command(cli):
    """The Commands section of `itictl --help` lists exactly the documented commands, in order
    (names are matched as the first word of each row, not anywhere in the text)."""
    r = cli("--help")
    assert r.code == 0 and r.stderr == ""
    lines = r.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Commands:") + 1
    rows = [line for line in lines[start:] if line.strip()]
    listed = [line.split()[0] for line in rows if line.startswith("  ") and not line.startswith("   ")]
    assert listed == ["extract", "probe", "intervene", "eval", "tune", "bake", "push", "export", "import", "report", "judge",
                      "store"]


def test_version(cli):
    r = cli("--version")
    assert r.code == 0 and __version__ in r.stdout


def test_hoist_global_options():
    assert hoist_global_options(["store", "ls", "--json", "--store", "/x"]) == ["--json", "--store", "/x", "store", "ls"]
    assert hoist_global_options(["probe", "-q", "--", "--json"]) == ["-q", "probe", "--", "--json"]


def test_store_ls_json_anywhere(cli, tmp_path):
    r1 = cli("store", "ls", "--json")
    r2 = cli("--json", "store", "ls")
    assert r1.code == r2.code == 0
    assert json.loads(r1.stdout) == json.loads(r2.stdout)
    assert json.loads(r1.stdout)["objects"] == []


def test_store_flag_overrides_env(cli, tmp_path):
    s = Store(tmp_path / "other")
    art, _ = s.produce("thing", {"a": 1}, {}, lambda c: (c.out / "f").write_text("x"))
    r = cli("store", "ls", "--json", "--store", str(tmp_path / "other"))
    assert [o["key"] for o in r.json()["objects"]] == [art.key]


def _make(tmp_path, n=2):
    s = Store(tmp_path / "cli-store")
    arts = [s.produce("thing", {"i": i}, {}, lambda c: (c.out / "f.txt").write_text("x"))[0] for i in range(n)]
    return s, arts


def test_store_show_path_tag_lineage(cli, tmp_path):
    s, (a, b) = _make(tmp_path)
    assert cli("store", "tag", "mine", a.key[:10]).code == 0
    r = cli("store", "show", "mine", "--json")
    assert r.code == 0 and r.json()["key"] == a.key
    r = cli("store", "path", "mine")
    assert r.stdout.strip() == str(a.path)
    r = cli("store", "lineage", a.key[:8], "--json")
    assert r.json()["kind"] == "thing"
    r = cli("store", "ls", "--kind", "thing", "--json")
    assert {o["key"] for o in r.json()["objects"]} == {a.key, b.key}
    assert r.json()["refs"] == {"mine": a.key}


@pytest.mark.parametrize("args,code,needle", [
    (["store", "show", "nosuchref"], 3, "unknown ref"),
    (["store", "show", "deadbeef"], 3, "unknown ref"),
    (["store", "show", "a/../b"], 4, "invalid ref"),
    (["store", "tag", "../escape", "x"], 3, ""),
    (["extract", "--no-such-option"], 2, ""),
])
def test_bad_input_one_line(cli, args, code, needle):
    r = cli(*args)
    assert r.code == code, (r.code, r.stderr)
    assert "Traceback" not in r.stderr
    if needle:
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        assert len(lines) == 1 and needle in lines[0] and "hint:" in lines[0]
        assert r.stdout == ""


def test_invalid_tag_name(cli, tmp_path):
    s, (a, _) = _make(tmp_path)
    r = cli("store", "tag", "../escape", a.key)
    assert r.code == 4 and "invalid ref name" in r.stderr
    assert s.refs() == {}


def test_verify_reports_corruption(cli, tmp_path):
    s, (a, b) = _make(tmp_path)
    assert cli("store", "verify", "--json").json()["ok"] is True
    f = a.path / "f.txt"
    f.chmod(0o644)
    f.write_text("y")
    r = cli("store", "verify")
    assert r.code == 5 and a.key[:12] in r.stderr and "itictl store rm" in r.stderr
    r = cli("store", "verify", "--json")
    assert r.code == 5 and json.loads(r.stdout)["corrupt"][a.key]


def test_gc_and_rm(cli, tmp_path):
    s, (a, b) = _make(tmp_path)
    cli("store", "tag", "keep", a.key)
    r = cli("store", "gc", "--dry-run", "--json")
    assert r.json()["removed"] == [b.key] and s.has(b.key)
    assert cli("store", "gc", "--json").json()["removed"] == [b.key]
    assert not s.has(b.key)
    assert cli("store", "rm", "keep").code == 0
    assert not s.has(a.key)


def test_debug_shows_traceback(tmp_path):
    r = run_cli_subprocess("store", "show", "nosuchref", env={"ITICTL_HOME": str(tmp_path), "ITICTL_DEBUG": "1"})
    assert r.code == 3 and "Traceback" in r.stderr
    r = run_cli_subprocess("store", "show", "nosuchref", env={"ITICTL_HOME": str(tmp_path), "ITICTL_DEBUG": ""})
    assert r.code == 3 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1


def test_secrets_redacted_from_errors(cli, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_SENTINELsecret123")
    r = cli("store", "show", "hf_SENTINELsecret123")
    assert "hf_SENTINELsecret123" not in r.stderr + r.stdout


def test_docs_and_completions_are_fresh():
    assert (ROOT / "docs" / "cli.md").read_text() == cli_reference_markdown(), "run `make docs`"
    for shell in SHELLS:
        assert (ROOT / "completions" / f"itictl.{shell}").read_text() == completion_script(shell), "run `make docs`"


def test_bash_completion_works(tmp_path):
    env = {"_ITICTL_COMPLETE": "complete_bash", "COMP_WORDS": "itictl st", "COMP_CWORD": "1",
           "ITICTL_HOME": str(tmp_path)}
    r = run_cli_subprocess(env=env)
    assert "store" in r.stdout
