"""Broadcast one signal to 10,000 Telegram users against the local Bot API server limited to N msg/s (default 50:
about Telegram's own ~30 msg/s, and well inside what one loaded 2-core machine can push; BENCH_RATE changes it).

Target: achieved ≥ 95% of N, 0 lost, 0 duplicates, every 429 honoured (no request for a chat before its
retry_after — the server counts those as "violations").

The real path end to end: ``telegram_bridge.broadcasts.signal_broadcast_prepare`` stores the Delivery rows, then
BENCH_WORKERS worker processes (forked, like Celery prefork children) each send their share of the chunks through
``telegram_bridge.sender.deliveries_send`` — aiogram over HTTP, the GCRA buckets shared in Redis set to N msg/s —
to ``manage.py run_local_bot_api --rate-limit N`` running in its own process. The baseline, measured in the same
run, is the sender's capacity: 2,000 messages to the same server without any limit.

Needs PostgreSQL and Redis on 127.0.0.1 (a throw-away database ``perps_telegram_bench`` is created; Redis db 4 with
a unique key prefix). Run: .venv/bin/python benchmarks/bench_broadcast.py   (BENCH_USERS, BENCH_RATE, BENCH_WORKERS)
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
USERS = int(os.environ.get("BENCH_USERS", "10000"))
RATE = float(os.environ.get("BENCH_RATE", "50"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
BASELINE_USERS = int(os.environ.get("BENCH_BASELINE_USERS", "2000"))
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/perps_telegram_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/4")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 — loopback only
        return json.loads(response.read())


def create_database() -> None:
    import psycopg

    base, name = DATABASE_URL.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')


def start_server(env: dict, rate: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "manage.py", "run_local_bot_api", "--port", str(port)]
    if rate:
        command += ["--rate-limit", str(rate)]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            get_json(f"{base}/_local/stats")
            return server, base
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("local Bot API server did not start")


def worker(chunks: list[list[int]], base_url: str, prefix: str, rate: float, results) -> None:
    """One worker process: its own DB connection, transport and limiter; the Redis buckets are shared."""
    from django import db
    from django.conf import settings

    db.connections.close_all()
    settings.TELEGRAM_API_BASE = base_url
    from telegram_bridge.rate_limit import Rate, SendRateLimiter
    from telegram_bridge.sender import deliveries_send
    from telegram_bridge.transport import get_transport, transport_reset

    transport = get_transport()
    transport.limiter = SendRateLimiter(
        redis_url=REDIS_URL,
        prefix=prefix,
        global_rate=Rate(rate, 1) if rate else Rate(100_000, 1000),
        chat_rate=Rate(1, 3),
    )
    totals = {"sent": 0, "retry_afters": 0, "retry_later": 0, "failed": 0}
    for chunk in chunks:
        report = deliveries_send(delivery_ids=chunk)
        for key in totals:
            totals[key] += getattr(report, key)
    transport_reset()
    results.put(totals)


def broadcast(*, users: int, rate: float, env: dict, label: str) -> dict:
    from accounts.models import TelegramUser, UserPreferences
    from signals.models import Signal, Symbol
    from telegram_bridge.broadcasts import signal_broadcast_prepare
    from telegram_bridge.models import Delivery

    Delivery.objects.all().delete()
    TelegramUser.objects.all().delete()
    Signal.objects.all().delete()
    created = TelegramUser.objects.bulk_create(
        [TelegramUser(telegram_id=10_000_000 + i, username=f"u{i}", first_name=f"User {i}") for i in range(users)],
        batch_size=2000,
    )
    UserPreferences.objects.bulk_create(
        [UserPreferences(user=u, accepted_risk_levels=["low", "medium", "high"]) for u in created], batch_size=2000
    )
    symbol, _ = Symbol.objects.get_or_create(symbol="BTC/USDT:USDT", defaults={"base": "BTC"})
    signal = Signal.objects.create(
        symbol=symbol,
        side="long",
        entry=100,
        stop=98,
        tp1=102,
        tp2=104,
        atr=1,
        candle_ts=int(time.time() * 1000),
        dedupe_key=f"bench:{uuid.uuid4().hex}",
        confirmations=["trend", "volume"],
    )

    server, base_url = start_server(env, rate)
    try:
        ids = signal_broadcast_prepare(signal_id=signal.pk)
        assert len(ids) == users, len(ids)
        size = 500
        chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
        from django import db

        db.connections.close_all()
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        prefix = f"bench:{uuid.uuid4().hex}"
        processes = [
            context.Process(target=worker, args=(chunks[n::WORKERS], base_url, prefix, rate, results))
            for n in range(WORKERS)
        ]
        started = time.monotonic()
        for process in processes:
            process.start()
        totals = [results.get(timeout=3600) for _ in processes]
        for process in processes:
            process.join(60)
        wall = time.monotonic() - started
        sent = get_json(f"{base_url}/_local/sent")
        stats = get_json(f"{base_url}/_local/stats")
    finally:
        server.terminate()
        server.wait(30)

    chats = [m["chat_id"] for m in sent]
    times = sorted(m["at"] for m in sent)
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    achieved = (len(times) - 1) / span if span else float("inf")
    expected = {str(10_000_000 + i) for i in range(users)}
    result = {
        "label": label,
        "users": users,
        "limit": rate,
        "sent": len(sent),
        "wall_s": wall,
        "span_s": span,
        "achieved_per_s": achieved,
        "lost": len(expected - set(chats)),
        "duplicates": len(chats) - len(set(chats)),
        "rate_limited_429": stats["rate_limited"],
        "violations": stats["violations"],
        "retry_afters_seen": sum(t["retry_afters"] for t in totals),
        "db_sent": Delivery.objects.filter(status="sent").count(),
        # messages per whole second of the span: its median is the steady rate, free of the ramp-up and the tail
        "median_per_s": statistics.median(Counter(int(t - times[0]) for t in times[:-1]).values()) if span >= 1 else 0,
    }
    print(
        f"[{label}] {users} users, server limit {rate or 'none'} msg/s, {WORKERS} workers: "
        f"{len(sent)} sent in {span:.2f} s ({achieved:.1f} msg/s), lost {result['lost']}, "
        f"duplicates {result['duplicates']}, 429s {stats['rate_limited']} (violations {stats['violations']}), "
        f"wall {wall:.1f} s",
        flush=True,
    )
    if os.environ.get("BENCH_VERBOSE"):
        per_second = Counter(int(t - times[0]) for t in times)
        print("  per second:", [per_second[i] for i in range(int(span) + 1)], flush=True)
    return result


def main() -> int:
    create_database()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_ENV": "development",
        "DEBUG": "false",
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "LOG_LEVEL": "WARNING",
        "TELEGRAM_BOT_TOKEN": "",
    }
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    import logging

    import django

    django.setup()
    logging.disable(logging.INFO)

    baseline = broadcast(users=BASELINE_USERS, rate=0, env=env, label="baseline, no limit")
    limited = broadcast(users=USERS, rate=RATE, env=env, label="limited")
    ratio = limited["achieved_per_s"] / RATE
    print(
        f"achieved / limit = {ratio:.3f} (target ≥ 0.95); sender capacity without a limit "
        f"{baseline['achieved_per_s']:.0f} msg/s = {baseline['achieved_per_s'] / RATE:.1f}× the limit"
    )
    ok = (
        ratio >= 0.95
        and limited["lost"] == 0
        and limited["duplicates"] == 0
        and limited["violations"] == 0
        and limited["db_sent"] == USERS
    )
    print("OK" if ok else "FAILED")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from report import result_line

    print(
        result_line(
            f"broadcast of one signal to {USERS:,} users at a {RATE:.0f} msg/s limit",
            f"{limited['achieved_per_s']:.1f} msg/s over the span (median {limited['median_per_s']} per second), "
            f"lost {limited['lost']}, duplicates {limited['duplicates']}, violations {limited['violations']}",
            f"sender without a limit: {baseline['achieved_per_s']:.0f} msg/s = "
            f"{baseline['achieved_per_s'] / RATE:.1f}x the limit (same run)",
            ">= 95% of the limit, nothing lost or doubled, every 429 honoured",
            ok,
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
