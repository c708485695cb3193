"""Load on loopback: 300 req/s of Telegram bot-update + payment-webhook posts for 30 s against the production web
server (the Procfile's command: uvicorn worker processes, config/asgi.py's bounded-thread handler).

Objective: p99 < 50 ms and 0 errors. Baseline in the same run: /healthz at the same rate for 10 s (the
server's and the machine's floor), so the figures read as a ratio too. Before measuring, 3 s of the same load warm
every worker process and thread up (connections opened; not measured).

Then every post is checked stored exactly once, and a Celery worker (queues telegram,default; replies go to a local
Bot API server) processes what the web server queued: the drain time and every update handled exactly once are
reported. The worker starts after the measured load, as the web server would otherwise share 2 cores with it.

Starts a private redis-server (broker + cache, a free port, AOF fsync every second) and the web server against
PostgreSQL BENCH_DATABASE_URL (created and migrated if missing; default
postgres://postgres@127.0.0.1:5432/perps_bench_load).
Run: .venv/bin/python benchmarks/bench_load.py   (BENCH_SECONDS, BENCH_RATE, WEB_CONCURRENCY to change the run;
BENCH_DRAIN=0 skips the worker)
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

from config.tests.load_generator import SERVER_ENV, LoadResult, run_load, warm_up  # noqa: E402
from config.tests.ops_processes import RedisServer, kill_group, start_web, start_worker, web_command  # noqa: E402

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/perps_bench_load")
RATE = float(os.environ.get("BENCH_RATE", "300"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "30"))
DRAIN = os.environ.get("BENCH_DRAIN", "1") == "1"
P99_LIMIT_MS = 50


def ensure_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    with psycopg.connect(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password,
        dbname="postgres",
        autocommit=True,
    ) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            admin.execute(f'CREATE DATABASE "{name}"')


class CpuUse:
    """CPU of the whole machine, of the web server's process group and of this process (the load generator) over a
    span, from /proc: what is left is PostgreSQL, Redis and whatever else runs on the machine."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, web_pgid: int):
        self.web_pgid = web_pgid
        self.start = self._sample()

    def _sample(self) -> tuple[float, float, float, float, float, float]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        busy = (sum(fields[:7]) - fields[3] - fields[4]) / self.TICK
        steal = fields[7] / self.TICK  # taken by the hypervisor for other virtual machines
        web = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                parts = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(parts[2]) == self.web_pgid:  # pgrp
                web += (int(parts[11]) + int(parts[12])) / self.TICK  # utime + stime
        own = time.process_time()
        return time.monotonic(), busy, web, own, os.getloadavg()[0], steal

    def summary(self) -> str:
        end = self._sample()
        wall = end[0] - self.start[0]
        busy, web, own, steal = ((end[i] - self.start[i]) / wall for i in (1, 2, 3, 5))
        return (
            f"CPU during the measured run (cores of {os.cpu_count()}): machine {busy:.2f}, web server {web:.2f}, "
            f"load generator {own:.2f}, everything else {busy - web - own:.2f} (PostgreSQL, Redis, other "
            f"processes), stolen by the hypervisor {steal:.2f}; load average (1 min) {self.start[4]:.2f} at the start, {end[4]:.2f} at the end"
        )


def stored_counts(result: LoadResult) -> dict[str, int]:
    """What the measured run left in the database: rows per post (exactly one expected) and their processing."""
    import psycopg

    ids = result.bot_update_ids
    with psycopg.connect(DATABASE_URL.replace("postgres://", "postgresql://", 1)) as db:
        updates, processed, max_attempts = db.execute(
            "SELECT count(*), count(processed_at), coalesce(max(attempts), 0) FROM telegram_bridge_telegramupdate "
            "WHERE update_id BETWEEN %s AND %s",
            [ids.start, ids.stop - 1],
        ).fetchone()
        events, received = db.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'received') FROM analytics_webhookevent "
            "WHERE provider = 'helius' AND event_id LIKE %s",
            [result.webhook_signature_prefix + "%"],
        ).fetchone()
        replies = db.execute(
            "SELECT count(*) FROM telegram_bridge_delivery WHERE dedupe_key LIKE 'update:%%' AND "
            "split_part(dedupe_key, ':', 2)::bigint BETWEEN %s AND %s",
            [ids.start, ids.stop - 1],
        ).fetchone()[0]
    return {
        "posted_updates": len(ids),
        "updates": updates,
        "processed": processed,
        "max_attempts": max_attempts,
        "replies": replies,
        "posted_events": result.requests // 2,
        "events": events,
        "events_pending": received,
    }


def main() -> int:
    from testsupport.telegram_bot_api import DEFAULT_TOKEN, LocalBotAPIServer

    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    redis_server = RedisServer(tmp, appendfsync="everysec").start()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_ENV": "development",
        "DEBUG": "false",
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": redis_server.url,
        "CELERY_BROKER_URL": redis_server.url,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "LOG_LEVEL": "WARNING",
        "DB_POOL_MAX_SIZE": "16",
        "WEB_CONCURRENCY": os.environ.get("WEB_CONCURRENCY", "2"),
        "PYTHONUNBUFFERED": "1",
        **SERVER_ENV,
    }
    ensure_database(DATABASE_URL)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    print("server:", " ".join(Path(a).name if i == 0 else a for i, a in enumerate(web_command(port=0, env=env))))
    bot_api = LocalBotAPIServer()
    web = worker = None
    drained = None
    try:
        web, base = start_web(env=env, log=tmp / "web.log")
        warm = warm_up(base, requests=100, rate=RATE, seconds=3)
        baseline = run_load(base, rate=RATE, seconds=min(10.0, SECONDS), kind="healthz")
        cpu = CpuUse(web.pid)
        result = run_load(base, rate=RATE, seconds=SECONDS, kind="mixed")
        cpu_use = cpu.summary()
        kill_group(web)
        web = None
        stored = stored_counts(result)
        if DRAIN:
            worker_env = {
                **env,
                "TELEGRAM_API_BASE": bot_api.start_in_thread(),
                "TELEGRAM_BOT_TOKEN": DEFAULT_TOKEN,
                "TELEGRAM_RATE_GLOBAL_PER_SECOND": "10000",
                "TELEGRAM_RATE_CHAT_PER_SECOND": "10000",
            }
            started = time.monotonic()
            worker = start_worker(env=worker_env, queues="telegram,default", log=tmp / "worker.log")
            deadline = started + 600
            while time.monotonic() < deadline:
                drained = stored_counts(result)
                if drained["processed"] == drained["updates"] and not drained["events_pending"]:
                    break
                time.sleep(1)
            drain_seconds = time.monotonic() - started
    finally:
        for process in (worker, web):
            if process is not None:
                kill_group(process)
        bot_api.stop()
        redis_server.stop()
    print(cpu_use)
    print("warm-up ", warm.summary())
    print("baseline", baseline.summary())
    print("load    ", result.summary())
    print(
        f"ratios (load / baseline): p50 {result.percentile(50) / baseline.percentile(50):.1f}x, "
        f"p99 {result.percentile(99) / baseline.percentile(99):.1f}x"
    )
    if result.errors:
        print("first errors:", *result.errors[:5], sep="\n  ")
    print(
        f"stored: {stored['updates']} updates for {stored['posted_updates']} bot posts, {stored['events']} events for "
        f"{stored['posted_events']} payment posts"
    )
    once = stored["updates"] == stored["posted_updates"] and stored["events"] == stored["posted_events"]
    if drained is not None:
        print(
            f"processed by one worker (concurrency 2, started after the load, start-up included) in "
            f"{drain_seconds:.1f} s: {drained['processed']}/{drained['updates']} updates (max attempts "
            f"{drained['max_attempts']}, {drained['replies']} replies), {drained['events'] - drained['events_pending']}"
            f"/{drained['events']} events"
        )
        once = (
            once and drained["processed"] == drained["updates"] == drained["replies"] and drained["max_attempts"] == 1
        )
        once = once and not drained["events_pending"]
    ok = not result.errors and result.percentile(99) < P99_LIMIT_MS and result.achieved_rate >= RATE * 0.95 and once
    print(
        f"objective p99 < {P99_LIMIT_MS} ms, 0 errors at {RATE:.0f} req/s, every post stored (and processed) once: "
        f"{'MET' if ok else 'MISSED'}"
    )
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from report import result_line

    print(
        result_line(
            f"webhook load at {RATE:.0f} req/s for {SECONDS:.0f} s",
            f"{result.achieved_rate:.0f} req/s achieved, p50 {result.percentile(50):.1f} ms, p99 "
            f"{result.percentile(99):.1f} ms, {len(result.errors)} errors",
            f"p99 {result.percentile(99) / baseline.percentile(99):.1f}x /healthz at the same rate "
            f"({baseline.percentile(99):.1f} ms, same run)",
            f"p99 < {P99_LIMIT_MS} ms, 0 errors, every post stored and processed once",
            ok,
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
