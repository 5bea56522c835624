"""The score of one grading run, and its three views: table, Gradescope JSON, CSV row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STATUS_MARK = {
    "passed": "PASS", "failed": "FAIL", "error": "ERROR", "skipped": "SKIP", "not run": "-"
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


@dataclass
class RunResult:
    lab: str | None
    impl: str | None
    tests: list[GradedTest] = field(default_factory=list)
    execution_time: float = 0.0

    @property
    def score(self) -> float:
        return sum(t.score for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t.max_score for t in self.tests)

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
                "status": "passed" if test.status == "passed" else "failed",
                "output": test.feedback or "passed",
                "visibility": "hidden" if test.hidden else "visible",
            }
            tests.append(entry)
        label = f"{self.lab or 'tests'} graded on {self.impl or '?'}"
        return {
            "score": self.score,
            "max_score": self.max_score,
            "execution_time": round(self.execution_time, 2),
            "output": f"{label}: {self.score:g} / {self.max_score:g} points",
            "visibility": "visible",
            "stdout_visibility": "hidden",
            "tests": tests,
        }

    def table_lines(self) -> list[str]:
        """The score table printed at the end of a run: what passed and what to fix."""
        rows = []
        for test in self.tests:
            name = "(hidden test)" if test.hidden else test.name
            feedback = "" if test.hidden else test.feedback
            rows.append(
                (
                    test.task,
                    name,
                    f"{test.score:g}/{test.max_score:g}",
                    STATUS_MARK.get(test.status, test.status.upper()),
                    feedback,
                )
            )
        headers = ("Task", "Test", "Points", "Status", "What to fix")
        widths = [
            min(max(len(r[i]) for r in [headers, *rows]), cap)
            for i, cap in enumerate((46, 52, 7, 6, 0))
        ]

        def fmt(row: tuple[str, ...]) -> str:
            cells = [_fit(row[i], widths[i]) for i in range(4)]
            return "  ".join(cells) + ("  " + row[4] if row[4] else "")

        title = f" score: {self.lab or 'tests'} on {self.impl or '?'} "
        rule = (*("-" * w for w in widths[:4]), "")
        lines = ["", f"{title:=^100}", fmt(headers), fmt(rule)]
        previous_task = None
        for row in rows:
            shown = row if row[0] != previous_task else ("", *row[1:])
            previous_task = row[0]
            lines.append(fmt(shown))
        passed = sum(t.status == "passed" for t in self.tests)
        failed = [t for t in self.tests if t.status != "passed" and not t.hidden]
        if failed:
            lines.append("")
            impl = f" --impl {self.impl}" if self.impl else ""
            command = f".venv/bin/pytest labs/{self.lab}{impl} -k {failed[0].name}"
            lines.append(f"Details of a failure (the traceback): {command}")
        lines.append("")
        lines.append(
            f"TOTAL {self.score:g} / {self.max_score:g} points "
            f"({passed} of {len(self.tests)} graded tests passed)"
        )
        return lines


def _fit(text: str, width: int) -> str:
    if len(text) > width:
        return text[: max(width - 1, 0)] + "~"
    return text.ljust(width)
