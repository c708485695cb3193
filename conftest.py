"""Fixtures shared by every app's tests: real Redis when configured, a real Celery worker, staff clients."""

from __future__ import annotations

import os

import pytest
from django.conf import settings

# When the services are required (CI and `make test` on a machine that has them), a missing server fails the test
# instead of skipping it, so a green run always means the real-service tests ran.
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"

pytest_plugins = ["testsupport.pytest_plugin"]


def _unavailable(reason: str):
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@pytest.fixture
def redis_url() -> str:
    """URL of a real Redis server for this test run; the test's keys live in their own database number."""
    if not settings.REDIS_URL:
        _unavailable("REDIS_URL is not set")
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError:
        _unavailable(f"Redis at {settings.REDIS_URL} is not reachable")
    return settings.REDIS_URL


@pytest.fixture
def postgres_database(transactional_db) -> dict:
    """The test database's settings, when it is PostgreSQL (needed to share it with a subprocess)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        _unavailable("this test needs PostgreSQL (DATABASE_URL=postgres://…)")
    return connection.settings_dict


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("operator", "operator@example.com", "a-long-password-1")
    client.force_login(user)
    return client


@pytest.fixture(autouse=True)
def _isolated_media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _celery_join_does_not_block():
    """A test that runs Celery's worker start-up in this process (worker hooks, a worker in a thread) leaves the
    process flagged as "inside a worker", after which ``result.get()`` raises; every test starts without the flag,
    and with this process's Celery app as the current one."""
    from celery._state import _set_task_join_will_block

    from config.celery import app

    _set_task_join_will_block(False)
    yield
    _set_task_join_will_block(False)
    # a broker client a test made (Celery(broker=...)) becomes the current app unless told otherwise; shared tasks
    # would then publish to it instead of running here: this process's app is current again after every test
    app.set_current()
    app.set_default()
