"""Service level objectives (SLOs): read them, measure a window of requests, judge it.

    slo.toml               p95_ms = 200, max_error_ratio = 0.01, min_rps = 20
    load_slo()             the objectives (SLO_CONFIG names another file)
    Window                 requests, failures, seconds and response times of one period
    evaluate(slo, window)  one message per objective the window misses (empty: all met)
    check_run              at the end of a run: log each missed objective, set the exit code

Importing this module registers `check_run` on locust's `quitting` event, so every run of a
locustfile that imports it ends with the check. A missed objective makes locust exit with 1,
which fails a CI job or a shell script (`locust ... && deploy`).
"""

from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from locust import events
from locust.env import Environment
from locust.stats import StatsEntry, calculate_response_time_percentile

log = logging.getLogger("slo")

DEFAULT_CONFIG = Path(__file__).with_name("slo.toml")
KEYS = ("p95_ms", "max_error_ratio", "min_rps")


@dataclass(frozen=True)
class Slo:
    """The objectives: a latency bound, an error budget and a throughput floor."""

    p95_ms: float
    max_error_ratio: float
    min_rps: float


def load_slo(path: Path | None = None) -> Slo:
    """Read the objectives from `path`, else $SLO_CONFIG, else slo.toml beside this file."""
    path = path or Path(os.environ.get("SLO_CONFIG") or DEFAULT_CONFIG)
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    unknown = sorted(set(data) - set(KEYS))
    missing = [key for key in KEYS if key not in data]
    if unknown or missing:
        raise ValueError(f"{path}: unknown keys {unknown}, missing keys {missing}")
    values: dict[str, float] = {}
    for key in KEYS:
        value = data[key]
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{path}: {key} must be a number >= 0, not {value!r}")
        values[key] = float(value)
    return Slo(**values)


@dataclass
class Window:
    """What happened in one period of a run: counts, its length and a latency histogram."""

    requests: int
    failures: int
    seconds: float
    # locust's histogram: response time (rounded, ms) -> how many requests took it
    response_times: dict[int, int] = field(default_factory=dict)

    @classmethod
    def whole_run(cls, entry: StatsEntry) -> Window:
        """The window of everything `entry` (e.g. `environment.stats.total`) has seen."""
        last = entry.last_request_timestamp
        seconds = max(last - entry.start_time, 1e-9) if last and entry.num_requests else 0.0
        return cls(entry.num_requests, entry.num_failures, seconds, dict(entry.response_times))

    def minus(self, earlier: Window) -> Window:
        """The window between `earlier` and this one (both cumulative snapshots)."""
        times = {
            ms: count - earlier.response_times.get(ms, 0)
            for ms, count in self.response_times.items()
            if count > earlier.response_times.get(ms, 0)
        }
        return Window(
            self.requests - earlier.requests,
            self.failures - earlier.failures,
            self.seconds - earlier.seconds,
            times,
        )

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def error_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    @property
    def p95_ms(self) -> float:
        answered = sum(self.response_times.values())
        if not answered:
            return 0.0
        return float(calculate_response_time_percentile(self.response_times, answered, 0.95))


def evaluate(slo: Slo, window: Window, *, throughput: bool = True) -> list[str]:
    """Return one message per objective `window` misses, each starting with its key.

    `throughput=False` leaves out min_rps: while users are still being added (a step of a
    load shape), the request rate says how many users there are, not how fast the service is.
    """
    # TODO(lab 7): compare window.p95_ms, window.error_ratio and window.rps with the three
    # objectives of `slo` (task 3); for a window without requests, min_rps is missed. One
    # message per miss, e.g. "p95_ms: p95 latency 480 ms is above 200 ms".
    return []


def summary(window: Window) -> str:
    return (
        f"{window.requests} requests, {window.rps:.1f} requests/s, "
        f"p95 {window.p95_ms:.0f} ms, {window.error_ratio:.1%} failed"
    )


def check_run(environment: Environment, **_kwargs: Any) -> None:
    """Judge the whole run against the SLO; a miss sets the process's exit code to 1."""
    # TODO(lab 7): load the SLO, judge Window.whole_run(environment.stats.total) with
    # evaluate(), log one "SLO failed: <message>" line per miss (log.error), and set
    # environment.process_exit_code to 1 if anything was missed, else to 0 (task 3).
    log.warning("TODO(lab 7): the SLO check is not written yet")


# Run check_run when locust quits (headless: after the run, before the reports are closed).
# (The ignore: locust's EventHook.add_listener carries no type annotations.)
events.quitting.add_listener(check_run)  # type: ignore[no-untyped-call]
