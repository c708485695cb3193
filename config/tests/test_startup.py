"""Process start-up: what every Django process (web, worker, beat, health checks) imports, and how long it takes.

aiogram (5-10 s of pydantic model building), ccxt, openai and matplotlib are loaded only by the code that uses them:
the bridge and the sender, the exchange adapters, the sentiment model, the backtest charts.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("aiogram", "ccxt", "openai", "matplotlib")
START_BUDGET_SECONDS = 3.0


def _imported_modules(command: list[str]) -> set[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return {
        match.group(1).strip() for match in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|(.+)$", result.stderr, re.M)
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        ["manage.py", "check"],
        ["-c", "import django; django.setup(); import config.asgi, config.urls"],  # what a web worker loads to serve
        ["-c", "import django; django.setup(); from config.events import task_modules_load; task_modules_load()"],
    ],
    ids=["check", "web", "worker-tasks"],
)
def test_no_heavy_library_is_imported_at_start(command):
    modules = _imported_modules(command)
    assert modules, "no import was recorded"
    loaded = sorted({name.split(".")[0] for name in modules} & set(HEAVY))
    assert loaded == [], f"imported at start: {loaded}"


@pytest.mark.slow
def test_manage_py_check_starts_within_budget_on_a_quiet_machine():
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    if load > 0.5:
        pytest.skip(f"the machine is busy (load {load:.2f} per core): a start-up time measured now says nothing")
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, timeout=120, check=True)
        timings.append(time.perf_counter() - started)
    assert sorted(timings)[1] < START_BUDGET_SECONDS, f"median {sorted(timings)[1]:.2f} s over {START_BUDGET_SECONDS} s"
