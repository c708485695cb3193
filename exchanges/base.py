"""The exchange client port: what live trading needs from an exchange, async, in Decimal and base-asset quantities.

Implementations: ``CcxtExchangeClient`` (KuCoin Futures, OKX, MEXC via ccxt.async_support), ``BitunixClient``
(hand-written httpx adapter) and ``FakeExchangeClient`` (in-process, in ``testsupport``, for tests and the demo).

Conventions:
- symbols are ccxt unified (``BTC/USDT:USDT``); quantities are in the BASE asset (the adapter converts to contracts
  with the market's contract size and rounds down to the exchange's step);
- every order carries our ``client_order_id`` so a retried request can be looked up instead of re-sent;
- errors are ``exchanges.errors`` types (Retryable/Final/AuthenticationFailed/InsufficientBalance), never raw ccxt or
  httpx exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Literal, Protocol, runtime_checkable

OrderSide = Literal["buy", "sell"]
OrderType = Literal["market", "limit", "stop_market", "take_profit"]
OrderStatus = Literal["open", "closed", "canceled", "rejected"]

TRIGGER_TYPES = frozenset({"stop_market", "take_profit"})


def to_decimal(value) -> Decimal | None:
    """ccxt numbers are floats (or strings); go through str() so 0.1 stays 0.1. Anything that is not a finite
    number (``None``, ``""``, ``"market"``, ``NaN``) is None: an exchange's odd price field never becomes a price."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def positive_price(value) -> Decimal | None:
    """A price the exchange reported, or None when it is missing, not a number, zero or negative."""
    number = to_decimal(value)
    return number if number is not None and number > 0 else None


@dataclass(frozen=True)
class Balance:
    currency: str
    free: Decimal
    used: Decimal
    total: Decimal
    # Account equity (wallet balance + unrealised PnL) when the exchange reports it as one figure; None: the
    # equity is ``total`` + the unrealised PnL of ``fetch_positions`` (see ``trading.executors.live.account_equity_of``).
    equity: Decimal | None = None


@dataclass(frozen=True)
class KeyPermissions:
    """What an API key may do, as the exchange reports it (``ExchangeClient.key_permissions``; None from an exchange
    whose API does not say). /connect refuses a key that cannot trade and warns about one that can withdraw."""

    read: bool = True
    trade: bool = True
    withdraw: bool = False


@dataclass(frozen=True)
class MarketInfo:
    symbol: str
    exchange_symbol: str
    contract_size: Decimal = Decimal("1")  # base units per contract
    amount_step: Decimal | None = None  # in base units
    price_tick: Decimal | None = None
    min_amount: Decimal | None = None  # in base units
    min_notional: Decimal | None = None
    max_leverage: int | None = None

    def round_quantity(self, quantity: Decimal) -> Decimal:
        """Round a base quantity DOWN to the step (never trade more than decided)."""
        if not self.amount_step:
            return quantity
        return (quantity / self.amount_step).to_integral_value(rounding=ROUND_DOWN) * self.amount_step

    def round_price(self, price: Decimal) -> Decimal:
        if not self.price_tick:
            return price
        return (price / self.price_tick).to_integral_value(rounding=ROUND_HALF_UP) * self.price_tick


@dataclass(frozen=True)
class OrderRequest:
    symbol: str
    side: OrderSide
    type: OrderType
    quantity: Decimal  # base asset
    client_order_id: str
    price: Decimal | None = None  # limit price
    trigger_price: Decimal | None = None  # stop_market / take_profit
    reduce_only: bool = False
    leverage: int | None = None  # some exchanges (KuCoin, MEXC isolated) want it on every order
    position_id: str = ""  # Bitunix closes and TP/SL reference the exchange's position id

    @property
    def is_trigger(self) -> bool:
        return self.type in TRIGGER_TYPES


@dataclass(frozen=True)
class OrderResult:
    exchange_order_id: str
    client_order_id: str
    symbol: str
    side: OrderSide
    type: str
    status: OrderStatus
    quantity: Decimal  # base asset
    filled_quantity: Decimal = Decimal("0")
    average_price: Decimal | None = None
    fee: Decimal = Decimal("0")
    trigger_price: Decimal | None = None
    price: Decimal | None = None
    reduce_only: bool = False
    realised_pnl: Decimal | None = None
    info: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_trigger(self) -> bool:
        return self.type in TRIGGER_TYPES or self.trigger_price is not None


@dataclass(frozen=True)
class ExchangePosition:
    symbol: str
    side: Literal["long", "short"]
    quantity: Decimal  # base asset, > 0
    entry_price: Decimal | None = None
    unrealised_pnl: Decimal | None = None
    realised_pnl: Decimal | None = None
    leverage: Decimal | None = None
    position_id: str = ""


@dataclass(frozen=True)
class TradeFill:
    """One execution on the exchange (``fetch_my_trades``): the exchange's own price, size and fee."""

    trade_id: str
    exchange_order_id: str
    symbol: str
    side: OrderSide
    quantity: Decimal  # base asset
    price: Decimal
    fee: Decimal = Decimal("0")
    timestamp_ms: int | None = None
    client_order_id: str = ""


@runtime_checkable
class ExchangeClient(Protocol):
    exchange_id: str

    async def fetch_balance(self, currency: str = "USDT") -> Balance: ...

    async def key_permissions(self) -> KeyPermissions | None:
        """The key's permissions where the exchange's API tells them (OKX: the account configuration's ``perm``);
        None where it does not."""
        ...

    async def market(self, symbol: str) -> MarketInfo: ...

    async def set_leverage(self, symbol: str, leverage: int, margin_mode: str = "isolated") -> None: ...

    async def create_order(self, request: OrderRequest) -> OrderResult: ...

    async def cancel_order(
        self, *, symbol: str, exchange_order_id: str = "", client_order_id: str = "", trigger: bool = False
    ) -> None: ...

    async def fetch_order(
        self,
        *,
        symbol: str,
        exchange_order_id: str = "",
        client_order_id: str = "",
        trigger: bool = False,
        request: OrderRequest | None = None,
    ) -> OrderResult | None:
        """The order, or None when the exchange does not know it (lookup by client order id after a lost response).

        ``request`` is the order as it was sent: exchanges whose trigger orders carry no client id (Bitunix TP/SL)
        find them by it; the others ignore it."""
        ...

    async def fetch_open_orders(self, symbol: str | None = None) -> list[OrderResult]:
        """Open orders INCLUDING trigger (stop/TP) orders."""
        ...

    async def fetch_positions(self, symbols: list[str] | None = None) -> list[ExchangePosition]: ...

    async def fetch_my_trades(self, symbol: str, since_ms: int | None = None) -> list[TradeFill]:
        """Our executions on ``symbol`` since ``since_ms`` (reconcile books a close done outside our orders from them)."""
        ...

    async def close(self) -> None: ...
