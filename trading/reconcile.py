"""Reconcile live positions and orders with the exchange, and repair (on worker start and every few minutes).

For each user with an active exchange credential and live positions:
1. every order of ours that is not terminal is looked up on the exchange by client order id and synced (a fill we
   missed is recorded; an order the exchange never received, ``submitted`` for longer than the grace period, is
   marked rejected and, for an entry, the position failed);
2. a pending position whose entry filled is opened; an open position without a live stop gets one placed; a limit
   entry (``LIVE_ENTRY_ORDER_TYPE=limit``) still on the book has its fills protected (stop and take-profits re-sized
   as it fills more, the new stop first) and, past its deadline, its remainder cancelled (or its position failed and
   the user told once, when nothing filled): the fallback of the ``settle_limit_entry`` checks, also after a restart;
3. an open position the exchange no longer holds is closed here: with the fills of our stop/TP orders (the
   exchange's prices and fees) or, when something else closed it, with reason ``exchange``;
4. an exchange order whose client id has our format (``P<signal>U<user>L<leg>``) but has no row is adopted;
   other unknown orders are left alone and logged;
5. the account's equity (wallet balance + unrealised PnL) is read and stored: it raises the peak equity of the
   maximum-drawdown rule and, past the user's ``max_drawdown_pct``, pauses their auto-trading (notified once a day).
Every repair is logged (logger ``trading.reconcile``) and counted in the returned report.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from accounts.models import TelegramUser
from config.events import publish
from config.observability import error_report
from exchanges.errors import ExchangeError, FinalExchangeError
from trading.executors.live import (
    OPEN_STATES,
    LiveExecutor,
    limit_entry_deadline,
    next_leg_client_order_id,
    order_request,
    order_sync_from_result,
    position_lock,
    position_refresh_from_orders,
    stop_short,
    take_profits_short,
)
from trading.ledger import live_drawdown_check
from trading.market import market_now
from trading.models import Fill, Order, Position

logger = logging.getLogger(__name__)

CLIENT_ID_RE = re.compile(r"^P(?P<signal>\d+)U(?P<user>\d+)L(?P<leg>[a-z]+)(?P<rev>\d*)$")


@dataclass
class ReconcileReport:
    user_id: int
    repairs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # positions another process was working on

    def repair(self, message: str, *args) -> None:
        text = message % args if args else message
        self.repairs.append(text)
        logger.warning("reconcile user %s: %s", self.user_id, text)


def _submitted_grace() -> timedelta:
    return timedelta(seconds=settings.LIVE_RECONCILE_SUBMITTED_GRACE_SECONDS)


FAILED_RECHECK_WINDOW = timedelta(hours=24)  # a failed entry's order is looked up again for this long


def _unexpected(report: ReconcileReport, exc: BaseException, *, where: str) -> None:
    """An error that is not an exchange's answer (a bug, an odd field, the database): logged with its trace,
    counted and told to the admins (once an hour per user); the pass goes on with the next position or user."""
    reference = error_report(exc, kind="exchange", context={"reconcile_user": report.user_id, "where": where})
    report.errors.append(f"{where}: {type(exc).__name__} (ref {reference})")
    hour = timezone.now().strftime("%Y%m%d%H")
    publish(
        "admins.notify",
        text=f"⚠️ <b>Reconcile failed</b> for user {report.user_id} ({html.escape(where)}): "
        f"<code>{html.escape(type(exc).__name__)}</code> ref <code>{reference}</code>",
        dedupe_key=f"reconcile-error:{report.user_id}:{hour}",
    )


def reconcile_user(*, user, executor: LiveExecutor | None = None) -> ReconcileReport:
    """One user's pass. Never raises: an error of one position is recorded and the next position still runs; an
    error of the whole pass is recorded (see ``_unexpected``)."""
    report = ReconcileReport(user_id=user.pk)
    try:
        executor = executor or LiveExecutor(user=user)
        if executor.credential is None:
            return report
        positions = list(
            Position.objects.filter(
                user=user,
                mode="live",
                exchange=executor.exchange,
                status__in=(Position.Status.PENDING, Position.Status.OPEN),
            ).select_related("symbol")
        )
        # failed positions whose entry was refused with an answer we could not be sure of: it may be live after all
        maybe_live = list(
            Position.objects.filter(
                user=user,
                mode="live",
                exchange=executor.exchange,
                status=Position.Status.FAILED,
                updated_at__gte=timezone.now() - FAILED_RECHECK_WINDOW,
                orders__leg=Order.Leg.ENTRY,
                orders__state=Order.State.REJECTED,
            )
            .select_related("symbol")
            .distinct()
        )
    except Exception as exc:
        _unexpected(report, exc, where="start")
        return report
    try:
        with executor._client() as client:
            exchange_positions = executor._retry(lambda: client.fetch_positions(None), "fetch positions")
            held = {(p.symbol, p.side): p for p in exchange_positions}
            open_orders = executor._retry(lambda: client.fetch_open_orders(None), "fetch open orders")
            for position in [*maybe_live, *positions]:
                try:
                    with position_lock(position_id=position.pk) as acquired:
                        if not acquired:
                            logger.info(
                                "reconcile user %s: position %s is busy (an order task holds it), next pass",
                                user.pk,
                                position.pk,
                            )
                            report.skipped.append(position.pk)
                            continue
                        if position.status == Position.Status.FAILED and not _failed_entry_is_live(
                            executor, client, position, report
                        ):
                            continue
                        _reconcile_position(executor, client, position, held, report)
                except ExchangeError as exc:
                    report.errors.append(f"position {position.pk}: {exc}")
                    logger.error("reconcile user %s position %s failed: %s", user.pk, position.pk, exc)
                except Exception as exc:
                    _unexpected(report, exc, where=f"position {position.pk}")
            _adopt_unknown_orders(executor, open_orders, report)
            _observe_equity(executor, client, user)
    except ExchangeError as exc:
        report.errors.append(str(exc))
        logger.error("reconcile user %s failed: %s", user.pk, exc)
    except Exception as exc:
        _unexpected(report, exc, where="pass")
    return report


def _failed_entry_is_live(executor: LiveExecutor, client, position: Position, report: ReconcileReport) -> bool:
    """A failed position whose entry was refused: ask the exchange by the entry's client id. If it holds the order
    (filled or resting), the refusal was wrong: the position is pending again and reconciled like any other (its
    fill booked, its stop placed). Returns whether it was revived."""
    entry = position.orders.filter(leg=Order.Leg.ENTRY).order_by("pk").first()
    if entry is None or entry.state != Order.State.REJECTED:
        return False
    symbol = position.symbol.symbol
    result = executor._retry(
        lambda: client.fetch_order(
            symbol=symbol,
            exchange_order_id=entry.exchange_order_id,
            client_order_id=entry.client_order_id,
            request=order_request(entry, symbol=symbol),
        ),
        "look up a refused entry",
    )
    if result is None or (result.filled_quantity <= 0 and result.status != "open"):
        return False
    # the exchange's answer overrides our guess: the order was placed (state machine bypassed on purpose)
    Order.objects.filter(pk=entry.pk).update(
        state=Order.State.SUBMITTED, error=f"{entry.error[:300]} (yet found on the exchange)", updated_at=timezone.now()
    )
    Position.objects.filter(pk=position.pk).update(status=Position.Status.PENDING, updated_at=timezone.now())
    position.refresh_from_db()
    report.repair(
        "position %s was failed but its entry %s is on the exchange: reconciled again",
        position.pk,
        entry.client_order_id,
    )
    return True


def _observe_equity(executor: LiveExecutor, client, user) -> None:
    """After the repairs (closes booked), read the account's equity: raises the stored peak and, past the user's
    maximum drawdown, pauses their auto-trading (``trading.ledger.live_drawdown_check``)."""
    equity = executor.equity_read(client)
    live_drawdown_check(user=user, exchange=executor.exchange, equity=equity, at=timezone.now())


def _reconcile_position(
    executor: LiveExecutor, client, position: Position, held: dict, report: ReconcileReport
) -> None:
    symbol = position.symbol.symbol
    now = timezone.now()
    for order in position.orders.filter(state__in=OPEN_STATES).order_by("pk"):
        if order.state == Order.State.NEW:
            continue  # never sent; the executor (or protect below) sends it
        trigger = order.type in (Order.Type.STOP_MARKET, Order.Type.TAKE_PROFIT)
        result = executor._retry(
            lambda o=order, t=trigger: client.fetch_order(
                symbol=symbol,
                exchange_order_id=o.exchange_order_id,
                client_order_id=o.client_order_id,
                trigger=t,
                request=order_request(o, symbol=symbol),
            ),
            "fetch order",
        )
        if result is None:
            if order.state == Order.State.SUBMITTED and now - order.updated_at > _submitted_grace():
                order.transition(Order.State.REJECTED)
                order.error = "never reached the exchange (not found by client order id)"
                order.save()
                report.repair("order %s was never received by the exchange: marked rejected", order.client_order_id)
            continue
        before = (order.state, order.filled_quantity)
        filled = order_sync_from_result(order=order, result=result)
        order.refresh_from_db()
        if filled > 0:
            report.repair("recorded missed fill of %s: %s @ %s", order.client_order_id, filled, order.average_price)
        elif before[0] != order.state:
            report.repair("order %s: %s -> %s", order.client_order_id, before[0], order.state)
    previous = position.status
    position = position_refresh_from_orders(position=position)
    if previous == Position.Status.PENDING and position.status == Position.Status.OPEN:
        report.repair("position %s opened from a missed entry fill", position.pk)
    entry = position.orders.filter(leg=Order.Leg.ENTRY).first()
    if (
        entry is not None
        and entry.type == Order.Type.LIMIT
        and entry.state == Order.State.NEW
        and position.status == Position.Status.PENDING
        and now >= limit_entry_deadline(position=position, entry=entry)
    ):
        # the worker died between choosing the limit and sending it (we hold the position's lock: nobody sends it now)
        executor._limit_entry_expired_unsent(position, entry)
        report.repair(
            "position %s failed: its limit entry %s was never sent within its window",
            position.pk,
            entry.client_order_id,
        )
        return
    if (
        entry is not None
        and entry.type == Order.Type.LIMIT
        and entry.state in (Order.State.OPEN, Order.State.PARTIALLY_FILLED)
    ):
        # a limit entry still on the book (also after a restart): kept until its deadline, then its remainder cancelled
        position = executor.limit_entry_settle_with(client, position, entry)
        entry.refresh_from_db()
        if entry.state == Order.State.CANCELLED:
            report.repair(
                "limit entry %s past its deadline: remainder cancelled, %s filled",
                entry.client_order_id,
                entry.filled_quantity,
            )
        if position.status == Position.Status.FAILED:
            report.repair("position %s failed: its limit entry %s never filled", position.pk, entry.client_order_id)
            return
    if (
        position.status == Position.Status.PENDING
        and entry is not None
        and entry.state in (Order.State.REJECTED, Order.State.CANCELLED)
    ):
        Position.objects.filter(pk=position.pk).update(status=Position.Status.FAILED)
        report.repair("position %s failed: its entry %s is %s", position.pk, entry.client_order_id, entry.state)
        return
    if position.status != Position.Status.OPEN:
        if position.status == Position.Status.CLOSED and previous == Position.Status.OPEN:
            report.repair(
                "position %s closed by its exchange orders (%s), net PnL %s",
                position.pk,
                position.close_reason,
                position.net_pnl,
            )
            executor.entry_remainder_cancel(client, position)
            executor._cancel_protective(client, position)
        return
    exchange_position = held.get((symbol, position.side))
    if (
        (exchange_position is None or exchange_position.quantity <= 0)
        and entry is not None
        and entry.type == Order.Type.LIMIT
    ):
        # a limit entry may have filled after this pass read the exchange's positions: read them again before
        # concluding the position was closed outside
        fresh = executor._retry(lambda: client.fetch_positions([symbol]), "fetch positions")
        exchange_position = next((p for p in fresh if p.symbol == symbol and p.side == position.side), None)
    if exchange_position is None or exchange_position.quantity <= 0:
        # closed on the exchange by something other than our orders (manual close, liquidation, ADL)
        executor._cancel_protective(client, position)
        if position.orders.filter(
            leg=Order.Leg.ENTRY, type=Order.Type.LIMIT, state__in=(Order.State.OPEN, Order.State.PARTIALLY_FILLED)
        ).exists():
            executor._entry_cancel(
                client, position, position.orders.get(leg=Order.Leg.ENTRY)
            )  # no re-opening by a late fill
        booked = _book_outside_close(executor, client, position)
        position = position_refresh_from_orders(position=position, close_reason=Position.CloseReason.EXCHANGE)
        if position.status != Position.Status.CLOSED:  # the exchange's trades did not cover it all (e.g. liquidation)
            Position.objects.filter(pk=position.pk).update(
                status=Position.Status.CLOSED,
                closed_at=market_now(),
                close_reason=Position.CloseReason.EXCHANGE,
                remaining_quantity=Decimal("0"),
            )
            publish("position.closed", position_id=position.pk)
            position.refresh_from_db()
        report.repair(
            "position %s no longer held on the exchange: closed here (reason exchange, %s of its close booked from the exchange's trades, realised PnL %s)",
            position.pk,
            booked,
            position.realised_pnl,
        )
        return
    has_stop = position.orders.filter(
        leg=Order.Leg.STOP_LOSS, state__in=(Order.State.OPEN, Order.State.PARTIALLY_FILLED)
    ).exists()
    if not has_stop:
        try:
            executor.protect(client, position)
        except FinalExchangeError as exc:
            report.errors.append(f"stop for position {position.pk}: {exc}")
            raise
        report.repair("position %s had no live stop: stop placed at %s", position.pk, position.stop_price)
    elif position.orders.filter(
        leg__in=(Order.Leg.TP1, Order.Leg.TP2), state__in=(Order.State.NEW, Order.State.SUBMITTED)
    ).exists():
        executor.protect(client, position)
    elif stop_short(position=position) or take_profits_short(position=position):
        executor.protect(client, position)  # the entry filled more than its stop/TPs cover: re-size them
        report.repair("position %s: stop and take-profits re-sized to %s", position.pk, position.remaining_quantity)


def _book_outside_close(executor: LiveExecutor, client, position: Position) -> Decimal:
    """Record the exchange's own executions that closed ``position`` outside our orders (a manual close on the
    exchange, liquidation, ADL): one ``close`` Order per exchange order with a Fill per trade, at the exchange's
    prices and fees, up to the quantity still open here. Returns the quantity booked. Idempotent (trade ids)."""
    position.refresh_from_db()
    remaining = position.remaining_quantity
    if remaining <= 0 or not hasattr(client.client, "fetch_my_trades"):
        return Decimal("0")
    since_ms = int(position.opened_at.timestamp() * 1000) if position.opened_at else None
    trades = executor._retry(lambda: client.fetch_my_trades(position.symbol.symbol, since_ms), "fetch my trades")
    ours = set(position.orders.exclude(exchange_order_id="").values_list("exchange_order_id", flat=True))
    our_client_ids = set(position.orders.values_list("client_order_id", flat=True))
    booked_trade_ids = set(position.fills.values_list("trade_id", flat=True))
    # exits of ours already booked whose trades carry another order id (a triggered stop/TP places a new order)
    our_exit_fills = [
        (f.quantity, f.price)
        for f in position.fills.filter(
            order__leg__in=(Order.Leg.STOP_LOSS, Order.Leg.TP1, Order.Leg.TP2, Order.Leg.CLOSE)
        )
    ]
    exit_side = "sell" if position.side == "long" else "buy"
    direction = Decimal("1") if position.side == "long" else Decimal("-1")
    booked = Decimal("0")
    for trade in sorted(trades, key=lambda t: t.timestamp_ms or 0):
        if (
            trade.side != exit_side
            or trade.exchange_order_id in ours
            or trade.client_order_id in our_client_ids
            or trade.trade_id in booked_trade_ids
        ):
            continue
        if (trade.quantity, trade.price) in our_exit_fills:
            our_exit_fills.remove((trade.quantity, trade.price))
            continue
        if booked >= remaining:
            break
        quantity = min(trade.quantity, remaining - booked)
        order = position.orders.filter(leg=Order.Leg.CLOSE, exchange_order_id=trade.exchange_order_id).first()
        if order is None:
            order = Order.objects.create(
                position=position,
                client_order_id=next_leg_client_order_id(position=position, leg="exch"),
                exchange_order_id=trade.exchange_order_id,
                exchange=executor.exchange,
                leg=Order.Leg.CLOSE,
                type=Order.Type.MARKET,
                side=exit_side,
                quantity=quantity,
                reduce_only=True,
                state=Order.State.FILLED,
                error="closed on the exchange outside this platform",
            )
        else:
            order.quantity += quantity
        order.average_price = (
            (order.average_price or Decimal("0")) * order.filled_quantity + trade.price * quantity
        ) / (order.filled_quantity + quantity)
        order.filled_quantity += quantity
        order.save()
        Fill.objects.get_or_create(
            order=order,
            trade_id=trade.trade_id or f"{trade.exchange_order_id}:{trade.timestamp_ms}",
            defaults={
                "position": position,
                "price": trade.price,
                "quantity": quantity,
                "fee": trade.fee,
                "realised_pnl": (trade.price - position.entry_price) * quantity * direction,
            },
        )
        booked += quantity
    return booked


def _adopt_unknown_orders(executor: LiveExecutor, open_orders, report: ReconcileReport) -> None:
    known = set(
        Order.objects.filter(
            client_order_id__in=[o.client_order_id for o in open_orders if o.client_order_id]
        ).values_list("client_order_id", flat=True)
    )
    for result in open_orders:
        cid = result.client_order_id
        if not cid or cid in known:
            continue
        match = CLIENT_ID_RE.match(cid)
        if not match or int(match["user"]) != executor.user.pk:
            logger.info(
                "reconcile user %s: leaving unknown exchange order %s (%s) alone",
                executor.user.pk,
                result.exchange_order_id,
                cid or "no client id",
            )
            continue
        position = Position.objects.filter(
            user=executor.user, signal_id=int(match["signal"]) or None, mode="live"
        ).first()
        leg = {"entry": Order.Leg.ENTRY, "sl": Order.Leg.STOP_LOSS, "tp": Order.Leg.TP1, "close": Order.Leg.CLOSE}.get(
            match["leg"]
        )
        if match["leg"] == "tp":  # tp1, tp2 and their re-sized revisions tp12, tp22…
            leg = Order.Leg.TP2 if match["rev"].startswith("2") else Order.Leg.TP1
        if position is None or leg is None:
            logger.warning(
                "reconcile user %s: order %s has our format but no position to attach it to", executor.user.pk, cid
            )
            continue
        order = Order.objects.create(
            position=position,
            client_order_id=cid,
            exchange_order_id=result.exchange_order_id,
            exchange=executor.exchange,
            leg=leg,
            type=result.type if result.type in Order.Type.values else Order.Type.MARKET,
            side=result.side,
            quantity=result.quantity,
            price=result.price,
            trigger_price=result.trigger_price,
            reduce_only=result.reduce_only,
            state=Order.State.SUBMITTED,
        )
        order_sync_from_result(order=order, result=result)
        report.repair("adopted exchange order %s (%s) into position %s", cid, result.exchange_order_id, position.pk)


def reconcile_all() -> list[ReconcileReport]:
    """Reconcile every user with live positions that are pending or open (or recently failed with an entry that may
    be live); one user's error never stops the others."""

    recent_failures = Position.objects.filter(
        mode="live", status=Position.Status.FAILED, updated_at__gte=timezone.now() - FAILED_RECHECK_WINDOW
    )
    user_ids = set(
        Position.objects.filter(mode="live", status__in=(Position.Status.PENDING, Position.Status.OPEN)).values_list(
            "user_id", flat=True
        )
    )
    user_ids |= set(
        recent_failures.filter(orders__leg=Order.Leg.ENTRY, orders__state=Order.State.REJECTED).values_list(
            "user_id", flat=True
        )
    )
    reports = []
    for user in TelegramUser.objects.filter(pk__in=sorted(user_ids)).order_by("pk"):
        try:
            reports.append(reconcile_user(user=user))
        except Exception as exc:  # reconcile_user does not raise; this guards the loop against anything else
            report = ReconcileReport(user_id=user.pk)
            _unexpected(report, exc, where="user")
            reports.append(report)
    return reports
