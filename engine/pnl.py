"""PnL of linear USDT-margined perpetuals.

The formulas are plain arithmetic, so they work on ``Decimal`` (the database/order side: pass only Decimals) and
on ``float`` (the backtester uses the very same functions on floats). Sign conventions:

- ``direction(side)``: +1 long, -1 short.
- ``price_pnl(side=, entry=, exit=, quantity=)`` = direction * (exit - entry) * quantity  (realised on a fill, or
  unrealised with ``exit`` = mark price — ``unrealised_pnl`` is the same formula).
- ``fee(price=, quantity=, rate=)`` = price * quantity * rate, a cost (>= 0 for a non-negative rate).
- ``funding_payment(side=, mark=, quantity=, rate=)`` = direction * mark * quantity * rate: positive = PAID by the
  position (longs pay a positive rate, shorts receive it).
- ``slipped_price(price=, side=, slippage=, opening=)`` — a taker fill moved against the trader by ``slippage``
  (a fraction): buying (open long / close short) pays more, selling receives less.
- ``r_multiple(pnl=, entry=, stop=, quantity=)`` = pnl / (|entry - stop| * quantity).
"""

from __future__ import annotations

from engine.errors import InvalidParameters


def direction(side: str) -> int:
    if side == "long":
        return 1
    if side == "short":
        return -1
    raise InvalidParameters(f"side must be 'long' or 'short', got {side!r}")


def price_pnl(*, side: str, entry, exit, quantity):
    return direction(side) * (exit - entry) * quantity


def unrealised_pnl(*, side: str, entry, mark, quantity):
    return direction(side) * (mark - entry) * quantity


def fee(*, price, quantity, rate):
    return price * quantity * rate


def funding_payment(*, side: str, mark, quantity, rate):
    return direction(side) * mark * quantity * rate


def slipped_price(*, price, side: str, slippage, opening: bool):
    buying = (side == "long") == opening
    return price * (1 + slippage) if buying else price * (1 - slippage)


def r_multiple(*, pnl, entry, stop, quantity):
    risk = abs(entry - stop) * quantity
    if risk == 0:
        raise InvalidParameters("R multiple undefined: zero risk (entry == stop or zero quantity)")
    return pnl / risk
