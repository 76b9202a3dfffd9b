"""How torch's OpenMP threads wait, chosen by each command as it starts (docs/results.md,
section 7): spinning is fastest on an idle machine and slowest on a busy one."""

from __future__ import annotations

import os
import time

SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")  # the environment's own choice wins

def busy_cores(samples: int = 5) -> float:
    """Cores that other tasks keep busy now: the runnable tasks other than this one, averaged
    over a few milliseconds (Linux's /proc/stat; elsewhere the 1-minute load average)."""
    try:
        counts = []
        for _ in range(samples):
            with open("/proc/stat") as f:
                counts.append(next(int(line.split()[1]) for line in f
                                   if line.startswith("procs_running")) - 1)
            time.sleep(0.002)
        return sum(counts) / samples
    except (OSError, StopIteration, ValueError):
        return os.getloadavg()[0]


def openmp_env(busy: float, cores: int) -> dict[str, str]:
    """How torch's OpenMP threads wait at a barrier, from how busy the machine is when the
    command starts. Idle: they spin for about 0.1 ms, then sleep (threads that sleep at once
    wake too late: a LeNet-300-100 epoch took 1.4-1.8x as long). Busy (half the cores or
    more): they sleep at once (a spinning thread holds the core its partner needs: up to 4x).
    docs/results.md, section 7. The thread count, and so every result, stays the same."""
    return {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000" if busy < cores / 2 else "0"}


def choose_wait_policy() -> None:
    """Set the wait policy for this process's OpenMP, unless the environment sets one; call
    before torch is imported."""
    if not set(SETTINGS) & os.environ.keys():
        os.environ.update(openmp_env(busy_cores(), _cores()))


def _cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
