"""The grading harness: points per test, a score table, Gradescope and CSV exports.

Loaded into every pytest run (see `addopts` in pyproject.toml). What it adds:

- markers: `@pytest.mark.points(N, task="1. Create items")` gives a test N points;
  `@pytest.mark.hidden` hides a test's name and feedback from students and drops it from the
  student release;
- options: `--grade-json FILE` (Gradescope `results.json`), `--grade-csv FILE` (append one
  row);
- a score table at the end of every run that collected points tests;
- a test that cannot be graded through `--base-url` (see `shared.testing.http`) is reported as
  such and its points are left out of the maximum, in the table and in the JSON;
- with `CI=true`, a skipped test fails the run: nothing the course promises may be skipped.
- SIGTERM ends a run like Ctrl-C: the fixtures are torn down, so the servers it started stop
  and its database, Redis keys and queues are deleted (a gradebook timeout, a `kill`).

It grades only. The fixtures that run the implementation under test (`--impl`, `--base-url`,
`client`...) are `shared.testing.http`; re-runs of earlier labs' tests are
`shared.testing.regression`.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
import resource
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shared.grading.results import GradedTest, RunResult
from shared.labs import default_impl
from shared.testing.http import NOT_GRADABLE
from shared.testing.regression import graded_lab, origin_lab

REPO_ROOT = Path(__file__).resolve().parents[2]

_STATE = pytest.StashKey["GradingState"]()


# eq=False keeps it hashable: pytest keeps registered plugins in sets.
@dataclass(eq=False)
class GradingState:
    lab_dir: Path | None = None
    started: float = field(default_factory=time.monotonic)
    # nodeid -> (points, task, hidden), in collection order
    points: dict[str, tuple[float, str, bool]] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    feedback: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    # (nodeid, when) -> seconds, for --grade-timing
    durations: dict[tuple[str, str], float] = field(default_factory=dict)

    # Registered as a plugin object in pytest_configure, so this method is a hook.
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.durations[(report.nodeid, report.when)] = report.duration
        previous = self.outcomes.get(report.nodeid)
        if report.skipped and _skip_reason(report).startswith(NOT_GRADABLE):
            self.outcomes[report.nodeid] = "not gradable"
            self.feedback[report.nodeid] = _skip_reason(report)
        elif report.skipped and report.when in ("setup", "call"):
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
    group.addoption("--grade-json", default=None, help="write Gradescope results.json here")
    group.addoption("--grade-csv", default=None, help="append one score row to this CSV")
    group.addoption(
        "--grade-timing", action="store_true",
        help="print where the grading time went: set-up (servers, databases, seeding) and "
        "test calls, the lab's own tests apart from the re-run earlier labs",
    )  # fmt: skip
    group.addoption(
        "--grade-task", default=None, metavar="TASK",
        help="run only the points tests of this task (its exact name, as in the table); "
        "the self-check grades a known-bug variant this way",
    )  # fmt: skip


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
    _interrupt_on_sigterm()


def _interrupt_on_sigterm() -> None:
    """Make SIGTERM end the run like Ctrl-C: pytest then tears the fixtures down, so the
    servers a grading started are stopped and its database, Redis keys and queues deleted.
    With the default handler a `kill` (a timeout of the gradebook, `pkill`) left them behind."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return  # someone chose a handler already (a test runner, an IDE)

    def interrupt(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def item_task(item: pytest.Item) -> str | None:
    """The task a points test counts for (`Regression <lab>: ...` for a re-run), else None."""
    marker = item.get_closest_marker("points")
    if marker is None:
        return None
    task = str(marker.kwargs.get("task") or _module_task(item))
    if origin := origin_lab(item):
        # An earlier lab's test re-run on this lab's code: the cumulative regression.
        task = f"Regression {origin}: {task}"
    return task


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = config.getoption("grade_task")
    if not wanted:
        return
    keep = [item for item in items if item_task(item) == wanted]
    kept = set(keep)
    if not keep:
        known = sorted({t for item in items if (t := item_task(item)) is not None})
        raise pytest.UsageError(
            f"--grade-task {wanted!r} is no task of these tests; tasks: " + "; ".join(known)
        )
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = keep


def pytest_collection_finish(session: pytest.Session) -> None:
    # After -k/-m deselection: only the tests that will run are graded entries.
    config = session.config
    items = session.items
    state = config.stash[_STATE]
    labs = {lab for item in items if (lab := graded_lab(item)) is not None}
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
        task = item_task(item) or "-"
        hidden = item.get_closest_marker("hidden") is not None
        state.points[item.nodeid] = (float(marker.args[0]), task, hidden)


def _module_task(item: pytest.Item) -> str:
    doc = getattr(getattr(item, "module", None), "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else "-"


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return "skipped"


# The line of a traceback that names the exception ("NotImplementedError: TODO(lab 5) ...").
_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b:?")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    line = _clip(line, 300)
    # A message that quotes a server's log or a command's output ("Its log (...):", "locust
    # said:") names the cause in the quote's last error (the exception that stopped it), not
    # in its first line. (pytest's own explanation of the assert, from the first "assert ..."
    # line on, is not part of the quote.)
    quoted = next((i for i, ln in enumerate(lines) if i and ln.startswith("assert ")), len(lines))
    lines = lines[:quoted]
    heads = [i for i, ln in enumerate(lines) if ln.endswith(":")]
    if heads:
        tail = lines[heads[-1] + 1 :]
        errors = [ln for ln in tail if _ERROR_LINE.match(ln)]
        todos = [ln for ln in tail if "TODO(lab" in ln]
        if errors:
            line += f" | the last error: {_clip(errors[-1], 160)}"
        elif todos:
            # A stub that only logs (a warning, no exception) is the likeliest cause.
            line += f" | not written yet: {_clip(todos[-1], 160)}"
        elif not tail:
            line += " | (the log is empty)" if "log" in lines[heads[-1]].lower() else " | (empty)"
        elif line.endswith(":"):
            # A quote of table rows: a line ending in "Output ends:" would read as cut off.
            line += " (see the traceback)"
    return line


def collect_results(state: GradingState, impl: str | None) -> RunResult:
    tests = []
    for nodeid, (points, task, hidden) in state.points.items():
        outcome = state.outcomes.get(nodeid, "not run")
        gradable = outcome != "not gradable"
        tests.append(
            GradedTest(
                nodeid=nodeid,
                name=nodeid.rsplit("::", 1)[-1],
                task=task,
                # A test this run cannot grade counts neither for nor against: its points
                # leave the maximum and are reported as left out.
                max_score=points if gradable else 0.0,
                score=points if outcome == "passed" else 0.0,
                status=outcome,
                feedback="" if outcome == "passed" else state.feedback.get(nodeid, outcome),
                hidden=hidden,
                left_out=0.0 if gradable else points,
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
        cpu_time=_cpu_seconds(),
        tests_path=_short(state.lab_dir) if state.lab_dir else None,
    )


def _cpu_seconds() -> float:
    """CPU time of this run and the processes it started and waited for (servers, alembic)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


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


# trylast: after the session's fixtures are torn down, so the servers they started have
# exited and their CPU time is counted.
@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = config.stash[_STATE]
    if state.points and not config.option.collectonly:
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
    if config.getoption("grade_timing"):
        for line in timing_lines(state):
            terminalreporter.write_line(line)
    if not state.points or config.option.collectonly:
        return  # (nothing ran when only collecting: a table of zeros would read as a grade)
    result = collect_results(state, _impl_label(config, state))
    for line in result.table_lines():
        terminalreporter.write_line(line)


def timing_lines(state: GradingState, top: int = 8) -> list[str]:
    """Where the run's time went: per phase, own tests vs regressions, the slowest steps.

    A session fixture's cost (a server start, a database, seeding) shows in the set-up of the
    first test that needs it, so the slowest set-ups name what to look at first.
    """
    totals: dict[tuple[str, str], float] = {}
    for (nodeid, when), seconds in state.durations.items():
        kind = "regression" if "/regression/" in nodeid else "own"
        totals[(kind, when)] = totals.get((kind, when), 0.0) + seconds
    elapsed = time.monotonic() - state.started
    lines = ["", f"Where the time went ({elapsed:.1f}s in all, the rest is start-up/collection):"]
    for kind in ("own", "regression"):
        parts = [f"{when} {totals.get((kind, when), 0.0):6.1f}s"
                 for when in ("setup", "call", "teardown")]  # fmt: skip
        lines.append(f"  {kind + ' tests':<17} " + "  ".join(parts))
    lines.append(f"  slowest {top}:")
    slowest = sorted(state.durations.items(), key=lambda kv: -kv[1])[:top]
    for (nodeid, when), seconds in slowest:
        lines.append(f"  {seconds:6.1f}s {when:<8} {nodeid.split('/tests/', 1)[-1]}"[:100])
    return lines
