"""The production-like processes on the running replay clock: uvicorn (the Procfile's web command), a Celery worker,
Celery beat and ``run_bridge`` against the local Bot API server, with real PostgreSQL and Redis. A user who sent
/start sees a signal broadcast and gets a paper position within a minute of the beat starting, without anybody
moving a clock by hand (MARKET_DATA_SOURCE=replay, REPLAY_SPEED, REPLAY_START)."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest
from django.core.cache import caches

from accounts.models import TelegramUser
from config.tests.ops_processes import ROOT, kill_group, service_env, start_web, start_worker
from signals.market_data.replay import RUNNING_CLOCK_CACHE_KEY
from signals.models import Signal
from trading.models import Position

USER_ID = 880_001


def start_process(argv: list[str], *, env: dict[str, str], log) -> subprocess.Popen:
    with log.open("a") as out:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(condition, *, seconds: float, what: str, processes=(), logs=()):
    logs = [log for log in logs if log.exists()]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        for process in processes:
            assert process.poll() is None, f"{process.args[:4]} exited: " + "\n".join(
                p.read_text()[-2000:] for p in logs
            )
        time.sleep(0.25)
    raise AssertionError(f"{what} not within {seconds:.0f} s:\n" + "\n".join(p.read_text()[-3000:] for p in logs))


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_parts_on_the_replay_clock_broadcast_a_signal_and_open_a_paper_position(
    postgres_database, redis_url, bot_api, tmp_path
):
    env = service_env(
        db=postgres_database,
        redis_url=redis_url,
        MARKET_DATA_SOURCE="replay",
        REPLAY_SPEED="900",
        REPLAY_START="2018-01-12T12:30",
        SIGNAL_SCAN_DELAY_SECONDS="0",
        TELEGRAM_API_BASE=bot_api.base_url,
        TELEGRAM_BOT_TOKEN="",
        WEB_CONCURRENCY="1",
    )
    caches["default"].delete(RUNNING_CLOCK_CACHE_KEY)  # a fresh replay for this deployment
    logs = {name: tmp_path / f"{name}.log" for name in ("web", "worker", "beat", "bridge")}
    processes: list[subprocess.Popen] = []
    try:
        web, base = start_web(env=env, log=logs["web"])
        processes.append(web)
        processes.append(start_worker(env=env, queues="scan,trade,telegram,default", log=logs["worker"]))
        bridge = start_process(
            [sys.executable, "manage.py", "run_bridge", "--timeout", "5"], env=env, log=logs["bridge"]
        )
        processes.append(bridge)

        # a user talks to the bot through the bridge process and switches paper auto-trading on
        wait_for(
            lambda: bot_api.calls_of("getWebhookInfo"),
            seconds=60,
            what="the bridge polling",
            processes=processes,
            logs=logs.values(),
        )
        bot_api.inject_message(user_id=USER_ID, text="/start", first_name="Parts", username="parts_user")
        wait_for(
            lambda: bot_api.sent_messages(USER_ID),
            seconds=30,
            what="the bridge's welcome",
            processes=processes,
            logs=logs.values(),
        )
        bot_api.inject_message(user_id=USER_ID, text="/autotrade on", first_name="Parts", username="parts_user")
        wait_for(
            lambda: TelegramUser.objects.filter(telegram_id=USER_ID, auto_trading_enabled=True).exists(),
            seconds=30,
            what="/autotrade on",
            processes=processes,
            logs=logs.values(),
        )

        started = time.monotonic()
        processes.append(
            start_process(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "beat",
                    "-S",
                    "django_celery_beat.schedulers:DatabaseScheduler",
                    "--loglevel",
                    "INFO",
                ],
                env=env,
                log=logs["beat"],
            )
        )

        def broadcast() -> bool:
            return any(
                ("LONG " in (m.get("text") or "") or "SHORT " in (m.get("text") or "")) and "/BTC" in m["text"]
                for m in bot_api.sent_messages(USER_ID)
            )

        seen_at = wait_for(broadcast, seconds=60, what="a signal broadcast", processes=processes, logs=logs.values())
        opened_at = wait_for(
            lambda: Position.objects.filter(user__telegram_id=USER_ID, mode="paper").exists(),
            seconds=max(1.0, 60 - (time.monotonic() - started)),
            what="a paper position",
            processes=processes,
            logs=logs.values(),
        )
        assert seen_at - started < 60 and opened_at - started < 60
        signal = Signal.objects.order_by("created_at").first()
        assert signal is not None and signal.created_at.year == 2018  # on the replay clock, not the wall clock
        position = Position.objects.filter(user__telegram_id=USER_ID).order_by("pk").first()
        assert position.opened_at.year == 2018 and position.signal_id is not None
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200  # the web server of the same deployment
    finally:
        for process in processes:
            kill_group(process)
