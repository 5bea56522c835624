"""Lab 6 fixtures: the student's Dockerfile, .dockerignore and compose file, read and run.

Static tests read the files of the implementation (`--impl`, default `solution/`). The real
tests build the image and run the compose stack through a container engine: podman, set up by
`docker/podman/setup.sh` on the course machines and in CI (no Docker engine there, and the
official base images are local stand-ins built from Debian packages; see
docker/podman/README.md), or a Docker engine when there is one and podman is not installed.
The stack publishes the API on a free port and nothing else, so the machine's own
PostgreSQL, Redis and RabbitMQ keep their standard ports; everything the tests create
(containers, networks, volumes, image tags) is removed at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from labs.lab06_docker.tests.dockerfile import Stage, ignore_patterns, parse
from labs.lab06_docker.tests.engine import MEASURES, Engine, Stack, find_engine

# Earlier labs whose HTTP contract the containerised service must still pass.
CONTRACT_MODULES = (
    "labs/lab01_rest/tests/test_items_contract.py",
    "labs/lab02_db/tests/test_contract.py",
    "labs/lab03_cache/tests/test_cache.py",
)


@pytest.fixture(scope="session")
def dockerfile_text(impl_dir: Path) -> str:
    path = impl_dir / "Dockerfile"
    if not path.is_file():
        pytest.fail(f"no Dockerfile in {impl_dir}: write one (task 1)", pytrace=False)
    return path.read_text()


@pytest.fixture(scope="session")
def stages(dockerfile_text: str) -> list[Stage]:
    parsed = parse(dockerfile_text)
    if not parsed:
        pytest.fail("the Dockerfile has no FROM instruction: it builds nothing yet", pytrace=False)
    return parsed


@pytest.fixture(scope="session")
def final_stage(stages: list[Stage]) -> Stage:
    return stages[-1]


@pytest.fixture(scope="session")
def dockerignore(impl_dir: Path) -> list[str]:
    path = impl_dir / ".dockerignore"
    if not path.is_file():
        pytest.fail(f"no .dockerignore in {impl_dir}: write one (task 1)", pytrace=False)
    return ignore_patterns(path.read_text())


@pytest.fixture(scope="session")
def compose_path(impl_dir: Path) -> Path:
    for name in ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml"):
        if (impl_dir / name).is_file():
            return impl_dir / name
    pytest.fail(f"no compose.yaml in {impl_dir}: write one (task 2)", pytrace=False)


@pytest.fixture(scope="session")
def compose(compose_path: Path) -> dict[str, object]:
    data = yaml.safe_load(compose_path.read_text())
    if not isinstance(data, dict):
        pytest.fail(f"{compose_path.name} is not a YAML mapping", pytrace=False)
    return data


@pytest.fixture(scope="session")
def engine() -> Engine:
    return find_engine()


@pytest.fixture(scope="session")
def stack(
    engine: Engine, impl_dir: Path, run_id: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The implementation copied to a scratch folder, its image built, its stack not yet up."""
    with Stack(engine, impl_dir, run_id, tmp_path_factory.mktemp("lab6")) as s:
        yield s


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for what, value in MEASURES.items():
        terminalreporter.write_line(f"lab 6 measured: {what}: {value}")
