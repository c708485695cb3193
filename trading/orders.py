"""Order bookkeeping shared by the executors, the services and reconcile: deterministic client order ids, the leg,
type and id of an exit order, and a symbol's market limits in ``engine.sizing`` terms.

Nothing here writes or talks to a market; it only names and classifies orders (``trading.models.Order``).
"""

from __future__ import annotations

import re
from decimal import Decimal

from engine.sizing import MarketLimits
from trading.models import Order, Position

_LEG_RE = re.compile(r"^[a-z0-9]{1,8}$")
CLIENT_ORDER_ID_MAX_LENGTH = 32

R = Position.CloseReason
STOP_REASONS = frozenset({R.SL, R.BREAKEVEN, R.TRAILING})
_EXIT_LEG_CODES = {R.SL: "sl", R.TP1: "tp1", R.TP2: "tp2", R.TRAILING: "trl", R.BREAKEVEN: "be", R.EXPIRY: "exp"}


def client_order_id(*, signal_id: int, user_id: int, leg: str) -> str:
    """Deterministic client order id of one order leg: ``P<signal>U<user>L<leg>``.

    Ids are decimal digits and the separators upper-case letters, the leg lower-case alphanumerics (``entry``,
    ``sl``, ``tp1``, ``tp2``, ``be``, ``trl``, ``exp``, ``man2``…), so two different (signal, user, leg) never give
    the same id. At most 32 characters of ``[A-Za-z0-9]`` (accepted by OKX, KuCoin, MEXC and Bitunix).
    """
    if signal_id is None or user_id is None or int(signal_id) < 0 or int(user_id) < 0:
        raise ValueError(f"signal_id and user_id must be non-negative integers, got {signal_id!r}, {user_id!r}")
    if not _LEG_RE.match(leg):
        raise ValueError(f"order leg must be 1-8 lower-case letters/digits, got {leg!r}")
    value = f"P{int(signal_id)}U{int(user_id)}L{leg}"
    if len(value) > CLIENT_ORDER_ID_MAX_LENGTH:
        raise ValueError(f"client order id {value!r} is longer than {CLIENT_ORDER_ID_MAX_LENGTH} characters")
    return value


def exit_leg(*, position: Position, reason: str) -> str:
    """Leg code of an exit: one per engine exit reason (each happens at most once per position); manual/flip/
    exchange closes are numbered (``man1``, ``man2``…) since they may repeat."""
    code = _EXIT_LEG_CODES.get(reason)
    if code:
        return code
    prefix = {R.FLIP: "flip", R.EXCHANGE: "exch"}.get(reason, "man")
    n = position.orders.exclude(leg=Order.Leg.ENTRY).count() + 1
    return f"{prefix}{n}"


def order_leg_for_reason(reason: str) -> str:
    return {R.TP1: Order.Leg.TP1, R.TP2: Order.Leg.TP2}.get(
        reason, Order.Leg.STOP_LOSS if reason in STOP_REASONS else Order.Leg.CLOSE
    )


def order_type_for_reason(reason: str) -> str:
    if reason in (R.TP1, R.TP2):
        return Order.Type.TAKE_PROFIT
    return Order.Type.STOP_MARKET if reason in STOP_REASONS else Order.Type.MARKET


def market_limits_of(*, symbol) -> MarketLimits:
    """Precision and minimums of a ``signals.Symbol`` row in ``engine.sizing`` terms."""
    return MarketLimits(
        amount_step=symbol.step_size or None,
        min_qty=symbol.min_quantity or Decimal(0),
        min_notional=symbol.min_notional or Decimal(0),
        max_leverage=Decimal(symbol.max_leverage) if symbol.max_leverage else None,
    )
