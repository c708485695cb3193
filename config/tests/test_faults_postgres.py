"""PostgreSQL drops the connection (pg_terminate_backend) mid-request, against the running ASGI server: the request
fails cleanly (500 with an error reference, no driver detail) and the next request works on a fresh connection."""

import threading
import time

import httpx
import psycopg
import pytest

from config.tests.ops_processes import kill_group, service_env, start_web

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _admin_connection(db: dict) -> psycopg.Connection:
    return psycopg.connect(
        host=db.get("HOST") or "127.0.0.1", port=db.get("PORT") or 5432, user=db.get("USER") or "postgres",
        password=db.get("PASSWORD") or None, dbname=db["NAME"], autocommit=True,
    )


def _terminate_when_sleeping(db: dict, done: list[int]) -> None:
    """Find the backend running the view's pg_sleep and terminate it (gives up after 10 s)."""
    with _admin_connection(db) as admin:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rows = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND query LIKE %s AND pid <> pg_backend_pid()",
                [db["NAME"], "SELECT pg_sleep%"],
            ).fetchall()
            if rows:
                for (pid,) in rows:
                    admin.execute("SELECT pg_terminate_backend(%s)", [pid])
                    done.append(pid)
                return
            time.sleep(0.02)


@pytest.fixture
def web(postgres_database, redis_url, tmp_path):
    env = service_env(db=postgres_database, redis_url=redis_url, DJANGO_SETTINGS_MODULE="config.tests.settings_faults",
                      DB_CONN_MAX_AGE="600", CELERY_TASK_ALWAYS_EAGER="true", CELERY_BROKER_URL="")
    process, base = start_web(env=env, log=tmp_path / "web.log")
    yield base
    kill_group(process)


def test_connection_terminated_mid_request_fails_cleanly_and_the_next_request_works(web, postgres_database):
    terminated: list[int] = []
    killer = threading.Thread(target=_terminate_when_sleeping, args=(postgres_database, terminated))
    killer.start()
    response = httpx.get(f"{web}/faults/slow-query?seconds=3", headers={"X-Request-ID": "pg-cut"}, timeout=20)
    killer.join(timeout=15)
    assert terminated, "the request's backend was never seen running"
    assert response.status_code == 500
    assert "Something went wrong" in response.text and "terminat" not in response.text.lower()
    assert response.headers["X-Request-ID"] == "pg-cut"

    following = httpx.get(f"{web}/faults/slow-query?seconds=0", timeout=10)
    assert following.status_code == 200
    assert following.json()["pid"] not in terminated  # a fresh connection
    assert httpx.get(f"{web}/readyz", timeout=10).json()["database"] is True

    # Persistent connections (CONN_MAX_AGE > 0): backends killed while idle (PostgreSQL restart, proxy timeout) are
    # caught by CONN_HEALTH_CHECKS at the start of the next request, which then works.
    pids = {httpx.get(f"{web}/faults/slow-query?seconds=0", timeout=10).json()["pid"] for _ in range(6)}
    with _admin_connection(postgres_database) as admin:
        alive = {pid for (pid,) in admin.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", [list(pids)])}
        assert alive  # some of the server's connections stay open between requests
        for pid in alive:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    time.sleep(0.2)
    responses = [httpx.get(f"{web}/faults/slow-query?seconds=0", timeout=10) for _ in range(6)]
    assert [r.status_code for r in responses] == [200] * 6
    assert not {r.json()["pid"] for r in responses} & alive
