# The two commands a fresh machine needs: `make run` and `make test`. Both bootstrap .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export QT_QPA_PLATFORM ?= offscreen

.PHONY: run test test-slow lint typecheck bench install install-desktop bundle smoke-bundle clean

$(STAMP): pyproject.toml packaging/constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c packaging/constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c packaging/constraints.txt -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	QT_QPA_PLATFORM= $(BIN)/ul-studio

# The checks first (ruff; the import contracts in pyproject.toml: the app reaches only the engine's torch-free
# core and store, the engine's layers), then the tests. Two pytest workers (pytest-xdist), each test file on one
# worker so its train-once fixtures run once: much of the suite waits on real worker processes, so two workers
# finish in about 60 % of the time of one.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -n 2 --dist loadfile

test-slow: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# The torch-free layers and the app, as configured in pyproject.toml ([tool.mypy]).
typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/ul bench --json

# The desktop entry, icons and AppStream metainfo for the current user ($$XDG_DATA_HOME, default ~/.local/share).
install-desktop: $(STAMP)
	sh packaging/install_desktop.sh "$(CURDIR)/$(BIN)/ul-studio"

# The frozen CPU one-folder bundle in build/bundle/ul-studio/ (PyInstaller; minutes), and its smoke check.
bundle: $(STAMP)
	PY=$(BIN)/python sh packaging/build_bundle.sh

smoke-bundle:
	sh packaging/smoke_bundle.sh

clean:
	rm -rf $(VENV) build dist *.egg-info
