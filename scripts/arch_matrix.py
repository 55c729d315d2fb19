"""Run the architecture matrix (tests/models/arch_checks.py) on every causal-LM model_type of the
installed transformers and write docs/architectures.md from it.

    .venv/bin/python scripts/arch_matrix.py            # write docs/architectures.md
    .venv/bin/python scripts/arch_matrix.py --check    # exit 1 if the page is stale
    .venv/bin/python scripts/arch_matrix.py llama opt  # just these types, printed (page untouched)

tests/models/test_arch_matrix.py runs the same checks and asserts the page matches them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DOC = ROOT / "docs" / "architectures.md"


def main(argv: list[str]) -> int:
    import transformers

    from tests.models.arch_checks import matrix_types, render, run_matrix

    transformers.logging.set_verbosity_error()
    check = "--check" in argv
    only = [a for a in argv if not a.startswith("--")]
    types, skipped, outside = matrix_types()
    t0 = time.time()
    rows = run_matrix(only or types)
    for r in rows:
        print(f"{'pass' if r.passed else '    '} {r.model_type:26s} {r.seconds:6.2f}s {r.first_problem()[:110]}",
              file=sys.stderr)
    print(f"{sum(r.passed for r in rows)} of {len(rows)} pass every check ({time.time() - t0:.0f} s)", file=sys.stderr)
    if only:
        return 0
    page = render(rows, skipped, outside)
    if check:
        if DOC.read_text(encoding="utf-8") != page:
            print(f"{DOC.relative_to(ROOT)} is stale: run scripts/arch_matrix.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(page, encoding="utf-8")
    print(f"wrote {DOC.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
