# `make test` and `make demo` each create the virtual environment themselves (idempotently),
# from constraints.txt: the versions the suite last passed with. `make test-latest` runs the
# suite on the newest releases in .venv-latest; `make lock` then writes what it installed to
# constraints.txt.
PY ?= python3.11
VENV := .venv
LATEST := .venv-latest
BIN := $(VENV)/bin

.PHONY: venv test lint demo bench bench-deps clean test-latest lock

# $(1): the environment; $(2): pip options. torch first and pinned: the CPU wheel; anything
# unpinned pulls GBs of CUDA. cn2en's wheel has an invalid requirement that pip refuses:
# fetched by hash, fixed.
define install
	test -x $(1)/bin/python || $(PY) -m venv $(1)
	$(1)/bin/python -m pip install --quiet --upgrade pip $(2)
	$(1)/bin/python -m pip install --quiet torch==2.13.0
	$(1)/bin/python -m pip install --quiet -e '.[zoo,graph,admet,test]' torch==2.13.0 $(2)
	$(1)/bin/python tools/install_cn2en.py
endef

# ruff and the import graph (no cycle, no back-arrow) first: either fails the tests as a
# failing test would; then pyright in basic mode on every module of src/pathattr
define suite
	$(1)/ruff check src tests benchmarks tools
	$(1)/python tools/import_graph.py
	$(1)/pyright
	$(1)/python -m pytest -q -x -p no:cacheprovider
endef

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(call install,$(VENV),-c constraints.txt)
	touch $@

test: venv
	$(call suite,$(BIN))

# the newest releases of everything but torch, in an environment of their own
test-latest:
	$(call install,$(LATEST),--upgrade --upgrade-strategy eager)
	$(call suite,$(LATEST)/bin)

# after `make test-latest` passes: its versions become the tested ones
lock:
	{ echo "# Versions the suite last passed with (make lock, from $(LATEST)); make venv installs these."; \
	  $(LATEST)/bin/python -m pip freeze --all --exclude-editable \
	    | grep -v -E '^(cn2en|pathattr)[ =@]' | sed -E 's/^torch==([0-9.]+)\+cpu$$/torch==\1/'; \
	} > constraints.txt

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
	rm -rf $(VENV) $(LATEST) results
