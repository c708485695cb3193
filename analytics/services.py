"""Writes of the analytics app: activity, heartbeats, snapshots, operator switches and actions, backtests."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.files.base import ContentFile
from django.db import models, transaction
from django.utils import timezone
from django.utils.html import escape

from accounts.models import TelegramUser
from accounts.services import telegram_user_ban_set
from accounts.subscriptions import subscription_grant as accounts_subscription_grant
from analytics.models import AnalyticsSnapshot, BacktestRun, Heartbeat, SystemSetting, UserActivity
from config import events
from signals.selectors import symbol_get
from signals.services import symbol_mute
from trading.services import trading_pause, trading_resume

logger = logging.getLogger(__name__)

BROADCAST_PROGRESS_EVERY = 500  # recipients between two progress events on the admin live stream
BROADCAST_MAX_LENGTH = 3500  # characters of an operator's text: with the prefix and escaping it fits one message
BROADCAST_PREFIX = "📣 "


def heartbeat_record(*, name: str = "worker", at: datetime | None = None) -> Heartbeat:
    heartbeat, _ = Heartbeat.objects.update_or_create(name=name, defaults={"beat_at": at or timezone.now()})
    return heartbeat


def activity_record(*, user, kind: str, name: str = "") -> UserActivity:
    return UserActivity.objects.create(user=user, kind=kind, name=name[:64])


# ---- snapshots ----------------------------------------------------------------------------------------------------


def analytics_snapshot_create(*, day: date | None = None) -> AnalyticsSnapshot:
    """Freeze today's analytics (idempotent per UTC day: a re-run overwrites that day's snapshot)."""
    from analytics.selectors import analytics_overview

    now = timezone.now()
    snapshot, _ = AnalyticsSnapshot.objects.update_or_create(
        day=day or now.date(), defaults={"data": analytics_overview(now=now)}
    )
    return snapshot


# ---- operator switches and actions --------------------------------------------------------------------------------


def admin_action_log(*, actor, message: str, obj: models.Model | None = None) -> LogEntry:
    """Record an operator action in Django's admin log (shown under "Recent actions" and in each object's history)."""
    return LogEntry.objects.create(
        user_id=actor.pk,
        content_type=ContentType.objects.get_for_model(obj) if obj is not None else None,
        object_id=str(obj.pk) if obj is not None else None,
        object_repr=str(obj)[:200] if obj is not None else "control panel",
        action_flag=CHANGE,
        change_message=message,
    )


def system_setting_set(*, key: str, value: Any) -> SystemSetting:
    setting, _ = SystemSetting.objects.update_or_create(key=key, defaults={"value": value})
    return setting


@transaction.atomic
def auto_trading_global_set(*, paused: bool, actor, reason: str = ""):
    """Pause or resume auto-trading for everyone through the trading app's own switch (``trading.services.
    trading_pause``/``trading_resume``; its risk manager refuses new positions while paused). The operator and the
    reason go to the admin log; the SystemSetting mirror shows the switch in the Django admin."""

    switch = trading_pause(reason=reason or "paused by an operator") if paused else trading_resume()
    system_setting_set(key=SystemSetting.AUTO_TRADING_PAUSED, value=paused)
    verb = "Paused" if paused else "Resumed"
    admin_action_log(actor=actor, obj=switch, message=f"{verb} auto-trading globally. {reason}".strip())
    return switch


def operator_user_ban_set(*, telegram_id: int, banned: bool, actor):
    """Ban or unban one Telegram user (``accounts.services.telegram_user_ban_set``) and log it; None when the id is
    unknown."""
    user = telegram_user_ban_set(telegram_id=telegram_id, banned=banned)
    if user is not None:
        admin_action_log(
            actor=actor,
            obj=user,
            message="Banned from the control panel." if banned else "Unbanned from the control panel.",
        )
    return user


@transaction.atomic
def subscription_grant(*, user, days: int, actor, plan=None):
    """Grant ``days`` of ``plan`` (default: the first plan on sale), or extend the user's time of it (from its end,
    or from now when it lapsed), through ``accounts.subscriptions.subscription_grant``; logged. Returns the
    Subscription; raises ``accounts.subscriptions.CheckoutError`` when there is no plan at all."""
    subscription = accounts_subscription_grant(user=user, days=days, plan=plan)
    admin_action_log(
        actor=actor,
        obj=user,
        message=f"Granted/extended {days} day(s) of {subscription.plan} "
        f"(valid until {subscription.valid_until:%Y-%m-%d %H:%M} UTC)."
        if subscription.valid_until
        else f"Granted {days} day(s) of {subscription.plan}: the subscription is open-ended.",
    )
    return subscription


def operator_symbol_mute_set(*, symbol: str, muted: bool, actor):
    """Mute (no new signals for anyone) or unmute a symbol through the signals app's service; logged. None when the
    symbol is unknown."""

    row = symbol_get(symbol=symbol)
    if row is None:
        return None
    symbol_mute(symbol=row, muted=muted)
    admin_action_log(actor=actor, obj=row, message="Muted globally." if muted else "Unmuted globally.")
    return row


def broadcast_start(*, text: str, actor=None, requested_by_telegram_id: int | None = None) -> str:
    """Queue an operator's message to every active, non-banned user: from the control panel (``actor``, a staff
    user, written to the admin log) or the bot's /broadcast (``requested_by_telegram_id``). Returns the broadcast id
    (part of each dedupe key). Raises ``ValueError`` with the sentence to show for an empty or too long text."""
    text = text.strip()
    if not text:
        raise ValueError("The message is empty.")
    if len(text) > BROADCAST_MAX_LENGTH:
        raise ValueError(
            f"The message is too long: at most {BROADCAST_MAX_LENGTH} characters, this one has {len(text)}."
        )
    broadcast_id = uuid.uuid4().hex[:12]
    if actor is not None:
        admin_action_log(actor=actor, message=f"Broadcast {broadcast_id}: {text[:150]}")
    logger.info("broadcast %s requested by %s", broadcast_id, actor or f"Telegram admin {requested_by_telegram_id}")
    events.publish("broadcast.requested", broadcast_id=broadcast_id, text=text)
    return broadcast_id


def broadcast_publish(*, broadcast_id: str, text: str) -> int:
    """Publish ``user.notify`` once per recipient (the telegram bridge's rate-limited sender delivers; the dedupe key
    makes a re-run of this fan-out a no-op per user). The operator's text is plain: it is HTML-escaped here."""
    html = BROADCAST_PREFIX + escape(text)
    recipients = list(
        TelegramUser.objects.filter(is_active=True, is_banned=False).order_by("pk").values_list("pk", flat=True)
    )
    total, count = len(recipients), 0
    for start in range(0, total, BROADCAST_PROGRESS_EVERY):
        chunk = recipients[start : start + BROADCAST_PROGRESS_EVERY]
        with transaction.atomic():  # one commit per chunk of outbox rows, dispatched once it commits
            for user_id in chunk:
                events.publish(
                    "user.notify", user_id=user_id, text=html, dedupe_key=f"broadcast:{broadcast_id}:{user_id}"
                )
            count += len(chunk)
            if count < total:
                events.publish("broadcast.progress", broadcast_id=broadcast_id, queued=count, total=total, done=False)
    events.publish("broadcast.progress", broadcast_id=broadcast_id, queued=count, total=total, done=True)
    logger.info("broadcast %s published to %d user(s)", broadcast_id, count)
    return count


# ---- backtests ----------------------------------------------------------------------------------------------------


def backtest_run_start(
    *, params: dict[str, Any], created_by=None, requested_by_telegram_id: int | None = None
) -> BacktestRun:
    """Validate the request, store a pending BacktestRun and queue ``analytics.tasks.backtest_run`` after commit.

    ``params``: ``symbols`` (list of ccxt symbols), ``days`` (int > 0), optional ``strategy`` (StrategyParams fields)
    and ``config`` (BacktestConfig fields). Raises ValueError with a readable message on bad input.
    """
    from analytics.backtesting import backtest_params_clean

    cleaned = backtest_params_clean(params)
    run = BacktestRun.objects.create(
        params=cleaned, created_by=created_by, requested_by_telegram_id=requested_by_telegram_id
    )
    events.publish("backtest.requested", run_id=run.pk)
    return run


def backtest_run_execute(*, run_id: int, progress: Callable[[str, int, int], None] | None = None) -> BacktestRun:
    """Run a pending backtest to completion. Any failure ends in status ``failed`` with the reason; never ``running``."""
    from analytics.backtesting import backtest_perform

    now = timezone.now()
    claimed = BacktestRun.objects.filter(pk=run_id, status=BacktestRun.Status.PENDING).update(
        status=BacktestRun.Status.RUNNING, started_at=now
    )
    run = BacktestRun.objects.get(pk=run_id)
    if not claimed:
        logger.info("backtest %s is %s already; not running it again", run_id, run.status)
        return run
    try:
        metrics, png = backtest_perform(params=run.params, progress=progress)
    except Exception as exc:  # every failure must end the run
        logger.warning("backtest %s failed", run_id, exc_info=True)
        run.status = BacktestRun.Status.FAILED
        run.error = f"{type(exc).__name__}: {exc}"[:2000] if not isinstance(exc, ValueError) else str(exc)[:2000]
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "error", "finished_at"])
        events.publish("backtest.finished", run_id=run.pk)
        return run
    run.metrics = metrics
    if png:
        run.equity_curve.save(f"backtest-{run.pk}.png", ContentFile(png), save=False)
    run.status = BacktestRun.Status.SUCCEEDED
    run.error = ""
    run.finished_at = timezone.now()
    run.save(update_fields=["metrics", "equity_curve", "status", "error", "finished_at"])
    events.publish("backtest.finished", run_id=run.pk)
    return run


def backtest_runs_fail_stale(*, older_than: timedelta = timedelta(hours=2)) -> int:
    """Runs stuck in ``running`` (worker killed) are marked failed so they never stay running forever."""
    return BacktestRun.objects.filter(
        status=BacktestRun.Status.RUNNING, started_at__lt=timezone.now() - older_than
    ).update(
        status=BacktestRun.Status.FAILED,
        error="The worker stopped before the backtest finished.",
        finished_at=timezone.now(),
    )
