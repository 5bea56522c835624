# The course's commands. `make help` lists them.
# Every target is safe to re-run: it does nothing (quickly) when there is nothing to do.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
MYPY := $(CURDIR)/$(VENV)/bin/mypy
RUFF := $(VENV)/bin/ruff
# uv installs the locked dependencies; `pip install uv` brings it to a fresh machine.
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
# The score table carries each failure's message; tracebacks would bury it, and -qq leaves
# the table's TOTAL line last (no red "N failed" line after it).
PYTEST_GRADE := -p no:cacheprovider -qq --no-header --tb=no -rN

# lab_dir(N): the folder of lab N (labs/lab0N_*), empty if there is none.
lab_dir = $(firstword $(wildcard labs/lab$(shell printf %02d $(1))_*))

.PHONY: help setup services lab-% serve test lint format typecheck selfcheck repo-tests load-summary \
        grade release clean

help: ## list the commands
	@grep -hE '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "} {sub(/%/, "N", $$1); printf "  make %-20s %s\n", $$1, $$2}'

# ---------------------------------------------------------------- set-up

setup: $(VENV)/.synced ## virtual environment with the locked dependencies

$(VENV)/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@# Bytecode now, not at every start: with PYTHONDONTWRITEBYTECODE set (as on CI machines)
	@# each server and worker the tests start would otherwise compile ~1000 modules (~2 s).
	@echo "installing the locked dependencies into $(VENV) (about a minute the first time)"
	$(UV) sync --frozen --quiet --compile-bytecode
	@touch $@
	@echo "environment ready: next, make services (checks PostgreSQL, Redis, RabbitMQ)"

services: setup ## make sure PostgreSQL, Redis and RabbitMQ answer (starts containers if it can)
	@$(PY) -m shared.services

# ---------------------------------------------------------------- labs

# make lab-3              grade lab 3 (its solution/ if present, else starter/)
# make lab-3 IMPL=path    grade another implementation folder
# Exit status: 0 when graded (full marks or not), so a partial grade does not end in make's
# error line; with CI=true or STRICT=1 a failing test makes it 1 (for CI and scripts). Errors
# of the harness itself (a usage error, no tests) always exit non-zero.
lab-%: setup ## grade lab N, print the score table (IMPL=folder: grade another)
	@dir="$(call lab_dir,$*)"; \
	if [ -z "$$dir" ] || [ ! -d "$$dir/tests" ] || [ ! -d "$$dir/starter" ]; then \
	  echo "lab $* is not available yet"; exit 1; fi; \
	if [ -z "$(IMPL)" ] && [ -d "$$dir/solution" ]; then \
	  echo "grading the reference solution $$dir/solution (yours: make lab-$* IMPL=$$dir/starter)"; fi; \
	status=0; \
	$(PY) -m pytest "$$dir/tests" $(if $(IMPL),--impl "$(IMPL)") $(PYTEST_GRADE) $(ARGS) \
	  || status=$$?; \
	strict="$(STRICT)"; case "$${CI:-}" in 1|true|yes) strict=1;; esac; \
	if [ "$$status" = 1 ] && [ "$$strict" != 1 ]; then \
	  echo "(Not every test passes yet. Exit status 0; with STRICT=1 or CI=true it is 1.)"; \
	  status=0; fi; \
	exit $$status

# make serve LAB=1 [IMPL=labs/lab01_rest/starter] [PORT=8000]
serve: setup ## run lab LAB's app on http://127.0.0.1:8000 (open /docs)
	@test -n "$(LAB)" || { echo "usage: make serve LAB=N [IMPL=folder] [PORT=8000]"; exit 2; }
	@dir="$(call lab_dir,$(LAB))"; \
	if [ -z "$$dir" ]; then echo "lab $(LAB) is not available yet"; exit 1; fi; \
	impl="$(IMPL)"; \
	if [ -z "$$impl" ]; then impl="$$dir/solution"; [ -d "$$impl" ] || impl="$$dir/starter"; fi; \
	[ "$(LAB)" -le 1 ] || $(PY) -m shared.services; \
	echo "serving $$impl on http://127.0.0.1:$${PORT:-8000}/docs (Ctrl+C to stop)"; \
	cd "$$impl" && LOG_LEVEL=$${LOG_LEVEL:-info} PORT=$${PORT:-8000} $(if $(LATENCY_MS),LATENCY_MS=$(LATENCY_MS)) \
	  PYTHONPATH="$$PWD:$(CURDIR)" $(CURDIR)/$(PY) -m app

# ---------------------------------------------------------------- checks

# The capstone's checks come from project/project.mk. The phases run one after the other,
# each timed; the last line lists how long each took.
TEST_PHASES := services lint typecheck selfcheck repo-tests \
  $(if $(wildcard project/project.mk),project-test)
test: setup ## everything CI checks, each phase timed
	@total=$$(date +%s); took=""; \
	for phase in $(TEST_PHASES); do \
	  start=$$(date +%s); echo "== make $$phase"; \
	  if ! $(MAKE) --no-print-directory $$phase; then \
	    echo "make test: $$phase FAILED after $$(( $$(date +%s) - start ))s (before it:$$took)"; \
	    exit 1; fi; \
	  secs=$$(( $$(date +%s) - start )); took="$$took $$phase $${secs}s,"; \
	  echo "== make $$phase: $${secs}s"; \
	done; \
	echo "make test: all checks passed in $$(( $$(date +%s) - total ))s:$${took%,}"

lint: setup ## ruff lint and format check
	$(RUFF) check .
	$(RUFF) format --check .

format: setup ## apply ruff's formatting and safe fixes
	$(RUFF) check --fix .
	$(RUFF) format .

# The implementation whose mypy cache seeds the others' (lab 5's solution imports nearly every
# library the labs use); any implementation in a release without it.
MYPY_SEED := $(patsubst %/app,%,$(firstword $(wildcard labs/lab05_queue/solution/app) $(wildcard labs/*/*/app)))
mypy_impl = cd "$(1)" && MYPYPATH=$(CURDIR) $(MYPY) --config-file $(CURDIR)/pyproject.toml \
  --cache-dir $(CURDIR)/.mypy_cache/$(subst /,_,$(1)) app $$(ls -d migrations notifications 2>/dev/null)

typecheck: setup ## mypy (strict) on shared/, tests, and each lab implementation on its own
	$(MYPY) shared tests labs
	@# Each implementation is its own `app` package, so each gets its own mypy run and cache
	@# (a shared cache mixes up the `app` modules of different labs); two run at a time. A new
	@# cache starts as a copy of the seed implementation's without its own modules (app,
	@# migrations, notifications): the libraries' analysis (FastAPI, pydantic, SQLAlchemy...)
	@# is then done once, not 16 times (typecheck took 197 s in CI without it).
	@if [ -n "$(MYPY_SEED)" ]; then \
	  ($(call mypy_impl,$(MYPY_SEED))) > /tmp/mypy-seed.log 2>&1 \
	  || { echo "mypy $(MYPY_SEED):"; cat /tmp/mypy-seed.log; exit 1; }; \
	  rm -rf .mypy_cache/seed && mkdir -p .mypy_cache/seed && \
	  cp -r .mypy_cache/$(subst /,_,$(MYPY_SEED))/3.* .mypy_cache/seed/ && \
	  rm -rf .mypy_cache/seed/3.*/app .mypy_cache/seed/3.*/app.* \
	    .mypy_cache/seed/3.*/migrations .mypy_cache/seed/3.*/migrations.* \
	    .mypy_cache/seed/3.*/notifications .mypy_cache/seed/3.*/notifications.*; \
	  echo "mypy $(MYPY_SEED): ok (its cache seeds the others')"; fi
	@ls -d labs/*/*/app | grep -v "^$(MYPY_SEED)/app$$" | xargs -P 2 -I{} sh -c 'impl=$$(dirname {}); \
	  cache=$(CURDIR)/.mypy_cache/$$(echo $$impl | tr / _); \
	  if [ ! -d "$$cache" ] && [ -d .mypy_cache/seed ]; then cp -r .mypy_cache/seed "$$cache"; fi; \
	  cd "$$impl" && MYPYPATH=$(CURDIR) $(MYPY) --config-file $(CURDIR)/pyproject.toml \
	  --cache-dir "$$cache" app $$(ls -d migrations notifications 2>/dev/null) \
	  > /tmp/mypy-$$$$.log 2>&1 \
	  && echo "mypy $$impl: ok" \
	  || { echo "mypy $$impl:"; cat /tmp/mypy-$$$$.log; exit 255; }'
	@# Lab 7's load tests (load/*.py) import each other as top-level modules, as locust does.
	@for d in $$(ls -d labs/*/*/load 2>/dev/null); do \
	  (cd $$d && MYPYPATH=$(CURDIR) $(MYPY) --config-file $(CURDIR)/pyproject.toml \
	    --cache-dir $(CURDIR)/.mypy_cache/$$(echo $$d | tr / _) *.py >/tmp/mypy-load.log 2>&1) \
	  && echo "mypy $$d: ok" || { echo "mypy $$d:"; cat /tmp/mypy-load.log; exit 1; }; done

# make selfcheck [LAB="1 3"] [VARIANT="name labNN_x/name 'glob*'"] [JOBS=4] [FULL=1]
selfcheck: setup ## tests pass on solution/, fail on starter/, catch every known-bug variant
	$(PY) -m shared.grading.selfcheck $(LAB) $(foreach v,$(VARIANT),--variant '$(v)') \
	  $(if $(JOBS),--jobs $(JOBS)) $(if $(FULL),--full)

repo-tests: setup ## the repo's own tests (harness, gradebook, release)
	$(PY) -m pytest tests -q -p no:cacheprovider

# make load-summary [ARGS="--seconds 20 --users 32 --labs 1 2 3 4 5"]
load-summary: setup services ## one locust scenario against labs 1-5: a table and build/load-summary.png
	$(PY) labs/lab07_load/summary.py $(ARGS)

# ---------------------------------------------------------------- instructors

# make grade SUBMISSIONS=dir [LABS="1 2"] [OUT=dir] [JOBS=2]
grade: setup ## grade a folder of submissions into gradebook.csv and report.html
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=dir [LABS='1 2'] [OUT=dir] [JOBS=2]"; exit 2; }
	$(PY) -m shared.grading.gradebook "$(SUBMISSIONS)" $(if $(LABS),--labs $(LABS)) \
	  $(if $(OUT),--out "$(OUT)") $(if $(JOBS),--jobs $(JOBS))

# make release OUT=dir [UPTO=N] [FORCE=1]
release: setup ## student release up to lab UPTO: no solutions, variants, hidden tests
	@test -n "$(OUT)" || { echo "usage: make release OUT=dir [UPTO=N] [FORCE=1]"; exit 2; }
	$(PY) -m shared.grading.release "$(OUT)" $(if $(UPTO),--upto $(UPTO)) $(if $(FORCE),--force)

clean: ## remove caches (keeps the virtual environment)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf .mypy_cache .ruff_cache .pytest_cache

-include project/project.mk
