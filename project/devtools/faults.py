"""Faults a test can inject into a worker: a slow job, a job held mid-flight.

- `slowdown_seconds` (`FAULT_SLOWDOWN_SECONDS`): sleep this long in each job (a worker to kill
  mid-job);
- `hold_file` (`FAULT_HOLD_FILE`): while this file exists each job waits; deleting it lets them
  go on (a test catches a job mid-flight with it).

The worker that obeys them is `devtools.faulty_worker`; `devtools.launch.start_worker(faults=...)`
starts it. Production settings know nothing of this.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Faults:
    slowdown_seconds: float = 0.0
    hold_file: Path | None = None

    def env(self) -> dict[str, str]:
        env = {"FAULT_SLOWDOWN_SECONDS": str(self.slowdown_seconds)}
        if self.hold_file is not None:
            env["FAULT_HOLD_FILE"] = str(self.hold_file)
        return env

    @classmethod
    def from_env(cls) -> Faults:
        hold = os.environ.get("FAULT_HOLD_FILE")
        return cls(
            slowdown_seconds=float(os.environ.get("FAULT_SLOWDOWN_SECONDS", "0")),
            hold_file=Path(hold) if hold else None,
        )

    def before_processing(self) -> None:
        if self.slowdown_seconds:
            time.sleep(self.slowdown_seconds)
        while self.hold_file is not None and self.hold_file.exists():
            time.sleep(0.05)
