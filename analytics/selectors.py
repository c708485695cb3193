"""Reads of the analytics app: platform analytics (users, signals, trading, subscriptions) and system health.

Every function returns plain, JSON-serialisable data (Decimals as strings) so the admin dashboard, the daily
``AnalyticsSnapshot`` and the API can all use it as it is.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Avg, Count, DecimalField, ExpressionWrapper, F, Q, QuerySet, Sum
from django.db.models.functions import TruncMonth
from django.utils import timezone

from accounts.models import Subscription, TelegramUser, WebhookEvent
from accounts.selectors import revenue_by_currency, revenue_by_plan_and_gateway
from analytics.models import AnalyticsSnapshot, BacktestRun, Heartbeat, UserActivity
from config.events import outbox_waiting
from config.observability import error_counts
from signals.models import ScanRun, Signal
from trading.models import Position, TradingSwitch

logger = logging.getLogger(__name__)

ZERO = Decimal("0")


def heartbeat_age_seconds(*, name: str = "worker") -> float | None:
    """Seconds since the named heartbeat, or None if it never beat."""
    beat_at = Heartbeat.objects.filter(name=name).values_list("beat_at", flat=True).first()
    if beat_at is None:
        return None
    return (timezone.now() - beat_at).total_seconds()


def _decimal_text(value: Decimal | None, places: int = 4) -> str | None:
    if value is None:
        return None
    return str(Decimal(value).quantize(Decimal(1).scaleb(-places)))


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


# ---- users --------------------------------------------------------------------------------------------------------


def active_user_counts(*, now: datetime | None = None) -> dict[str, int]:
    """DAU/WAU/MAU: distinct users with any recorded activity (command, callback, dashboard, API) in 1/7/30 days."""
    now = now or timezone.now()
    activity = UserActivity.objects.filter(created_at__lte=now)
    result = {}
    for key, days in (("dau", 1), ("wau", 7), ("mau", 30)):
        result[key] = activity.filter(created_at__gt=now - timedelta(days=days)).values("user").distinct().count()
    return result


def user_counts() -> dict[str, int]:
    totals = TelegramUser.objects.aggregate(
        total=Count("id"),
        active=Count("id", filter=Q(is_active=True, is_banned=False)),
        banned=Count("id", filter=Q(is_banned=True)),
        auto_trading=Count("id", filter=Q(auto_trading_enabled=True)),
    )
    return {key: int(value or 0) for key, value in totals.items()}


# ---- signals ------------------------------------------------------------------------------------------------------


def _signal_rows(queryset: QuerySet, key: str) -> list[dict[str, Any]]:
    rows = (
        queryset.values(key)
        .annotate(
            signals=Count("id"),
            wins=Count("id", filter=Q(outcome_pnl_pct__gt=0)),
            losses=Count("id", filter=Q(outcome_pnl_pct__lte=0)),
            average_pnl_pct=Avg("outcome_pnl_pct"),
        )
        .order_by(key)
    )
    return [
        {
            "key": row[key].strftime("%Y-%m") if hasattr(row[key], "strftime") else row[key],
            "signals": row["signals"],
            "wins": row["wins"],
            "losses": row["losses"],
            "win_rate": _ratio(row["wins"], row["wins"] + row["losses"]),
            "average_pnl_pct": _decimal_text(row["average_pnl_pct"]),
        }
        for row in rows
    ]


def signal_performance(*, since: datetime | None = None) -> dict[str, Any]:
    """Win rate and average PnL % of CLOSED signals with a recorded outcome (a win is outcome PnL % > 0), overall and
    by source, symbol, risk level and month of closing. Open signals are counted separately."""

    signals = Signal.objects.all()
    if since is not None:
        signals = signals.filter(created_at__gte=since)
    closed = signals.filter(status=Signal.Status.CLOSED, outcome_pnl_pct__isnull=False)
    overall = closed.aggregate(
        signals=Count("id"),
        wins=Count("id", filter=Q(outcome_pnl_pct__gt=0)),
        losses=Count("id", filter=Q(outcome_pnl_pct__lte=0)),
        average_pnl_pct=Avg("outcome_pnl_pct"),
    )
    return {
        "open": signals.filter(status=Signal.Status.OPEN).count(),
        "closed": overall["signals"],
        "wins": overall["wins"],
        "losses": overall["losses"],
        "win_rate": _ratio(overall["wins"], overall["wins"] + overall["losses"]),
        "average_pnl_pct": _decimal_text(overall["average_pnl_pct"]),
        "by_source": _signal_rows(closed, "source"),
        "by_symbol": _signal_rows(closed, "symbol__symbol"),
        "by_risk_level": _signal_rows(closed, "risk_level"),
        "by_month": _signal_rows(closed.annotate(month=TruncMonth("closed_at")).exclude(month=None), "month"),
    }


# ---- trading ------------------------------------------------------------------------------------------------------

_NET_PNL = ExpressionWrapper(
    F("realised_pnl") - F("fees") - F("funding"), output_field=DecimalField(max_digits=24, decimal_places=8)
)


def _position_rows(queryset: QuerySet, key: str) -> list[dict[str, Any]]:
    rows = (
        queryset.annotate(net=_NET_PNL)
        .values(key)
        .annotate(
            trades=Count("id"),
            wins=Count("id", filter=Q(net__gt=0)),
            net_pnl=Sum("net"),
            fees=Sum("fees"),
            funding=Sum("funding"),
            average_net_pnl=Avg("net"),
        )
        .order_by(key)
    )
    return [
        {
            "key": row[key],
            "trades": row["trades"],
            "wins": row["wins"],
            "losses": row["trades"] - row["wins"],
            "win_rate": _ratio(row["wins"], row["trades"]),
            "net_pnl": _decimal_text(row["net_pnl"] or ZERO, 2),
            "fees": _decimal_text(row["fees"] or ZERO, 2),
            "funding": _decimal_text(row["funding"] or ZERO, 2),
            "average_net_pnl": _decimal_text(row["average_net_pnl"], 2),
        }
        for row in rows
    ]


def _closed_positions(since: datetime | None) -> QuerySet:
    positions = Position.objects.filter(status=Position.Status.CLOSED)
    if since is not None:
        positions = positions.filter(closed_at__gte=since)
    return positions


def asset_performance(*, since: datetime | None = None) -> list[dict[str, Any]]:
    """Closed positions of every user per symbol: trades, wins, net PnL (realised − fees − funding)."""
    return _position_rows(_closed_positions(since), "symbol__symbol")


def trading_results_by_mode(*, since: datetime | None = None) -> dict[str, dict[str, Any]]:
    """Paper vs live: closed-position results per trading mode, plus the positions open now."""

    rows = {row["key"]: row for row in _position_rows(_closed_positions(since), "mode")}
    open_counts = dict(
        Position.objects.filter(status=Position.Status.OPEN).values_list("mode").annotate(n=Count("id")).order_by()
    )
    result = {}
    for mode in ("paper", "live"):
        row = rows.get(mode) or {
            "key": mode,
            "trades": 0,
            "wins": 0,
            "losses": 0,
            "win_rate": None,
            "net_pnl": "0.00",
            "fees": "0.00",
            "funding": "0.00",
            "average_net_pnl": None,
        }
        result[mode] = {**row, "open": open_counts.get(mode, 0)}
    return result


# ---- subscriptions ------------------------------------------------------------------------------------------------


def subscription_stats(*, now: datetime | None = None, revenue_days: int = 30) -> dict[str, Any]:
    """Current subscribers (active and not past valid_until) by source and plan, and revenue (paid payments, exact)
    per currency and per plan and gateway: all time and over the last ``revenue_days`` days."""
    now = now or timezone.now()
    current = Subscription.objects.filter(status=Subscription.Status.ACTIVE).filter(
        Q(valid_until__isnull=True) | Q(valid_until__gt=now)
    )
    since = now - timedelta(days=revenue_days)
    return {
        "active": current.values("user").distinct().count(),
        "by_source": dict(current.values_list("source").annotate(n=Count("id")).order_by()),
        "by_plan": dict(current.values_list("plan__name").annotate(n=Count("id")).order_by()),
        "by_status": dict(Subscription.objects.values_list("status").annotate(n=Count("id")).order_by()),
        "revenue_total": {k: _decimal_text(v, 2) for k, v in revenue_by_currency().items()},
        "revenue_recent": {k: _decimal_text(v, 2) for k, v in revenue_by_currency(since=since).items()},
        "revenue_by_plan": [
            {**row, "amount": format(row["amount"].normalize(), "f")} for row in revenue_by_plan_and_gateway()
        ],
        "revenue_days": revenue_days,
    }


def analytics_overview(*, now: datetime | None = None) -> dict[str, Any]:
    """Everything the admin dashboard and the daily snapshot show, JSON-serialisable."""
    now = now or timezone.now()
    return {
        "generated_at": now.isoformat(),
        "users": {**user_counts(), **active_user_counts(now=now)},
        "signals": signal_performance(),
        "assets": asset_performance(),
        "trading": trading_results_by_mode(),
        "subscriptions": subscription_stats(now=now),
    }


def analytics_snapshot_list(*, limit: int = 30) -> QuerySet:
    return AnalyticsSnapshot.objects.order_by("-day")[:limit]


# ---- operator switches --------------------------------------------------------------------------------------------


def auto_trading_globally_paused() -> bool:
    """True while auto-trading is paused for everyone: the trading app's switch, which its risk manager obeys."""

    return bool(TradingSwitch.current().auto_trading_paused)


# ---- system health ------------------------------------------------------------------------------------------------


def last_scan_at() -> datetime | None:
    """Finish (or start) time of the newest scan run."""

    run = ScanRun.objects.order_by("-pk").first()
    if run is None:
        return None
    return run.finished_at or run.started_at


def celery_queue_lengths() -> dict[str, int] | None:
    """Messages waiting per Celery queue, read from the Redis broker; None without a Redis broker or when down."""
    broker = settings.CELERY_BROKER_URL
    if settings.CELERY_TASK_ALWAYS_EAGER or not broker or not broker.startswith(("redis://", "rediss://")):
        return None
    import redis

    try:
        client = redis.Redis.from_url(broker, socket_connect_timeout=1, socket_timeout=1)
        return {name: int(client.llen(name)) for name in settings.CELERY_TASK_QUEUES_NAMES}
    except redis.exceptions.RedisError:
        logger.warning("health: cannot read queue lengths from the broker", exc_info=True)
        return None


def error_counts_today() -> dict[str, int] | None:
    try:
        return error_counts()
    except Exception:  # a cache outage must not break the health page
        logger.warning("health: cannot read error counts", exc_info=True)
        return None


def system_health() -> dict[str, Any]:
    now = timezone.now()
    scan_at = last_scan_at()
    heartbeat_age = heartbeat_age_seconds()
    return {
        "last_scan_at": scan_at.isoformat() if scan_at else None,
        "last_scan_age_seconds": (now - scan_at).total_seconds() if scan_at else None,
        "heartbeat_age_seconds": heartbeat_age,
        "heartbeat_fresh": heartbeat_age is not None and heartbeat_age <= settings.HEARTBEAT_MAX_AGE_SECONDS,
        "queue_lengths": celery_queue_lengths(),
        "errors_today": error_counts_today(),
        "webhooks_failed": WebhookEvent.objects.filter(status=WebhookEvent.Status.FAILED).count(),
        "events_waiting": outbox_waiting(),
        "backtests_running": BacktestRun.objects.filter(status=BacktestRun.Status.RUNNING).count(),
        "auto_trading_paused": auto_trading_globally_paused(),
    }
