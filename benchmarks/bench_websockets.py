"""500 concurrent WebSockets on loopback receive one broadcast event: time until the last socket has it (< 1 s).

Starts the real ASGI app (uvicorn, config.asgi) against a throw-away SQLite database and the Redis channel layer,
opens 500 authenticated sockets (one staff session), then sends one event to the staff group through Redis from this
process — exactly what a Celery worker's consumer task does — and measures the latency to every socket.
Needs Redis on 127.0.0.1:6379 (db 12 is used). Run: .venv/bin/python benchmarks/bench_websockets.py
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOCKETS = int(os.environ.get("BENCH_SOCKETS", "500"))
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    tmp = tempfile.mkdtemp(prefix="bench-ws-")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "DJANGO_ENV": "development", "DEBUG": "false",
           "DATABASE_URL": f"sqlite:///{tmp}/db.sqlite3", "REDIS_URL": REDIS_URL, "LOG_LEVEL": "WARNING",
           "ALLOWED_HOSTS": "127.0.0.1,localhost"}
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    user = get_user_model().objects.create_user("bench", password="x" * 16, is_staff=True)
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", "--ws-max-queue", "64", "--timeout-graceful-shutdown", "5"],
        cwd=ROOT, env=env,
    )
    try:
        return asyncio.run(run_clients(port, session.session_key))
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def run_clients(port: int, session_key: str) -> int:
    import aiohttp
    from channels.layers import get_channel_layer

    url = f"http://127.0.0.1:{port}/ws/live/"
    headers = {"Cookie": f"sessionid={session_key}", "Origin": f"http://127.0.0.1:{port}"}
    for _ in range(100):  # wait for the server
        try:
            async with aiohttp.ClientSession() as probe, probe.get(f"http://127.0.0.1:{port}/healthz") as response:
                if response.status == 200:
                    break
        except aiohttp.ClientError:
            await asyncio.sleep(0.1)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        started = time.perf_counter()
        sockets = await asyncio.gather(*(http.ws_connect(url, headers=headers, heartbeat=None) for _ in range(SOCKETS)))
        for ws in sockets:
            hello = await ws.receive_json(timeout=10)
            assert hello["type"] == "hello", hello
        connect_s = time.perf_counter() - started

        layer = get_channel_layer()
        sent_at = time.perf_counter()
        await layer.group_send("staff", {"type": "live.event", "payload": {"type": "bench", "n": 1}})

        async def receive(ws):
            message = await ws.receive_json(timeout=10)
            assert message == {"type": "bench", "n": 1}, message
            return time.perf_counter() - sent_at

        latencies = sorted(await asyncio.gather(*(receive(ws) for ws in sockets)))
        await asyncio.gather(*(ws.close() for ws in sockets))
    p50, p99, worst = statistics.median(latencies), latencies[int(0.99 * (len(latencies) - 1))], latencies[-1]
    print(f"sockets={SOCKETS} connected in {connect_s:.2f} s")
    print(f"broadcast latency: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, last socket {worst * 1000:.0f} ms (target < 1000 ms)")
    print(f"received by {len(latencies)}/{SOCKETS} sockets")
    return 0 if worst < 1.0 and len(latencies) == SOCKETS else 1


if __name__ == "__main__":
    raise SystemExit(main())
