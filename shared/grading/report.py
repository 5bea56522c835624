"""The class report: `report.html` and its PNG charts, beside the gradebook.

Written by `make grade` from the graded results; plain HTML and local images, so it opens
from disk without a network. It shows the score distribution per lab, the pass rate per task
and per test, the causes of failure most common in the class (failure messages grouped as in
the students' score table), the submissions whose copy of our tests was edited, and a row per
student linking to their results.
"""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from shared.grading.results import cause_key


class Grade(Protocol):
    student: str
    lab: str
    score: float
    max_score: float
    tests: list[dict[str, Any]]
    note: str
    tests_differ: list[str]
    seconds: float


@dataclass(frozen=True)
class TestStat:
    lab: str
    task: str
    test: str
    passed: int
    graded: int

    @property
    def rate(self) -> float:
        return self.passed / self.graded if self.graded else 0.0


def split_name(entry_name: str) -> tuple[str, str]:
    """(task, test) from a results.json entry name `<task>: <test>`."""
    task, _, test = entry_name.rpartition(": ")
    return task, test


def test_stats(grades: Sequence[Grade]) -> list[TestStat]:
    counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for g in grades:
        for t in g.tests:
            if not t.get("max_score"):
                continue
            task, test = split_name(t["name"])
            cell = counts[(g.lab, task, test)]
            cell[0] += t["status"] == "passed"
            cell[1] += 1
    return [TestStat(lab, task, test, p, n) for (lab, task, test), (p, n) in counts.items()]


def common_causes(grades: Sequence[Grade], top: int = 15) -> list[tuple[str, str, int, int]]:
    """(lab, message, students, tests) for the failure causes most students share.

    Submissions that scored nothing (not started, or not running) are left out: their causes
    are "write the code", not the mistakes a class makes.
    """
    students: dict[tuple[str, str], set[str]] = defaultdict(set)
    tests: Counter[tuple[str, str]] = Counter()
    example: dict[tuple[str, str], str] = {}
    for g in grades:
        if not g.score:
            continue
        for t in g.tests:
            if t["status"] == "passed" or not t.get("max_score"):
                continue
            key = (g.lab, cause_key(t["output"]))
            students[key].add(g.student)
            tests[key] += 1
            example.setdefault(key, t["output"])
    ranked = sorted(students, key=lambda k: (-len(students[k]), -tests[k]))
    return [(k[0], example[k], len(students[k]), tests[k]) for k in ranked[:top]]


def _score_chart(grades: Sequence[Grade], labs: list[str], path: Path) -> None:
    fig, axes = plt.subplots(1, len(labs), figsize=(3.2 * len(labs), 2.8), squeeze=False)
    for ax, lab in zip(axes[0], labs, strict=True):
        marks = [100 * g.score / g.max_score for g in grades if g.lab == lab and g.max_score]
        ax.hist(marks, bins=[0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100.01], color="#4c72b0")
        ax.set_title(lab, fontsize=9)
        ax.set_xlabel("score, % of the maximum", fontsize=8)
        ax.set_xlim(0, 100)
        ax.tick_params(labelsize=7)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].set_ylabel("students", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _task_chart(stats: list[TestStat], lab: str, path: Path) -> None:
    tasks: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s in stats:
        if s.lab == lab:
            tasks[s.task][0] += s.passed
            tasks[s.task][1] += s.graded
    names = sorted(tasks)
    rates = [100 * tasks[n][0] / tasks[n][1] for n in names]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(names) + 0.9))
    ax.barh(range(len(names)), rates, color="#55a868")
    ax.set_yticks(range(len(names)), [n if len(n) <= 60 else n[:57] + "..." for n in names],
                  fontsize=7)  # fmt: skip
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("tests passed, % (all students)", fontsize=8)
    ax.set_title(f"{lab}: pass rate per task", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(out: Path, grades: Sequence[Grade], labs: list[str]) -> Path:
    """Write `report.html` and its charts into `out`; return the HTML's path."""
    charts = out / "charts"
    charts.mkdir(parents=True, exist_ok=True)
    e = html.escape
    parts = [
        "<!doctype html><meta charset='utf-8'><title>Class report</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:3px 8px;font-size:13px;text-align:left}.bad{color:#b00}</style>",
        "<h1>Class report</h1>",
    ]
    students = sorted({g.student for g in grades})
    parts.append(f"<p>{len(students)} students, labs {', '.join(map(e, labs))}. "
                 "Scores and results: <a href='gradebook.csv'>gradebook.csv</a>.</p>")  # fmt: skip

    _score_chart(grades, labs, charts / "scores.png")
    parts += ["<h2>Score distribution per lab</h2>", "<img src='charts/scores.png'>"]

    stats = test_stats(grades)
    parts.append("<h2>Pass rate per task and per test</h2>")
    for lab in labs:
        if not any(s.lab == lab for s in stats):
            continue
        _task_chart(stats, lab, charts / f"tasks_{lab}.png")
        parts.append(f"<h3>{e(lab)}</h3><img src='charts/tasks_{e(lab)}.png'>")
        rows = [
            [e(s.task), e(s.test), f"{s.passed}/{s.graded}", f"{100 * s.rate:.0f}%"]
            for s in sorted((s for s in stats if s.lab == lab), key=lambda s: (s.rate, s.task))
        ]
        parts.append("<details><summary>every test, hardest first</summary>"
                     + _table(["task", "test", "passed", "rate"], rows) + "</details>")  # fmt: skip

    causes = common_causes(grades)
    parts.append("<h2>Most common causes of failure</h2>")
    zero = sorted({f"{g.student}/{g.lab}" for g in grades if not g.score})
    if zero:
        parts.append(f"<p>Left out: {len(zero)} submissions scored 0 (not started or not "
                     f"running): {e(', '.join(zero))}.</p>")  # fmt: skip
    if causes:
        rows = [[e(lab), e(msg), str(n), str(t)] for lab, msg, n, t in causes]
        parts.append(_table(["lab", "what to fix (first message seen)", "students", "tests"],
                            rows))  # fmt: skip
    else:
        parts.append("<p>None: every graded test passed.</p>")

    tampered = [g for g in grades if g.tests_differ]
    parts.append("<h2>Tampered submissions</h2>")
    if tampered:
        rows = [[e(g.student), e(g.lab), e(", ".join(g.tests_differ))] for g in tampered]
        parts.append("<p>Their copy of our tests differs from ours (our tests were used).</p>")
        parts.append(_table(["student", "lab", "test files that differ"], rows))
    else:
        parts.append("<p>None: no submitted copy of our tests was edited.</p>")

    by_key = {(g.student, g.lab): g for g in grades}
    rows = []
    for student in students:
        row = [f"<a href='{e(student)}/results.json'>{e(student)}</a>"]
        total = most = 0.0
        for lab in labs:
            g = by_key.get((student, lab))
            if g is None:
                row.append("")
                continue
            total, most = total + g.score, most + g.max_score
            cell = f"<a href='{e(student)}/{e(lab)}/results.json'>{g.score:g}/{g.max_score:g}</a>"
            notes = [g.note] if g.note else []
            if g.tests_differ:
                notes.append("tests edited")
            if notes:
                cell += f" <span class='bad'>({e('; '.join(notes))})</span>"
            row.append(cell)
        rows.append([*row, f"{total:g}/{most:g}"])
    parts += ["<h2>Students</h2>", _table(["student", *labs, "total"], rows)]
    page = out / "report.html"
    page.write_text("\n".join(parts) + "\n")
    return page
