"""The grading harness: points per test, a score table, Gradescope and CSV exports.

Loaded into every pytest run (see `addopts` in pyproject.toml). What it adds:

- markers: `@pytest.mark.points(N, task="1. Create items")` gives a test N points;
  `@pytest.mark.hidden` hides a test's name and feedback from students and drops it from the
  student release;
- options: `--impl PATH` (the implementation to grade; default the lab's `solution/` if it
  exists, else `starter/`), `--base-url URL` (grade a running server instead of starting one),
  `--grade-json FILE` (Gradescope `results.json`), `--grade-csv FILE` (append one row);
- fixtures for HTTP labs: `impl_dir`, `app_env` (labs override it), `app_server`, `base_url`,
  `client`;
- a score table at the end of every run that collected points tests;
- with `CI=true`, a skipped test fails the run: nothing the course promises may be skipped.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.grading.results import GradedTest, RunResult
from shared.labs import default_impl, lab_dir_of
from shared.testing.server import AppServer

REPO_ROOT = Path(__file__).resolve().parents[2]

_STATE = pytest.StashKey["GradingState"]()


@dataclass
class GradingState:
    lab_dir: Path | None = None
    started: float = field(default_factory=time.monotonic)
    # nodeid -> (points, task, hidden), in collection order
    points: dict[str, tuple[float, str, bool]] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    feedback: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    # Registered as a plugin object in pytest_configure, so this method is a hook.
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        previous = self.outcomes.get(report.nodeid)
        if report.skipped and report.when in ("setup", "call"):
            self.outcomes[report.nodeid] = "skipped"
            self.skipped.append(report.nodeid)
            self.feedback[report.nodeid] = _skip_reason(report)
        elif report.failed:
            self.outcomes[report.nodeid] = "failed" if report.when == "call" else "error"
            self.feedback.setdefault(report.nodeid, feedback_line(report))
        elif report.when == "call" and previous is None:
            self.outcomes[report.nodeid] = "passed"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("grading", "course grading harness")
    group.addoption("--impl", default=None, help="implementation folder to grade")
    group.addoption("--base-url", default=None, help="grade a running server at this URL")
    group.addoption("--grade-json", default=None, help="write Gradescope results.json here")
    group.addoption("--grade-csv", default=None, help="append one score row to this CSV")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "points(n, task=None): the test is worth n points in the named task"
    )
    config.addinivalue_line(
        "markers", "hidden: students see neither name nor feedback; left out of the release"
    )
    state = GradingState()
    config.stash[_STATE] = state
    config.pluginmanager.register(state, "grading-state")


def pytest_collection_finish(session: pytest.Session) -> None:
    # After -k/-m deselection: only the tests that will run are graded entries.
    config = session.config
    items = session.items
    state = config.stash[_STATE]
    labs = {lab for item in items if (lab := lab_dir_of(item.path)) is not None}
    if len(labs) > 1:
        names = ", ".join(sorted(p.name for p in labs))
        raise pytest.UsageError(
            f"grade one lab per run (found tests of {names}); e.g. pytest labs/lab01_rest"
        )
    state.lab_dir = next(iter(labs), None)
    for item in items:
        marker = item.get_closest_marker("points")
        if marker is None:
            continue
        if not marker.args:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.points needs a number")
        task = str(marker.kwargs.get("task") or _module_task(item))
        origin = _origin_lab(item)
        if origin and state.lab_dir is not None and origin != state.lab_dir.name:
            # A test imported from an earlier lab: the cumulative regression of its contract.
            task = f"Regression {origin}: {task}"
        hidden = item.get_closest_marker("hidden") is not None
        state.points[item.nodeid] = (float(marker.args[0]), task, hidden)


def _origin_lab(item: pytest.Item) -> str | None:
    """The lab whose test module defines the test function (`labs.lab01_rest.tests...`)."""
    function = getattr(item, "function", None)
    module = getattr(function, "__module__", "") or ""
    match = re.search(r"(?:^|\.)(lab\d\d_\w+?)\.tests(?:\.|$)", module)
    return match.group(1) if match else None


def _module_task(item: pytest.Item) -> str:
    doc = getattr(getattr(item, "module", None), "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else "-"


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return "skipped"


def feedback_line(report: pytest.TestReport) -> str:
    """The first meaningful line of a failure, as a student should read it."""
    crash = getattr(report.longrepr, "reprcrash", None)
    message = getattr(crash, "message", None) or str(report.longrepr)
    for prefix in ("AssertionError: ", "Failed: "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    if not lines:
        return "failed"
    line = lines[0]
    if line.startswith("assert ") and len(lines) == 1:
        line = f"check failed: {line}"
    return line if len(line) <= 200 else line[:197] + "..."


def collect_results(state: GradingState, impl: str | None) -> RunResult:
    tests = []
    for nodeid, (points, task, hidden) in state.points.items():
        outcome = state.outcomes.get(nodeid, "not run")
        tests.append(
            GradedTest(
                nodeid=nodeid,
                name=nodeid.rsplit("::", 1)[-1],
                task=task,
                max_score=points,
                score=points if outcome == "passed" else 0.0,
                status=outcome,
                feedback="" if outcome == "passed" else state.feedback.get(nodeid, outcome),
                hidden=hidden,
            )
        )
    # Tasks in name order ("1. ...", "2. ..."); tests in the order they were written.
    tests.sort(key=lambda t: t.task)
    lab = state.lab_dir.name if state.lab_dir else None
    return RunResult(
        lab=lab,
        impl=impl,
        tests=tests,
        execution_time=time.monotonic() - state.started,
    )


def _impl_label(config: pytest.Config, state: GradingState) -> str | None:
    if config.getoption("base_url"):
        return str(config.getoption("base_url"))
    impl = config.getoption("impl")
    if impl:
        return _short(Path(impl).resolve())
    if state.lab_dir is not None:
        return _short(default_impl(state.lab_dir))
    return None


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = config.stash[_STATE]
    if state.points:
        result = collect_results(state, _impl_label(config, state))
        if json_path := config.getoption("grade_json"):
            Path(json_path).write_text(json.dumps(result.gradescope(), indent=2) + "\n")
        if csv_path := config.getoption("grade_csv"):
            _append_csv(Path(csv_path), result)
    if _ci() and state.skipped:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _append_csv(path: Path, result: RunResult) -> None:
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(["timestamp", "lab", "impl", "score", "max_score", "passed", "total"])
        writer.writerow(
            [
                dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                result.lab or "",
                result.impl or "",
                f"{result.score:g}",
                f"{result.max_score:g}",
                sum(t.status == "passed" for t in result.tests),
                len(result.tests),
            ]
        )


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash[_STATE]
    if _ci() and state.skipped:
        terminalreporter.write_sep("=", "CI=true: skipped tests count as failures", red=True)
        for nodeid in state.skipped:
            terminalreporter.write_line(f"SKIPPED {nodeid}: {state.feedback.get(nodeid, '')}")
    if not state.points:
        return
    result = collect_results(state, _impl_label(config, state))
    for line in result.table_lines():
        terminalreporter.write_line(line)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def lab_dir(request: pytest.FixtureRequest) -> Path:
    state = request.config.stash[_STATE]
    if state.lab_dir is None:
        pytest.fail("this fixture only works in a lab's tests (labs/labNN_*/tests)")
    return state.lab_dir


@pytest.fixture(scope="session")
def impl_dir(request: pytest.FixtureRequest, lab_dir: Path) -> Path:
    """The implementation under test: `--impl PATH`, else the lab's solution/ or starter/."""
    option = request.config.getoption("impl")
    path = Path(option).resolve() if option else default_impl(lab_dir)
    if not (path / "app").is_dir():
        pytest.fail(
            f"--impl {path}: expected a folder with an `app` package (app/__main__.py)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def app_env() -> dict[str, str]:
    """Extra environment for the server under test. Labs override this fixture."""
    return {}


@pytest.fixture(scope="session")
def app_server(
    request: pytest.FixtureRequest, impl_dir: Path, app_env: dict[str, str]
) -> Iterator[AppServer]:
    if request.config.getoption("base_url"):
        pytest.skip("needs a server started by the grader (not available with --base-url)")
    with AppServer(impl_dir, app_env) as server:
        yield server


@pytest.fixture(scope="session")
def base_url(request: pytest.FixtureRequest) -> str:
    option = request.config.getoption("base_url")
    if option:
        return str(option).rstrip("/")
    server: AppServer = request.getfixturevalue("app_server")
    return server.base_url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10) as http:
        yield http
