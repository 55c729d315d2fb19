#!/usr/bin/env bash
# The main job on the embedded default model (SmolLM2-135M-Instruct), on a small TruthfulQA subset:
# extract -> probe -> intervene -> eval -> bake, printing each step's result. Steps that are not built
# yet are reported and skipped. Rerunning is fast: every step is a cache hit the second time.
set -uo pipefail
IT=".venv/bin/itictl"
N_QUESTIONS=${DEMO_QUESTIONS:-40}
run() {
  echo "+ itictl $*" >&2
  "$IT" "$@"
  rc=$?
  if [ $rc -eq 2 ] && "$IT" "$1" --help 2>/dev/null | grep -q "not built yet"; then
    echo "  (skipped: \`itictl $1\` is not built yet)" >&2
    return 0
  fi
  return $rc
}
set -e
run extract --dataset tqa_mc2 --limit-questions "$N_QUESTIONS"
run store ls
