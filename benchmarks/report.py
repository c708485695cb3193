"""What every benchmark reports the same way: medians of repeated runs (wall clock and this process's CPU time), the
machine's load while it ran, the ratio to a baseline measured in the same run, and one ``RESULT`` line per figure with
PASS or FAIL against its goal (``make bench`` collects those lines at the end).

The machine is shared: a wall-clock figure taken while the load average is above the number of cores measures the
other processes too. The load average is printed with every figure, and so is the CPU-time median (what the work
costs one core, with the waiting for a core left out); the goals are checked on the wall clock.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min) on {os.cpu_count()} cores"


@dataclass
class Timing:
    """Wall-clock and CPU seconds of repeated runs of one piece of work."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    result: Any = None

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu)

    def describe(self, unit_count: float | None = None, unit: str = "") -> str:
        runs = ", ".join(f"{t:.3f}" for t in self.wall)
        text = f"median {self.median:.3f} s wall, {self.median_cpu:.3f} s CPU over {len(self.wall)} runs ({runs})"
        if unit_count:
            text += (
                f" -> {unit_count / self.median:,.0f} {unit}/s wall, {unit_count / self.median_cpu:,.0f} {unit}/s CPU"
            )
        return text + f"; 1-min load {min(self.loads):.2f}..{max(self.loads):.2f}"


def measure(fn: Callable[[], Any], runs: int, *, warm_up: int = 1) -> Timing:
    """``fn()`` ``warm_up`` times unmeasured, then ``runs`` times measured (wall clock and this process's CPU)."""
    for _ in range(warm_up):
        fn()
    timing = Timing()
    for _ in range(runs):
        timing.loads.append(os.getloadavg()[0])
        wall0, cpu0 = time.perf_counter(), time.process_time()
        timing.result = fn()
        timing.cpu.append(time.process_time() - cpu0)
        timing.wall.append(time.perf_counter() - wall0)
    return timing


def result_line(name: str, figure: str, baseline: str, goal: str, ok: bool) -> str:
    """The summary line ``make bench`` collects: ``RESULT <name>: <figure> | <baseline ratio> | goal ... PASS``."""
    return f"RESULT {name}: {figure} | {baseline} | goal {goal}: {'PASS' if ok else 'FAIL'} | {load_average()}"
