"""The position monitor: ``engine.exits.step`` applied to every open position, candle by candle (beat, every
minute) and on a fresh price (``positions_monitor_prices``, a tick = a one-price candle).

Exit fills go through the position's executor (``close_position``, ``update_stop``), so they are recorded as
Orders + Fills with fees, exactly like the entry. For paper positions each candle is applied in one transaction
(fills, stop move and the ``monitored_until_ts`` bookmark together), so a crash re-applies a candle at most as a
whole: never a fill twice. A live executor is called outside a transaction (its order rows must be committed
before each exchange call); its exits are idempotent by client order id.

Entry points: ``positions_monitor_step`` (beat ``trading.tasks.monitor_positions`` every minute, and a replay after
every clock step: pending entries resumed, candles applied, funding charged), ``positions_monitor_market_prices``
(beat ``trading.tasks.monitor_position_prices``: the price cache's fresh last prices as ticks). Quiet candles
(nothing but the best price moves) are stepped in memory and stored with one guarded UPDATE; ticks never move the
candle bookmark.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from config import events
from engine.candles import timeframe_to_ms
from engine.exits import ExitRules, PositionState, step
from engine.sizing import round_down
from trading import amounts
from trading.executors.base import Executor
from trading.executors.factory import executor_for
from trading.ledger import funding_charge_due, paper_account_mark_peak
from trading.models import Position, TradingMode
from trading.orders import market_limits_of
from trading.services import positions_pending_resume

logger = logging.getLogger(__name__)


def exit_rules_for(*, position: Position) -> ExitRules:
    """The exit policy of a position: platform settings, trailing only for users who keep it on, expiry from the
    position's ``expires_at``."""
    trailing = settings.TRADING_TRAILING_MODE if position.user.preferences.trailing_stop else None
    expiry = None
    if position.expires_at and position.opened_at:
        expiry = max(1, int((position.expires_at - position.opened_at).total_seconds()))
    return ExitRules(
        tp1_close_fraction=settings.TRADING_TP1_CLOSE_FRACTION,
        breakeven_after_tp1=True,
        trailing_mode=trailing if (trailing != "atr" or position.atr) else None,
        trailing_atr_mult=settings.TRADING_TRAILING_ATR_MULT,
        trailing_pct=settings.TRADING_TRAILING_PCT,
        trailing_activation_r=settings.TRADING_TRAILING_ACTIVATION_R,
        expiry_seconds=expiry,
    ).validate()


def position_state(*, position: Position) -> PositionState:
    """The engine's float view of a stored position (rebuilt from the database for every candle)."""
    if position.trailing_active:
        stop_reason = "trailing"
    elif position.tp1_done and position.stop_price == position.entry_price:
        stop_reason = "breakeven"
    else:
        stop_reason = "sl"
    entry = float(position.entry_price)
    return PositionState(
        side=position.side,
        entry=entry,
        stop=float(position.stop_price),
        tp1=float(position.tp1_price) if position.tp1_price is not None else None,
        tp2=float(position.tp2_price) if position.tp2_price is not None else None,
        quantity=float(position.quantity),
        remaining=float(position.remaining_quantity),
        tp1_done=position.tp1_done,
        best_price=float(position.best_price if position.best_price is not None else position.entry_price),
        opened_ts=int(position.opened_at.timestamp() * 1000),
        atr=float(position.atr or 0),
        initial_stop=float(position.initial_stop_price),
        stop_reason=stop_reason,
    )


def _exit_quantity(position: Position, event_quantity: float, closes_all: bool) -> Decimal | None:
    """Decimal quantity of an exit: everything left (None) for a final exit; a partial close rounded DOWN to the
    market step, or everything when the rest would fall below the market minimum."""
    if closes_all:
        return None
    limits = market_limits_of(symbol=position.symbol)
    qty = round_down(amounts.from_float(event_quantity), limits.amount_step)
    rest = position.remaining_quantity - qty
    if qty <= 0:
        return Decimal(0)
    if rest <= 0 or rest < limits.min_qty or rest * (position.entry_price or 0) < limits.min_notional:
        return None
    return qty


def position_apply_bar(
    *,
    position: Position,
    ts: int,
    open: float,
    high: float,
    low: float,
    close: float,
    executor: Executor | None = None,
    bookmark: bool = True,
) -> Position:
    """Apply one candle (or a tick) to one open position.

    ``bookmark``: a candle moves ``monitored_until_ts`` (a candle is applied once); a tick (``bookmark=False``)
    does not, otherwise the candle pass would skip the candle the tick fell in and miss its extremes. Applying a
    tick twice is harmless: exits are idempotent per reason, the best price and the stop only ever tighten."""
    executor = executor or executor_for(user=position.user, mode=position.mode)
    paper = executor.mode == TradingMode.PAPER
    atomic = transaction.atomic() if paper else contextlib.nullcontext()
    with atomic:
        rows = Position.objects.select_related("symbol", "user__preferences")
        if paper:  # two overlapping monitor passes apply a candle one after the other, never both at once
            rows = rows.select_for_update(of=("self",))
        position = rows.get(pk=position.pk)
        if position.status != Position.Status.OPEN or (bookmark and (position.monitored_until_ts or -1) >= ts):
            return position
        state = position_state(position=position)
        rules = exit_rules_for(position=position)
        new_state, exits = step(state, ts=ts, open=open, high=high, low=low, close=close, rules=rules)
        for event in exits:
            closes_all = new_state.remaining <= 0 and event is exits[-1]
            qty = _exit_quantity(position, event.quantity, closes_all)
            if qty == 0:
                continue  # a partial close smaller than one step: nothing to send
            position = executor.close_position(
                position=position, reason=event.reason, quantity=qty, price=amounts.from_float(event.price)
            )
            if position.status != Position.Status.OPEN:
                break
        if position.status == Position.Status.OPEN:
            updates = {"best_price": amounts.from_float(new_state.best_price)}
            if bookmark:
                updates["monitored_until_ts"] = ts
            if new_state.tp1_done and not position.tp1_done:
                updates["tp1_done"] = True  # TP1 reached but its partial rounded to nothing
            stop = amounts.from_float(new_state.stop)
            if new_state.stop != state.stop:
                became_trailing = new_state.stop_reason == "trailing" and not position.trailing_active
                position = executor.update_stop(position=position, stop_price=stop)
                if new_state.stop_reason == "trailing":
                    updates["trailing_active"] = True
                if became_trailing or new_state.stop_reason == "breakeven":
                    events.publish("position.updated", position_id=position.pk)
            Position.objects.filter(pk=position.pk).update(**updates)
            position.refresh_from_db()
        elif bookmark:
            Position.objects.filter(pk=position.pk).update(monitored_until_ts=ts)
    return position


@dataclass
class MonitorReport:
    positions: int = 0
    candles: int = 0
    closed: int = 0
    funding: int = 0
    resumed: int = 0  # interrupted paper entries filled by this pass
    errors: dict[int, str] = field(default_factory=dict)


def _quiet_progress_save(*, position: Position, until_ts: int, best_price: float) -> bool:
    """Store the bookmark and best price reached over candles on which nothing else happened, in one UPDATE that
    only applies if no other monitor pass moved the position meanwhile (optimistic check on the bookmark)."""
    rows = Position.objects.filter(pk=position.pk, status=Position.Status.OPEN)
    if position.monitored_until_ts is None:
        rows = rows.filter(monitored_until_ts__isnull=True)
    else:
        rows = rows.filter(monitored_until_ts=position.monitored_until_ts)
    best = amounts.from_float(best_price)
    if not rows.update(monitored_until_ts=until_ts, best_price=best):
        return False
    position.monitored_until_ts, position.best_price = until_ts, best
    return True


def position_monitor_candles(
    *, position: Position, candles, now_ms: int, tf_ms: int, executor: Executor, report: MonitorReport
) -> Position:
    """Apply the closed candles ``position`` has not seen yet. Quiet candles (no exit, no stop move: only the best
    price moves) are stepped in memory and stored with one UPDATE; a candle on which something happens goes
    through ``position_apply_bar`` (fills, stop, bookmark in one transaction), so the result is the same as
    applying every candle through the database, at a fraction of the writes."""
    if position.opened_at is None:
        return position
    opened_ms = int(position.opened_at.timestamp() * 1000)
    state = position_state(position=position)
    rules = exit_rules_for(position=position)
    quiet_until: int | None = None
    for i in range(len(candles)):
        ts = int(candles.ts[i])
        if ts < opened_ms or ts + tf_ms > now_ms or ts <= (position.monitored_until_ts or -1):
            continue
        if quiet_until is not None and ts <= quiet_until:
            continue
        bar = {
            "open": float(candles.open[i]),
            "high": float(candles.high[i]),
            "low": float(candles.low[i]),
            "close": float(candles.close[i]),
        }
        new_state, exits = step(state, ts=ts, rules=rules, **bar)
        if not exits and new_state.stop == state.stop and new_state.tp1_done == state.tp1_done:
            state, quiet_until = new_state, ts
            report.candles += 1
            continue
        if quiet_until is not None:
            if not _quiet_progress_save(position=position, until_ts=quiet_until, best_price=state.best_price):
                return position  # another pass is on this position; the next pass picks up from its bookmark
            quiet_until = None
        position = position_apply_bar(position=position, ts=ts, executor=executor, **bar)
        report.candles += 1
        if position.status != Position.Status.OPEN:
            report.closed += 1
            return position
        state = position_state(position=position)
    if quiet_until is not None:
        _quiet_progress_save(position=position, until_ts=quiet_until, best_price=state.best_price)
    return position


def positions_monitor(*, market_data=None, executor_factory=None) -> MonitorReport:
    """Beat entry point: for every open position apply the closed candles it has not seen yet (from its opening
    on), then raise the paper peak equity of the users holding paper positions."""
    from trading.market import market_data as default_market_data
    from trading.selectors import account_equity

    md = market_data or default_market_data()
    timeframe = settings.TRADING_MONITOR_TIMEFRAME
    tf_ms = timeframe_to_ms(timeframe)
    now_ms = md.now_ms()
    report = MonitorReport()
    positions = list(Position.objects.filter(status=Position.Status.OPEN).select_related("symbol", "user__preferences"))
    by_symbol: dict[str, list[Position]] = {}
    for p in positions:
        by_symbol.setdefault(p.symbol.symbol, []).append(p)
    for symbol, group in by_symbol.items():
        try:
            candles = md.ohlcv(symbol, timeframe, settings.TRADING_MONITOR_CANDLES)
        except Exception as exc:
            logger.warning("monitor: no candles for %s: %s", symbol, exc)
            for p in group:
                report.errors[p.pk] = str(exc)
            continue
        for position in group:
            report.positions += 1
            executor = (executor_factory or executor_for)(user=position.user, mode=position.mode)
            try:
                position_monitor_candles(
                    position=position, candles=candles, now_ms=now_ms, tf_ms=tf_ms, executor=executor, report=report
                )
            except Exception as exc:
                logger.exception("monitor: position %s failed", position.pk)
                report.errors[position.pk] = str(exc)
    paper_users = {p.user_id: p.user for p in positions if p.mode == TradingMode.PAPER}
    for user in paper_users.values():
        with contextlib.suppress(Exception):
            paper_account_mark_peak(user=user, equity=account_equity(user=user, price_of=md.last_price))
    return report


TICK_MAX_CANDLE_LAG = 1


def positions_monitor_prices(*, prices: dict[str, Decimal], at: datetime, executor_factory=None) -> int:
    """On a price refresh: apply each fresh price as a tick (open = high = low = close) to the open positions of
    that symbol. Returns how many positions closed.

    A position whose candle pass lags (more than ``TICK_MAX_CANDLE_LAG`` closed candles not applied yet) is skipped:
    a tick from the present must not tighten its stop before the older candles are judged against the old one."""
    ts = int(at.timestamp() * 1000)
    tf_ms = timeframe_to_ms(settings.TRADING_MONITOR_TIMEFRAME)
    closed = 0
    positions = Position.objects.filter(status=Position.Status.OPEN, symbol__symbol__in=list(prices)).select_related(
        "symbol", "user__preferences"
    )
    for position in positions:
        if position.opened_at is None:
            continue
        seen_until = position.monitored_until_ts
        if seen_until is None:
            seen_until = int(position.opened_at.timestamp() * 1000) - tf_ms
        if (ts - (seen_until + tf_ms)) // tf_ms > TICK_MAX_CANDLE_LAG:
            continue
        price = float(prices[position.symbol.symbol])
        executor = (executor_factory or executor_for)(user=position.user, mode=position.mode)
        position = position_apply_bar(
            position=position, ts=ts, open=price, high=price, low=price, close=price, executor=executor, bookmark=False
        )
        closed += position.status == Position.Status.CLOSED
    return closed


def positions_monitor_market_prices(*, market_data=None, executor_factory=None) -> int:
    """The price-refresh pass (beat, every ``TRADING_PRICE_MONITOR_SECONDS``, the price cache's TTL): read the last
    price of every symbol with an open position through the market data's price cache (which refreshes it) and
    apply it as a tick. Returns how many positions closed."""
    from trading.market import market_data as default_market_data

    md = market_data or default_market_data()
    symbols = set(Position.objects.filter(status=Position.Status.OPEN).values_list("symbol__symbol", flat=True))
    prices: dict[str, Decimal] = {}
    for symbol in sorted(symbols):
        try:
            prices[symbol] = Decimal(md.last_price(symbol))
        except Exception as exc:
            logger.warning("monitor: no price for %s: %s", symbol, exc)
    if not prices:
        return 0
    return positions_monitor_prices(prices=prices, at=md.now(), executor_factory=executor_factory)


def _published_funding_rate(md):
    """The market data's current funding rate of a symbol (None when it has none or fails)."""

    def rate_of(symbol: str) -> Decimal | None:
        try:
            return md.funding_rate(symbol)
        except Exception:
            return None

    return rate_of


def positions_monitor_step(*, market_data=None, executor_factory=None) -> MonitorReport:
    """One full monitor pass, as the beat runs it and as a replay calls it after every clock step: fill the paper
    entries a dead worker left pending (``trading.services.positions_pending_resume``), apply the closed candles to
    every open position (``positions_monitor``), then charge the funding times now due
    (``trading.ledger.funding_charge_due``) at the market data's clock."""
    from trading.market import market_data as default_market_data

    md = market_data or default_market_data()
    resumed = positions_pending_resume(now=md.now(), executor_factory=executor_factory)
    report = positions_monitor(market_data=md, executor_factory=executor_factory)
    report.resumed = resumed["opened"]
    report.funding = funding_charge_due(now=md.now(), price_of=md.last_price, rate_of=_published_funding_rate(md))
    return report
