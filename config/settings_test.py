"""Settings for the test suite: the normal settings with DJANGO_ENV=test.

Tasks run eagerly unless a test starts a real worker (the worker gets its own environment); passwords hash fast.
Under pytest-xdist each worker uses its own Redis database number and its own test database.
DATABASE_URL and REDIS_URL still come from the environment, so `make test` on a machine with PostgreSQL and Redis
runs against them.
"""

import os

os.environ.setdefault("DJANGO_ENV", "test")
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "true")
# The polling bridge handles updates in the test's own thread (and transaction); concurrency tests ask for workers.
os.environ.setdefault("TELEGRAM_BRIDGE_CONCURRENCY", "1")
# The replay clock stands still unless a test moves it; the processes a test starts inherit this (a test that wants the
# running clock sets REPLAY_SPEED in their environment).
os.environ.setdefault("REPLAY_SPEED", "0")


def _per_worker_redis_url(url: str, worker: str) -> str:
    """pytest-xdist worker N gets Redis database (base + N + 1) % 16, so parallel workers never share keys or queues
    (the database names get a _gwN suffix from pytest-django the same way)."""
    base, _, db = url.rstrip("/").rpartition("/")
    number = int(db) if db.isdigit() else 0
    return f"{base}/{(number + int(worker.removeprefix('gw')) + 1) % 16}" if db.isdigit() else url


# Once per test run: processes the tests start inherit the environment (and this marker), so they keep the number.
if os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get("REDIS_URL") and not os.environ.get("TEST_REDIS_URL_BASE"):
    os.environ["TEST_REDIS_URL_BASE"] = os.environ["REDIS_URL"]
    os.environ["REDIS_URL"] = _per_worker_redis_url(os.environ["REDIS_URL"], os.environ["PYTEST_XDIST_WORKER"])

from config.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
