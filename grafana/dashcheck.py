"""Check the Grafana dashboards and evaluate their queries on a real Prometheus.

Used by the tests (`project/tests/observability/`) and by `grafana/render.py`:

- `lint(dashboard, datasource_uids)`: what would stop Grafana from loading a dashboard or leave a
  panel dead (schema basics, duplicate panel ids, an unknown data source uid, overlapping panels,
  an undefined `$variable`);
- `panel_queries(dashboard)` and `substitute(expr, variables)`: each panel's PromQL with Grafana's
  variables (`$__rate_interval`, `$__range`, `$operation`, ...) replaced, as Grafana sends it;
- `Prometheus`: the few HTTP API calls we need; `LocalPrometheus`: a private `prometheus` process
  (Debian's package) on a free port with its own storage, for tests and renders.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

GRAFANA_DIR = Path(__file__).resolve().parent
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"
DATASOURCES_DIR = GRAFANA_DIR / "provisioning" / "datasources"
RULES_DIR = GRAFANA_DIR.parent / "docker" / "prometheus" / "rules"

# Panel types our dashboards use (all built into Grafana 11); anything else is a typo or a plugin.
PANEL_TYPES = {"row", "timeseries", "stat", "bargauge", "gauge", "table", "text"}
# Variables Grafana defines itself.
BUILTIN_VARIABLES = {
    "__rate_interval",
    "__interval",
    "__interval_ms",
    "__range",
    "__range_s",
    "__range_ms",
    "__dashboard",
    "__from",
    "__to",
}
# $name, ${name}, ${name:format}, [[name]]
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
# The newest dashboard schema our Grafana (11.x) writes is 39; older ones are migrated on load.
MIN_SCHEMA_VERSION = 36


def load_dashboards(directory: Path = DASHBOARDS_DIR) -> dict[str, dict[str, Any]]:
    """Every dashboard JSON in `directory`, by file name."""
    return {path.name: json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))}


def datasource_uids(directory: Path = DATASOURCES_DIR) -> set[str]:
    """Uids of the data sources Grafana provisions from `directory`."""
    uids: set[str] = set()
    for path in sorted(directory.glob("*.y*ml")):
        for source in (yaml.safe_load(path.read_text()) or {}).get("datasources", []):
            uids.add(str(source["uid"]))
    return uids


def all_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' collapsed children included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panel_queries(dashboard: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every query of every panel."""
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target


def variable_names(dashboard: Mapping[str, Any]) -> set[str]:
    return {str(v["name"]) for v in dashboard.get("templating", {}).get("list", [])}


def referenced_variables(text: str) -> set[str]:
    return {next(g for g in match.groups() if g) for match in VARIABLE.finditer(text)}


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    """Replace Grafana's variables in `expr`; a variable missing from `variables` is an error."""

    def value(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name not in variables:
            raise KeyError(f"no value for ${name} in {expr!r}")
        return variables[name]

    return VARIABLE.sub(value, expr)


def _datasource_uid(ref: Any) -> str | None:
    if isinstance(ref, dict):
        return str(ref.get("uid")) if ref.get("uid") is not None else None
    return None if ref is None else str(ref)


def _grid_problems(name: str, panels: Sequence[Mapping[str, Any]]) -> list[str]:
    problems: list[str] = []
    cells: dict[tuple[int, int], Any] = {}
    for panel in panels:
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in ("h", "w", "x", "y")):
            problems.append(f"{name}: panel {panel.get('id')} needs integer gridPos h, w, x, y")
            continue
        if grid["w"] < 1 or grid["h"] < 1 or grid["x"] < 0 or grid["x"] + grid["w"] > 24:
            problems.append(f"{name}: panel {panel.get('id')} is outside the 24-column grid")
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                other = cells.setdefault((x, y), panel.get("id"))
                if other != panel.get("id"):
                    problems.append(
                        f"{name}: panels {other} and {panel.get('id')} overlap at x={x}, y={y}"
                    )
                    break
            else:
                continue
            break
    return problems


def lint(name: str, dashboard: Mapping[str, Any], uids: set[str]) -> list[str]:
    """What would stop Grafana from loading `dashboard`, or leave one of its panels dead."""
    problems: list[str] = []
    for key, kind in (("uid", str), ("title", str), ("schemaVersion", int), ("panels", list)):
        if not isinstance(dashboard.get(key), kind):
            problems.append(f"{name}: `{key}` must be a {kind.__name__}")
    if problems:
        return problems
    if not UID.match(dashboard["uid"]):
        problems.append(f"{name}: uid {dashboard['uid']!r} must be 1-40 of [A-Za-z0-9_-]")
    if dashboard["schemaVersion"] < MIN_SCHEMA_VERSION:
        problems.append(f"{name}: schemaVersion {dashboard['schemaVersion']} is too old")
    defined = variable_names(dashboard) | BUILTIN_VARIABLES
    for variable in dashboard.get("templating", {}).get("list", []):
        uid = _datasource_uid(variable.get("datasource"))
        if variable.get("type") == "query" and uid not in uids:
            problems.append(f"{name}: variable ${variable['name']} uses unknown data source {uid}")
    seen: dict[int, str] = {}
    panels = list(all_panels(dashboard))
    for panel in panels:
        pid, title = panel.get("id"), panel.get("title", "")
        where = f"{name}: panel {pid} {title!r}"
        if not isinstance(pid, int):
            problems.append(f"{where}: `id` must be an integer")
        elif pid in seen:
            problems.append(f"{where}: id {pid} is also used by {seen[pid]!r}")
        else:
            seen[pid] = title
        if panel.get("type") not in PANEL_TYPES:
            problems.append(f"{where}: unknown panel type {panel.get('type')!r}")
        if not title:
            problems.append(f"{where}: no title")
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets", [])
        if not targets:
            problems.append(f"{where}: no query")
        panel_uid = _datasource_uid(panel.get("datasource"))
        if panel_uid not in uids:
            problems.append(f"{where}: data source uid {panel_uid!r} is not provisioned {uids}")
        ref_ids = [t.get("refId") for t in targets]
        if len(set(ref_ids)) != len(ref_ids) or not all(ref_ids):
            problems.append(f"{where}: refIds must be present and unique, got {ref_ids}")
        for target in targets:
            uid = _datasource_uid(target.get("datasource")) or panel_uid
            if uid not in uids:
                problems.append(f"{where}: query {target.get('refId')} uses data source {uid!r}")
            expr = str(target.get("expr", "")).strip()
            if not expr:
                problems.append(f"{where}: query {target.get('refId')} has no expr")
            for variable in sorted(referenced_variables(expr) - defined):
                problems.append(f"{where}: ${variable} is not defined")
    problems += _grid_problems(name, dashboard["panels"])
    return problems


def grafana_variables(
    dashboard: Mapping[str, Any],
    *,
    rate_interval: str,
    interval: str,
    range_seconds: int,
    choices: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Values for every variable of `dashboard`, as Grafana would send them.

    A dashboard variable takes `choices[name]` if given, else its "All" value (`allValue`).
    """
    values = {
        "__rate_interval": rate_interval,
        "__interval": interval,
        "__range": f"{range_seconds}s",
        "__range_s": str(range_seconds),
        "__range_ms": str(range_seconds * 1000),
    }
    for variable in dashboard.get("templating", {}).get("list", []):
        name = str(variable["name"])
        values[name] = (choices or {}).get(name) or str(variable.get("allValue") or ".*")
    return values


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrometheusError(RuntimeError):
    """Prometheus refused a query (a parse error, a bad range) or did not answer."""


@dataclass
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]]

    def finite(self) -> list[tuple[float, float]]:
        return [(t, v) for t, v in self.points if math.isfinite(v)]


class Prometheus:
    """A client for the parts of Prometheus's HTTP API the checks and renders use."""

    def __init__(self, url: str, timeout: float = 10) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _get(self, path: str, params: Mapping[str, Any]) -> Any:
        response = self.http.get(path, params=params)
        body = (
            response.json()
            if response.headers.get("content-type", "").startswith("application/json")
            else {}
        )
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(
                f"{path} {dict(params)}: HTTP {response.status_code} "
                f"{body.get('errorType', '')}: {body.get('error', response.text[:300])}"
            )
        return body["data"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        data = self._get(
            "/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step}
        )
        return [
            Series(dict(r["metric"]), [(float(t), float(v)) for t, v in r["values"]])
            for r in data["result"]
        ]

    def query(self, expr: str, at: float | None = None) -> list[Series]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        data = self._get("/api/v1/query", params)
        return [
            Series(dict(r["metric"]), [(float(r["value"][0]), float(r["value"][1]))])
            for r in data["result"]
        ]

    def label_values(self, label: str, match: str) -> list[str]:
        return [str(v) for v in self._get(f"/api/v1/label/{label}/values", {"match[]": match})]

    def rules(self) -> list[dict[str, Any]]:
        groups = self._get("/api/v1/rules", {})["groups"]
        return [rule for group in groups for rule in group["rules"]]

    def targets(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/targets", {"state": "active"})["activeTargets"])


LABEL_VALUES = re.compile(r"^label_values\((?:(.+),\s*)?(\w+)\)$")


def variable_values(prometheus: Prometheus, variable: Mapping[str, Any]) -> list[str]:
    """What a `label_values(selector, label)` query variable would offer."""
    query = variable["query"]
    text = str(query["query"] if isinstance(query, dict) else query).strip()
    match = LABEL_VALUES.match(text)
    if match is None:
        raise ValueError(f"only label_values() variables are supported, not {text!r}")
    selector, label = match.group(1) or "{__name__=~'.+'}", match.group(2)
    return prometheus.label_values(label, selector)


@dataclass
class ScrapeTarget:
    job: str
    address: str  # host:port


@dataclass
class LocalPrometheus:
    """`prometheus` (Debian's package) on a free port, with its own config and storage."""

    targets: list[ScrapeTarget]
    scrape_interval: str = "1s"
    rule_files: list[Path] = field(default_factory=list)
    binary: str = "prometheus"
    port: int = 0
    workdir: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        return {
            "global": {
                "scrape_interval": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": addresses}]}
                for job, addresses in self._by_job().items()
            ],
        }

    def _by_job(self) -> dict[str, list[str]]:
        jobs: dict[str, list[str]] = {}
        for target in self.targets:
            jobs.setdefault(target.job, []).append(target.address)
        return jobs

    def start(self, timeout: float = 30) -> LocalPrometheus:
        binary = shutil.which(self.binary)
        if binary is None:
            raise FileNotFoundError(
                f"`{self.binary}` is not installed (Debian: apt-get install prometheus)"
            )
        self.workdir = Path(tempfile.mkdtemp(prefix="prometheus-"))
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        self.port = self.port or free_port()
        log = (self.workdir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--web.enable-lifecycle",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"prometheus was not ready in {timeout:.0f}s:\n{self.log()}")

    def log(self) -> str:
        path = None if self.workdir is None else self.workdir / "prometheus.log"
        return path.read_text(errors="replace")[-3000:] if path and path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> LocalPrometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
