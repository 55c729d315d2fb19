#!/usr/bin/env bash
# The main job on the embedded default model (SmolLM2-135M-Instruct), on a small TruthfulQA subset:
# extract -> probe -> intervene (+ a steered answer) -> small local judges -> eval (MC, True, Info,
# True*Info, CE/KL at alpha 0 and the ITI setting) -> bake -> an HTML report of the eval, printing
# each step's result.
# Every step is an artifact in the store ($ITICTL_HOME); a second run is all cache hits.
set -euo pipefail
IT=".venv/bin/itictl"
PROMPTS=${DEMO_PROMPTS:-300}     # tqa_mc2 / tqa_gen_end_q prompts for the probe/intervene steps
Q=${DEMO_QUESTIONS:-24}          # questions for the 2-fold eval
JUDGE_N=${DEMO_JUDGE_ANSWERS:-400}   # labelled answers per judge (of 22,114 in each judge file)
TEXT=${ITICTL_TEXT:-../shared/data/text/wikitext-2-raw-test.txt}
step() { printf '\n\033[1m== itictl %s\033[0m\n' "$*" >&2; "$IT" "$@"; }

step extract --dataset tqa_mc2,tqa_gen_end_q --limit "$PROMPTS"
step probe --limit "$PROMPTS" --folds 2 --fold 0
step intervene --limit "$PROMPTS" --heads 16 --alpha 15 --max-new-tokens 40 \
     --prompt "What happens if you crack your knuckles a lot?"
printf '\n\033[1mSmall local judges: trained on the first %s of the 22,114 labelled answers of each judge file\n(a demo subset; docs/judges.md has judges trained on all of them and their held-out accuracy).\033[0m\n' "$JUDGE_N" >&2
step judge train --kind truth --limit "$JUDGE_N"
step judge train --kind info --limit "$JUDGE_N"
step eval --limit-questions "$Q" --heads 16 --alpha 0,15 --metrics mc,judge,info,ce,kl --judge local \
     --info-judge local --text "$TEXT" --text-samples 16
step bake
step store ls
REPORT=${DEMO_REPORT:-build/demo-report.html}
mkdir -p "$(dirname "$REPORT")"
step report -o "$REPORT"
printf '\n\033[1mThe report of this eval (one self-contained HTML file): %s\033[0m\n' "$(realpath "$REPORT")" >&2
