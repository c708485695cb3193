"""Quantising Decimal amounts exactly as the database stores them, so in-memory balances equal sums of rows."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

PRICE_EXP = Decimal("1e-12")  # config.model_fields.PriceField / QuantityField
MONEY_EXP = Decimal("1e-8")  # config.model_fields.MoneyField


def money(value: Decimal) -> Decimal:
    return Decimal(value).quantize(MONEY_EXP, rounding=ROUND_HALF_EVEN)


def price(value: Decimal) -> Decimal:
    return Decimal(value).quantize(PRICE_EXP, rounding=ROUND_HALF_EVEN)


def price_to_tick(value: Decimal, tick: Decimal | None, *, up: bool) -> Decimal:
    """Round a fill price to the market tick, against the trader: ``up`` for buys, down for sells."""
    if not tick:
        return price(value)
    rounding = ROUND_CEILING if up else ROUND_FLOOR
    return price((Decimal(value) / tick).to_integral_value(rounding=rounding) * tick)


def from_float(value: float) -> Decimal:
    """A float from engine/ back to Decimal (shortest repr, then the stored precision)."""
    return price(Decimal(repr(float(value))))
