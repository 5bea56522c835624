# Capstone targets (project/). Included by the root Makefile, which defines PY, `setup` and
# `services`; every command runs from the repository root.

PY ?= .venv/bin/python
IMGPROC = PYTHONPATH=project:. $(PY)

.PHONY: demo run bench-project project-test project-migrate project-lint

## demo: migrate, start API + worker, process sample images, print a table, stop everything
demo: setup services
	$(IMGPROC) project/scripts/demo.py

## run: API on :8000 (/docs), worker and beat until Ctrl-C
run: setup services
	$(IMGPROC) project/scripts/run.py

## bench-project: pipeline vs plain Pillow, locust on the submit path, cache hit vs miss
bench-project: setup services
	$(IMGPROC) project/bench/bench.py

## project-test: the capstone's tests (real PostgreSQL, Redis and Celery worker processes)
project-test: setup services
	$(IMGPROC) -m pytest project/tests

## project-migrate: apply the Alembic migrations to DATABASE_URL
project-migrate:
	$(IMGPROC) -m imgproc.migrate

## project-lint: ruff and mypy over the capstone
project-lint:
	.venv/bin/ruff check project
	.venv/bin/ruff format --check project
	.venv/bin/mypy project/imgproc project/tests project/scripts project/bench
