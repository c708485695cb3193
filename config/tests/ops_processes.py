"""Real processes for the fault and load tests: a private redis-server, the Procfile's web server and Celery workers.

Everything binds to 127.0.0.1 on a free port and is stopped by the test that started it; the machine's shared Redis
is never touched (the Redis fault test stops and restarts its own server).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url(db: dict) -> str:
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db.get('USER') or 'postgres'}{password}@{host}:{port}/{db['NAME']}"


class RedisServer:
    """A private redis-server whose data survives stop()/start() (append-only file in a temporary directory)."""

    def __init__(self, directory: Path, *, appendfsync: str = "always"):
        """``appendfsync="everysec"`` (Redis' own default for the append-only file) for the load tests, where an
        fsync per enqueue would measure the disk; the fault tests keep ``always``."""
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        self.directory = directory
        self.appendfsync = appendfsync
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                self.appendfsync,
                "--dir",
                str(self.directory),
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: redis flushes the append-only file and exits
            self.process.wait(timeout=10)
        self.process = None


def service_env(*, db: dict, redis_url: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_ENV": "development",
        "DATABASE_URL": database_url(db),
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


def start_worker(*, env: dict[str, str], queues: str, log: Path, concurrency: int = 2) -> subprocess.Popen:
    """A prefork worker in its own process group (so kill -9 can take the main process and its children)."""
    with log.open("a") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                queues,
                "--pool",
                "prefork",
                "--concurrency",
                str(concurrency),
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def procfile_command(name: str, *, env: dict[str, str], port: int | None = None) -> list[str]:
    """The Procfile's command of process ``name``, run from this virtualenv (``${VAR:-default}`` expanded from
    ``env``, the web server bound to 127.0.0.1:``port``), so the tests run exactly the production commands."""
    line = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith(f"{name}:"))
    values = {**env, "PORT": str(port or "")}
    expanded = re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: values.get(m[1]) or m[2] or "", line.split(":", 1)[1])
    argv = [("127.0.0.1" if arg == "0.0.0.0" else arg) for arg in shlex.split(expanded)]  # noqa: S104
    executable = Path(sys.executable).parent / argv[0]
    return [str(executable) if executable.exists() else argv[0], *argv[1:]]


def web_command(*, port: int, env: dict[str, str]) -> list[str]:
    """The Procfile's ``web`` command bound to 127.0.0.1:``port`` (``${PORT}`` and ``${WEB_CONCURRENCY:-2}``
    expanded from ``env``), so the tests measure exactly the production server."""
    return procfile_command("web", env=env, port=port)


def start_web(*, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    """The production web server (the Procfile's command) on a free loopback port; waits for /healthz."""
    port = free_port()
    with log.open("a") as out:
        process = subprocess.Popen(
            web_command(port=port, env=env),
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            kill_group(process)
            raise RuntimeError(f"web server did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
