"""`eval --judge local` without a trained judge, and malformed judge specs: one-line errors with the
fix, before any work (no model conversion, nothing in the store)."""

import os


def _store_objects():
    from itictl.store import Store

    return list(Store(os.environ["ITICTL_HOME"]).ls())


def test_eval_local_judge_missing_or_malformed_fails_first(cli, tqa_dir):
    base = ["eval", "--data", str(tqa_dir), "--limit-questions", "4", "--alpha", "0", "--metrics", "judge,info"]
    r = cli(*base, "--judge", "local", "--info-judge", "local")
    assert r.code == 3, r.stderr
    line = r.stderr.strip()
    assert "no local truth judge" in line and "itictl judge train --kind truth" in line and "\n" not in line
    r = cli(*base, "--judge", "judge:x")
    assert r.code == 4 and "invalid judge spec 'judge:x'" in r.stderr and "local:REF" in r.stderr
    r = cli(*base, "--judge", "local:nosuchref")
    assert r.code == 3 and "nosuchref" in r.stderr
    assert _store_objects() == []
