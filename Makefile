# The README's commands. Each builds .venv from nothing when it is missing or pyproject.toml changed,
# so a clean clone needs no other step.
#   make test-fast  the tests that start no Ray and no process (~1 min): after each change
#   make test       the whole suite (~15 min on 2 cores): before a commit that touches sweeps or I/O
#   make lint       ruff (format and lint) and the import rules (lint-imports): before each commit
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: test test-fast lint demo bench clean

$(BIN)/raytrain: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# pip, not uv: pip takes torch and torchvision from the files already on this disk
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

test: $(BIN)/raytrain
	$(BIN)/python -m pytest -q --durations=20

# tests/conftest.py marks a test slow when its fixtures start Ray or a process
test-fast: $(BIN)/raytrain
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(BIN)/raytrain
	$(BIN)/ruff format --check raytrain tests cluster
	$(BIN)/ruff check raytrain tests cluster
	$(BIN)/lint-imports

demo: $(BIN)/raytrain
	$(BIN)/raytrain demo

bench: $(BIN)/raytrain
	for b in tests/bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
