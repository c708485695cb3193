"""Funding-rate monitor: poll every configured source, store snapshots, alert users with funding alerts on.

Alerts (``settings.FUNDING_ALERT_THRESHOLD`` / ``FUNDING_ARBITRAGE_MIN_SPREAD``, both per 8 h):

* **extreme** — some exchange's rate has ``|rate| ≥ threshold`` (rates of other intervals are scaled to 8 h);
* **arbitrage** — the annualised spread between the highest and the lowest rate of two exchanges, each annualised
  with its own interval, is at least the minimum spread annualised.

At most one alert per symbol, kind and funding period: ``FundingAlert.dedupe_key`` is unique, and each user's
``user.notify`` carries ``<dedupe_key>:u<user id>`` so a re-announced event is a no-op in the bridge.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from accounts.models import TelegramUser
from config.events import publish
from news.funding_sources import FundingRateSource, FundingSourceError, period_start
from news.messages import annualised_pct, funding_arbitrage_text, funding_extreme_text
from news.models import FundingAlert
from signals.funding import funding_snapshot_record, funding_snapshots_latest
from signals.models import FundingSnapshot, Symbol

logger = logging.getLogger(__name__)

SAME_PERIOD_WINDOW = timedelta(hours=8)  # snapshots compared across exchanges must be this close in time


@dataclass
class FundingPollReport:
    stored: int = 0
    alerts: list[FundingAlert] = field(default_factory=list)
    failed_sources: list[str] = field(default_factory=list)


def funding_poll(*, sources: Sequence[FundingRateSource], symbols: Sequence[Symbol] | None = None) -> FundingPollReport:
    """Fetch, store and evaluate. A source that fails is logged and skipped; the others still count."""
    report = FundingPollReport()
    if symbols is None:
        symbols = list(Symbol.objects.filter(is_active=True))
    by_name = {s.symbol: s for s in symbols}
    touched: dict[str, Symbol] = {}
    for source in sources:
        try:
            rates = source.fetch_funding_rates(list(by_name))
        except FundingSourceError as exc:
            logger.warning("funding poll: source %s failed: %s", source.name, exc)
            report.failed_sources.append(source.name)
            continue
        for rate in rates:
            symbol = by_name.get(rate.symbol)
            if symbol is None:
                continue
            funding_snapshot_record(symbol=symbol, rate=rate)
            report.stored += 1
            touched[symbol.symbol] = symbol
    for symbol in touched.values():
        report.alerts.extend(funding_alerts_evaluate(symbol=symbol))
    logger.info("funding poll: %d snapshot(s), %d alert(s)", report.stored, len(report.alerts))
    return report


def _per_8h(snapshot: FundingSnapshot) -> Decimal:
    return snapshot.rate * Decimal(8) / Decimal(snapshot.interval_hours or 8)


def funding_alerts_evaluate(*, symbol: Symbol) -> list[FundingAlert]:
    """Alerts (new ones only) for the newest funding period of ``symbol``."""
    latest = funding_snapshots_latest(symbol=symbol)
    if not latest:
        return []
    newest_time = max(s.funding_time for s in latest)
    current = [s for s in latest if newest_time - s.funding_time < SAME_PERIOD_WINDOW]
    period = period_start(newest_time, min(s.interval_hours or 8 for s in current))
    alerts = []

    threshold = settings.FUNDING_ALERT_THRESHOLD
    extreme = [s for s in current if abs(_per_8h(s)) >= threshold]
    if extreme:
        rates = [(s.exchange, s.rate, s.interval_hours) for s in sorted(extreme, key=lambda s: s.exchange)]
        alert = funding_alert_send(
            kind=FundingAlert.Kind.EXTREME,
            symbol=symbol,
            period=period,
            details={"rates": {e: str(r) for e, r, _ in rates}, "threshold": str(threshold)},
            text=funding_extreme_text(symbol=symbol.symbol, rates=rates, period=period, threshold=threshold),
        )
        if alert is not None:
            alerts.append(alert)

    if len(current) >= 2:
        yearly = {s.exchange: annualised_pct(s.rate, s.interval_hours or 8) for s in current}
        high = max(current, key=lambda s: yearly[s.exchange])
        low = min(current, key=lambda s: yearly[s.exchange])
        spread = yearly[high.exchange] - yearly[low.exchange]
        minimum = annualised_pct(settings.FUNDING_ARBITRAGE_MIN_SPREAD, 8)
        if high.exchange != low.exchange and spread >= minimum:
            alert = funding_alert_send(
                kind=FundingAlert.Kind.ARBITRAGE,
                symbol=symbol,
                period=period,
                details={
                    "short_on": high.exchange,
                    "long_on": low.exchange,
                    "rates": {s.exchange: str(s.rate) for s in current},
                    "annualised_spread_pct": str(spread.quantize(Decimal("0.01"))),
                },
                text=funding_arbitrage_text(
                    symbol=symbol.symbol,
                    high=(high.exchange, high.rate, high.interval_hours),
                    low=(low.exchange, low.rate, low.interval_hours),
                    annualised_spread=spread,
                    period=period,
                ),
            )
            if alert is not None:
                alerts.append(alert)
    return alerts


def funding_alert_recipients(*, symbol: Symbol) -> list[TelegramUser]:
    users = TelegramUser.objects.filter(
        is_active=True, is_banned=False, preferences__funding_alerts=True
    ).select_related("preferences")
    return [u for u in users if symbol.symbol not in (u.preferences.muted_symbols or [])]


def funding_alert_send(*, kind: str, symbol: Symbol, period: datetime, details: dict, text: str) -> FundingAlert | None:
    """Create the alert once and notify every recipient; None when this alert was already sent."""
    dedupe_key = f"funding:{kind}:{symbol.symbol}:{period:%Y%m%dT%H%M}"
    with transaction.atomic():
        alert, created = FundingAlert.objects.get_or_create(
            dedupe_key=dedupe_key,
            defaults={"kind": kind, "symbol": symbol, "period_start": period, "details": details, "text": text},
        )
        if not created:
            return None
        recipients = funding_alert_recipients(symbol=symbol)
        for user in recipients:
            publish("user.notify", user_id=user.pk, text=text, dedupe_key=f"{dedupe_key}:u{user.pk}")
        alert.recipients = len(recipients)
        alert.save(update_fields=["recipients"])
    logger.info("funding alert %s sent to %d user(s)", dedupe_key, len(recipients))
    return alert
