"""Load on loopback: 200 req/s of Telegram bot-update + payment-webhook posts for 30 s against the running ASGI server.

Objective (issue 11): p99 < 50 ms and 0 errors. Baseline in the same run: /healthz at the same rate for 10 s (the
server's and the machine's floor), so the figures read as a ratio too.

Starts a private redis-server (broker + cache, a free port) and the web server (daphne as in the Procfile, or
BENCH_SERVER=uvicorn for `uvicorn --workers BENCH_WORKERS`) against PostgreSQL BENCH_DATABASE_URL (created and
migrated if missing; default postgres://postgres@127.0.0.1:5432/perps_bench_load).
Run: .venv/bin/python benchmarks/bench_load.py   (BENCH_SECONDS, BENCH_RATE to change the run)
Exit status 1 when the objective is missed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config.tests.load_generator import SERVER_ENV, run_load, warm_up  # noqa: E402
from config.tests.ops_processes import RedisServer, free_port, kill_group  # noqa: E402

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/perps_bench_load")
RATE = float(os.environ.get("BENCH_RATE", "200"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "30"))
SERVER = os.environ.get("BENCH_SERVER", "daphne")
WORKERS = os.environ.get("BENCH_WORKERS", "2")
P99_LIMIT_MS = 50


def ensure_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    with psycopg.connect(host=parts.hostname, port=parts.port or 5432, user=parts.username or "postgres",
                         password=parts.password, dbname="postgres", autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            admin.execute(f'CREATE DATABASE "{name}"')


def main() -> int:
    import httpx

    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    redis_server = RedisServer(tmp).start()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "DJANGO_ENV": "development", "DEBUG": "false",
           "DATABASE_URL": DATABASE_URL, "REDIS_URL": redis_server.url, "CELERY_BROKER_URL": redis_server.url,
           "CELERY_TASK_ALWAYS_EAGER": "false", "LOG_LEVEL": "WARNING", "DB_POOL_MAX_SIZE": "16", **SERVER_ENV}
    ensure_database(DATABASE_URL)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    port = free_port()
    if SERVER == "uvicorn":
        command = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port",
                   str(port), "--workers", WORKERS, "--no-access-log", "--log-level", "warning"]
    else:
        command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]
    log = (tmp / "web.log").open("w")
    web = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        warm_up(base, requests=100)
        baseline = run_load(base, rate=RATE, seconds=min(10.0, SECONDS), kind="healthz")
        result = run_load(base, rate=RATE, seconds=SECONDS, kind="mixed")
    finally:
        kill_group(web)
        redis_server.stop()
    print(f"server: {SERVER}{' x' + WORKERS if SERVER == 'uvicorn' else ''}; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print("baseline", baseline.summary())
    print("load    ", result.summary())
    print(f"ratios (load / baseline): p50 {result.percentile(50) / baseline.percentile(50):.1f}x, "
          f"p99 {result.percentile(99) / baseline.percentile(99):.1f}x")
    if result.errors:
        print("first errors:", *result.errors[:5], sep="\n  ")
    ok = not result.errors and result.percentile(99) < P99_LIMIT_MS and result.achieved_rate >= RATE * 0.95
    print(f"objective p99 < {P99_LIMIT_MS} ms, 0 errors at {RATE:.0f} req/s: {'MET' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
