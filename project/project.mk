# Capstone targets (project/), included by the root Makefile, which defines PY, `setup` and
# `services`. Every command runs from the repository root.

PY ?= .venv/bin/python
IMGPROC := PYTHONPATH=project:. $(PY)

.PHONY: demo run bench-project project-test project-typecheck project-migrate

demo: setup services ## capstone: start it, process sample images, print a table, stop it
	$(IMGPROC) project/scripts/demo.py

run: setup services ## capstone: API on :8000 (/docs), worker and beat until Ctrl-C
	$(IMGPROC) project/scripts/run.py

bench-project: setup services ## capstone: pipeline vs plain Pillow, locust, cache hit vs miss
	$(IMGPROC) project/bench/bench.py $(ARGS)

project-test: setup services project-typecheck ## capstone: mypy and tests (real services)
	$(IMGPROC) -m pytest project/tests -p no:cacheprovider $(ARGS)

project-typecheck: setup ## capstone: mypy (strict) over its code, tests, scripts and bench
	$(PY) -m mypy project/imgproc project/devtools project/tests project/scripts project/bench

project-migrate: setup ## capstone: apply the Alembic migrations to DATABASE_URL
	$(IMGPROC) -m imgproc.migrate
