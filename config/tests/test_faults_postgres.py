"""PostgreSQL faults against real processes.

1. PostgreSQL is cut for 20 s (no new connection to the test database, every existing one terminated, again and again)
   during a burst of executions and cards for many users: every (signal, user) is decided exactly once within a minute
   of the recovery, every card is delivered once (outcomes of messages sent during the outage are recorded once the
   database is back, not sent again), every open position has its stop (config/tests/fault_stack.py).
2. PostgreSQL drops the connection (pg_terminate_backend) mid-request, against the running ASGI server: the request
   fails cleanly (500 with an error reference, no driver detail) and the next request works on a fresh connection.
"""

import threading
import time

import httpx
import psycopg
import pytest

from config.tests.fault_stack import (
    RECOVERY_BUDGET_SECONDS,
    FanoutStack,
    assert_invariants,
    burst_signals,
    burst_users,
    own_database_pid,
    postgres_cut,
    print_report,
    progress,
    wait_for_progress,
    wait_until_done,
)
from config.tests.ops_processes import kill_group, service_env, start_web

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

USERS = 40
OUTAGE_SECONDS = 20


@pytest.fixture
def stack(postgres_database, bot_api, tmp_path):
    stack = FanoutStack(tmp_path=tmp_path, db=postgres_database, bot_api=bot_api)
    yield stack
    stack.stop()


def test_postgres_cut_for_20_seconds_mid_burst_loses_and_doubles_nothing(stack, postgres_database):
    users, signals = burst_users(USERS), burst_signals()
    stack.start()
    stack.announce(signals)
    wait_for_progress(stack, users=users, signals=signals, share=0.1)

    with postgres_cut(postgres_database, keep_pid=own_database_pid()):
        cut_at = time.monotonic()
        at_cut = progress(users=users, signals=signals, bot_api=stack.bot_api)
        while time.monotonic() - cut_at < OUTAGE_SECONDS:
            stack.supervise()
            time.sleep(0.1)
    took = wait_until_done(stack, users=users, signals=signals, fault_at=cut_at, fault_ended_at=time.monotonic())
    time.sleep(2)  # a late duplicate would show up now

    assert at_cut.decided < at_cut.expected_intents, "the burst finished before the cut; nothing was tested"
    assert_invariants(users=users, signals=signals, bot_api=stack.bot_api)
    assert took <= RECOVERY_BUDGET_SECONDS, f"done {took:.1f} s after the database came back"
    logs = "".join(s.log.read_text() for s in stack.services.values())
    assert "not currently accepting connections" in logs, "the workers never saw the cut"
    print_report(
        "postgres cut",
        stack,
        decided_at_cut=f"{at_cut.decided}/{at_cut.expected_intents}",
        done_after_recovery=f"{took:.1f}s",
    )


def _admin_connection(db: dict) -> psycopg.Connection:
    return psycopg.connect(
        host=db.get("HOST") or "127.0.0.1",
        port=db.get("PORT") or 5432,
        user=db.get("USER") or "postgres",
        password=db.get("PASSWORD") or None,
        dbname=db["NAME"],
        autocommit=True,
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
    env = service_env(
        db=postgres_database,
        redis_url=redis_url,
        DJANGO_SETTINGS_MODULE="config.tests.settings_faults",
        DB_CONN_MAX_AGE="600",
        CELERY_TASK_ALWAYS_EAGER="true",
        CELERY_BROKER_URL="",
    )
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
