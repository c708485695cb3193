"""Paper trading: simulated fills against the market data's next price, with slippage and fees, on a per-user paper
account (``trading.models.PaperAccount``, starting balance ``settings.PAPER_STARTING_BALANCE``).

- Entry: a market (taker) order at ``last_price`` moved against the trader by ``PAPER_SLIPPAGE`` and rounded to the
  tick against the trader; taker fee ``PAPER_TAKER_FEE`` on the notional.
- Exits: take profits fill at their level as maker (``PAPER_MAKER_FEE``, no slippage); stops, trailing, break-even,
  expiry and manual closes are taker fills with slippage from the reference price the monitor passes.
- Every order row (deterministic client order id) is written before its fill; an entry is filled in a transaction
  of its own, after the decision was committed, so a crash in between leaves a ``pending`` position that the
  re-run completes (see ``trading.services.signal_execute_for_user``).

The paper account, refusals and funding are written through ``trading.ledger``; order ids and legs come from
``trading.orders``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from config import events
from engine import pnl
from engine.sizing import MarketLimits
from trading import amounts, ledger, orders
from trading.market import Clock, PriceSource, market_funding_rate, market_last_price, market_now
from trading.models import Fill, Order, Position, TradeRefusal
from trading.risk import entry_beyond_levels

MAKER_REASONS = frozenset({Position.CloseReason.TP1, Position.CloseReason.TP2})


class PaperExecutor:
    mode = "paper"
    exchange = "paper"

    def __init__(
        self,
        *,
        user,
        price_of: PriceSource | None = None,
        clock: Clock | None = None,
        taker_fee: Decimal | None = None,
        maker_fee: Decimal | None = None,
        slippage: Decimal | None = None,
        rate_of=None,
    ):
        self.user = user
        self.price_of = price_of or market_last_price
        self.rate_of = rate_of or market_funding_rate
        self.clock = clock or market_now
        self.taker_fee = settings.PAPER_TAKER_FEE if taker_fee is None else taker_fee
        self.maker_fee = settings.PAPER_MAKER_FEE if maker_fee is None else maker_fee
        self.slippage = settings.PAPER_SLIPPAGE if slippage is None else slippage

    # --- sizing inputs ------------------------------------------------------------------------------------------
    def balance(self) -> Decimal:
        return ledger.paper_account_get_or_create(user=self.user).balance

    def market_limits(self, *, symbol) -> MarketLimits:
        return orders.market_limits_of(symbol=symbol)

    def now(self) -> datetime:
        return self.clock()

    # --- port ---------------------------------------------------------------------------------------------------
    def open_position(self, *, position: Position) -> Position:
        market_price = Decimal(self.price_of(position.symbol.symbol))  # I/O outside the transaction
        now = self.clock()
        with transaction.atomic():
            position = Position.objects.select_for_update(of=("self",)).select_related("symbol").get(pk=position.pk)
            if position.status != Position.Status.PENDING:
                return position  # already executed (a re-run after a crash, or a duplicate delivery)
            order = position.orders.get(leg=Order.Leg.ENTRY)
            fill_price = amounts.price_to_tick(
                pnl.slipped_price(price=market_price, side=position.side, slippage=self.slippage, opening=True),
                position.symbol.tick_size,
                up=position.side == "long",
            )
            beyond = entry_beyond_levels(
                side=position.side,
                price=fill_price,
                stop=position.stop_price,
                target=position.tp1_price or position.tp2_price,
            )
            if beyond:  # the signal has already hit its stop (or target): no entry, the reason recorded
                order.transition(Order.State.CANCELLED)
                order.error = beyond[:300]
                order.save(update_fields=["state", "error", "updated_at"])
                position.status = Position.Status.FAILED
                position.save(update_fields=["status", "updated_at"])
                if position.signal_id:
                    ledger.refusal_record(
                        user=position.user,
                        signal=position.signal,
                        reason=TradeRefusal.Reason.SIGNAL_CLOSED,
                        detail=beyond,
                    )
                return position
            fee = amounts.money(pnl.fee(price=fill_price, quantity=order.quantity, rate=self.taker_fee))
            self._fill(
                order=order,
                position=position,
                price=fill_price,
                fee=fee,
                liquidity="taker",
                at=now,
                realised=Decimal(0),
            )
            position.status = Position.Status.OPEN
            position.entry_price = fill_price
            position.best_price = fill_price
            position.opened_at = now
            position.fees += fee
            position.save(update_fields=["status", "entry_price", "best_price", "opened_at", "fees", "updated_at"])
            ledger.paper_account_apply(user=position.user, cash=-fee, at=now, opened=True)
            events.publish("position.opened", position_id=position.pk)
        return position

    def close_position(
        self, *, position: Position, reason: str, quantity: Decimal | None = None, price: Decimal | None = None
    ) -> Position:
        reference = Decimal(price) if price is not None else Decimal(self.price_of(position.symbol.symbol))
        now = self.clock()
        # funding the position lived through is settled before the exit: the "Position closed" message, the
        # dashboard and the API then read the same final PnL
        ledger.funding_settle_position(
            position=position, now=now, price_of=self.price_of, rate_of=self.rate_of, closing=True
        )
        with transaction.atomic():
            position = Position.objects.select_for_update(of=("self",)).select_related("symbol").get(pk=position.pk)
            if position.status != Position.Status.OPEN:
                return position
            leg = orders.exit_leg(position=position, reason=reason)
            cid = orders.client_order_id(signal_id=position.signal_id, user_id=position.user_id, leg=leg)
            if Order.objects.filter(client_order_id=cid).exists():
                return position  # this exit already happened
            qty = (
                position.remaining_quantity if quantity is None else min(Decimal(quantity), position.remaining_quantity)
            )
            if qty <= 0:
                return position
            maker = reason in MAKER_REASONS
            if maker:
                fill_price = amounts.price(reference)
            else:
                fill_price = amounts.price_to_tick(
                    pnl.slipped_price(price=reference, side=position.side, slippage=self.slippage, opening=False),
                    position.symbol.tick_size,
                    up=position.side == "short",
                )
            order = Order.objects.create(
                position=position,
                client_order_id=cid,
                exchange=self.exchange,
                leg=orders.order_leg_for_reason(reason),
                type=Order.Type.TAKE_PROFIT if maker else orders.order_type_for_reason(reason),
                side="sell" if position.side == "long" else "buy",
                quantity=qty,
                price=fill_price if maker else None,
                trigger_price=reference if reason in orders.STOP_REASONS else None,
                reduce_only=True,
            )
            gross = amounts.money(
                pnl.price_pnl(side=position.side, entry=position.entry_price, exit=fill_price, quantity=qty)
            )
            fee = amounts.money(
                pnl.fee(price=fill_price, quantity=qty, rate=self.maker_fee if maker else self.taker_fee)
            )
            self._fill(
                order=order,
                position=position,
                price=fill_price,
                fee=fee,
                liquidity="maker" if maker else "taker",
                at=now,
                realised=gross,
            )
            position.remaining_quantity -= qty
            position.realised_pnl += gross
            position.fees += fee
            if reason == Position.CloseReason.TP1:
                position.tp1_done = True
            if position.remaining_quantity <= 0:
                position.remaining_quantity = Decimal(0)
                position.status = Position.Status.CLOSED
                position.close_reason = reason
                position.closed_at = now
            position.save()
            ledger.paper_account_apply(user=position.user, cash=gross - fee, at=now)
            closed = position.status == Position.Status.CLOSED
            events.publish("position.closed" if closed else "position.updated", position_id=position.pk)
        return position

    def update_stop(self, *, position: Position, stop_price: Decimal) -> Position:
        Position.objects.filter(pk=position.pk, status=Position.Status.OPEN).update(
            stop_price=amounts.price(stop_price)
        )
        position.refresh_from_db()
        return position

    # --- internals ----------------------------------------------------------------------------------------------
    def _fill(
        self,
        *,
        order: Order,
        position: Position,
        price: Decimal,
        fee: Decimal,
        liquidity: str,
        at: datetime,
        realised: Decimal,
    ) -> Fill:
        fill = Fill.objects.create(
            order=order,
            position=position,
            trade_id=f"{order.client_order_id}F1",
            price=price,
            quantity=order.quantity,
            fee=fee,
            liquidity=liquidity,
            realised_pnl=realised,
            filled_at=at,
        )
        order.transition(Order.State.FILLED)
        order.filled_quantity = order.quantity
        order.average_price = price
        order.save(update_fields=["state", "filled_quantity", "average_price", "updated_at"])
        return fill
