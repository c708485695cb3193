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
- ``AccountLedger`` — a running account (Decimal) keeping BOTH the wallet balance (moved by every cash flow) and
  the cumulated totals; ``identity_gap(marks)`` = (balance + unrealised) - (start + realised + unrealised - fees -
  funding), which must be exactly 0 after any sequence of events (property-tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

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


@dataclass
class LedgerPosition:
    side: str
    entry: Decimal
    quantity: Decimal


@dataclass
class AccountLedger:
    """Decimal account of one user: open/reduce positions, fees and funding; two independent bookkeepings."""

    start: Decimal
    balance: Decimal = field(init=False)
    realised: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    funding: Decimal = Decimal(0)
    positions: dict[str, LedgerPosition] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.balance = self.start

    def open(self, *, symbol: str, side: str, price: Decimal, quantity: Decimal, fee_rate: Decimal) -> Decimal:
        if symbol in self.positions:
            raise InvalidParameters(f"{symbol} already has an open position")
        if quantity <= 0 or price <= 0:
            raise InvalidParameters("price and quantity must be > 0")
        direction(side)
        self.positions[symbol] = LedgerPosition(side, price, quantity)
        paid = fee(price=price, quantity=quantity, rate=fee_rate)
        self.fees += paid
        self.balance -= paid
        return paid

    def reduce(self, *, symbol: str, price: Decimal, quantity: Decimal, fee_rate: Decimal) -> Decimal:
        """Close ``quantity`` (<= the open quantity) at ``price``; returns the realised price PnL."""
        pos = self.positions[symbol]
        if not 0 < quantity <= pos.quantity:
            raise InvalidParameters(f"cannot close {quantity} of a {pos.quantity} position")
        gross = price_pnl(side=pos.side, entry=pos.entry, exit=price, quantity=quantity)
        paid = fee(price=price, quantity=quantity, rate=fee_rate)
        self.realised += gross
        self.fees += paid
        self.balance += gross - paid
        pos.quantity -= quantity
        if pos.quantity == 0:
            del self.positions[symbol]
        return gross

    def charge_funding(self, *, symbol: str, mark: Decimal, rate: Decimal) -> Decimal:
        pos = self.positions[symbol]
        paid = funding_payment(side=pos.side, mark=mark, quantity=pos.quantity, rate=rate)
        self.funding += paid
        self.balance -= paid
        return paid

    def unrealised(self, marks: dict[str, Decimal]) -> Decimal:
        return sum(
            (
                unrealised_pnl(side=p.side, entry=p.entry, mark=marks[s], quantity=p.quantity)
                for s, p in self.positions.items()
            ),
            Decimal(0),
        )

    def equity(self, marks: dict[str, Decimal]) -> Decimal:
        return self.balance + self.unrealised(marks)

    def identity_gap(self, marks: dict[str, Decimal]) -> Decimal:
        u = self.unrealised(marks)
        return (self.balance + u) - (self.start + self.realised + u - self.fees - self.funding)
