"""Step load: add users step by step until the service misses its SLO (saturation).

    ../../../.venv/bin/locust --config load/locust.conf -f load/locustfile.py,load/shape.py \\
        --host http://127.0.0.1:8000

Step k runs k x STEP_USERS users for STEP_SECONDS. When a step ends, its own requests (not
the whole run's) are judged against the SLO's latency and error objectives, and one line is
logged:

    step 4: 160 users, 312.5 requests/s, p95 18 ms, 0.0% failed: SLO met
    step 5: 200 users, 330.1 requests/s, p95 240 ms, 0.0% failed: SLO failed (p95_ms: ...)
    saturation at step 5 (200 users); the last step within the SLO: step 4 (160 users, ...)

The first step that misses the SLO ends the run: adding users beyond it only adds waiting.
If every step up to MAX_STEPS meets it, the run ends with "no saturation ..." instead.

Settings (environment): STEP_USERS (default 40), STEP_SECONDS (10), MAX_STEPS (15).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from locust import LoadTestShape
from slo import Slo, Window, evaluate, load_slo, summary  # noqa: F401  (tick() needs evaluate)

log = logging.getLogger("shape")


def _setting(name: str, default: float) -> float:
    value = float(os.environ.get(name, default))
    if value <= 0:
        raise ValueError(f"{name} must be greater than 0, not {value:g}")
    return value


@dataclass
class Step:
    number: int
    users: int
    start: Window  # the run's cumulative numbers when the step began


class StepLoadShape(LoadTestShape):
    """Users grow by STEP_USERS every STEP_SECONDS until a step misses the SLO."""

    step_users = int(_setting("STEP_USERS", 40))
    step_seconds = _setting("STEP_SECONDS", 10)
    max_steps = int(_setting("MAX_STEPS", 15))
    slo: Slo = load_slo()

    began: float | None = None  # when the first tick came (the run's start)
    step: Step | None = None
    last_good: tuple[Step, Window] | None = None
    done = False

    def snapshot(self) -> Window:
        """The run's cumulative numbers now (`seconds`: a clock reading, for differences)."""
        assert self.runner is not None
        total = self.runner.stats.total
        return Window(
            total.num_requests, total.num_failures, time.monotonic(), dict(total.response_times)
        )

    def tick(self) -> tuple[int, float] | None:
        # TODO(lab 7): task 4. Step k (k = 1, 2, ...) runs k x step_users users for
        # step_seconds; return (users, spawn rate) while it lasts. When a step ends, judge its
        # own requests (self.snapshot().minus(self.step.start)) with evaluate(...,
        # throughput=False), log "step N: U users, <summary>: SLO met|SLO failed (...)", keep a
        # step within the SLO in self.last_good (report_saturation names it), and stop (return
        # None, and keep returning None) at the first step that misses the SLO, after calling
        # report_saturation(step), or after max_steps steps. self.began, self.step (a Step)
        # and self.done are there for you to use.
        log.warning("TODO(lab 7): the step load shape is not written yet")
        return None

    def report_saturation(self, step: Step) -> None:
        if self.last_good is None:
            before = "none: even the first step missed it; lower STEP_USERS"
        else:
            good, window = self.last_good
            before = f"step {good.number} ({good.users} users, {summary(window)})"
        log.info(
            "saturation at step %d (%d users); the last step within the SLO: %s",
            step.number, step.users, before,
        )  # fmt: skip
