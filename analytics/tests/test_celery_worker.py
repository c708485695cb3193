"""A real Celery worker process, consuming from real Redis and writing to the real PostgreSQL test database."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from celery import Celery

from analytics.models import Heartbeat

ROOT = Path(__file__).resolve().parents[2]


def _database_url(db: dict) -> str:
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db.get('USER') or 'postgres'}{password}@{host}:{port}/{db['NAME']}"


@pytest.mark.slow
@pytest.mark.redis
def test_task_round_trips_through_a_real_worker(redis_url, postgres_database):
    queue = f"test-{uuid.uuid4().hex[:8]}"  # private queue: concurrent test runs cannot steal the task
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_ENV": "development",
        "DATABASE_URL": _database_url(postgres_database),
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "CELERY_TASK_ALWAYS_EAGER": "false",
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            queue,
            "--pool",
            "solo",
            "--concurrency",
            "1",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    client = Celery(broker=redis_url, backend=redis_url, set_as_current=False)  # never this process's current app
    try:
        result = client.send_task("analytics.tasks.heartbeat", queue=queue)
        beat_at = result.get(timeout=60)
    finally:
        worker.terminate()
        output = worker.communicate(timeout=30)[0]
        client.close()
    assert beat_at, output
    heartbeat = Heartbeat.objects.get(name="worker")
    assert heartbeat.beat_at.isoformat() == beat_at
