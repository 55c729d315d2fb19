"""docs/guide.md's scripting example (`# sweep.sh`) runs as written: bash, jq and `itictl` on the
PATH, the embedded model on 8 questions at two strengths, plus two models that cannot run here (an
unknown alias: exit 3; a Hub id with HF_HUB_OFFLINE=1: exit 6), which the script skips. Checks the
table against the stored evals, the refs it tags, its stderr notes and its exit status."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT

ALPHAS = ("5", "15")


def guide_script() -> str:
    text = (ROOT / "docs" / "guide.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```bash\n(.*?)```", text, re.S) if b.startswith("# sweep.sh")]
    assert len(blocks) == 1, "docs/guide.md must hold one ```bash block starting with '# sweep.sh'"
    return blocks[0]


def test_guide_sweep_script_runs_as_written(session_store, tqa_dir, tmp_path):
    if shutil.which("jq") is None:
        pytest.fail("jq is not installed: the guide's script needs it (apt-get install -y jq; .ci/run does this)")
    (tmp_path / "sweep.sh").write_text(guide_script())
    bin_dir = os.path.dirname(sys.executable)  # the venv's bin: `itictl` as the guide says to run it
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ITICTL_", "HF_"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", ITICTL_HOME=str(session_store.root),
               ITICTL_DATA=str(tqa_dir), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               MODELS="smollm2 not-an-alias itictl-test/not-a-model", ALPHAS=" ".join(ALPHAS), LIMIT="8")
    refs = [f"sweep-smollm2-a{a}" for a in ALPHAS]
    try:
        p = subprocess.run(["bash", "sweep.sh"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
        assert p.returncode == 1, p.stderr  # 1: a model was skipped
        rows = [line.split("\t") for line in p.stdout.splitlines()]
        assert rows[0] == ["model", "alpha", "MC1", "MC2", "baseline_MC2", "ref"]
        assert [r[0] for r in rows[1:]] == ["smollm2", "smollm2"] and [r[5] for r in rows[1:]] == refs
        for row, a, ref in zip(rows[1:], ALPHAS, refs):
            ev = session_store.open(ref)  # the tag points at the eval whose numbers the row shows
            setting = ev.read_json("eval.json")["settings"][0]
            assert ev.kind == "eval" and float(row[1]) == float(a) == setting["alpha"]
            assert float(row[3]) == pytest.approx(setting["mean"]["MC2"], abs=5e-5)
            assert float(row[2]) == pytest.approx(setting["mean"]["MC1"], abs=5e-5)
            assert 0 <= float(row[4]) <= 1
            assert f"{ref}\t{ev.key[:12]}" in p.stderr.splitlines()
        assert rows[1][4] == rows[2][4]  # one baseline per model
        assert "skipping not-an-alias (exit 3)" in p.stderr and "skipping itictl-test/not-a-model (exit 6)" in p.stderr
        assert "Traceback" not in p.stderr
    finally:
        for ref in refs:
            if ref in session_store.refs():
                session_store.untag(ref)
