# The two commands of the README: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The modules listed under [tool.pipevault] compiled in pyproject.toml are compiled with
# mypyc, in place, again whenever any source changes (compiled code trusts the types of
# what it imports; tests/conftest.py refuses to run on stale ones). PIPEVAULT_MYPYC=0
# removes them instead: the same modules then run interpreted (quicker to iterate on).
PIPEVAULT_MYPYC ?= 1
COMPILED := $(VENV)/.compiled
SOURCES := $(shell find src/pipevault -name '*.py')

.PHONY: setup system-deps compiled demo test lint typecheck unit docs bench clean

# Byte-compiles the sources (quick once done: only changed files are compiled again). An
# editable install leaves that to the first import, and where PYTHONDONTWRITEBYTECODE is set
# every process (each pipe stage's too) would compile all of them again: 0.15 s a process.
setup: system-deps $(STAMP) compiled
	@$(BIN)/python -m compileall -q src > /dev/null

ifeq ($(PIPEVAULT_MYPYC),0)
compiled: $(STAMP)
	@$(BIN)/python scripts/compiled.py remove
	@rm -f $(COMPILED)
else
compiled: $(COMPILED)
endif

$(COMPILED): $(STAMP) $(SOURCES) pyproject.toml setup.py Makefile
	PIPEVAULT_MYPYC=1 $(BIN)/python setup.py -q build_ext --inplace > $(VENV)/compiled.log 2>&1 \
		|| { cat $(VENV)/compiled.log; exit 1; }
	@# Dated now: the build copies an unchanged library with its old date (scripts/compiled.py).
	touch src/pipevault__mypyc*.so $@

# The extension compiles against Debian headers (libxxhash-dev, libzstd-dev, liblz4-dev):
# system-deps runs first
# (order-only, so an up-to-date stamp is not rebuilt for it; a stale one is, after it).
$(STAMP): pyproject.toml setup.py $(wildcard src/pipevault/format/_accel*.[ch]) $(wildcard src/pipevault/mover/_*.c) | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian packages the build and the test suite need (xxhash, zstd, lz4 headers for the extension, a
# PostgreSQL server for the multi-host catalog).
system-deps:
	@bash scripts/install-system-deps.sh

demo: setup
	$(BIN)/pipevault demo

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

test: setup lint typecheck unit

docs: $(STAMP)
	$(BIN)/pipevault errors --markdown > docs/exit-codes.md

bench: $(STAMP)
	$(BIN)/pipevault bench pipe

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build
	find src -name '*.so' -delete
