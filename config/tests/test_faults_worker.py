"""kill -9 the trade worker (its main process and pool children) during a burst of executions for many users, then
start it again as the service manager would: every (signal, user) is decided exactly once within a minute of the
restart, every card is delivered once, every open position has its stop (config/tests/fault_stack.py).

The broker keeps its production visibility timeout (900 s), so the killed worker's unacknowledged messages are NOT
what recovers the executions it held: the execution intents it had started are queued again by the sweeper once
their lease runs out (``TRADE_INTENT_LEASE_SECONDS``), the ones it had not reached are simply consumed by the new
worker. Two pool processes, so executions for the same user run at once (the deadlock they used to hit is covered by
config/tests/test_faults_same_user.py).
"""

import time

import pytest

from config.tests.fault_stack import (
    RECOVERY_BUDGET_SECONDS,
    FanoutStack,
    assert_invariants,
    burst_signals,
    burst_users,
    print_report,
    progress,
    wait_for_progress,
    wait_until_done,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

USERS = 40


@pytest.fixture
def stack(postgres_database, bot_api, tmp_path):
    stack = FanoutStack(tmp_path=tmp_path, db=postgres_database, bot_api=bot_api)
    yield stack
    stack.stop()


def test_trade_worker_killed_mid_burst_loses_and_doubles_nothing(stack):
    users, signals = burst_users(USERS), burst_signals()
    stack.start()
    stack.announce(signals)
    wait_for_progress(stack, users=users, signals=signals, share=0.15)

    trade = stack.services["trade-worker"]
    trade.kill()  # SIGKILL to the process group: no clean-up, no rollback by Python, no ack
    killed_at = time.monotonic()
    at_kill = progress(users=users, signals=signals, bot_api=stack.bot_api)
    assert at_kill.decided < at_kill.expected_intents, "the burst finished before the kill; nothing was tested"
    time.sleep(1)
    stack.restart("trade-worker")
    took = wait_until_done(stack, users=users, signals=signals, fault_at=killed_at, fault_ended_at=time.monotonic())
    time.sleep(2)  # a late duplicate would show up now

    assert_invariants(users=users, signals=signals, bot_api=stack.bot_api)
    assert took <= RECOVERY_BUDGET_SECONDS, f"done {took:.1f} s after the restarted worker was ready"
    assert not any("deadlock detected" in s.log.read_text() for s in stack.services.values())
    print_report(
        "kill -9",
        stack,
        decided_at_kill=f"{at_kill.decided}/{at_kill.expected_intents}",
        done_after_recovery=f"{took:.1f}s",
    )
