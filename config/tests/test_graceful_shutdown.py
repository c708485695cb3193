"""SIGTERM stops every production process within 30 s: the Procfile's web, worker, trader, beat and bridge, started as README's
production section says (DJANGO_ENV=production and its secrets) on real PostgreSQL and a private Redis.

The moment of the signal is a busy one: the web server holds an open WebSocket, the trader runs a trade-queue task
that would take 10 minutes (so its warm shutdown must give up after WORKER_SHUTDOWN_GRACE_SECONDS and put the task
back in its queue), beat has sent its first tasks, and the bridge is in a long poll of the local Bot API server.
The signal goes to each main process only, as docker sends it and as systemd does with KillMode=mixed.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
import time
import uuid

import aiohttp
import pytest
import redis
from celery import Celery
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore

from config.tests.ops_processes import ROOT, RedisServer, kill_group, procfile_command, service_env, start_web

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

STOP_BUDGET_SECONDS = 30.0  # docker-compose stop_grace_period and systemd TimeoutStopSec
# Start-up measured on the 2-core machine with all four starting at once: 10-25 s each (Django and Celery imports);
# a generous deadline, since a slow start is not what this test is about.
START_DEADLINE_SECONDS = 180.0


# A production-grade key (the start-up checks refuse the development one), shared with the session made by the test.
PRODUCTION_SECRET_KEY = secrets.token_urlsafe(64)


def _production_env(*, db: dict, redis_url: str, bot_api_base: str) -> dict[str, str]:
    # The secrets production requires; the test's own, so the session the test stores is valid for the web server.
    return service_env(
        db=db,
        redis_url=redis_url,
        DJANGO_ENV="production",
        SECRET_KEY=PRODUCTION_SECRET_KEY,
        FERNET_KEYS=",".join(settings.FERNET_KEYS),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="false",  # the test speaks plain HTTP on loopback (behind TLS in production)
        TELEGRAM_API_BASE=bot_api_base,
        TELEGRAM_BOT_TOKEN="",
    )


def _start(name: str, env: dict[str, str], log, *extra: str) -> subprocess.Popen:
    with log.open("a") as out:
        return subprocess.Popen(
            [*procfile_command(name, env=env), *extra],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait(predicate, *, what: str, processes: dict, logs: dict) -> float:
    started = time.monotonic()
    while not predicate():
        for name, process in processes.items():
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}:\n{logs[name].read_text()[-3000:]}")
        if time.monotonic() - started > START_DEADLINE_SECONDS:
            tails = "\n".join(f"--- {n}\n{log.read_text()[-1500:]}" for n, log in logs.items())
            raise AssertionError(f"timed out waiting for {what}\n{tails}")
        time.sleep(0.2)
    return time.monotonic() - started


def _staff_session_key() -> str:
    user = get_user_model().objects.create_user("operator-ws", password="x" * 16, is_staff=True)
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()
    return session.session_key


async def _terminate_all_with_an_open_websocket(web_base: str, session_key: str, processes: dict) -> tuple[dict, int]:
    """Open a live-updates WebSocket, SIGTERM every main process, return each one's seconds to exit and the close
    code the WebSocket client got."""
    headers = {"Cookie": f"sessionid={session_key}", "Origin": web_base}
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{web_base}/ws/live/", headers=headers) as socket:
        hello = await socket.receive_json(timeout=30)
        assert hello["type"] == "hello"
        signalled = time.monotonic()
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        closing = asyncio.ensure_future(socket.receive(timeout=STOP_BUDGET_SECONDS + 30))
        stopped: dict[str, float] = {}
        while len(stopped) < len(processes) and time.monotonic() - signalled < STOP_BUDGET_SECONDS + 30:
            for name, process in processes.items():
                if name not in stopped and process.poll() is not None:
                    stopped[name] = time.monotonic() - signalled
            await asyncio.sleep(0.1)
        message = await closing
        return stopped, socket.close_code or message.data


def test_every_process_stops_within_30_seconds_of_sigterm(postgres_database, bot_api, tmp_path, settings):
    settings.SECRET_KEY = PRODUCTION_SECRET_KEY  # the staff session made here must be valid in the web process
    redis_server = RedisServer(tmp_path).start()
    env = _production_env(db=postgres_database, redis_url=redis_server.url, bot_api_base=bot_api.base_url)
    logs = {name: tmp_path / f"{name}.log" for name in ("web", "worker", "trader", "beat", "bridge")}
    session_key = _staff_session_key()
    processes: dict[str, subprocess.Popen] = {}
    try:
        web, web_base = start_web(env=env, log=logs["web"])
        processes["web"] = web
        processes["worker"] = _start("worker", env, logs["worker"])
        processes["trader"] = _start("trader", env, logs["trader"], "--include", "config.tests.shutdown_tasks")
        processes["beat"] = _start("beat", env, logs["beat"])
        generation = bot_api._poll_generation
        processes["bridge"] = _start("bridge", env, logs["bridge"])

        broker = redis.Redis.from_url(redis_server.url)
        marker = f"started:{uuid.uuid4().hex}"
        Celery(broker=redis_server.url, set_as_current=False).send_task(
            "config.tests.shutdown_tasks.long_trade_task", args=[marker], queue="trade"
        )
        _wait(
            lambda: broker.get(marker) is not None,
            what="the trader to start the long task",
            processes=processes,
            logs=logs,
        )
        _wait(
            lambda: "Sending due task" in logs["beat"].read_text(),
            what="beat to send its first task",
            processes=processes,
            logs=logs,
        )
        _wait(
            lambda: bot_api._poll_generation > generation,
            what="the bridge's first long poll",
            processes=processes,
            logs=logs,
        )

        stopped, close_code = asyncio.run(_terminate_all_with_an_open_websocket(web_base, session_key, processes))
        summary = {name: f"{seconds:.1f} s" for name, seconds in stopped.items()}
        for name, process in processes.items():
            assert name in stopped, (
                f"{name} still running {STOP_BUDGET_SECONDS:.0f} s after SIGTERM ({summary})\n"
                f"{logs[name].read_text()[-3000:]}"
            )
            assert stopped[name] < STOP_BUDGET_SECONDS, (name, summary)
            assert process.returncode == 0, (name, process.returncode, logs[name].read_text()[-3000:])
        assert close_code == 1012  # uvicorn told the browser "service restart"; live.js reconnects
        assert "Traceback" not in logs["bridge"].read_text()
        # the long task was cut short, not lost: it is back in its queue for the next worker
        assert broker.llen("trade") >= 1 and int(broker.get(marker)) == 1
        assert "Restoring" in logs["trader"].read_text()
        print(f"seconds from SIGTERM to exit: {summary}")
    finally:
        for process in processes.values():
            if process.poll() is None:
                kill_group(process)
        redis_server.stop()
