"""Secrets and paths: sentinel HF_TOKEN / OPENAI_API_KEY / --token values never appear in any
output or anywhere in the store (manifests, payloads, model cards, tmp), success or failure; ref
names and paths cannot reach outside the store directory."""

from __future__ import annotations

import socket

from tests.helpers import run_cli
from tests.reliability.harness import copy_store, objects_listing

HF = "hf_SENTINELhfTOKEN1234567890"
OAI = "sk-SENTINELopenaiKEY0987654321"
FLAG = "hf_SENTINELflagTOKEN5555"
SENTINELS = (HF, OAI, FLAG)


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused
    return f"http://127.0.0.1:{port}"


def test_tokens_never_leak(base, tmp_path, monkeypatch):
    store = copy_store(base.store, tmp_path / "s", drop=(base.keys["iv"], base.keys["baked"], base.keys["eval"]))
    dead = closed_port_url()
    monkeypatch.setenv("HF_TOKEN", HF)
    monkeypatch.setenv("OPENAI_API_KEY", OAI)
    monkeypatch.setenv("HF_ENDPOINT", dead)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("ITICTL_HUB_TIMEOUT", "2")
    monkeypatch.delenv("ITICTL_DEBUG", raising=False)
    outputs = []

    def cli(*args, code=None):
        r = run_cli("--store", str(store), *args)
        outputs.append(r.stdout + r.stderr)
        if code is not None:
            assert r.code == code, f"{args}: exit {r.code}: {r.stderr[-1500:]}"
        return r

    iv = cli(*base.args("iv"), code=0).json()["key"]
    cli("bake", iv, "--tag", "honest", "--json", "-q", code=0)
    cli("push", "honest", "--repo", "someone/tiny", "--dry-run", "--token", FLAG, "--json", code=0)
    cli("push", "honest", "--repo", "someone/tiny", "--dry-run", code=0)        # HF_TOKEN from env
    failed = cli("push", "honest", "--repo", "someone/tiny", "--token", FLAG)    # Hub unreachable
    assert failed.code == 6, failed.stderr
    cli("export", iv, str(tmp_path / "export"), "--json", "-q", code=0)
    judged = cli("eval", "--model", str(base.tiny), "--data", str(base.data), "--limit-questions", "4",
                 "--alpha", "0", "--metrics", "judge", "--judge", "openai:ft-sentinel", "--openai-base-url", dead)
    assert judged.code == 6, judged.stderr  # remote error: the judge endpoint is unreachable
    assert "cannot reach the OpenAI endpoint" in judged.stderr and judged.stdout == ""
    # ITICTL_DEBUG=1 tracebacks go through the same redaction
    monkeypatch.setenv("ITICTL_DEBUG", "1")
    cli("push", "honest", "--repo", "someone/tiny", "--token", FLAG)

    blob = "\n".join(outputs)
    for s in SENTINELS:
        assert s not in blob, "a token appeared in command output"
    leaks = []
    for root in (store, tmp_path / "export"):
        for p in root.rglob("*"):
            if p.is_file():
                data = p.read_bytes()
                leaks += [f"{p.relative_to(root)}" for s in SENTINELS if s.encode() in data]
    assert not leaks, f"tokens written to {leaks}"


def test_ref_names_cannot_escape_the_store(base, tmp_path):
    store = copy_store(base.store, tmp_path / "s")
    outside = tmp_path / "outside-ref"
    outside.write_text(base.keys["acts"] + "\n")  # a well-formed ref file, but outside refs/
    before = objects_listing(store)
    for ref in ("../outside-ref", "../../outside-ref", str(outside), "refs/../../outside-ref", "%2e%2e/outside-ref"):
        r = run_cli("--store", str(store), "store", "show", ref, "--json")
        assert r.code in (3, 4), (ref, r.code, r.stdout)
        r = run_cli("--store", str(store), "store", "tag", ref, base.keys["acts"])
        assert r.code == 4, (ref, r.code)
        r = run_cli("--store", str(store), "store", "rm", ref)
        assert r.code in (3, 4), (ref, r.code)
    assert outside.read_text() == base.keys["acts"] + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside-ref", "s"]
    assert objects_listing(store) == before
    assert sorted(p.name for p in (store / "refs").iterdir()) == []


def test_symlinked_ref_is_not_followed_outside(base, tmp_path):
    store = copy_store(base.store, tmp_path / "s")
    target = tmp_path / "secret.txt"
    target.write_text(base.keys["acts"] + "\n")
    secret = tmp_path / "secret-notes.txt"
    secret.write_text("hf_SENTINELnotAkey\n")
    (store / "refs" / "sneaky").symlink_to(target)
    (store / "refs" / "leaky").symlink_to(secret)
    before = objects_listing(store)
    # itictl writes refs as plain files and never reads through a symlink, even to a valid key
    for ref in ("sneaky", "leaky"):
        for cmd in (["store", "show", ref, "--json"], ["store", "rm", ref], ["probe", "-a", ref, "--json"]):
            r = run_cli("--store", str(store), *cmd)
            assert r.code == 5 and r.stdout == "", (cmd, r.code, r.stderr)
            assert f"ref {ref!r} is a symbolic link" in r.stderr and "hf_SENTINEL" not in r.stderr
    ls = run_cli("--store", str(store), "store", "ls", "--json")
    assert ls.code == 0 and ls.json()["refs"] == {} and "hf_SENTINEL" not in ls.stdout
    assert objects_listing(store) == before
    assert target.read_text() == base.keys["acts"] + "\n" and secret.exists()
    r = run_cli("--store", str(store), "store", "untag", "leaky")  # the documented fix removes the link only
    assert r.code == 0 and not (store / "refs" / "leaky").is_symlink() and secret.exists()
