"""Every dashboard panel's query, evaluated on a real Prometheus scraping a running API and worker.

A real `prometheus` process (Debian's package) scrapes the session's API and worker every second,
with the alert rules loaded. Traffic sends jobs of every operation, identical repeats, a job
the worker cannot decode and refused requests; then each panel's PromQL, with Grafana's
variables substituted, goes through Prometheus's HTTP API and must parse and return data.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from devtools.launch import Child, wait_for

from grafana.dashcheck import (
    RULES_DIR,
    LocalPrometheus,
    Prometheus,
    PrometheusError,
    ScrapeTarget,
    grafana_variables,
    load_dashboards,
    panel_queries,
    substitute,
    variable_values,
)
from grafana.traffic import Traffic, drive, wait_final
from imgproc.config import Settings

OPERATIONS = ["crop", "grayscale", "resize"]
SCRAPE = "1s"
RATE_INTERVAL = "5s"  # Grafana: max(4 x scrape interval, $__interval + scrape interval)
# Series names in our queries (functions are followed by "(", labels are not one of these).
METRIC = re.compile(r"\b(imgproc_\w+|http_\w+|up|scrape_\w+)\b(?!\s*\()")


@dataclass
class Window:
    start: float
    end: float
    traffic: Traffic


@pytest.fixture(scope="module")
def prometheus(api_url: str, worker: Child, settings: Settings) -> Iterator[Prometheus]:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed (Debian: apt-get install prometheus)")
    targets = [
        ScrapeTarget("imgproc-api", api_url.removeprefix("http://")),
        ScrapeTarget("imgproc-worker", f"127.0.0.1:{settings.worker_metrics_port}"),
    ]
    rules = sorted(RULES_DIR.glob("*.yml"))
    with LocalPrometheus(targets, scrape_interval=SCRAPE, rule_files=rules) as local:
        client = Prometheus(local.url)

        def both_up() -> bool:
            found = {t["labels"]["job"]: t["health"] for t in client.targets()}
            return found == {"imgproc-api": "up", "imgproc-worker": "up"}

        try:
            wait_for(both_up, timeout=20, what=f"Prometheus to scrape both targets\n{local.log()}")
            yield client
        finally:
            client.close()


def scalar(prometheus: Prometheus, expr: str) -> float:
    result = prometheus.query(expr)
    return result[0].points[0][1] if result else 0.0


@pytest.fixture(scope="module")
def window(client: httpx.Client, worker: Child, prometheus: Prometheus) -> Window:
    """Drive traffic while Prometheus scrapes; return the time window that holds it."""
    stack = client  # the API, with the session's worker behind it
    start = time.time() - 2
    failed_before = scalar(prometheus, 'sum(imgproc_jobs_failed_total{reason="invalid_image"})')
    traffic = drive(stack, rounds=8, pause=1.0, burst_every=4, burst=15)
    counts = wait_final(stack, traffic)
    assert counts["failed"] == traffic.failing == 1, counts
    assert counts["done"] == len(traffic.task_ids) - 1, counts
    # The worker's failure reached a scrape, then two more scrapes close the rate windows.
    wait_for(
        lambda: (
            scalar(prometheus, 'sum(imgproc_jobs_failed_total{reason="invalid_image"})')
            >= failed_before + 1
        ),
        timeout=15,
        what="Prometheus to see the failed job",
    )
    time.sleep(2.5)
    return Window(start, time.time(), traffic)


def evaluate(
    prometheus: Prometheus, board: dict[str, Any], window: Window, choices: dict[str, str]
) -> tuple[int, list[str]]:
    """Run every query of `board`; return (queries run, problems)."""
    variables = grafana_variables(
        board,
        rate_interval=RATE_INTERVAL,
        interval="1s",
        range_seconds=int(window.end - window.start),
        choices=choices,
    )
    problems: list[str] = []
    count = 0
    for panel, target in panel_queries(board):
        expr = substitute(target["expr"], variables)
        where = f"{board['uid']} / {panel['title']!r} {target['refId']} {choices or ''}: {expr}"
        count += 1
        try:
            result = prometheus.query_range(expr, window.start, window.end, 1)
        except PrometheusError as exc:
            problems.append(f"{where}\n    -> {exc}")
            continue
        if not any(series.finite() for series in result):
            problems.append(f"{where}\n    -> no data ({len(result)} series, none finite)")
    return count, problems


def test_every_panel_query_parses_and_returns_data(
    prometheus: Prometheus, window: Window, capsys: pytest.CaptureFixture[str]
) -> None:
    panels = queries = 0
    problems: list[str] = []
    for board in load_dashboards().values():
        count, found = evaluate(prometheus, board, window, {})
        queries += count
        problems += found
        panels += sum(1 for p in board["panels"] if p["type"] != "row")
        # With one operation chosen, too: the panels filtered by $operation still show data.
        for operation in OPERATIONS if board.get("templating", {}).get("list") else []:
            count, found = evaluate(prometheus, board, window, {"operation": operation})
            queries += count
            problems += found
    assert not problems, f"{len(problems)} of {queries} queries failed:\n" + "\n".join(problems)
    with capsys.disabled():
        print(f"\n  dashboards: {panels} panels, {queries} queries evaluated, all returned data")


def test_every_series_the_dashboards_name_exists(prometheus: Prometheus, window: Window) -> None:
    """`or vector(0)` keeps a panel alive even with a misspelt metric: check the names too."""
    known = set(prometheus.label_values("__name__", '{job=~"imgproc-.*"}')) | {"up"}
    named = {
        name
        for board in load_dashboards().values()
        for _, target in panel_queries(board)
        for name in METRIC.findall(target["expr"])
    }
    # Buckets, sums and counts are the histograms' own series.
    assert named, "no metric names found in the dashboards"
    assert named <= known, f"not exported by the API or the worker: {sorted(named - known)}"


def test_the_operation_variable_offers_every_operation(
    prometheus: Prometheus, window: Window
) -> None:
    board = load_dashboards()["imgproc-debug.json"]
    (variable,) = board["templating"]["list"]
    assert sorted(variable_values(prometheus, variable)) == OPERATIONS


def test_the_failed_job_shows_with_its_operation_and_reason(
    prometheus: Prometheus, window: Window
) -> None:
    seconds = int(window.end - window.start) + 5
    expr = f"sum by (operation, reason) (increase(imgproc_jobs_failed_total[{seconds}s])) > 0.5"
    found = {(s.labels["operation"], s.labels["reason"]) for s in prometheus.query(expr)}
    assert ("grayscale", "invalid_image") in found, found
    done = prometheus.query(
        f'sum by (operation) (increase(imgproc_jobs_processed_total{{outcome="done"}}[{seconds}s]))'
    )
    by_operation = {s.labels["operation"]: s.points[0][1] for s in done}
    for operation, sent in window.traffic.by_operation.items():
        # increase() extrapolates to the window's edges, so it may overshoot a little.
        assert by_operation.get(operation, 0) >= sent * 0.9, (operation, sent, by_operation)


def test_alert_rules_evaluate_on_the_real_series(prometheus: Prometheus, window: Window) -> None:
    rules = prometheus.rules()
    assert len(rules) == 5, [r["name"] for r in rules]
    unhealthy = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not unhealthy, unhealthy
    states = {r["name"]: r["state"] for r in rules}
    assert states["ImgprocNoWorkerUp"] == "inactive", "a worker is up"


def test_panels_render_to_png(prometheus: Prometheus, window: Window, tmp_path: Path) -> None:
    from grafana.render import render_all

    paths = render_all(
        prometheus, tmp_path, start=window.start, end=window.end, rate_interval="5s", step=1
    )
    assert sorted(p.name for p in paths) == ["imgproc-debug.png", "imgproc-overview.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000


def test_a_dead_or_broken_query_is_reported(prometheus: Prometheus, window: Window) -> None:
    """Proof the check has teeth: a misspelt series and a PromQL syntax error both fail it."""
    target = {"refId": "A", "datasource": {"type": "prometheus", "uid": "prometheus"}}
    board = {
        "uid": "teeth",
        "panels": [
            {"id": 1, "title": "typo", "targets": [{**target, "expr": "imgproc_jobs_procesed"}]},
            {"id": 2, "title": "syntax", "targets": [{**target, "expr": "sum(rate(up[5s])"}]},
        ],
    }
    count, problems = evaluate(prometheus, board, window, {})
    assert count == 2 and len(problems) == 2, problems
    assert "no data" in problems[0] and "bad_data" in problems[1], problems
