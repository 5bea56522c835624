"""Run the student's SLO check and step shape on made-up numbers, without a service or a clock.

    python checks.py <load folder> <scratch folder>

prints one JSON object: what `evaluate()` answers for windows at each objective's bound and one
past it, what `check_run` logs and sets as the exit code, and what `StepLoadShape.tick()`
returns and logs tick by tick. Run in its own process by `test_slo.py` and `test_shape.py`
(importing locust monkey-patches the standard library, which a pytest process must not get);
the tests judge the answers. Nothing here depends on the machine's speed: the shape's clock is
a fake one that moves by exactly one second per tick, as locust calls `tick()`.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

# The SLO of the made-up windows: the numbers are chosen so each objective sits at its bound.
SLO = {"p95_ms": 200, "max_error_ratio": 0.01, "min_rps": 2}

# (name, requests, failures, seconds, {response time ms: count}, throughput)
WINDOWS: list[tuple[str, int, int, float, dict[int, int], bool]] = [
    ("p95 at the bound", 100, 0, 10, {20: 50, 200: 50}, True),
    ("p95 one bucket past the bound", 100, 0, 10, {20: 50, 210: 50}, True),
    # an average of 170 ms, below the bound, with a p95 of 2000 ms above it
    ("p95 above, average below", 100, 0, 10, {10: 92, 2000: 8}, True),
    ("errors at the budget (1 of 100)", 100, 1, 10, {20: 100}, True),
    ("errors past the budget (2 of 100)", 100, 2, 10, {20: 100}, True),
    ("requests/s at the floor (20 in 10 s)", 20, 0, 10, {20: 20}, True),
    ("requests/s below the floor (19 in 10 s)", 19, 0, 10, {20: 19}, True),
    ("requests/s below the floor, throughput=False", 19, 0, 10, {20: 19}, False),
    ("no requests", 0, 0, 10, {}, True),
    ("no requests, throughput=False", 0, 0, 10, {}, False),
    ("every objective missed", 100, 50, 100, {5000: 100}, True),
    # A p95 of requests, not of the slowest one or of the distinct times seen.
    ("p95 below, the slowest 4 % far above", 100, 0, 10, {20: 96, 5000: 4}, True),
    (
        "p95 above, most distinct times below",
        100,
        0,
        10,
        {**dict.fromkeys(range(10, 30), 1), 500: 80},
        True,
    ),
    # locust's request count includes the failed ones: 2 of 199 is past 1 %, 2 of 201 is not.
    ("errors just past the budget (2 of 199)", 199, 2, 10, {20: 199}, True),
    # Failed requests still count as requests/s.
    ("half failed, requests/s at the floor (20 in 10 s)", 20, 10, 10, {20: 20}, True),
]

# (name, requests at 50 ms, failed ones, SLO overrides)
RUNS: list[tuple[str, int, int, dict[str, float]]] = [
    ("1 of 100 failed, within the budget", 100, 1, {}),
    ("2 of 100 failed, past the budget", 100, 2, {}),
    ("every objective missed", 100, 50, {"p95_ms": 10, "min_rps": 1e12}),
]

# The shape: steps of STEP_USERS every STEP_SECONDS, at most MAX_STEPS; per scenario, the SLO's
# p95 bound and per second of a step (requests, ms each, failed ones). Step 3 of "saturation"
# is slow but small: over the whole run its requests are under 5 %, so only a judge of the
# step's own requests sees them. "errors": step 3 is fast, but 3 % of it fails. "tight SLO":
# the same steps as "saturation" judged with a p95 bound of 25 ms (not the starter's
# slo.toml, and not a knee relative to step 1), so step 2 saturates.
STEP = {"STEP_USERS": 40, "STEP_SECONDS": 4, "MAX_STEPS": 4}
SHAPE_SLO = {"max_error_ratio": 0.01, "min_rps": 1e9}
SCENARIOS: dict[str, tuple[float, dict[int, tuple[int, int, int]]]] = {
    "saturation": (200, {1: (100, 20, 0), 2: (100, 30, 0), 3: (10, 1000, 0)}),
    "no saturation": (200, {1: (100, 20, 0), 2: (100, 30, 0), 3: (100, 40, 0), 4: (100, 40, 0)}),
    "errors": (200, {1: (100, 20, 0), 2: (100, 30, 0), 3: (100, 20, 3)}),
    "tight SLO": (25, {1: (100, 20, 0), 2: (100, 30, 0), 3: (10, 1000, 0)}),
}
TICKS = 20  # ticks at 0, 1, ..., 19 s


def write_slo(folder: Path, name: str, values: dict[str, float]) -> str:
    path = folder / f"{name}.toml"
    path.write_text("".join(f"{key} = {value!r}\n" for key, value in values.items()))
    return str(path)


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def check_evaluate(slo_module: ModuleType) -> list[dict[str, Any]]:
    slo = slo_module.Slo(**{k: float(v) for k, v in SLO.items()})
    answers = []
    for name, requests, failures, seconds, times, throughput in WINDOWS:
        window = slo_module.Window(requests, failures, seconds, dict(times))
        try:
            missed = slo_module.evaluate(slo, window, throughput=throughput)
            answers.append({"case": name, "messages": [str(m) for m in missed]})
        except Exception:
            answers.append({"case": name, "error": traceback.format_exc(limit=3)})
    return answers


def check_check_run(slo_module: ModuleType, folder: Path, log: Captured) -> list[dict[str, Any]]:
    from locust import events
    from locust.env import Environment

    answers: list[dict[str, Any]] = []
    for name, requests, failures, overrides in RUNS:
        os.environ["SLO_CONFIG"] = write_slo(folder, f"run-{len(answers)}", {**SLO, **overrides})
        environment = Environment()
        # The failures are another row's (as in a real run): only the total shows them all.
        for _ in range(requests - failures):
            environment.stats.log_request("GET", "/items", 50, 100)
        for _ in range(failures):
            environment.stats.log_request("POST", "/orders", 50, 100)
            environment.stats.log_error("POST", "/orders", "500 Internal Server Error")
        # Whole-run seconds come from these two stamps: 10 s, whatever the machine.
        environment.stats.total.start_time = time.time() - 10
        environment.stats.total.last_request_timestamp = time.time()
        log.lines.clear()
        try:
            events.quitting.fire(environment=environment)  # type: ignore[no-untyped-call]
            answers.append(
                {"case": name, "exit_code": environment.process_exit_code, "log": log.lines[:]}
            )
        except Exception:
            answers.append({"case": name, "error": traceback.format_exc(limit=3)})
    return answers


class FakeClock:
    """time.monotonic/perf_counter/time for the shape: they move only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0
        self.real = {name: getattr(time, name) for name in ("monotonic", "perf_counter", "time")}

    def install(self, *modules: ModuleType) -> None:
        base = {"monotonic": 5000.0, "perf_counter": 7000.0, "time": 1.8e9}
        for name, offset in base.items():
            fake = lambda offset=offset: offset + self.now  # noqa: E731
            setattr(time, name, fake)
            for module in modules:  # `from time import monotonic` in the student's module
                if getattr(module, name, None) is self.real[name]:
                    setattr(module, name, fake)

    def remove(self) -> None:
        for name, real in self.real.items():
            setattr(time, name, real)


def check_shape(folder: Path, scenario: str, log: Captured) -> dict[str, Any]:
    from locust.stats import RequestStats

    for key, value in STEP.items():
        os.environ[key] = str(value)
    bound, steps = SCENARIOS[scenario]
    os.environ["SLO_CONFIG"] = write_slo(folder, "shape", {"p95_ms": bound, **SHAPE_SLO})
    # A fresh module per scenario: class attributes read the settings when it is imported.
    for name in ("shape", "slo"):
        sys.modules.pop(name, None)
    clock = FakeClock()
    # Locust imports the locustfile and builds the shape well before the run starts (in the
    # web UI: until someone presses Start): the shape's clock must start at the first tick.
    clock.now = -30.0
    clock.install()
    ticks: list[dict[str, Any]] = []
    try:
        shape_module = importlib.import_module("shape")
        clock.install(shape_module)
        shape_class = next(
            value
            for value in vars(shape_module).values()
            if isinstance(value, type)
            and value.__module__ == shape_module.__name__
            and hasattr(value, "tick")
        )
        shape = shape_class()
        runner = SimpleNamespace(stats=RequestStats(), user_count=0)
        shape.runner = runner
        clock.now = 0.0
        shape.reset_time()  # what locust does when the run starts
        log.lines.clear()
        seconds = STEP["STEP_SECONDS"]
        for second in range(TICKS):
            clock.now = float(second)
            if second:  # the requests of the second that just passed, at its step's pace
                step = (second - 1) // seconds + 1
                count, ms, failed = steps.get(step, (100, 20, 0))
                for _ in range(count):
                    runner.stats.log_request("GET", "/items", ms, 100)
                for _ in range(failed):
                    runner.stats.log_error("GET", "/items", "500 Internal Server Error")
            before = len(log.lines)
            answer = shape.tick()
            if answer is not None:
                answer = [float(answer[0]), float(answer[1])]
                runner.user_count = int(answer[0])
            ticks.append({"second": second, "answer": answer, "log": log.lines[before:]})
    except Exception:
        return {"ticks": ticks, "error": traceback.format_exc(limit=4)}
    finally:
        clock.remove()
    return {"ticks": ticks}


def main() -> None:
    load_dir, scratch = Path(sys.argv[1]), Path(sys.argv[2])
    scratch.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(load_dir))
    log = Captured()
    logging.getLogger().addHandler(log)
    logging.getLogger().setLevel(logging.INFO)
    os.environ["SLO_CONFIG"] = write_slo(scratch, "default", SLO)
    result: dict[str, Any] = {}
    try:
        slo_module = importlib.import_module("slo")
        result["evaluate"] = check_evaluate(slo_module)
        result["check_run"] = check_check_run(slo_module, scratch, log)
    except Exception:
        result["slo_error"] = traceback.format_exc(limit=4)
    if (load_dir / "shape.py").is_file():
        result["shape"] = {name: check_shape(scratch, name, log) for name in SCENARIOS}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
