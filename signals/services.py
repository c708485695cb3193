"""Writes of the signals app: symbols from market metadata, signals from engine candidates, publish, close.

Every new signal is announced exactly through ``signal_publish`` (domain event ``signal.created``). Announcing is only
a doorbell: a signal is done when each consumer that stores per-user work for it (``settings.SIGNAL_FANOUT_CONSUMERS``:
the Telegram broadcast's delivery rows, trading's execution intents) has recorded its fan-out
(``signal_fanout_record``, in the transaction that stored those rows; then ``fanned_out_at`` is stamped). The periodic
sweeper ``signal_publish_pending`` announces again what was never dispatched (crash between the commit and the
dispatch: ``published_at`` empty) and, to the consumers concerned only, what a consumer never fanned out (its task
lost with Redis, a killed worker or a PostgreSQL outage). Consumers are idempotent (keyed by the signal id).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from config.events import dispatch_now, dispatch_to, event_consumers
from engine.sectors import sector_of
from engine.strategy import SignalCandidate
from signals import selectors
from signals.models import Sector, Signal, SignalFanout, Symbol

if TYPE_CHECKING:
    from signals.market_data import MarketInfo

logger = logging.getLogger(__name__)

# engine.sectors names → the Sector choices of the Symbol model (the engine has a "major" bucket for BTC/ETH)
_SECTOR_CHOICE = {
    "major": Sector.L1,
    "l1": Sector.L1,
    "l2": Sector.L2,
    "defi": Sector.DEFI,
    "meme": Sector.MEME,
    "ai": Sector.AI,
    "exchange": Sector.EXCHANGE,
    "gaming": Sector.GAMING,
    "storage_infra": Sector.INFRA,
}


def default_signal_lifetime() -> timedelta:
    return timedelta(hours=settings.SIGNAL_EXPIRY_HOURS)


# -- symbols -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SymbolSyncResult:
    created: int
    updated: int
    deactivated: int


_SYNC_FINGERPRINT_KEY = "signals:markets-fingerprint"


def symbol_sync_markets(*, markets: list[MarketInfo]) -> SymbolSyncResult:
    """Upsert a ``Symbol`` per listed market (metadata, sector) and deactivate symbols no longer listed.

    ``is_muted`` (an operator decision) is never touched.
    """
    listed = {market.symbol: market for market in markets}
    fingerprint = hashlib.sha256(repr(sorted(listed.items())).encode()).hexdigest()
    if cache.get(_SYNC_FINGERPRINT_KEY) == fingerprint and Symbol.objects.filter(is_active=True).count() == len(
        [m for m in markets if m.active]
    ):
        return SymbolSyncResult(created=0, updated=0, deactivated=0)  # same listing as last time: nothing to write
    existing = {symbol.symbol: symbol for symbol in Symbol.objects.all()}
    fields = ["base", "quote", "tick_size", "step_size", "min_quantity", "min_notional", "contract_size", "is_active"]
    to_create, to_update = [], []
    for name, market in listed.items():
        values = {
            "base": market.base[:20],
            "quote": market.quote[:10],
            "tick_size": market.tick_size,
            "step_size": market.step_size,
            "min_quantity": market.min_quantity,
            "min_notional": market.min_notional,
            "contract_size": market.contract_size,
            "is_active": market.active,
        }
        symbol = existing.get(name)
        if symbol is None:
            to_create.append(
                Symbol(
                    symbol=name,
                    sector=_SECTOR_CHOICE.get(sector_of(name), Sector.OTHER),
                    max_leverage=market.max_leverage or 20,
                    **values,
                )
            )
            continue
        if any(getattr(symbol, field) != value for field, value in values.items()):
            for field, value in values.items():
                setattr(symbol, field, value)
            to_update.append(symbol)
    gone = [symbol for name, symbol in existing.items() if name not in listed and symbol.is_active]
    for symbol in gone:
        symbol.is_active = False
    with transaction.atomic():
        Symbol.objects.bulk_create(to_create, ignore_conflicts=True)
        if to_update or gone:
            Symbol.objects.bulk_update([*to_update, *gone], fields)
    cache.set(_SYNC_FINGERPRINT_KEY, fingerprint, timeout=3600)
    if gone:
        logger.info("symbols no longer listed, deactivated: %s", ", ".join(s.symbol for s in gone))
    return SymbolSyncResult(created=len(to_create), updated=len(to_update), deactivated=len(gone))


def symbol_mute(*, symbol: Symbol, muted: bool = True) -> Symbol:
    symbol.is_muted = muted
    symbol.save(update_fields=["is_muted", "updated_at"])
    return symbol


def market_time_now() -> datetime:
    """Market time: the replay clock in replay mode, the wall clock live (signals are stamped with it so expiry and
    outcome tracking compare like with like)."""
    from signals.market_data import get_market_data

    return get_market_data().now()


# -- prices ------------------------------------------------------------------------------------------------------
def price_quantize(*, value: float | Decimal, tick_size: Decimal | None) -> Decimal:
    """A float price from the engine as a Decimal on the market's tick grid (nearest tick, half to even)."""
    number = value if isinstance(value, Decimal) else Decimal(repr(float(value)))
    if not tick_size:
        return number
    return (number / tick_size).to_integral_value(rounding=ROUND_HALF_EVEN) * tick_size


# -- signals -----------------------------------------------------------------------------------------------------
def signal_dedupe_key(*, source: str, symbol: str, side: str, candle_ts: int) -> str:
    return f"{source}:{symbol}:{side}:{candle_ts}"


def signal_create(
    *,
    candidate: SignalCandidate,
    source: str = Signal.Source.TECHNICAL,
    headline: str = "",
    url: str = "",
    expires_in: timedelta | None = None,
    created_at: datetime | None = None,
) -> Signal | None:
    """Store a signal from an engine candidate once and announce it; ``None`` when refused.

    Refused: unknown, inactive or globally muted symbol; a signal of the same source/symbol/side/candle already
    stored (``dedupe_key``); another OPEN signal for the same symbol/side/source; levels that collapse onto the entry
    once rounded to the tick size. ``created_at`` defaults to the market time (``market_time_now``: the replay
    clock in replays);
    ``expires_at = created_at + expires_in``.
    """
    symbol = selectors.symbol_get(symbol=candidate.symbol)
    if symbol is None or not symbol.is_active:
        logger.info("signal refused: %s is not an active symbol", candidate.symbol)
        return None
    if symbol.is_muted:
        logger.info("signal refused: %s is muted globally", candidate.symbol)
        return None
    tick = symbol.tick_size
    entry = price_quantize(value=candidate.entry, tick_size=tick)
    stop = price_quantize(value=candidate.stop, tick_size=tick)
    tp1 = price_quantize(value=candidate.tp1, tick_size=tick)
    tp2 = price_quantize(value=candidate.tp2, tick_size=tick)
    if stop == entry or tp1 == entry:
        logger.info("signal refused: %s stop/target within one tick of the entry", candidate.symbol)
        return None
    created_at = created_at or market_time_now()
    indicators = dict(candidate.indicators)
    if candidate.funding_rate is not None:
        indicators["funding_rate"] = candidate.funding_rate
    try:
        with transaction.atomic():
            signal = Signal.objects.create(
                symbol=symbol,
                side=candidate.side,
                timeframe=candidate.timeframe,
                source=source,
                entry=entry,
                stop=stop,
                tp1=tp1,
                tp2=tp2,
                atr=price_quantize(value=candidate.atr, tick_size=None).quantize(Decimal("1e-12")),
                risk_level=candidate.risk_level,
                confirmations=list(candidate.confirmations),
                indicators=indicators,
                candle_ts=candidate.candle_ts,
                dedupe_key=signal_dedupe_key(
                    source=source, symbol=candidate.symbol, side=candidate.side, candle_ts=candidate.candle_ts
                ),
                headline=headline[:500],
                url=url,
                created_at=created_at,
                expires_at=created_at + (expires_in or default_signal_lifetime()),
            )
            signal_publish(signal=signal)
    except IntegrityError:
        logger.info(
            "signal refused: %s %s %s already stored or another one is open", source, candidate.symbol, candidate.side
        )
        return None
    logger.info("signal created: %s", signal)
    return signal


def _dispatch_created(signal_id: int, *, consumers: list[str] | None = None) -> None:
    """Dispatch ``signal.created`` (to every consumer, or to ``consumers`` only), then stamp ``published_at``."""
    try:
        if consumers is None:
            dispatch_now("signal.created", {"signal_id": signal_id})
        else:
            dispatch_to("signal.created", {"signal_id": signal_id}, consumers=consumers)
    except Exception:  # a failing consumer must not lose the announcement: the sweeper retries
        logger.exception("signal.created for signal %s could not be dispatched; the sweeper will retry", signal_id)
        return
    Signal.objects.filter(pk=signal_id).update(published_at=timezone.now())


def _dispatch_closed(signal_id: int) -> None:
    try:
        dispatch_now("signal.closed", {"signal_id": signal_id})
    except Exception:  # the close is committed; a consumer failing (eager mode) must not undo or stop the tracker
        logger.exception("signal.closed for signal %s: a consumer failed", signal_id)


def signal_publish(*, signal: Signal) -> None:
    """Announce ``signal.created`` after the surrounding transaction commits, then stamp ``published_at``."""
    event_consumers("signal.created")  # fail fast on configuration errors, inside the caller's transaction
    signal_id = signal.pk
    transaction.on_commit(lambda: _dispatch_created(signal_id))


def signal_fanout_consumers() -> list[str]:
    """The consumers of ``signal.created`` that record their fan-out (``SIGNAL_FANOUT_CONSUMERS`` that are subscribed)."""
    subscribed = set(event_consumers("signal.created"))
    return [name for name in settings.SIGNAL_FANOUT_CONSUMERS if name in subscribed]


def signal_fanout_record(*, signal_id: int, consumer: str) -> None:
    """``consumer`` stored its per-user rows for the signal: call it inside the transaction that stored them, so the
    record and the rows commit together (or not at all). Stamps ``fanned_out_at`` once every consumer recorded."""
    SignalFanout.objects.get_or_create(signal_id=signal_id, consumer=consumer)
    done = set(SignalFanout.objects.filter(signal_id=signal_id).values_list("consumer", flat=True))
    if done.issuperset(signal_fanout_consumers()):
        Signal.objects.filter(pk=signal_id, fanned_out_at__isnull=True).update(fanned_out_at=timezone.now())


def signal_publish_pending(*, older_than: timedelta | None = None, window: timedelta = timedelta(hours=24)) -> int:
    """The sweeper (beat, every ``SIGNAL_PUBLISH_SWEEP_SECONDS``): announce again what did not get through; returns
    how many signals were announced.

    * never dispatched (a crash between the commit and the dispatch): to every consumer, once created more than
      ``older_than`` ago (younger ones may still be in their own on-commit dispatch);
    * dispatched more than ``older_than`` ago, still open, created within ``window``, but some consumer in
      ``signal_fanout_consumers()`` has not recorded its fan-out (its task was lost): to those consumers only. Each
      announcement stamps ``published_at`` again, so a consumer that keeps failing hears of it once per
      ``older_than``, not on every sweep.

    (Replays stamp ``created_at`` with the replay clock, i.e. in the past: ``window`` is counted on that clock, the
    announcement times on the real one. The sweeper may race a dispatch in flight — harmless, consumers are
    idempotent.)
    """
    older_than = older_than if older_than is not None else timedelta(seconds=settings.SIGNAL_FANOUT_DEADLINE_SECONDS)
    now = timezone.now()
    never = list(selectors.signal_list_unpublished(created_before=now - older_than).values_list("id", flat=True))
    for signal_id in never:
        _dispatch_created(signal_id)
    consumers = signal_fanout_consumers()
    stalled = 0
    if consumers:
        for signal_id in selectors.signal_list_not_fanned_out(
            announced_before=now - older_than, created_after=market_time_now() - window
        ).values_list("id", flat=True):
            done = set(SignalFanout.objects.filter(signal_id=signal_id).values_list("consumer", flat=True))
            missing = [name for name in consumers if name not in done]
            if not missing:  # every consumer recorded it; two concurrent records can both miss the stamp
                Signal.objects.filter(pk=signal_id, fanned_out_at__isnull=True).update(fanned_out_at=now)
                continue
            logger.warning("signal %s: not fanned out by %s; announced to them again", signal_id, ", ".join(missing))
            _dispatch_created(signal_id, consumers=missing)
            stalled += 1
    if never:
        logger.info("re-announced %d unpublished signal(s)", len(never))
    return len(never) + stalled


def signal_mark_tp1(*, signal: Signal, at: datetime) -> Signal:
    Signal.objects.filter(pk=signal.pk, tp1_hit_at__isnull=True).update(tp1_hit_at=at)
    signal.tp1_hit_at = signal.tp1_hit_at or at
    return signal


def signal_close(*, signal: Signal, outcome: str, pnl_pct: Decimal, closed_at: datetime | None = None) -> Signal:
    """Close an open signal with its outcome and PnL % (of the entry price, unleveraged), announce ``signal.closed``.

    Idempotent: closing an already closed signal changes nothing and announces nothing.
    """
    if outcome not in Signal.Outcome.values or outcome == Signal.Outcome.OPEN:
        raise ValueError(f"not a closing outcome: {outcome!r}")
    closed_at = closed_at or timezone.now()
    pnl = Decimal(pnl_pct).quantize(Decimal("0.0001"))
    with transaction.atomic():
        updated = Signal.objects.filter(pk=signal.pk, status=Signal.Status.OPEN).update(
            status=Signal.Status.CLOSED, outcome=outcome, outcome_pnl_pct=pnl, closed_at=closed_at
        )
        if updated:
            event_consumers("signal.closed")
            signal_id = signal.pk
            transaction.on_commit(lambda: _dispatch_closed(signal_id))
    signal.refresh_from_db()
    if updated:
        logger.info("signal closed: %s → %s (%s %%)", signal, outcome, pnl)
    return signal
