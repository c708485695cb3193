"""LiveExecutor: the Executor port on a real exchange (or the in-process fake) through ``exchanges``.

Order safety:
- every order has a deterministic client order id (``trading.orders.client_order_id``: signal, user, leg) and its
  ``Order`` row is written (state ``new``) BEFORE the exchange call, moved to ``submitted`` right before sending and
  updated from the exchange's answer after;
- an order in ``submitted`` (a previous attempt may have reached the exchange, its answer lost or the worker killed)
  is first looked up on the exchange by client order id; only when the exchange does not know it is it sent again;
- retryable errors (timeouts, 5xx, 429) are retried with backoff + jitter, always through that look-up;
- right after the entry fills, a reduce-only stop (and the take-profits) are placed; if the stop cannot be placed
  (final error) the position is closed at market: a position never stands without a stop. Stops that fail
  transiently are left to ``trading.reconcile`` (it places missing stops);
- a final error (auth, insufficient balance, invalid order/symbol) disables the user's auto-trading with the reason
  and tells the user (``user.notify``).

Entry order type (``settings.LIVE_ENTRY_ORDER_TYPE``): ``market`` (default), or ``limit`` at the signal's entry price
rounded to the market's tick. A limit entry stays on the book until ``LIVE_LIMIT_ENTRY_TIMEOUT_SECONDS`` after its
position was stored; whatever fills in the meantime gets its reduce-only stop and take-profits at once (re-sized,
new stop first, as more fills), and at the deadline the unfilled remainder is cancelled (``limit_entry_settle``,
scheduled on the trade queue through the scheduler ``trading.tasks_live`` registers, and every reconcile pass, which
also covers a restart). A limit that never filled leaves the position ``failed`` and the user is told politely. A
limit entry whose window passed before it was sent (a task redelivered late) is not sent at all.

Fills are recorded per order as increments of the exchange's cumulative filled quantity (trade id
``<exchange order id>:<cumulative filled>``), and the position's quantity, remaining quantity, entry price, realised
PnL and fees are recomputed from its orders' fills, so re-running any step is idempotent.
"""

from __future__ import annotations

import contextlib
import html
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import ExchangeCredential
from accounts.services import telegram_user_auto_trading_stop
from config.events import publish
from engine.sizing import MarketLimits
from exchanges import SyncExchangeClient, exchange_client_for
from exchanges.base import Balance, ExchangePosition, MarketInfo, OrderRequest, OrderResult
from exchanges.errors import (
    AuthenticationFailed,
    ExchangeError,
    FinalExchangeError,
    InsufficientBalance,
    OrderApiRestricted,
    OrderNotFoundOnExchange,
    OrderTooSmall,
    RetryableExchangeError,
    SymbolUnavailable,
    backoff_delay,
)
from trading.exchange_messages import refusal_words
from trading.market import market_now
from trading.models import Fill, Order, Position
from trading.orders import client_order_id

logger = logging.getLogger(__name__)

OPEN_STATES = (Order.State.NEW, Order.State.SUBMITTED, Order.State.OPEN, Order.State.PARTIALLY_FILLED)
EXIT_LEGS = (Order.Leg.STOP_LOSS, Order.Leg.TP1, Order.Leg.TP2, Order.Leg.CLOSE)
PROTECTIVE_LEGS = (Order.Leg.STOP_LOSS, Order.Leg.TP1, Order.Leg.TP2)
ZERO = Decimal("0")


class LiveTradingUnavailable(FinalExchangeError):
    """The user has no active exchange credential."""


# Answers that say for certain the order is not on the exchange; any other final answer is checked by a look-up.
DEFINITE_REFUSALS = (
    AuthenticationFailed,
    InsufficientBalance,
    OrderTooSmall,
    OrderApiRestricted,
    SymbolUnavailable,
    LiveTradingUnavailable,
)


def active_credential(*, user):
    return ExchangeCredential.objects.filter(user=user, is_active=True).first()


def _exit_side(position: Position) -> str:
    return "sell" if position.side == "long" else "buy"


def _entry_side(position: Position) -> str:
    return "buy" if position.side == "long" else "sell"


def entry_order_type() -> str:
    """``market`` or ``limit``: the configured type of live entry orders (settings refuses any other value)."""
    return Order.Type.LIMIT if settings.LIVE_ENTRY_ORDER_TYPE == "limit" else Order.Type.MARKET


def limit_entry_deadline(*, position: Position, entry: Order) -> datetime:
    """When an unfilled limit entry is cancelled: its timeout after the position (or its entry row) was stored."""
    stored = min(t for t in (position.created_at, entry.created_at) if t is not None)
    return stored + timedelta(seconds=settings.LIVE_LIMIT_ENTRY_TIMEOUT_SECONDS)


LIMIT_ENTRY_CHECK_SECONDS = 30  # a limit entry on the book is re-checked this often: a fill gets its stop quickly
LIMIT_ENTRY_UNSENT = "limit entry window passed before it was sent"


def limit_entry_unfilled_notify(*, position: Position, entry: Order) -> None:
    """Tell the user (once per position: the caller fails the position first, and the notice has a dedupe key) that
    their limit entry expired without a fill, or was never placed because its window had passed."""
    minutes = max(settings.LIVE_LIMIT_ENTRY_TIMEOUT_SECONDS // 60, 1)
    direction = "long" if position.side == "long" else "short"
    price = f"{entry.price.normalize():f}" if entry.price is not None else "the signal's entry"  # 100, never 1E+2
    what = f"Your limit order to go {direction} on {html.escape(position.symbol.symbol)} at {price}"
    if entry.error == LIMIT_ENTRY_UNSENT:
        detail = f"{what} could not be placed within {minutes} min of the signal, so it was not sent."
    else:
        detail = f"{what} was not filled within {minutes} min, so it was cancelled."
    text = f"ℹ️ <b>Limit entry not filled</b>\n{detail} No position was opened and no funds were used."
    publish("user.notify", user_id=position.user_id, text=text, dedupe_key=f"live-limit-unfilled:{position.pk}")


def limit_entered(*, position: Position) -> bool:
    """The position's entry is a limit order, which may fill in parts after its first part was protected."""
    return position.orders.filter(leg=Order.Leg.ENTRY, type=Order.Type.LIMIT).exists()


def stop_short(*, position: Position) -> bool:
    """A limit-entered position whose live stop does not cover its whole remaining quantity (it filled more)."""
    return (
        limit_entered(position=position)
        and not position.orders.filter(
            leg=Order.Leg.STOP_LOSS,
            state__in=(Order.State.OPEN, Order.State.PARTIALLY_FILLED),
            quantity__gte=position.remaining_quantity,
        ).exists()
    )


def take_profits_short(*, position: Position) -> bool:
    """A limit-entered position whose take-profits, all still untouched on the book, cover less than its remaining
    quantity (before TP1)."""
    if not limit_entered(position=position):
        return False
    tps = list(
        position.orders.filter(leg__in=(Order.Leg.TP1, Order.Leg.TP2)).exclude(
            state__in=(Order.State.CANCELLED, Order.State.REJECTED)
        )
    )
    return bool(
        tps
        and not position.tp1_done
        and all(o.state == Order.State.OPEN and o.filled_quantity == 0 for o in tps)
        and sum((o.quantity for o in tps), ZERO) < position.remaining_quantity
    )


# How the next check of a resting limit entry is scheduled. The task module of live trading (``trading.tasks_live``,
# above the executors) registers its scheduler at start-up (``TradingConfig.ready``), so no executor imports a task;
# with none registered nothing is scheduled and the reconcile passes settle the entry.
LimitEntrySettleScheduler = Callable[[int, float], None]
_limit_entry_settle_scheduler: LimitEntrySettleScheduler | None = None


def limit_entry_settle_scheduler_register(schedule: LimitEntrySettleScheduler) -> LimitEntrySettleScheduler:
    global _limit_entry_settle_scheduler
    _limit_entry_settle_scheduler = schedule
    return schedule


def limit_entry_settle_schedule(position_id: int, countdown: float) -> None:
    """Run ``limit_entry_settle`` in ``countdown`` seconds (the next check of a limit entry on the book, at the latest
    at its deadline) through the registered scheduler; reconcile passes are the fallback."""
    if _limit_entry_settle_scheduler is None:
        logger.warning("no limit entry scheduler registered: position %s is settled by reconcile", position_id)
        return
    _limit_entry_settle_scheduler(position_id, countdown)


def leg_client_order_id(*, position: Position, leg: str) -> str:
    return client_order_id(signal_id=position.signal_id or 0, user_id=position.user_id, leg=leg)


def next_leg_client_order_id(*, position: Position, leg: str) -> str:
    """``sl``, then ``sl2``, ``sl3``… for replacements (each exchange order needs its own client id)."""
    used = set(position.orders.values_list("client_order_id", flat=True))
    for revision in range(1, 1000):
        candidate = leg_client_order_id(position=position, leg=leg if revision == 1 else f"{leg}{revision}")
        if candidate not in used:
            return candidate
    raise FinalExchangeError(f"too many {leg} orders on position {position.pk}")


def order_request(order: Order, *, symbol: str, leverage: int | None = None) -> OrderRequest:
    return OrderRequest(
        symbol=symbol,
        side=order.side,
        type=order.type,
        quantity=order.quantity,
        client_order_id=order.client_order_id,
        price=order.price,
        trigger_price=order.trigger_price,
        reduce_only=order.reduce_only,
        leverage=leverage,
    )


def _state_for(result: OrderResult) -> str:
    if result.status == "closed":
        return Order.State.FILLED
    if result.status == "canceled":
        return Order.State.CANCELLED
    if result.status == "rejected":
        return Order.State.REJECTED
    return Order.State.PARTIALLY_FILLED if result.filled_quantity > 0 else Order.State.OPEN


@transaction.atomic
def order_sync_from_result(*, order: Order, result: OrderResult) -> Decimal:
    """Bring an Order row (and its fills, and its position) up to date with the exchange's view of it.

    Returns the newly recorded filled quantity. Idempotent: re-applying the same result records nothing.
    """
    order = Order.objects.select_for_update().get(pk=order.pk)
    if result.filled_quantity > order.filled_quantity and not (result.average_price and result.average_price > 0):
        # a fill without a price ("0", missing, "market"): never booked; the order stays open and is asked again
        logger.warning(
            "order %s: exchange reports %s filled without a fill price; not booked yet",
            order.client_order_id,
            result.filled_quantity,
        )
        result = replace(result, filled_quantity=order.filled_quantity, status="open")
    if result.exchange_order_id and order.exchange_order_id != result.exchange_order_id:
        order.exchange_order_id = result.exchange_order_id
    new_state = _state_for(result)
    if order.state != new_state and order.can_transition(new_state):
        order.transition(new_state)
    newly_filled = result.filled_quantity - order.filled_quantity
    if newly_filled > 0:
        position = order.position
        recorded_fee = sum((f.fee for f in order.fills.all()), ZERO)
        cost_before = (order.average_price or ZERO) * order.filled_quantity
        cost_now = result.average_price * result.filled_quantity  # the exchange's fill price only, never the limit
        fill_price = (cost_now - cost_before) / newly_filled
        realised = ZERO
        if order.leg in EXIT_LEGS and position.entry_price:
            direction = Decimal("1") if position.side == "long" else Decimal("-1")
            realised = (fill_price - position.entry_price) * newly_filled * direction
        Fill.objects.get_or_create(
            order=order,
            trade_id=f"{order.exchange_order_id or order.client_order_id}:{result.filled_quantity.normalize()}",
            defaults={
                "position": position,
                "price": fill_price,
                "quantity": newly_filled,
                "fee": max(result.fee - recorded_fee, ZERO),
                "realised_pnl": realised,
                "filled_at": market_now(),
            },
        )
        order.filled_quantity = result.filled_quantity
        order.average_price = result.average_price or fill_price
    order.save()
    return max(newly_filled, ZERO)


def position_refresh_from_orders(*, position: Position, close_reason: str = "") -> Position:
    """Recompute quantity, entry, remaining, realised PnL, fees and status of a live position from its orders."""
    with transaction.atomic():
        position = Position.objects.select_for_update().get(pk=position.pk)
        orders = list(position.orders.all())
        entries = [o for o in orders if o.leg == Order.Leg.ENTRY and o.filled_quantity > 0]
        entry_filled = sum((o.filled_quantity for o in entries), ZERO)
        exit_orders = [o for o in orders if o.leg in EXIT_LEGS and o.filled_quantity > 0]
        exit_filled = sum((o.filled_quantity for o in exit_orders), ZERO)
        fills = list(Fill.objects.filter(position=position))
        previous_status, previous_tp1 = position.status, position.tp1_done
        if entry_filled > 0:
            position.entry_price = sum((o.average_price * o.filled_quantity for o in entries), ZERO) / entry_filled
            position.quantity = entry_filled
            position.remaining_quantity = max(entry_filled - exit_filled, ZERO)
            position.opened_at = position.opened_at or market_now()  # the replay clock in replay mode
            if position.status == Position.Status.PENDING:
                position.status = Position.Status.OPEN
        position.realised_pnl = sum((f.realised_pnl for f in fills), ZERO)
        position.fees = sum((f.fee for f in fills), ZERO)
        tp1 = next((o for o in orders if o.leg == Order.Leg.TP1 and o.state == Order.State.FILLED), None)
        if tp1 is not None:
            position.tp1_done = True
        if position.status == Position.Status.OPEN and entry_filled > 0 and position.remaining_quantity == 0:
            position.status = Position.Status.CLOSED
            position.closed_at = market_now()
            position.close_reason = (
                close_reason or position.close_reason or _close_reason_from_orders(position, exit_orders)
            )
        position.save()
        if previous_status != position.status:
            event = {Position.Status.OPEN: "position.opened", Position.Status.CLOSED: "position.closed"}.get(
                position.status
            )
            if event:
                publish(event, position_id=position.pk)
        elif position.tp1_done and not previous_tp1 and position.status == Position.Status.OPEN:
            publish("position.updated", position_id=position.pk)  # TP1 taken on the exchange: the trader is told
    return position


def _close_reason_from_orders(position: Position, exit_orders: list[Order]) -> str:
    last = max(exit_orders, key=lambda o: o.updated_at, default=None)
    if last is None:
        return Position.CloseReason.EXCHANGE
    if last.leg == Order.Leg.STOP_LOSS:
        if position.entry_price is not None and last.trigger_price == position.entry_price:
            return Position.CloseReason.BREAKEVEN
        if last.trigger_price != position.initial_stop_price:
            return Position.CloseReason.TRAILING
        return Position.CloseReason.SL
    return {Order.Leg.TP1: Position.CloseReason.TP1, Order.Leg.TP2: Position.CloseReason.TP2}.get(
        last.leg, Position.CloseReason.MANUAL
    )


LOCK_SECONDS = 90  # a lock of a killed worker expires by itself
LOCK_WAIT_SECONDS = 30.0


@contextlib.contextmanager
def position_lock(*, position_id: int, wait: float = 0.0) -> Iterator[bool]:
    """One process at a time sends orders for a live position (the executor's task and reconcile), across workers:
    a lock in the shared cache (Redis in production). Yields whether it was acquired; the executor proceeds after
    ``wait`` anyway (client order ids still prevent doubles), reconcile skips a busy position until its next pass."""
    from django.core.cache import cache

    key, token = f"live-position-lock:{position_id}", uuid.uuid4().hex
    deadline = time.monotonic() + wait
    acquired = cache.add(key, token, timeout=LOCK_SECONDS)
    while not acquired and time.monotonic() < deadline:
        time.sleep(0.1)
        acquired = cache.add(key, token, timeout=LOCK_SECONDS)
    try:
        yield acquired
    finally:
        if acquired and cache.get(key) == token:
            cache.delete(key)


def account_equity_of(*, balance: Balance, positions: list[ExchangePosition]) -> Decimal:
    """Equity of an exchange account: the equity the exchange reports, else its wallet total + the unrealised PnL
    of its positions."""
    if balance.equity is not None:
        return balance.equity
    return balance.total + sum((p.unrealised_pnl or ZERO for p in positions), ZERO)


def auto_trading_disable(*, user, error: ExchangeError, exchange: str, dedupe_key: str) -> None:
    """Final exchange error: stop live auto-trading for the user, record why in plain words, and tell them once
    what to do (``trading.exchange_messages``: MEXC's closed futures order API, a refused key, no margin…)."""
    words = refusal_words(error, exchange=exchange)
    telegram_user_auto_trading_stop(user=user, reason=words.reason)
    logger.warning("auto-trading disabled for user %s: %s", user.pk, error)
    text = f"⚠️ <b>Auto-trading switched off</b>\n{html.escape(words.reason)}.\n{html.escape(words.advice)}"
    publish("user.notify", user_id=user.pk, text=text, dedupe_key=dedupe_key)


class LiveExecutor:
    mode = "live"

    def __init__(
        self,
        *,
        user,
        credential=None,
        attempts: int = 4,
        fill_poll_attempts: int | None = None,
        sleep: Callable[[float], None] | None = None,
        settle_later: Callable[[int, float], None] | None = None,
    ):
        self.user = user
        self.credential = credential if credential is not None else active_credential(user=user)
        self.exchange = self.credential.exchange if self.credential else ""
        self.attempts = attempts
        self.fill_poll_attempts = (
            fill_poll_attempts if fill_poll_attempts is not None else settings.LIVE_FILL_POLL_ATTEMPTS
        )
        self.sleep = sleep if sleep is not None else time.sleep
        self.tp1_fraction = Decimal(settings.LIVE_TP1_CLOSE_FRACTION)
        self.settle_later = settle_later if settle_later is not None else limit_entry_settle_schedule

    # --- plumbing -----------------------------------------------------------------------------------------------------
    def _order_refresh(self, client: SyncExchangeClient, order: Order, symbol: str, what: str) -> bool:
        """Fetch ``order`` from the exchange and store its state and fills; False when the exchange does not have it."""
        result = self._retry(
            lambda: client.fetch_order(
                symbol=symbol, exchange_order_id=order.exchange_order_id, client_order_id=order.client_order_id
            ),
            what,
        )
        if result is None:
            return False
        order_sync_from_result(order=order, result=result)
        order.refresh_from_db()
        return True

    def _client(self) -> SyncExchangeClient:
        if self.credential is None:
            raise LiveTradingUnavailable("no active exchange connection; use /connect first")
        return SyncExchangeClient(exchange_client_for(self.credential))

    def _retry(self, call: Callable, description: str):
        last: ExchangeError | None = None
        for attempt in range(self.attempts):
            try:
                return call()
            except RetryableExchangeError as exc:
                last = exc
                delay = max(exc.retry_after or 0, backoff_delay(attempt, base=0.2, cap=4.0))
                logger.warning("%s: %s (attempt %d/%d)", description, exc, attempt + 1, self.attempts)
                if attempt < self.attempts - 1:
                    self.sleep(delay)
        raise last  # type: ignore[misc]

    def _cancel_if_open(self, call: Callable, description: str) -> None:
        """Cancel; an order the exchange says is gone or not cancellable (filled, already cancelled with its flat
        position) is fine: the caller reads its state right after. Auth and balance errors still stop us."""
        try:
            self._retry(call, description)
        except OrderNotFoundOnExchange:
            return
        except (AuthenticationFailed, InsufficientBalance):
            raise
        except FinalExchangeError as exc:
            logger.warning("%s refused (%s): reading the order's state instead", description, exc)

    def submit(self, client: SyncExchangeClient, order: Order, request: OrderRequest) -> OrderResult:
        """Send ``order`` at most once: look it up by client order id whenever it may already have been sent.

        An answer that is not a definite refusal (an error we cannot classify, such as a duplicate-client-id wording
        no pattern knows) leaves the order's state unknown: the exchange is asked before anything is concluded. If
        it holds the order, the order is adopted; if the look-up fails, the state stays unknown (a retryable error:
        the position stays pending until reconcile has the exchange's answer)."""
        last: ExchangeError | None = None
        for attempt in range(self.attempts):
            try:
                if order.state != Order.State.NEW:
                    existing = self._lookup(client, order, request)
                    if existing is not None:
                        logger.info(
                            "order %s already on %s (id %s): not sent again",
                            order.client_order_id,
                            client.exchange_id,
                            existing.exchange_order_id,
                        )
                        return existing
                else:
                    order.transition(Order.State.SUBMITTED)
                    order.save(update_fields=["state", "updated_at"])
                try:
                    return client.create_order(request)
                except DEFINITE_REFUSALS:
                    raise
                except FinalExchangeError as exc:
                    unclear = exc
                existing = self._lookup(client, order, request)
                if existing is not None:
                    logger.warning(
                        "order %s: %s answered %r, but holds the order (id %s): adopted",
                        order.client_order_id,
                        client.exchange_id,
                        str(unclear),
                        existing.exchange_order_id,
                    )
                    return existing
                raise unclear
            except RetryableExchangeError as exc:
                last = exc
                logger.warning(
                    "submitting %s: %s (attempt %d/%d)", order.client_order_id, exc, attempt + 1, self.attempts
                )
                if attempt < self.attempts - 1:
                    self.sleep(max(exc.retry_after or 0, backoff_delay(attempt, base=0.2, cap=4.0)))
        raise last  # type: ignore[misc]

    @staticmethod
    def _lookup(client: SyncExchangeClient, order: Order, request: OrderRequest) -> OrderResult | None:
        return client.fetch_order(
            symbol=request.symbol,
            exchange_order_id=order.exchange_order_id,
            client_order_id=order.client_order_id,
            trigger=request.is_trigger,
            request=request,
        )

    def _fail_final(self, position: Position, order: Order | None, exc: ExchangeError) -> None:
        if order is not None:
            order.refresh_from_db()
            order.error = str(exc)[:500]
            if order.can_transition(Order.State.REJECTED):
                order.transition(Order.State.REJECTED)
            order.save()
        auto_trading_disable(
            user=self.user,
            error=exc,
            exchange=self.exchange,
            dedupe_key=f"live-final:{self.user.pk}:{position.pk}:{order.pk if order else 0}",
        )

    # --- Executor port ------------------------------------------------------------------------------------------------
    def balance(self) -> Decimal:
        with self._client() as client:
            return self._retry(lambda: client.fetch_balance("USDT"), "fetch balance").free

    def equity(self) -> Decimal:
        """The exchange account's equity (wallet balance + unrealised PnL): what the drawdown rule measures."""
        with self._client() as client:
            return self.equity_read(client)

    def equity_read(self, client: SyncExchangeClient) -> Decimal:
        balance = self._retry(lambda: client.fetch_balance("USDT"), "fetch balance")
        if balance.equity is not None:
            return balance.equity
        return account_equity_of(
            balance=balance, positions=self._retry(lambda: client.fetch_positions(None), "fetch positions")
        )

    def market_limits(self, *, symbol):
        with self._client() as client:
            info: MarketInfo = self._retry(lambda: client.market(symbol.symbol), "fetch market")
        return MarketLimits(
            amount_step=info.amount_step,
            min_qty=info.min_amount or ZERO,
            min_notional=info.min_notional or ZERO,
            max_leverage=Decimal(info.max_leverage) if info.max_leverage else None,
        )

    def open_position(self, *, position: Position) -> Position:
        with position_lock(position_id=position.pk, wait=LOCK_WAIT_SECONDS):
            return self._open_position(position=position)

    def _open_position(self, *, position: Position) -> Position:
        position.refresh_from_db()
        if position.status in (Position.Status.CLOSED, Position.Status.FAILED):
            return position
        entry = position.orders.filter(leg=Order.Leg.ENTRY).order_by("pk").first()
        if entry is None:  # the caller normally stores it; be tolerant
            entry, _ = Order.objects.get_or_create(
                client_order_id=leg_client_order_id(position=position, leg="entry"),
                defaults={
                    "position": position,
                    "exchange": self.exchange,
                    "leg": Order.Leg.ENTRY,
                    "type": Order.Type.MARKET,
                    "side": _entry_side(position),
                    "quantity": position.quantity,
                },
            )
        try:
            with self._client() as client:
                if position.status == Position.Status.PENDING:
                    position = self._execute_entry(client, position, entry)
                if position.status == Position.Status.OPEN:
                    self.protect(client, position)
        except FinalExchangeError as exc:
            self._fail_final(position, entry if entry.state in OPEN_STATES else None, exc)
            position.refresh_from_db()
            if (
                position.status == Position.Status.PENDING
                and not position.orders.filter(filled_quantity__gt=0).exists()
            ):
                Position.objects.filter(pk=position.pk).update(status=Position.Status.FAILED)
                position.refresh_from_db()
        return position

    def _execute_entry(self, client: SyncExchangeClient, position: Position, entry: Order) -> Position:
        symbol = position.symbol.symbol
        if entry.state in (Order.State.NEW, Order.State.SUBMITTED):
            market = self._retry(lambda: client.market(symbol), "fetch market")
            quantity = market.round_quantity(entry.quantity)
            if quantity != entry.quantity and entry.state == Order.State.NEW:
                entry.quantity = quantity
                entry.save(update_fields=["quantity", "updated_at"])
            if entry.state == Order.State.NEW:
                self._entry_type_choose(position, entry, market)
                if entry.type == Order.Type.LIMIT and timezone.now() >= limit_entry_deadline(
                    position=position, entry=entry
                ):
                    return self._limit_entry_expired_unsent(position, entry)
                self._retry(lambda: client.set_leverage(symbol, position.leverage, "isolated"), "set leverage")
                result = self.submit(client, entry, order_request(entry, symbol=symbol, leverage=position.leverage))
            elif entry.type == Order.Type.LIMIT and timezone.now() >= limit_entry_deadline(
                position=position, entry=entry
            ):
                # sent before, answer lost, and its window has passed: look it up, but never send it now
                result = self._retry(
                    lambda: client.fetch_order(
                        symbol=symbol, exchange_order_id=entry.exchange_order_id, client_order_id=entry.client_order_id
                    ),
                    "look up entry",
                )
                if result is None:
                    return self._limit_entry_expired_unsent(position, entry)
            else:
                result = self.submit(client, entry, order_request(entry, symbol=symbol, leverage=position.leverage))
            order_sync_from_result(order=entry, result=result)
            entry.refresh_from_db()
        if entry.type == Order.Type.LIMIT:
            return self._limit_entry_wait(client, position, entry)
        # wait for a market entry to fill completely; a remainder that does not fill is cancelled
        for _ in range(self.fill_poll_attempts):
            if entry.state not in (Order.State.OPEN, Order.State.PARTIALLY_FILLED, Order.State.SUBMITTED):
                break
            if entry.type != Order.Type.MARKET:
                break
            self.sleep(0.5)
            self._order_refresh(client, entry, symbol, "poll entry")
        if entry.type == Order.Type.MARKET and entry.state in (Order.State.OPEN, Order.State.PARTIALLY_FILLED):
            self._cancel_if_open(
                lambda: client.cancel_order(
                    symbol=symbol, exchange_order_id=entry.exchange_order_id, client_order_id=entry.client_order_id
                ),
                "cancel entry remainder",
            )
            self._order_refresh(client, entry, symbol, "fetch entry")
            logger.warning(
                "entry %s only partly filled (%s of %s): remainder cancelled",
                entry.client_order_id,
                entry.filled_quantity,
                entry.quantity,
            )
        position = position_refresh_from_orders(position=position)
        if position.status == Position.Status.PENDING and entry.state in (Order.State.CANCELLED, Order.State.REJECTED):
            Position.objects.filter(pk=position.pk).update(status=Position.Status.FAILED)
            position.refresh_from_db()
        return position

    # --- limit entries ------------------------------------------------------------------------------------------------
    def _entry_type_choose(self, position: Position, entry: Order, market: MarketInfo) -> None:
        """Before the first send: a limit entry at the signal's entry price on the market's tick, if so configured."""
        signal_entry = position.signal.entry if position.signal_id and position.signal else None
        if entry_order_type() != Order.Type.LIMIT or entry.type != Order.Type.MARKET or not signal_entry:
            return
        entry.type = Order.Type.LIMIT
        entry.price = market.round_price(signal_entry)
        entry.save(update_fields=["type", "price", "updated_at"])
        logger.info("entry %s is a limit order at %s", entry.client_order_id, entry.price)

    def _limit_entry_expired_unsent(self, position: Position, entry: Order) -> Position:
        entry.transition(Order.State.CANCELLED)
        entry.error = LIMIT_ENTRY_UNSENT
        entry.save(update_fields=["state", "error", "updated_at"])
        logger.warning("entry %s not sent: its limit window passed before it could be sent", entry.client_order_id)
        return self._limit_entry_finish(position, entry)

    def _limit_entry_wait(self, client: SyncExchangeClient, position: Position, entry: Order) -> Position:
        """Poll a fresh limit entry briefly, then settle it (record fills, cancel at the deadline) and, while it is
        still on the book, have it checked again (its fills protected) until its deadline."""
        symbol = position.symbol.symbol
        for _ in range(self.fill_poll_attempts):
            if entry.state not in (Order.State.OPEN, Order.State.PARTIALLY_FILLED, Order.State.SUBMITTED):
                break
            if timezone.now() >= limit_entry_deadline(position=position, entry=entry):
                break
            self.sleep(0.5)
            self._order_refresh(client, entry, symbol, "poll entry")
        position = self.limit_entry_settle_with(client, position, entry)
        self._limit_entry_check_later(position, entry)
        return position  # the caller protects an open position

    def _limit_entry_check_later(self, position: Position, entry: Order) -> None:
        entry.refresh_from_db()
        if entry.state in (Order.State.OPEN, Order.State.PARTIALLY_FILLED) and position.status in (
            Position.Status.PENDING,
            Position.Status.OPEN,
        ):
            left = (limit_entry_deadline(position=position, entry=entry) - timezone.now()).total_seconds()
            if left > 0:  # past it, the cancel failed: the reconcile passes retry it, no chain of checks
                self.settle_later(position.pk, min(left, LIMIT_ENTRY_CHECK_SECONDS))

    def limit_entry_settle(self, *, position: Position) -> Position:
        """Check a limit entry: record its fills and protect them (stop first, re-sized as more fills); at (or after)
        its deadline cancel the unfilled remainder, or fail the position and tell the user once when nothing filled.
        A closed position's remainder is cancelled at once. Idempotent; re-schedules itself while the entry rests."""
        with position_lock(position_id=position.pk, wait=LOCK_WAIT_SECONDS):
            position.refresh_from_db()
            entry = position.orders.filter(leg=Order.Leg.ENTRY).order_by("pk").first()
            if entry is None or entry.type != Order.Type.LIMIT or position.status == Position.Status.FAILED:
                return position
            if (
                entry.state not in (Order.State.SUBMITTED, Order.State.OPEN, Order.State.PARTIALLY_FILLED)
                and position.status != Position.Status.OPEN
            ):
                return position
            if self.credential is None:
                logger.warning(
                    "limit entry of position %s: no active exchange connection, left to reconcile", position.pk
                )
                return position
            try:
                with self._client() as client:
                    if position.status == Position.Status.CLOSED:
                        return self.entry_remainder_cancel(client, position)
                    position = self.limit_entry_settle_with(client, position, entry)
                    if position.status == Position.Status.OPEN:
                        self.protect(client, position)
                    self._limit_entry_check_later(position, entry)
            except FinalExchangeError as exc:
                self._fail_final(position, None, exc)
            position.refresh_from_db()
            return position

    def limit_entry_settle_with(self, client: SyncExchangeClient, position: Position, entry: Order) -> Position:
        """Sync a limit entry from the exchange and, past its deadline, cancel its remainder (no protection here)."""
        symbol = position.symbol.symbol
        entry.refresh_from_db()
        if entry.state in (Order.State.SUBMITTED, Order.State.OPEN, Order.State.PARTIALLY_FILLED):
            self._order_refresh(client, entry, symbol, "fetch entry")
        if entry.state in (Order.State.OPEN, Order.State.PARTIALLY_FILLED) and timezone.now() >= limit_entry_deadline(
            position=position, entry=entry
        ):
            self._entry_cancel(client, position, entry)
            logger.warning(
                "limit entry %s timed out: %s of %s filled, remainder cancelled",
                entry.client_order_id,
                entry.filled_quantity,
                entry.quantity,
            )
        return self._limit_entry_finish(position, entry)

    def _entry_cancel(self, client: SyncExchangeClient, position: Position, entry: Order) -> None:
        symbol = position.symbol.symbol
        self._cancel_if_open(
            lambda: client.cancel_order(
                symbol=symbol, exchange_order_id=entry.exchange_order_id, client_order_id=entry.client_order_id
            ),
            "cancel entry",
        )
        self._order_refresh(client, entry, symbol, "fetch entry")

    def _limit_entry_finish(self, position: Position, entry: Order) -> Position:
        position = position_refresh_from_orders(position=position)
        if position.status == Position.Status.PENDING and entry.state in (Order.State.CANCELLED, Order.State.REJECTED):
            failed = Position.objects.filter(pk=position.pk, status=Position.Status.PENDING).update(
                status=Position.Status.FAILED, updated_at=timezone.now()
            )
            if (
                failed and entry.state == Order.State.CANCELLED
            ):  # a rejection already told the user why (auto_trading_disable)
                limit_entry_unfilled_notify(position=position, entry=entry)
            position.refresh_from_db()
        return position

    def entry_remainder_cancel(self, client: SyncExchangeClient, position: Position) -> Position:
        """A position being closed (or closed) must not grow again: cancel its limit entry still on the book. Should
        the remainder have filled meanwhile on a position already closed, that part is closed at market too."""
        entry = position.orders.filter(
            leg=Order.Leg.ENTRY,
            type=Order.Type.LIMIT,
            state__in=(Order.State.SUBMITTED, Order.State.OPEN, Order.State.PARTIALLY_FILLED),
        ).first()
        if entry is None:
            return position
        self._entry_cancel(client, position, entry)
        logger.info(
            "limit entry %s of closing position %s: remainder cancelled (%s of %s filled)",
            entry.client_order_id,
            position.pk,
            entry.filled_quantity,
            entry.quantity,
        )
        position = position_refresh_from_orders(position=position)
        if position.status == Position.Status.CLOSED and position.remaining_quantity > 0:
            logger.error(
                "limit entry %s filled %s more after position %s closed: closing it at market",
                entry.client_order_id,
                position.remaining_quantity,
                position.pk,
            )
            position = self._close_at_market(
                client, position, reason=position.close_reason or Position.CloseReason.MANUAL
            )
        return position

    def _protection_grow(self, client: SyncExchangeClient, position: Position, market: MarketInfo) -> None:
        """The entry filled more after its first part was protected (a limit entry on the book): replace the stop
        with one of the whole position (the new one placed first, then the old cancelled) and the untouched
        take-profits with ones sized to it. A no-op when the stop and take-profits already cover the position, and
        for market entries (they never grow after their protection was placed)."""
        if not limit_entered(position=position):
            return
        symbol = position.symbol.symbol
        stops = list(
            position.orders.filter(
                leg=Order.Leg.STOP_LOSS, state__in=(Order.State.OPEN, Order.State.PARTIALLY_FILLED)
            ).order_by("pk")
        )
        if stops and all(s.quantity < position.remaining_quantity for s in stops):
            covered = max(s.quantity for s in stops)
            new_stop = self._stop_order_new(position, trigger_price=stops[-1].trigger_price)
            try:
                result = self.submit(
                    client, new_stop, order_request(new_stop, symbol=symbol, leverage=position.leverage)
                )
            except FinalExchangeError as exc:  # the part the old stop does not cover must not stand unprotected
                logger.error(
                    "re-sized stop %s refused (%s): closing the unprotected %s of position %s",
                    new_stop.client_order_id,
                    exc,
                    position.remaining_quantity - covered,
                    position.pk,
                )
                self._fail_final(position, new_stop, exc)
                position = self.entry_remainder_cancel(client, position)
                position.refresh_from_db()
                self._close_at_market(
                    client, position, reason=Position.CloseReason.MANUAL, quantity=position.remaining_quantity - covered
                )
                return
            order_sync_from_result(order=new_stop, result=result)
            new_stop.refresh_from_db()
            if new_stop.state not in (Order.State.OPEN, Order.State.PARTIALLY_FILLED):
                logger.error(
                    "re-sized stop %s is %s on the exchange: the old stop stays",
                    new_stop.client_order_id,
                    new_stop.state,
                )
                return
            self._cancel_protective(client, position, legs=(Order.Leg.STOP_LOSS,), keep=new_stop.pk)
            logger.info(
                "stop of position %s re-sized to %s (entry filled more)", position.pk, position.remaining_quantity
            )
        if take_profits_short(position=position):
            self._cancel_protective(client, position, legs=(Order.Leg.TP1, Order.Leg.TP2))
            if not position.orders.filter(leg__in=(Order.Leg.TP1, Order.Leg.TP2), filled_quantity__gt=0).exists():
                self._place_take_profits(client, position, market, resize=True)
                logger.info("take-profits of position %s re-sized to %s", position.pk, position.remaining_quantity)

    def protect(self, client: SyncExchangeClient, position: Position) -> None:
        """Make sure the open position has a live reduce-only stop covering it (and its take-profits); idempotent."""
        position.refresh_from_db()
        if position.status != Position.Status.OPEN or position.remaining_quantity <= 0:
            return
        symbol = position.symbol.symbol
        market = self._retry(lambda: client.market(symbol), "fetch market")
        stop = position.orders.filter(leg=Order.Leg.STOP_LOSS, state__in=OPEN_STATES).order_by("-pk").first()
        if stop is None:
            stop = self._stop_order_new(position, trigger_price=market.round_price(position.stop_price))
        if stop.state in (Order.State.NEW, Order.State.SUBMITTED):
            try:
                result = self.submit(client, stop, order_request(stop, symbol=symbol, leverage=position.leverage))
            except FinalExchangeError as exc:
                logger.error(
                    "stop %s refused (%s): closing position %s at market", stop.client_order_id, exc, position.pk
                )
                self._fail_final(position, stop, exc)
                self.entry_remainder_cancel(client, position)
                self._close_at_market(client, position, reason=Position.CloseReason.MANUAL)
                return
            order_sync_from_result(order=stop, result=result)
            logger.info("stop %s placed at %s for position %s", stop.client_order_id, stop.trigger_price, position.pk)
            stop.refresh_from_db()
            older = position.orders.filter(leg=Order.Leg.STOP_LOSS, state__in=OPEN_STATES).exclude(pk=stop.pk)
            if stop.state in (Order.State.OPEN, Order.State.PARTIALLY_FILLED) and older.exists():
                # a replacement stop whose first send failed midway: now placed, the stops it replaces go
                self._cancel_protective(client, position, legs=(Order.Leg.STOP_LOSS,), keep=stop.pk)
        self._protection_grow(client, position, market)
        self._place_take_profits(client, position, market)

    def _place_take_profits(
        self, client: SyncExchangeClient, position: Position, market: MarketInfo, *, resize: bool = False
    ) -> None:
        symbol = position.symbol.symbol
        if position.orders.filter(leg__in=(Order.Leg.TP1, Order.Leg.TP2)).exists() and not resize:
            pending = position.orders.filter(
                leg__in=(Order.Leg.TP1, Order.Leg.TP2), state__in=(Order.State.NEW, Order.State.SUBMITTED)
            )
        else:
            levels = [
                (leg, price)
                for leg, price in ((Order.Leg.TP1, position.tp1_price), (Order.Leg.TP2, position.tp2_price))
                if price
            ]
            if not levels or position.tp1_done:
                return
            quantity = position.remaining_quantity
            first = market.round_quantity(quantity * self.tp1_fraction) if len(levels) == 2 else quantity
            sizes = [first, quantity - first] if len(levels) == 2 else [quantity]
            for (leg, price), size in zip(levels, sizes, strict=True):
                if size <= 0:
                    continue
                Order.objects.get_or_create(
                    client_order_id=next_leg_client_order_id(position=position, leg=leg)
                    if resize
                    else leg_client_order_id(position=position, leg=leg),
                    defaults={
                        "position": position,
                        "exchange": self.exchange,
                        "leg": leg,
                        "type": Order.Type.TAKE_PROFIT,
                        "side": _exit_side(position),
                        "quantity": size,
                        "trigger_price": market.round_price(price),
                        "reduce_only": True,
                    },
                )
            pending = position.orders.filter(
                leg__in=(Order.Leg.TP1, Order.Leg.TP2), state__in=(Order.State.NEW, Order.State.SUBMITTED)
            )
        for order in pending:
            try:
                result = self.submit(client, order, order_request(order, symbol=symbol, leverage=position.leverage))
                order_sync_from_result(order=order, result=result)
            except RetryableExchangeError as exc:  # a take-profit is not a safety order: reconcile retries it
                logger.warning("take-profit %s not placed yet: %s", order.client_order_id, exc)

    def _stop_order_new(self, position: Position, *, trigger_price: Decimal) -> Order:
        """A reduce-only stop-market order for the whole remaining position, stored before it is sent."""
        return Order.objects.create(
            position=position,
            client_order_id=next_leg_client_order_id(position=position, leg="sl"),
            exchange=self.exchange,
            leg=Order.Leg.STOP_LOSS,
            type=Order.Type.STOP_MARKET,
            side=_exit_side(position),
            quantity=position.remaining_quantity,
            trigger_price=trigger_price,
            reduce_only=True,
        )

    def _close_at_market(
        self, client: SyncExchangeClient, position: Position, *, reason: str, quantity: Decimal | None = None
    ) -> Position:
        position.refresh_from_db()
        quantity = min(quantity or position.remaining_quantity, position.remaining_quantity)
        if quantity <= 0:
            return position
        symbol = position.symbol.symbol
        order = position.orders.filter(leg=Order.Leg.CLOSE, state__in=(Order.State.NEW, Order.State.SUBMITTED)).first()
        if order is None:
            order = Order.objects.create(
                position=position,
                client_order_id=next_leg_client_order_id(position=position, leg="close"),
                exchange=self.exchange,
                leg=Order.Leg.CLOSE,
                type=Order.Type.MARKET,
                side=_exit_side(position),
                quantity=quantity,
                reduce_only=True,
            )
        result = self.submit(client, order, order_request(order, symbol=symbol, leverage=position.leverage))
        order_sync_from_result(order=order, result=result)
        return position_refresh_from_orders(position=position, close_reason=reason)

    def _cancel_protective(
        self, client: SyncExchangeClient, position: Position, legs=PROTECTIVE_LEGS, keep: int | None = None
    ) -> None:
        symbol = position.symbol.symbol
        for order in position.orders.filter(
            leg__in=legs, state__in=(Order.State.SUBMITTED, Order.State.OPEN, Order.State.PARTIALLY_FILLED)
        ).exclude(pk=keep):
            if not order.exchange_order_id:  # sent, answer lost: learn its id first (Bitunix TP/SL cancel by id only)
                found = self._retry(
                    lambda o=order: client.fetch_order(
                        symbol=symbol,
                        client_order_id=o.client_order_id,
                        trigger=True,
                        request=order_request(o, symbol=symbol),
                    ),
                    "find protective order",
                )
                if found is not None:
                    order_sync_from_result(order=order, result=found)
                    order.refresh_from_db()
            self._cancel_if_open(
                lambda o=order: client.cancel_order(
                    symbol=symbol,
                    exchange_order_id=o.exchange_order_id,
                    client_order_id=o.client_order_id,
                    trigger=True,
                ),
                "cancel protective order",
            )
            result = self._retry(
                lambda o=order: client.fetch_order(
                    symbol=symbol,
                    exchange_order_id=o.exchange_order_id,
                    client_order_id=o.client_order_id,
                    trigger=True,
                    request=order_request(o, symbol=symbol),
                ),
                "fetch protective order",
            )
            if result is not None:
                order_sync_from_result(order=order, result=result)
        for order in position.orders.filter(leg__in=legs, state=Order.State.NEW).exclude(pk=keep):
            order.transition(Order.State.CANCELLED)
            order.save(update_fields=["state", "updated_at"])

    def close_position(
        self, *, position: Position, reason: str, quantity: Decimal | None = None, price: Decimal | None = None
    ) -> Position:
        with position_lock(position_id=position.pk, wait=LOCK_WAIT_SECONDS):
            return self._close_position(position=position, reason=reason, quantity=quantity)

    def _close_position(self, *, position: Position, reason: str, quantity: Decimal | None = None) -> Position:
        position.refresh_from_db()
        if position.status != Position.Status.OPEN:
            return position
        try:
            with self._client() as client:
                full = quantity is None or quantity >= position.remaining_quantity
                if full:
                    position = self.entry_remainder_cancel(
                        client, position
                    )  # a limit entry still resting: no more fills
                    self._cancel_protective(client, position)
                position = self._close_at_market(client, position, reason=reason, quantity=None if full else quantity)
                if not full and position.status == Position.Status.OPEN:
                    publish("position.updated", position_id=position.pk)
        except FinalExchangeError as exc:
            self._fail_final(position, None, exc)
            raise
        return position

    def update_stop(self, *, position: Position, stop_price: Decimal) -> Position:
        """Replace the exchange stop: the new stop is placed first, then the old one cancelled (never unprotected)."""
        with position_lock(position_id=position.pk, wait=LOCK_WAIT_SECONDS):
            return self._update_stop(position=position, stop_price=stop_price)

    def _update_stop(self, *, position: Position, stop_price: Decimal) -> Position:
        position.refresh_from_db()
        if position.status != Position.Status.OPEN:
            return position
        old_stops = list(position.orders.filter(leg=Order.Leg.STOP_LOSS, state__in=OPEN_STATES))
        with self._client() as client:
            market = self._retry(lambda: client.market(position.symbol.symbol), "fetch market")
            new_price = market.round_price(stop_price)
            if any(o.trigger_price == new_price for o in old_stops):
                return position
            Position.objects.filter(pk=position.pk).update(stop_price=new_price)
            position.refresh_from_db()
            new_stop = self._stop_order_new(position, trigger_price=new_price)
            result = self.submit(
                client, new_stop, order_request(new_stop, symbol=position.symbol.symbol, leverage=position.leverage)
            )
            order_sync_from_result(order=new_stop, result=result)
            for old in old_stops:
                self._cancel_if_open(
                    lambda o=old: client.cancel_order(
                        symbol=position.symbol.symbol,
                        exchange_order_id=o.exchange_order_id,
                        client_order_id=o.client_order_id,
                        trigger=True,
                    ),
                    "cancel old stop",
                )
                result = self._retry(
                    lambda o=old: client.fetch_order(
                        symbol=position.symbol.symbol,
                        exchange_order_id=o.exchange_order_id,
                        client_order_id=o.client_order_id,
                        trigger=True,
                        request=order_request(o, symbol=position.symbol.symbol),
                    ),
                    "fetch old stop",
                )
                if result is not None:
                    order_sync_from_result(order=old, result=result)
        publish("position.updated", position_id=position.pk)
        return position_refresh_from_orders(position=position)
