"""Position sizing in Decimal (order quantities are money-adjacent: never float here).

Public API
----------
``MarketLimits(amount_step, min_qty=0, min_notional=0, max_leverage=None)`` — the market's precision/limits
    (ccxt: ``precision.amount`` as a step, ``limits.amount.min``, ``limits.cost.min``, ``limits.leverage.max``).
``round_down(quantity, step) -> Decimal`` — floor to a multiple of ``step`` (``step`` 0/None: unchanged).
``effective_leverage(*, leverage, max_leverage, market=None) -> Decimal`` — the requested leverage capped by the
    user's/platform's maximum and by the market's.
``position_quantity(*, balance, entry, stop=None, mode, pct, leverage=1, max_leverage=..., market, on_below_minimum)``
    ``mode="balance_pct"``: margin = balance * pct/100, notional = margin * leverage.
    ``mode="risk_pct"``: quantity = balance * pct/100 / |entry - stop| (the loss at the stop is pct % of balance),
    capped so that notional <= balance * leverage.
    The quantity is then rounded DOWN to the market step. Below ``min_qty`` or ``min_notional`` it raises
    ``engine.errors.OrderBelowMinimum`` (``on_below_minimum="raise"``, default) or returns ``Decimal(0)``
    (``"zero"``). Bad inputs raise ``engine.errors.InvalidParameters``.
Invariant (property-tested): the returned notional never exceeds balance * effective leverage.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Literal

from engine.errors import InvalidParameters, OrderBelowMinimum

ZERO = Decimal(0)
HUNDRED = Decimal(100)
SizingMode = Literal["balance_pct", "risk_pct"]


@dataclass(frozen=True)
class MarketLimits:
    amount_step: Decimal | None = None
    min_qty: Decimal = ZERO
    min_notional: Decimal = ZERO
    max_leverage: Decimal | None = None


def _dec(name: str, value) -> Decimal:
    if isinstance(value, float):
        raise InvalidParameters(f"{name} must be a Decimal (or int/str), not float: {value!r}")
    try:
        d = Decimal(value)
    except Exception as exc:  # InvalidOperation, TypeError
        raise InvalidParameters(f"{name} is not a number: {value!r}") from exc
    if not d.is_finite():
        raise InvalidParameters(f"{name} must be finite, got {value!r}")
    return d


def round_down(quantity: Decimal, step: Decimal | None) -> Decimal:
    if step is None or step == 0:
        return quantity
    if step < 0:
        raise InvalidParameters(f"amount step must be > 0, got {step}")
    return (quantity / step).to_integral_value(rounding=ROUND_FLOOR) * step


def effective_leverage(*, leverage, max_leverage, market: MarketLimits | None = None) -> Decimal:
    lev = _dec("leverage", leverage)
    cap = _dec("max_leverage", max_leverage)
    if lev <= 0 or cap <= 0:
        raise InvalidParameters(f"leverage and max_leverage must be > 0, got {lev} and {cap}")
    lev = min(lev, cap)
    if market is not None and market.max_leverage is not None:
        lev = min(lev, _dec("market.max_leverage", market.max_leverage))
    return lev


def position_quantity(
    *,
    balance,
    entry,
    stop=None,
    mode: SizingMode,
    pct,
    leverage=1,
    max_leverage=125,
    market: MarketLimits | None = None,
    on_below_minimum: Literal["raise", "zero"] = "raise",
) -> Decimal:
    market = market or MarketLimits()
    balance = _dec("balance", balance)
    entry = _dec("entry", entry)
    pct = _dec("pct", pct)
    if balance <= 0:
        raise InvalidParameters(f"balance must be > 0 to open a position, got {balance}")
    if entry <= 0:
        raise InvalidParameters(f"entry price must be > 0, got {entry}")
    if not ZERO < pct <= HUNDRED:
        raise InvalidParameters(f"pct must be in (0, 100], got {pct}")
    lev = effective_leverage(leverage=leverage, max_leverage=max_leverage, market=market)
    max_notional = balance * lev
    if mode == "balance_pct":
        qty = balance * pct / HUNDRED * lev / entry
    elif mode == "risk_pct":
        if stop is None:
            raise InvalidParameters("risk_pct sizing needs a stop price")
        stop = _dec("stop", stop)
        distance = abs(entry - stop)
        if distance == 0:
            raise InvalidParameters(f"stop {stop} equals entry {entry}: the risk per unit is zero")
        qty = balance * pct / HUNDRED / distance
    else:
        raise InvalidParameters(f"mode must be 'balance_pct' or 'risk_pct', got {mode!r}")
    qty = min(qty, max_notional / entry)
    qty = round_down(qty, market.amount_step)
    if qty <= 0 or qty < market.min_qty or qty * entry < market.min_notional:
        if on_below_minimum == "zero":
            return ZERO
        raise OrderBelowMinimum(
            f"position size {qty} (notional {qty * entry}) is below the market minimum "
            f"(min qty {market.min_qty}, min notional {market.min_notional}); raise the balance/percentage"
        )
    return qty
