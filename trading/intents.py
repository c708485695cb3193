"""Execution intents: trading's fan-out of ``signal.created``, exactly once per (signal, user), not per signal.

* ``execution_intents_fan_out(signal_id=)``: in ONE transaction, one ``ExecutionIntent`` per user with auto-trading on
  (not banned, with preferences) — unique per (signal, user), so a repeated fan-out only adds users who were not there
  and never touches a decided intent — and the ``SignalFanout`` record of the consumer. Only after the commit is a task
  queued per pending intent (``trading.tasks.execute_intent``): the queue is a doorbell, the database the truth.
* ``execution_intent_execute(intent_id=)``: the flip of an opposite auto position (flow signals, opted-in users), then
  ``services.signal_execute_for_user`` (risk manager and user policy → sizing → stored pending position → executor,
  itself idempotent under the user-row lock and the unique (user, signal) position/refusal), and the outcome written
  back: ``opened``, ``refused`` with the refusal's reason, ``skipped`` (the signal is no longer open) or ``failed``.
  A retryable failure (exchange timeout/429/5xx, a lost database connection, a deadlock) is raised and leaves the intent
  pending: the task retries and the sweeper covers the rest.
* ``execution_intents_due()``: the sweeper (beat, every 10 s): intents still pending after ``due_at`` — the deadline
  (``TRADE_INTENT_DEADLINE_SECONDS``) after they were queued, the lease (``TRADE_INTENT_LEASE_SECONDS``) after their
  execution started — are queued again; each further re-queue waits as long as the intent has already waited, at most
  ``REQUEUE_BACKOFF_MAX_SECONDS``. A worker killed by SIGKILL, a Redis crash that lost the queued tasks or a database
  outage therefore delays an execution by seconds and loses none; an intent executed twice at once is harmless (the
  second finds the position under the user-row lock).
* ``signal_execute(signal_id=)``: fan-out and every pending intent executed in this process, with counts — the embedded
  default (tasks run eagerly), the demo and the tests.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F
from django.utils import timezone

from accounts.models import TelegramUser
from accounts.policy import trading_mode_for_user
from config.celery import transient_errors
from exchanges.errors import RetryableExchangeError
from signals.models import Signal
from signals.services import signal_fanout_record
from trading import services
from trading.executors.factory import executor_for
from trading.flip import FLOW_SOURCE, position_flip_if_opposed
from trading.market import market_now
from trading.models import ExecutionIntent, Position, TradeRefusal

logger = logging.getLogger(__name__)

FANOUT_CONSUMER = "trading.tasks.execute_signal"
# Exchange hiccups, and PostgreSQL or Redis dropping out (an event that cannot be dispatched after the commit of an
# opened position raises too: the re-run finds the position and records it as opened).
RETRYABLE = (RetryableExchangeError, *transient_errors())
INTENT_MAX_ATTEMPTS = 12  # executions started; past it the sweeper records the intent as failed
Outcome = ExecutionIntent.Outcome


@dataclass(frozen=True)
class IntentRun:
    intent: ExecutionIntent
    flipped: bool = False


def _seconds(name: str) -> timedelta:
    return timedelta(seconds=getattr(settings, name))


def requeue_delay(*, waited: timedelta) -> timedelta:
    """How long a re-queued intent waits before the next re-queue: as long as it has waited, within the bounds."""
    return min(max(waited, _seconds("TRADE_INTENT_DEADLINE_SECONDS")), _seconds("REQUEUE_BACKOFF_MAX_SECONDS"))


def intent_candidates():
    """The users the fan-out stores an intent for: auto-trading on, not banned, with preferences. The user policy
    (``accounts.policy.position_allowed_for_user``, through the risk manager) decides each intent, so a refused user
    hears why (``TradeRefusal``, notified once) and the intent records the reason."""
    return TelegramUser.objects.filter(auto_trading_enabled=True, is_banned=False, preferences__isnull=False)


def execution_intents_fan_out(*, signal_id: int, now: datetime | None = None) -> list[int]:
    """Store the signal's intents and the fan-out record in one transaction; ids of the intents still pending."""
    now = now or timezone.now()
    due = now + _seconds("TRADE_INTENT_DEADLINE_SECONDS")
    with transaction.atomic():
        if not Signal.objects.filter(pk=signal_id).exists():
            logger.warning("signal %s to execute does not exist", signal_id)
            return []
        user_ids = list(intent_candidates().order_by("pk").values_list("pk", flat=True))
        ExecutionIntent.objects.bulk_create(
            [ExecutionIntent(signal_id=signal_id, user_id=user_id, created_at=now, due_at=due) for user_id in user_ids],
            ignore_conflicts=True,
            batch_size=1000,
        )
        signal_fanout_record(signal_id=signal_id, consumer=FANOUT_CONSUMER)
        pending = list(
            ExecutionIntent.objects.filter(signal_id=signal_id, outcome=Outcome.PENDING)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
    logger.info("signal %s fanned out to %d user(s); %d pending", signal_id, len(user_ids), len(pending))
    return pending


def _decide(
    intent: ExecutionIntent, outcome: str, *, reason: str = "", detail: str = "", position: Position | None = None
) -> ExecutionIntent:
    """Write the outcome once (a concurrent execution of the same intent found the same state; the first write wins)."""
    ExecutionIntent.objects.filter(pk=intent.pk, outcome=Outcome.PENDING).update(
        outcome=outcome, reason=reason[:16], detail=detail[:300], position=position, decided_at=timezone.now()
    )
    intent.refresh_from_db()
    return intent


def _outcome_of(intent: ExecutionIntent, result: Position | TradeRefusal | None) -> ExecutionIntent:
    if isinstance(result, Position):
        if result.status == Position.Status.FAILED:
            return _decide(
                intent,
                Outcome.FAILED,
                reason=TradeRefusal.Reason.EXECUTION,
                detail="the entry order failed",
                position=result,
            )
        return _decide(intent, Outcome.OPENED, position=result)
    refusal = (
        result
        if isinstance(result, TradeRefusal)
        else TradeRefusal.objects.filter(user_id=intent.user_id, signal_id=intent.signal_id).first()
    )
    if refusal is not None:
        return _decide(intent, Outcome.REFUSED, reason=refusal.reason, detail=refusal.detail)
    return _decide(intent, Outcome.SKIPPED, reason="none", detail="nothing to execute")


def execution_intent_execute(*, intent_id: int, executor_factory=None) -> IntentRun | None:
    """Execute one intent (a no-op when it is decided already); ``None`` when it does not exist (any more)."""
    intent = ExecutionIntent.objects.select_related("signal__symbol", "user__preferences").filter(pk=intent_id).first()
    if intent is None or intent.outcome != Outcome.PENDING:
        return IntentRun(intent) if intent is not None else None
    ExecutionIntent.objects.filter(pk=intent.pk, outcome=Outcome.PENDING).update(
        attempts=F("attempts") + 1, due_at=timezone.now() + _seconds("TRADE_INTENT_LEASE_SECONDS")
    )
    user, signal = intent.user, intent.signal
    try:
        executor = (executor_factory or executor_for)(user=user, mode=trading_mode_for_user(user=user))
        now = executor.now() if hasattr(executor, "now") else market_now()  # the replay clock in replay mode
        if not services.signal_is_tradeable(signal=signal, now=now):
            return IntentRun(
                _decide(
                    intent,
                    Outcome.SKIPPED,
                    reason=TradeRefusal.Reason.SIGNAL_CLOSED,
                    detail="the signal was no longer open",
                )
            )
        flipped = (
            signal.source == FLOW_SOURCE
            and position_flip_if_opposed(user=user, signal=signal, executor=executor) is not None
        )
        result = services.signal_execute_for_user(user=user, signal=signal, executor=executor)
    except RETRYABLE:
        raise
    except Exception as exc:
        logger.exception("signal %s for user %s: execution failed", signal.pk, user.pk)
        return IntentRun(
            _decide(intent, Outcome.FAILED, reason=TradeRefusal.Reason.EXECUTION, detail=type(exc).__name__)
        )
    return IntentRun(_outcome_of(intent, result), flipped=flipped)


def execution_intents_due(*, now: datetime | None = None, limit: int = 5000) -> list[int]:
    """The sweeper: pending intents past their due time, marked re-queued (next due time backed off); returns their
    ids for the caller to queue. An intent that was started ``INTENT_MAX_ATTEMPTS`` times is recorded as failed."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            ExecutionIntent.objects.select_for_update(skip_locked=True)
            .filter(outcome=Outcome.PENDING, due_at__lt=now)
            .order_by("due_at")[:limit]
        )
        exhausted = [i for i in due if i.attempts >= INTENT_MAX_ATTEMPTS]
        requeued = [i for i in due if i.attempts < INTENT_MAX_ATTEMPTS]
        for intent in requeued:
            intent.due_at = now + requeue_delay(waited=now - intent.created_at)
        ExecutionIntent.objects.bulk_update(requeued, ["due_at"], batch_size=1000)
        if exhausted:
            ExecutionIntent.objects.filter(pk__in=[i.pk for i in exhausted], outcome=Outcome.PENDING).update(
                outcome=Outcome.FAILED,
                reason=TradeRefusal.Reason.EXECUTION,
                detail=f"gave up after {INTENT_MAX_ATTEMPTS} attempts",
                decided_at=now,
            )
            logger.error("%d execution intent(s) failed after %d attempts", len(exhausted), INTENT_MAX_ATTEMPTS)
    if requeued:
        logger.warning("%d execution intent(s) not decided in time; queued again", len(requeued))
    return [i.pk for i in requeued]


def intent_counts(*, signal_id: int) -> dict[str, int]:
    """The signal's intents by outcome: opened, refused, skipped, failed (still pending counts as failed)."""
    rows = dict(ExecutionIntent.objects.filter(signal_id=signal_id).values_list("outcome").annotate(n=Count("pk")))
    return {
        "opened": rows.get(Outcome.OPENED, 0),
        "refused": rows.get(Outcome.REFUSED, 0),
        "skipped": rows.get(Outcome.SKIPPED, 0),
        "failed": rows.get(Outcome.FAILED, 0) + rows.get(Outcome.PENDING, 0),
    }


def signal_execute(*, signal_id: int, executor_factory=None) -> dict[str, int]:
    """Fan out and execute every pending intent of the signal in this process (embedded default, demo, tests).

    One user's failure does not stop the others; a retryable failure is raised at the end, after the others were
    served (the task retries; decided intents are not executed again). Returns the intents' outcomes and the number
    of positions flipped by this call."""
    flipped, retry = 0, None
    for intent_id in execution_intents_fan_out(signal_id=signal_id):
        try:
            run = execution_intent_execute(intent_id=intent_id, executor_factory=executor_factory)
        except RETRYABLE as exc:  # exchange hiccup, deadlock, lost database connection: the intent stays pending
            logger.warning("signal %s, intent %s: retryable failure %s", signal_id, intent_id, exc)
            retry = exc
            continue
        flipped += int(bool(run and run.flipped))
    counts = {**intent_counts(signal_id=signal_id), "flipped": flipped}
    logger.info("signal %s executed: %s", signal_id, counts)
    if retry is not None:
        raise retry
    return counts
