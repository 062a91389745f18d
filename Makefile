# `make test` and `make demo` each create the virtual environment themselves (idempotently).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint demo bench bench-deps clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: the CPU wheel; anything unpinned pulls GBs of CUDA
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[zoo,graph,admet,test]' torch==2.13.0
	# cn2en's wheel has an invalid requirement that pip refuses: fetched by hash, fixed
	$(BIN)/python tools/install_cn2en.py
	touch $(STAMP)

# ruff and the import graph (no cycle, no back-arrow) first: either fails the tests as a
# failing test would
test: venv
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/python tools/import_graph.py
	# basic mode on the modules typed so far (pyrightconfig.json excludes the others)
	$(BIN)/pyright
	$(BIN)/python -m pytest -q -x -p no:cacheprovider

lint: venv
	$(BIN)/ruff check src tests benchmarks tools

demo: venv
	$(BIN)/pathattr explain --demo --out results/demo

# Inseq for the sequence benchmark: --no-deps, since its declared dependencies pull CUDA wheels
bench-deps: venv
	$(BIN)/python -m pip install --quiet --no-deps inseq==0.7.1 jaxtyping 'typeguard<=2.13.3' \
		treescope wadler-lindig

bench: bench-deps
	$(BIN)/python -m benchmarks all

clean:
	rm -rf $(VENV) results
