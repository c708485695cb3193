"""Funding-rate snapshots: the one place that writes and reads ``FundingSnapshot``.

``latest_funding_rate`` feeds the risk level of technical signals (``engine.risk``: paying high funding raises the
risk); ``funding_snapshot_record`` is idempotent on (symbol, exchange, funding_time).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db.models import Max

from signals.models import FundingSnapshot, Symbol


@dataclass(frozen=True)
class FundingRate:
    """One funding rate as an exchange reports it (the port's value object; Decimal, aware UTC)."""

    exchange: str
    symbol: str  # ccxt unified, e.g. BTC/USDT:USDT
    rate: Decimal  # per funding interval, 0.0001 = 0.01 %
    funding_time: datetime  # the funding settlement this rate applies to
    interval_hours: int = 8
    mark_price: Decimal | None = None


def funding_snapshot_record(*, symbol: Symbol, rate: FundingRate) -> tuple[FundingSnapshot, bool]:
    """Store (or refresh the rate of) the snapshot for (symbol, exchange, funding_time). Returns (row, created)."""
    return FundingSnapshot.objects.update_or_create(
        symbol=symbol,
        exchange=rate.exchange,
        funding_time=rate.funding_time,
        defaults={"rate": rate.rate, "interval_hours": rate.interval_hours, "mark_price": rate.mark_price},
    )


def latest_funding_rate(*, symbol: str, exchange: str | None = None, at: datetime | None = None) -> Decimal | None:
    """The newest known funding rate of ``symbol`` (ccxt unified), or None.

    Prefers ``exchange`` (default: ``settings.MARKET_DATA_EXCHANGE``, where the signals are computed) and falls back
    to the newest snapshot of any exchange. ``at`` (e.g. the replay clock) ignores snapshots after it.
    """
    rows = FundingSnapshot.objects.filter(symbol__symbol=symbol)
    if at is not None:
        rows = rows.filter(funding_time__lte=at)
    preferred = exchange or settings.MARKET_DATA_EXCHANGE
    row = rows.filter(exchange=preferred).order_by("-funding_time").only("rate").first()
    if row is None:
        row = rows.order_by("-funding_time").only("rate").first()
    return row.rate if row is not None else None


def funding_snapshots_latest(*, symbol: Symbol, at: datetime | None = None) -> list[FundingSnapshot]:
    """The newest snapshot per exchange for ``symbol`` (for cross-exchange comparisons), newest first."""
    rows = FundingSnapshot.objects.filter(symbol=symbol)
    if at is not None:
        rows = rows.filter(funding_time__lte=at)
    newest = rows.values("exchange").annotate(newest=Max("funding_time"))
    latest = []
    for entry in newest:
        snapshot = rows.filter(exchange=entry["exchange"], funding_time=entry["newest"]).first()
        if snapshot is not None:
            latest.append(snapshot)
    return sorted(latest, key=lambda s: (s.funding_time, s.exchange), reverse=True)


def funding_rate_history(
    *, symbol: str, exchange: str | None = None, since: datetime | None = None, interval_hours: int = 8
) -> list[tuple[datetime, Decimal]]:
    """Stored settlements of ``symbol`` on one exchange (default ``settings.MARKET_DATA_EXCHANGE``), oldest first, for
    backtests: (funding_time, rate). Only rows with the given funding interval (the backtester's grid is 8 h)."""
    rows = FundingSnapshot.objects.filter(
        symbol__symbol=symbol, exchange=exchange or settings.MARKET_DATA_EXCHANGE, interval_hours=interval_hours
    )
    if since is not None:
        rows = rows.filter(funding_time__gte=since)
    return list(rows.order_by("funding_time").values_list("funding_time", "rate"))
