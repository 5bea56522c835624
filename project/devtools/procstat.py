"""CPU time from /proc, for the benches: what a process (and its children) or the machine used."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process `pid` and its live children, from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def machine_busy_seconds() -> float:
    """CPU-seconds the whole machine spent busy (not idle, not waiting for I/O) since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def lower_priority(pid: int, nice: int) -> None:
    """Give process group `pid` (a Child: the process and its children) a lower CPU priority.

    With the kernel's autogroup scheduling (`/proc/sys/kernel/sched_autogroup_enabled`, on by
    default in many distributions' kernels), a nice value only ranks a process against the
    others of its own session, and a Child starts a session of its own: the session's
    autogroup must be niced too, or the "lower priority" process still gets a full share of
    the CPU against every other session (measured: a worker at nice 10 kept 0.93 of a core
    and the API, PostgreSQL and Redis waited for the CPU about as long as they ran).
    """
    os.setpriority(os.PRIO_PGRP, pid, nice)
    autogroup = Path(f"/proc/{pid}/autogroup")
    with contextlib.suppress(OSError):  # no autogroups in this kernel, or not allowed
        autogroup.write_text(str(nice))
