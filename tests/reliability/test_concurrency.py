"""Concurrency: identical commands compute once (per-key lock), different commands share a store,
`store gc` waits for running commands (store lease), and locks of killed processes never block."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.helpers import run_cli
from tests.reliability.harness import copy_store, finish, kill9, object_dir, spawn, wait_signal


def verify_clean(store) -> None:
    r = run_cli("--store", str(store), "store", "verify", "--json")
    assert r.code == 0, r.stderr


def test_identical_commands_compute_once(base, tmp_path):
    key = base.keys["probes"]
    store = copy_store(base.store, tmp_path / "s", drop=(key,))
    sig = tmp_path / "sig"
    # each build sleeps 2 s once done, so the two runs surely overlap
    procs = [spawn(store, *base.args("probes"), pause_kind="probes", pause_at="built", pause_s=2, signal_dir=sig)
             for _ in range(2)]
    results = [finish(p) for p in procs]
    assert [r.code for r in results] == [0, 0], [r.stderr[-1000:] for r in results]
    docs = [r.json() for r in results]
    assert {d["key"] for d in docs} == {key}
    assert sorted(d["cached"] for d in docs) == [False, True], "one computes, the other waits and reuses"
    assert len(list(sig.glob("built.*"))) == 1, "the build ran exactly once"
    verify_clean(store)


def test_different_commands_share_the_store(base, tmp_path):
    store = copy_store(base.store, tmp_path / "s", drop=(base.keys["iv"], base.keys["probes"]))
    sig = tmp_path / "sig"
    a = spawn(store, "probe", "-a", base.keys["acts"], "--seed", "7", "--json", "-q",
              pause_kind="probes", pause_at="built", pause_s=1, signal_dir=sig)
    b = spawn(store, *base.args("probes"), pause_kind="probes", pause_at="built", pause_s=1, signal_dir=sig)
    c = spawn(store, "store", "ls", "--json")
    ra, rb, rc = finish(a), finish(b), finish(c)
    assert (ra.code, rb.code, rc.code) == (0, 0, 0), (ra.stderr[-800:], rb.stderr[-800:], rc.stderr[-800:])
    assert ra.json()["key"] != rb.json()["key"]
    assert rb.json()["key"] == base.keys["probes"]
    for r in (ra, rb):
        assert object_dir(store, r.json()["key"]).is_dir()
    verify_clean(store)


def test_gc_waits_for_a_running_command(base, tmp_path):
    """intervene's parents are not reachable from any ref, so gc would delete them; it must wait
    until the command is done (the command holds the store lease while it builds)."""
    key = base.keys["iv"]
    store = copy_store(base.store, tmp_path / "s", drop=(key,))
    sig = tmp_path / "sig"
    run_p = spawn(store, *base.args("iv"), pause_kind="intervention", pause_at="built", pause_s=3, signal_dir=sig)
    wait_signal(sig, "built", run_p)
    gc_p = spawn(store, "store", "gc", "--json")
    time.sleep(1.0)
    assert gc_p.poll() is None, "gc did not wait for the running command"
    r = finish(run_p)
    run_done = time.monotonic()
    assert r.code == 0, r.stderr[-2000:]
    assert r.json()["key"] == key
    g = finish(gc_p)
    assert g.code == 0, g.stderr
    assert time.monotonic() >= run_done
    assert key in g.json()["removed"], "gc ran after the command committed its object"
    verify_clean(store)


def test_gc_between_steps_of_one_command(base, tmp_path):
    store = copy_store(base.store, tmp_path / "s", drop=(base.keys["acts"], base.keys["probes"]))
    sig = tmp_path / "sig"
    p = spawn(store, "probe", "-m", str(base.tiny), "--data", str(base.data), "--limit", "40", "--json", "-q",
              pause_at="between", pause_s=2, signal_dir=sig)
    wait_signal(sig, "between", p)
    g = run_cli("--store", str(store), "store", "gc", "--json")
    assert g.code == 0
    r = finish(p)
    assert r.code == 0, r.stderr[-1000:]


def test_lock_of_a_killed_process_does_not_block(base, tmp_path):
    key = base.keys["iv"]
    store = copy_store(base.store, tmp_path / "s", drop=(key,))
    lock = store / "locks" / f"{key}.lock"
    ready = tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        f"lease = os.open({str(store / 'locks' / 'store.lease')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(lease, fcntl.LOCK_EX)\n"
        f"open({str(ready)!r}, 'w').close()\n"
        "time.sleep(300)\n")])
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists()
    kill9(holder)
    assert lock.exists(), "the dead process's lock file is still there"
    t0 = time.monotonic()
    p = spawn(store, *base.args("iv"))
    r = finish(p, timeout=120)
    assert r.code == 0, r.stderr[-2000:]
    assert r.json()["key"] == key and r.json()["cached"] is False
    assert time.monotonic() - t0 < 60
    verify_clean(store)
