"""The Executor port: open, close and modify a user's position on a market (paper simulation or a live exchange).

Life of a position (``trading.services`` drives it, the executor talks to the market):

1. ``trading.services.position_prepare`` decides (risk manager + sizing) and stores, in ONE transaction, the
   ``Position`` row (status ``pending``) and its entry ``Order`` row(s) (state ``new``) with deterministic client
   order ids (``trading.orders.client_order_id``). Nothing has touched a market yet.
2. ``executor.open_position(position=...)`` sends the stored entry order(s), records the fills and moves the
   position to ``open`` (live: then places the reduce-only stop/TP legs on the exchange, each written as an Order row
   before the call). It MUST be idempotent: called again on a position whose entry already filled it returns the
   position unchanged; on a ``pending`` position it first looks the entry order up by client order id (live) so a
   retried task never places twice.
3. The position monitor (``trading.monitor``) applies ``engine.exits.step`` and calls ``close_position`` (exit
   fills: SL, TP1 partial, TP2, trailing, break-even, expiry) and ``update_stop`` (break-even, trailing).

Implementations are constructed bound to one user: ``PaperExecutor(user=user)`` (``trading/executors/paper.py``)
and ``LiveExecutor(user=user)`` (``trading/executors/live.py``). ``trading.executors.factory.executor_for`` is the
one place that picks between them. This module holds the port only and imports no implementation.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from engine.sizing import MarketLimits
    from signals.models import Symbol
    from trading.models import Position


@runtime_checkable
class Executor(Protocol):
    #: "paper" or "live" (``trading.models.TradingMode``)
    mode: str
    #: value stored in ``Position.exchange`` / ``Order.exchange``: "paper" or the ccxt exchange id
    exchange: str

    def open_position(self, *, position: Position) -> Position:
        """Execute the stored entry order(s) of a ``pending`` position; returns it ``open`` (or ``failed`` with the
        reason in the entry order's ``error``). Idempotent."""
        ...

    def close_position(
        self, *, position: Position, reason: str, quantity: Decimal | None = None, price: Decimal | None = None
    ) -> Position:
        """Close ``quantity`` (default: all that remains) for ``reason`` (a ``Position.CloseReason`` value).

        ``price`` is the reference price of the exit decided by the monitor (the stop or target level, or the open of
        a gapping candle): the paper executor fills there (plus slippage for taker exits); a live executor may ignore
        it (a stop already resting on the exchange fills by itself; a market close fills at the market). The exit
        Order row is written before the fill. Idempotent per (position, reason) for engine exits."""
        ...

    def update_stop(self, *, position: Position, stop_price: Decimal) -> Position:
        """Move the protective stop (break-even after TP1, trailing). Live: replace the exchange stop order."""
        ...

    def balance(self) -> Decimal:
        """Cash the sizing may use (paper: the paper account's balance; live: the exchange's free USDT)."""
        ...

    def market_limits(self, *, symbol: Symbol) -> MarketLimits:
        """Precision and minimums of ``symbol`` where this executor trades (paper: the ``Symbol`` row)."""
        ...
