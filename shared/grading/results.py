"""The score of one grading run, and its views: the table, Gradescope JSON, a CSV row.

The table is written for a student at a terminal: at most 100 columns, one row per test under
its task, and below it "what to fix", each cause said once. Failures that share one cause (20
tests failing because `POST /items` answers 501) are one entry with their count and points.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

WIDTH = 100
STATUS_MARK = {
    "passed": "PASS", "failed": "FAIL", "error": "ERROR", "skipped": "SKIP", "not run": "-",
    "not gradable": "N/A",
}  # fmt: skip


@dataclass(frozen=True)
class GradedTest:
    nodeid: str
    name: str
    task: str
    max_score: float
    score: float
    status: str
    feedback: str
    hidden: bool = False
    # Points of a test this run could not grade (e.g. through --base-url): out of max_score.
    left_out: float = 0.0


@dataclass(frozen=True)
class Cause:
    """One thing to fix, and the visible tests that fail because of it."""

    message: str
    tests: tuple[GradedTest, ...]

    @property
    def points(self) -> float:
        return sum(t.max_score - t.score for t in self.tests)


def cause_key(feedback: str) -> str:
    """The part of a failure message that names its cause, without the test's own data.

    Tests make uniquely named items, so two failures of one cause differ only in names, ids
    and markers: hex tokens, numbers in paths and `id`s are blanked out before comparing.
    """
    # A test run's own names (queues, exchanges, key prefixes: `hl_test.<run>.<fixture>...`).
    key = re.sub(r"\bhl_\w*[.:][\w.:-]*", "hl_#", feedback)
    key = re.sub(r"[0-9a-f]{8,}", lambda m: "#" if re.search(r"\d", m[0]) else m[0], key)
    key = re.sub(r"(?<=/)\d+\b", "#", key)
    key = re.sub(r"\b(id|ids|item)\b([ =:'\"]+)\d+", r"\1\2#", key)
    # A server error is one cause whatever the test expected: the route is not written yet
    # (501) or it crashes (500), and every test that goes through it fails the same way.
    # The answer's body is left out: messages quote it in different shapes (plain, in a list).
    if crash := re.search(r"\b(GET|POST|PUT|PATCH|DELETE) (/[^\s?]*)\S* answered (5\d\d)\b", key):
        return f"{crash[1]} {crash[2]} answered {crash[3]}"
    return key


def group_causes(tests: Iterable[GradedTest]) -> list[Cause]:
    """Failed visible tests grouped by cause, the cause that costs most points first."""
    groups: dict[str, list[GradedTest]] = {}
    for test in tests:
        if test.status in ("passed", "not gradable") or test.hidden:
            continue
        groups.setdefault(cause_key(test.feedback or test.status), []).append(test)
    causes = [Cause(members[0].feedback or members[0].status, tuple(members))
              for members in groups.values()]  # fmt: skip
    return sorted(causes, key=lambda c: (-c.points, -len(c.tests)))


@dataclass
class RunResult:
    lab: str | None
    impl: str | None
    tests: list[GradedTest] = field(default_factory=list)
    execution_time: float = 0.0
    # CPU seconds of the grading run and its child processes (less sensitive to a busy
    # machine than execution_time, the wall-clock time).
    cpu_time: float = 0.0
    # The lab's tests folder as the student types it (for the "traceback" command).
    tests_path: str | None = None

    @property
    def score(self) -> float:
        return sum(t.score for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t.max_score for t in self.tests)

    @property
    def left_out(self) -> float:
        return sum(t.left_out for t in self.tests)

    @property
    def not_gradable(self) -> list[GradedTest]:
        return [t for t in self.tests if t.status == "not gradable"]

    def gradescope(self) -> dict[str, Any]:
        """Gradescope's results.json (autograder specification)."""
        tests = []
        for number, test in enumerate(self.tests, start=1):
            entry: dict[str, Any] = {
                # Gradescope hides a hidden entry whole, so its real name can stay.
                "name": f"{test.task}: {test.name}",
                "number": str(number),
                "score": test.score,
                "max_score": test.max_score,
                "status": "failed" if test.status in ("failed", "error", "skipped", "not run")
                else "passed",
                "output": test.feedback or "passed",
                "visibility": "hidden" if test.hidden else "visible",
            }  # fmt: skip
            if test.left_out:
                entry["output"] = f"{test.feedback} ({test.left_out:g} points left out)"
                entry["extra_data"] = {"not_gradable": True, "points_left_out": test.left_out}
            tests.append(entry)
        label = f"{self.lab or 'tests'} graded on {self.impl or '?'}"
        output = f"{label}: {self.score:g} / {self.max_score:g} points"
        if self.left_out:
            output += (
                f"; {len(self.not_gradable)} tests ({self.left_out:g} points) are not gradable "
                "this way and are left out of the maximum"
            )
        result: dict[str, Any] = {
            "score": self.score,
            "max_score": self.max_score,
            "execution_time": round(self.execution_time, 2),
            "output": output,
            "visibility": "visible",
            "stdout_visibility": "hidden",
            "tests": tests,
        }
        extra: dict[str, Any] = {"cpu_time": round(self.cpu_time, 2)}
        if self.left_out:
            extra["points_left_out"] = self.left_out
            extra["not_gradable"] = [t.nodeid for t in self.not_gradable]
        result["extra_data"] = extra
        return result

    def table_lines(self, width: int = WIDTH) -> list[str]:
        """The score table printed at the end of a run: what passed and what to fix."""
        causes = group_causes(self.tests)
        label = {id(t): _letter(i) for i, c in enumerate(causes) for t in c.tests}
        name_width = width - 2 - 22
        title = f" score: {self.lab or 'tests'} on {self.impl or '?'} "
        lines = ["", _center(title, width)]
        lines.append(f"  {'Test':<{name_width}}{'Points':>8}  {'Status':<6} {'Fix':>3}")
        previous_task = None
        for test in self.tests:
            if test.task != previous_task:
                previous_task = test.task
                task_tests = [t for t in self.tests if t.task == test.task]
                got = sum(t.score for t in task_tests)
                most = sum(t.max_score for t in task_tests)
                lines += _task_line(test.task, f"{got:g}/{most:g}", width)
            name = "(hidden test)" if test.hidden else test.name
            points = f"{test.score:g}/{test.max_score + test.left_out:g}"
            mark = STATUS_MARK.get(test.status, test.status.upper())
            fix = label.get(id(test), "")
            for i, part in enumerate(_wrap(name, name_width)):
                if i == 0:
                    lines.append(f"  {part:<{name_width}}{points:>8}  {mark:<6} {fix:>3}")
                else:
                    lines.append(f"    {part}")
        lines += self._fix_lines(causes, width)
        lines += self._left_out_lines(width)
        hidden_failed = sum(t.hidden and t.status not in ("passed", "not gradable")
                            for t in self.tests)  # fmt: skip
        if hidden_failed:
            lines.append(f"({_count(hidden_failed, 'hidden test')} failed; no feedback is shown.)")
        passed = sum(t.status == "passed" for t in self.tests)
        graded = len(self.tests) - len(self.not_gradable)
        lines.append("")
        lines.append(
            f"TOTAL {self.score:g} / {self.max_score:g} points "
            f"({passed} of {graded} graded tests passed)"
        )
        return lines

    def _fix_lines(self, causes: list[Cause], width: int) -> list[str]:
        if not causes:
            return []
        lines = ["", "What to fix (each cause once, the one that costs most points first):"]
        for i, cause in enumerate(causes):
            indent = " " * 5
            body = textwrap.wrap(cause.message, width - len(indent), break_long_words=True,
                                 break_on_hyphens=False) or [cause.message]  # fmt: skip
            lines.append(f"  {_letter(i):>2} {body[0]}")
            lines += [indent + part for part in body[1:]]
            names = [t.name for t in cause.tests]
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            summary = f"-> {_count(len(names), 'test')}, {_count(cause.points, 'point')}: {shown}"
            lines += textwrap.wrap(summary, width, initial_indent=indent,
                                   subsequent_indent=indent + "   ")  # fmt: skip
        first = causes[0].tests[0]
        impl = f" --impl {self.impl}" if self.impl and "://" not in self.impl else ""
        command = f".venv/bin/pytest {self.tests_path or f'labs/{self.lab}'}{impl} -k {first.name}"
        lines.append("")
        lines += textwrap.wrap(
            f"A failure with its traceback: {command}", width, subsequent_indent="    ",
            break_long_words=False, break_on_hyphens=False,
        )  # fmt: skip
        return lines

    def _left_out_lines(self, width: int) -> list[str]:
        missing = self.not_gradable
        if not missing:
            return []
        lines = [""]
        lines += textwrap.wrap(
            f"Not gradable through --base-url: {_count(len(missing), 'test')}, "
            f"{_count(self.left_out, 'point')}, "
            "left out of the maximum (N/A above). Why, and the option that grades them:",
            width,
        )
        for reason in sorted({t.feedback.split(": ", 1)[-1] for t in missing}):
            count = sum(t.feedback.split(": ", 1)[-1] == reason for t in missing)
            text = f"{_count(count, 'test')}: {reason}"
            lines += textwrap.wrap(text, width, initial_indent="  - ", subsequent_indent="    ")
        return lines


def _count(n: float, noun: str) -> str:
    """`1 test`, `3 tests`, `2.5 points`."""
    return f"{n:g} {noun}" if n == 1 else f"{n:g} {noun}s"


def _letter(index: int) -> str:
    """A, B, ..., Z, AA, AB, ...: short labels linking a table row to its cause."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _center(title: str, width: int) -> str:
    if len(title) >= width - 4:
        return title.strip()
    return f"{title:=^{width}}"


def _task_line(task: str, points: str, width: int) -> list[str]:
    room = width - len(points) - 2
    parts = _wrap(task, room)
    first = f"{parts[0]:<{room}}  {points}"
    return [first, *(f"  {p}" for p in parts[1:])]


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False) or [text]
