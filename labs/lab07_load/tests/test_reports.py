"""Lab 7, task 2: a headless run writes its reports.

`load/locust.conf` makes every run write the CSV statistics (with the full history) and the
HTML report under `reports/` of the folder locust runs in. The files must exist and parse.
"""

from __future__ import annotations

import csv

import pytest

from labs.lab07_load.tests.loadrun import REPORTS, TASKS, LoadRun

TASK = "2. Reports of a headless run"


@pytest.mark.points(10, task=TASK)
def test_headless_run_writes_csv_and_html_reports(normal_run: LoadRun) -> None:
    missing = [REPORTS[name] for name in REPORTS if not normal_run.report(name).is_file()]
    assert not missing, (
        f"the headless run did not write {', '.join(missing)}: set csv, csv-full-history and "
        f"html in load/locust.conf (paths relative to the folder locust runs in)"
    )
    names = {(r["Type"], r["Name"]) for r in normal_run.stats_rows()}
    assert ("", "Aggregated") in names, "reports/load_stats.csv has no Aggregated row"
    absent = [f"{m} {n}" for m, n in TASKS if (m, n) not in names]
    assert not absent, f"reports/load_stats.csv has no row for {', '.join(absent)}"
    with normal_run.report("history").open(newline="") as fh:
        history = list(csv.DictReader(fh))
    per_second = [r for r in history if r.get("Name") == "Aggregated"]
    assert len(per_second) >= 5, (
        f"reports/load_stats_history.csv has {len(per_second)} Aggregated rows for a 12 s "
        f"run: csv-full-history should record every second"
    )
    assert any(r["Name"] == "/items" for r in history), (
        "reports/load_stats_history.csv has no per-request rows: set csv-full-history = true"
    )
    html = normal_run.report("html").read_text(errors="replace")
    assert "<html" in html.lower() and "/items/{id}" in html, (
        "reports/load.html is not locust's HTML report of this run"
    )
