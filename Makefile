# The README's two commands: `make test` and `make demo`. Both build .venv from nothing when it is
# missing or pyproject.toml changed, so a clean clone needs no other step.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: test demo bench clean

$(BIN)/raytrain: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# pip, not uv: pip takes torch and torchvision from the files already on this disk
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

test: $(BIN)/raytrain
	$(BIN)/python -m pytest -q

demo: $(BIN)/raytrain
	$(BIN)/raytrain demo

bench: $(BIN)/raytrain
	for b in tests/bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
