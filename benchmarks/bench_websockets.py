"""500 concurrent WebSockets on loopback receive one broadcast event: time until the last socket has it (< 1 s).

Starts the real ASGI app (uvicorn, config.asgi) against a throw-away SQLite database and the Redis channel layer,
opens 500 authenticated sockets (one staff session), then sends events to the staff group through Redis from this
process — exactly what a Celery worker's consumer task does — and measures the latency to every socket: 5
broadcasts, the median of their last-socket latencies is the figure. Baseline in the same run: the same broadcast
while a single socket is connected (the floor of the Redis channel layer and the server).
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
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_ENV": "development",
        "DEBUG": "false",
        "DATABASE_URL": f"sqlite:///{tmp}/db.sqlite3",
        "REDIS_URL": REDIS_URL,
        "LOG_LEVEL": "WARNING",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
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
        [
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--ws-max-queue",
            "64",
            "--timeout-graceful-shutdown",
            "5",
        ],
        cwd=ROOT,
        env=env,
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
    for _ in range(600):  # wait for the server (up to a minute on a loaded machine)
        try:
            async with aiohttp.ClientSession() as probe, probe.get(f"http://127.0.0.1:{port}/healthz") as response:
                if response.status == 200:
                    break
        except aiohttp.ClientError:
            await asyncio.sleep(0.1)
    connector = aiohttp.TCPConnector(limit=0)
    layer = get_channel_layer()
    rounds = 5

    async def connect(http):
        ws = await http.ws_connect(url, headers=headers, heartbeat=None)
        hello = await ws.receive_json(timeout=10)
        assert hello["type"] == "hello", hello
        return ws

    async def broadcast(sockets, n):
        sent_at = time.perf_counter()
        await layer.group_send("staff", {"type": "live.event", "payload": {"type": "bench", "n": n}})

        async def receive(ws):
            message = await ws.receive_json(timeout=10)
            assert message == {"type": "bench", "n": n}, message
            return time.perf_counter() - sent_at

        return sorted(await asyncio.gather(*(receive(ws) for ws in sockets)))

    async with aiohttp.ClientSession(connector=connector) as http:
        first = await connect(http)
        baseline = [(await broadcast([first], n))[-1] for n in range(rounds)]
        started = time.perf_counter()
        sockets = [first, *await asyncio.gather(*(connect(http) for _ in range(SOCKETS - 1)))]
        connect_s = time.perf_counter() - started
        runs = [await broadcast(sockets, rounds + n) for n in range(rounds)]
        await asyncio.gather(*(ws.close() for ws in sockets))
    from report import load_average, result_line

    lasts = [r[-1] for r in runs]
    latencies = sorted(runs, key=lambda r: r[-1])[len(runs) // 2]  # the broadcast of median last-socket latency
    p50, p99 = statistics.median(latencies), latencies[int(0.99 * (len(latencies) - 1))]
    last, floor = statistics.median(lasts), statistics.median(baseline)
    received = min(len(r) for r in runs)
    print(f"sockets={SOCKETS} connected in {connect_s:.2f} s; {load_average()}")
    print(f"broadcast latency (the median broadcast): p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
    print(
        f"last socket, {rounds} broadcasts: {', '.join(f'{x * 1000:.0f}' for x in lasts)} ms; median {last * 1000:.0f} ms"
    )
    print(f"baseline, one socket connected: median {floor * 1000:.1f} ms")
    ok = last < 1.0 and received == SOCKETS
    print(
        result_line(
            f"WebSocket broadcast to {SOCKETS} sockets",
            f"last socket after {last * 1000:.0f} ms (median of {rounds}), {received}/{SOCKETS} received",
            f"{last / floor:.1f}x the one-socket broadcast ({floor * 1000:.1f} ms, same run)",
            "< 1000 ms, every socket",
            ok,
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
