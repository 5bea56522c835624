"""The Grafana dashboards and provisioning load as Grafana expects (no Grafana needed).

The live half (every panel's query on a real Prometheus) is test_dashboards_live.py.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from grafana.dashcheck import (
    DASHBOARDS_DIR,
    GRAFANA_DIR,
    all_panels,
    datasource_uids,
    grafana_variables,
    lint,
    load_dashboards,
    panel_queries,
    substitute,
)

REPO = GRAFANA_DIR.parent
COMPOSE = REPO / "docker-compose.yml"


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    found = load_dashboards()
    assert set(found) == {"imgproc-overview.json", "imgproc-debug.json"}
    return found


@pytest.fixture(scope="module")
def uids() -> set[str]:
    return datasource_uids()


def test_provisioning_has_one_prometheus_with_a_fixed_uid(uids: set[str]) -> None:
    assert uids == {"prometheus"}
    (path,) = (GRAFANA_DIR / "provisioning" / "datasources").glob("*.yml")
    (source,) = yaml.safe_load(path.read_text())["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090", "the compose service's address"


def test_the_dashboard_provider_reads_where_compose_mounts_the_dashboards() -> None:
    (path,) = (GRAFANA_DIR / "provisioning" / "dashboards").glob("*.yml")
    (provider,) = yaml.safe_load(path.read_text())["providers"]
    mounted = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]["volumes"]
    expected = f"./{DASHBOARDS_DIR.relative_to(REPO)}:{provider['options']['path']}:ro"
    assert expected in mounted, f"compose must mount {expected}, it mounts {mounted}"
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounted


def test_dashboards_would_load(dashboards: dict[str, dict[str, Any]], uids: set[str]) -> None:
    problems = [p for name, board in dashboards.items() for p in lint(name, board, uids)]
    assert not problems, "\n".join(problems)
    assert len({board["uid"] for board in dashboards.values()}) == len(dashboards)


def test_the_class_dashboard_is_small_and_the_debugging_one_complete(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    demo = [p for p in all_panels(dashboards["imgproc-overview.json"]) if p["type"] != "row"]
    assert len(demo) <= 8, "a few big panels for a projector"
    debug_exprs = " ".join(t["expr"] for _, t in panel_queries(dashboards["imgproc-debug.json"]))
    for series in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "imgproc_jobs_submitted_total",
        "imgproc_jobs_processed_total",
        "imgproc_jobs_failed_total",
        "imgproc_job_processing_seconds_bucket",
        "imgproc_queue_depth",
        "imgproc_oldest_queued_job_age_seconds",
        "imgproc_job_retries_total",
        "imgproc_reconciler_requeued_total",
        "imgproc_enqueue_failures_total",
        "imgproc_cache_requests_total",
        'up{job="imgproc-worker"}',
    ):
        assert series in debug_exprs, f"the debugging dashboard does not chart {series}"


def test_variables_are_substituted_as_grafana_does(dashboards: dict[str, dict[str, Any]]) -> None:
    board = dashboards["imgproc-debug.json"]
    values = grafana_variables(board, rate_interval="20s", interval="5s", range_seconds=600)
    assert values["operation"] == ".*", "All = the variable's allValue"
    expr = 'rate(x{operation=~"$operation"}[$__rate_interval]) + y[$__range] + ${operation}'
    assert substitute(expr, values) == 'rate(x{operation=~".*"}[20s]) + y[600s] + .*'
    with pytest.raises(KeyError, match="nope"):
        substitute("up[$nope]", values)


def broken(board: dict[str, Any], change: str) -> dict[str, Any]:
    bad = copy.deepcopy(board)
    panels = [p for p in bad["panels"] if p["type"] != "row"]
    if change == "duplicate id":
        panels[1]["id"] = panels[0]["id"]
    elif change == "unknown data source":
        panels[0]["datasource"] = {"type": "prometheus", "uid": "prom-typo"}
    elif change == "query data source":
        panels[0]["targets"][0]["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
    elif change == "undefined variable":
        panels[0]["targets"][0]["expr"] += ' + on() count(up{job="$job"})'
    elif change == "overlap":
        panels[1]["gridPos"] = dict(panels[0]["gridPos"])
    elif change == "unknown type":
        panels[0]["type"] = "graphh"
    elif change == "no uid":
        del bad["uid"]
    elif change == "no query":
        panels[0]["targets"] = []
    elif change == "duplicate refId":
        panels[0]["targets"].append(dict(panels[0]["targets"][0]))
    return bad


@pytest.mark.parametrize(
    "change",
    [
        "duplicate id",
        "unknown data source",
        "query data source",
        "undefined variable",
        "overlap",
        "unknown type",
        "no uid",
        "no query",
        "duplicate refId",
    ],
)
def test_the_check_catches_a_broken_dashboard(
    dashboards: dict[str, dict[str, Any]], uids: set[str], change: str
) -> None:
    """Proof the lint has teeth: each breakage Grafana would trip on is reported."""
    board = dashboards["imgproc-debug.json"]
    assert not lint("debug", board, uids)
    assert lint("debug", broken(board, change), uids), f"{change} went unnoticed"


def test_dashboards_are_formatted_json() -> None:
    """Kept by hand: stable two-space formatting keeps diffs readable."""
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        text = path.read_text()
        assert text == json.dumps(json.loads(text), indent=2) + "\n", f"reformat {path.name}"


def test_screenshots_exist_for_every_dashboard() -> None:
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        shot = GRAFANA_DIR / "screenshots" / f"{path.stem}.png"
        assert shot.exists() and shot.stat().st_size > 20_000, f"render {shot} (grafana/README.md)"
    readme = (GRAFANA_DIR / "README.md").read_text()
    assert "screenshots/imgproc-overview.png" in readme
