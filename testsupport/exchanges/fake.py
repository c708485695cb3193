"""An in-process fake exchange implementing the ExchangeClient port, for tests and the demo.

Order-book-less: market orders fill at the current (settable) price, limit orders when the price crosses them,
reduce-only trigger orders (stop_market / take_profit) fire when the price crosses their trigger and fill at the
price of that moment. One-way (net) positions per symbol with average entry price, realised PnL and taker fees.

Faults are injected per method: ``account.inject("create_order", "timeout" | "rate_limit" | "server_error" |
"lost_response")``. ``lost_response`` performs the call and then raises a retryable error, like a response lost
after the exchange accepted the order. ``account.partial_fill_ratio`` makes the next market entry (or the next
limit entry the price reaches) fill only that share of its size (the rest fills on a later price update).

State lives in ``FakeExchangeAccount`` objects kept in a process-wide registry (``fake_account(name)``), so several
short-lived clients (one per task) see the same exchange, as they would with a real one. This is a test/demo
stand-in: it does not pretend to work across processes.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field, replace
from decimal import Decimal

from exchanges.base import Balance, ExchangePosition, KeyPermissions, MarketInfo, OrderRequest, OrderResult, TradeFill
from exchanges.errors import (
    DuplicateClientOrderId,
    FinalExchangeError,
    InsufficientBalance,
    OrderApiRestricted,
    OrderNotFoundOnExchange,
    RetryableExchangeError,
)

DEFAULT_MARKET = {
    "contract_size": Decimal("1"),
    "amount_step": Decimal("0.001"),
    "price_tick": Decimal("0.0001"),
    "min_amount": Decimal("0.001"),
    "max_leverage": 50,
}

FAULTS = ("timeout", "rate_limit", "server_error", "lost_response")


@dataclass
class _FakeOrder:
    result: OrderResult
    leverage: int | None = None


@dataclass
class _FakePosition:
    quantity: Decimal = Decimal("0")  # signed: > 0 long, < 0 short
    entry_price: Decimal = Decimal("0")
    realised_pnl: Decimal = Decimal("0")


@dataclass
class FakeExchangeAccount:
    name: str
    balance: Decimal = Decimal("10000")
    taker_fee_rate: Decimal = Decimal("0.0005")
    prices: dict[str, Decimal] = field(default_factory=dict)
    orders: dict[str, _FakeOrder] = field(default_factory=dict)  # by exchange order id
    positions: dict[str, _FakePosition] = field(default_factory=dict)
    leverage: dict[str, int] = field(default_factory=dict)
    faults: dict[str, list[str]] = field(default_factory=dict)
    partial_fill_ratio: Decimal | None = None
    calls: list[tuple[str, str]] = field(default_factory=list)  # (method, client order id or symbol)
    trades: list[TradeFill] = field(default_factory=list)
    reject_auth: bool = False
    # The key's permissions as OKX reports them (``perm`` of its account configuration); the in-process client
    # reports them only for exchanges whose API tells them (OKX).
    key_perm: str = "read_only,trade"
    # MEXC's answer to ordinary accounts: futures orders through the API are refused (code 1002).
    order_api_restricted: bool = False
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    lock: threading.RLock = field(default_factory=threading.RLock)

    # --- test controls ----------------------------------------------------------------------------------------------
    def inject(self, method: str, *faults: str) -> None:
        for fault in faults:
            if fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}")
        self.faults.setdefault(method, []).extend(faults)

    def set_price(self, symbol: str, price: Decimal | str) -> list[OrderResult]:
        """Move the price; fills resting limit orders and fires crossed trigger orders. Returns what filled."""
        with self.lock:
            self.prices[symbol] = Decimal(str(price))
            return self._match(symbol)

    def orders_with_client_id(self, client_order_id: str) -> list[OrderResult]:
        return [o.result for o in self.orders.values() if o.result.client_order_id == client_order_id]

    def position(self, symbol: str) -> _FakePosition:
        return self.positions.setdefault(symbol, _FakePosition())

    # --- engine ------------------------------------------------------------------------------------------------------
    def _fault(self, method: str) -> str | None:
        queue = self.faults.get(method)
        return queue.pop(0) if queue else None

    def _raise_for(self, fault: str) -> None:
        if fault == "timeout":
            raise RetryableExchangeError("RequestTimeout: fake exchange timed out", exchange="fake")
        if fault == "rate_limit":
            raise RetryableExchangeError("RateLimitExceeded: 429 Too Many Requests", exchange="fake", retry_after=0.0)
        if fault == "server_error":
            raise RetryableExchangeError("ExchangeNotAvailable: 502 Bad Gateway", exchange="fake")
        if fault == "lost_response":
            raise RetryableExchangeError("RequestTimeout: response lost after the order was accepted", exchange="fake")

    def _fill(self, order: _FakeOrder, quantity: Decimal, price: Decimal) -> None:
        result = order.result
        position = self.position(result.symbol)
        signed = quantity if result.side == "buy" else -quantity
        if result.reduce_only:
            # never flip or grow a position with a reduce-only order
            if position.quantity == 0 or (position.quantity > 0) == (signed > 0):
                order.result = replace(result, status="canceled")
                return
            quantity = min(quantity, abs(position.quantity))
            signed = quantity if result.side == "buy" else -quantity
        fee = (quantity * price * self.taker_fee_rate).quantize(Decimal("0.00000001"))
        realised = Decimal("0")
        if position.quantity == 0 or (position.quantity > 0) == (signed > 0):
            total = abs(position.quantity) + quantity
            position.entry_price = (abs(position.quantity) * position.entry_price + quantity * price) / total
            position.quantity += signed
        else:
            closing = min(quantity, abs(position.quantity))
            direction = Decimal("1") if position.quantity > 0 else Decimal("-1")
            realised = (price - position.entry_price) * closing * direction
            position.quantity += signed
            position.realised_pnl += realised
            if position.quantity == 0:
                position.entry_price = Decimal("0")
        self.balance += realised - fee
        self.trades.append(
            TradeFill(
                trade_id=f"T{len(self.trades) + 1:08d}",
                exchange_order_id=result.exchange_order_id,
                symbol=result.symbol,
                side=result.side,
                quantity=quantity,
                price=price,
                fee=fee,
                timestamp_ms=int(time.time() * 1000),
                client_order_id=result.client_order_id,
            )
        )
        filled = result.filled_quantity + quantity
        previous_cost = (result.average_price or Decimal("0")) * result.filled_quantity
        average = (previous_cost + price * quantity) / filled
        status = "closed" if filled >= result.quantity or result.reduce_only else "open"
        order.result = replace(
            result,
            filled_quantity=filled,
            average_price=average,
            fee=result.fee + fee,
            status=status,
            realised_pnl=(result.realised_pnl or Decimal("0")) + realised,
        )
        if position.quantity == 0:
            # like position-attached TP/SL: the other reduce-only trigger orders of a flat position are cancelled
            for other in self.orders.values():
                if (
                    other.result.symbol == result.symbol
                    and other.result.status == "open"
                    and other.result.reduce_only
                    and other is not order
                ):
                    other.result = replace(other.result, status="canceled")

    def _match(self, symbol: str) -> list[OrderResult]:
        price = self.prices.get(symbol)
        filled = []
        if price is None:
            return filled
        for order in list(self.orders.values()):
            r = order.result
            if r.symbol != symbol or r.status != "open":
                continue
            remaining = r.quantity - r.filled_quantity
            if r.type == "market":
                self._fill(order, remaining, price)
            elif r.type == "limit":
                if (r.side == "buy" and price <= r.price) or (r.side == "sell" and price >= r.price):
                    if self.partial_fill_ratio is not None and not r.reduce_only:
                        remaining = min((r.quantity * self.partial_fill_ratio).quantize(Decimal("0.001")), remaining)
                        self.partial_fill_ratio = None
                    self._fill(order, remaining, r.price)
            else:
                rising = (r.type == "stop_market") == (r.side == "buy")  # short's stop / long's TP... fire upwards
                if (rising and price >= r.trigger_price) or (not rising and price <= r.trigger_price):
                    self._fill(order, remaining, price)
            if order.result.status != "open" or order.result.filled_quantity != r.filled_quantity:
                filled.append(order.result)
        return filled

    def _create(self, request: OrderRequest) -> OrderResult:
        if any(o.result.client_order_id == request.client_order_id for o in self.orders.values()):
            raise DuplicateClientOrderId(f"Duplicated client order id {request.client_order_id}", exchange="fake")
        if request.symbol not in self.prices:
            raise FinalExchangeError(f"BadSymbol: no market {request.symbol}", exchange="fake")
        price = self.prices[request.symbol]
        leverage = request.leverage or self.leverage.get(request.symbol, 1)
        if not request.reduce_only and not request.is_trigger and request.quantity * price / leverage > self.balance:
            raise InsufficientBalance("InsufficientFunds: margin is insufficient", exchange="fake")
        exchange_order_id = f"F{next(self._ids):08d}"
        order = _FakeOrder(
            OrderResult(
                exchange_order_id=exchange_order_id,
                client_order_id=request.client_order_id,
                symbol=request.symbol,
                side=request.side,
                type=request.type,
                status="open",
                quantity=request.quantity,
                price=request.price,
                trigger_price=request.trigger_price,
                reduce_only=request.reduce_only or request.is_trigger,
            ),
            leverage=leverage,
        )
        self.orders[exchange_order_id] = order
        if request.type == "market":
            quantity = request.quantity
            if self.partial_fill_ratio is not None and not request.reduce_only:
                quantity = (request.quantity * self.partial_fill_ratio).quantize(Decimal("0.001"))
                self.partial_fill_ratio = None
            self._fill(order, quantity, price)
        elif request.type == "limit":
            self._match(request.symbol)
        return order.result


_REGISTRY: dict[str, FakeExchangeAccount] = {}
_REGISTRY_LOCK = threading.Lock()


def fake_account(name: str = "default") -> FakeExchangeAccount:
    with _REGISTRY_LOCK:
        return _REGISTRY.setdefault(name, FakeExchangeAccount(name=name))


def fake_accounts_reset() -> None:
    with _REGISTRY_LOCK:
        _REGISTRY.clear()


class FakeExchangeClient:
    """ExchangeClient over a FakeExchangeAccount."""

    def __init__(self, account: FakeExchangeAccount, *, exchange_id: str = "fake"):
        self.account = account
        self.exchange_id = exchange_id

    def _enter(self, method: str, key: str = "") -> str | None:
        self.account.calls.append((method, key))
        if self.account.reject_auth:
            from exchanges.errors import AuthenticationFailed

            raise AuthenticationFailed("AuthenticationError: invalid api key", exchange="fake")
        fault = self.account._fault(method)
        if fault and fault != "lost_response":
            self.account._raise_for(fault)
        return fault

    async def fetch_balance(self, currency: str = "USDT") -> Balance:
        self._enter("fetch_balance")
        with self.account.lock:
            used = sum(
                (
                    abs(p.quantity) * p.entry_price / self.account.leverage.get(s, 1)
                    for s, p in self.account.positions.items()
                ),
                Decimal("0"),
            )
            total = self.account.balance
            return Balance(currency=currency, free=total - used, used=used, total=total)

    async def market(self, symbol: str) -> MarketInfo:
        self._enter("market", symbol)
        if symbol not in self.account.prices:
            raise FinalExchangeError(f"BadSymbol: no market {symbol}", exchange="fake")
        return MarketInfo(symbol=symbol, exchange_symbol=symbol.split(":")[0].replace("/", ""), **DEFAULT_MARKET)

    async def set_leverage(self, symbol: str, leverage: int, margin_mode: str = "isolated") -> None:
        self._enter("set_leverage", symbol)
        with self.account.lock:
            self.account.leverage[symbol] = leverage

    async def key_permissions(self) -> KeyPermissions | None:
        self._enter("key_permissions")
        if self.exchange_id != "okx":
            return None
        granted = {part.strip() for part in self.account.key_perm.split(",")}
        return KeyPermissions(
            read="read_only" in granted or "trade" in granted, trade="trade" in granted, withdraw="withdraw" in granted
        )

    async def create_order(self, request: OrderRequest) -> OrderResult:
        fault = self._enter("create_order", request.client_order_id)
        if self.account.order_api_restricted:
            raise OrderApiRestricted(
                'InvalidOrder: mexc {"success":false,"code":1002,"message":"Contract not allow place order!"}',
                exchange=self.exchange_id,
            )
        with self.account.lock:
            result = self.account._create(request)
        if fault == "lost_response":
            self.account._raise_for(fault)
        return result

    def _find(self, exchange_order_id: str, client_order_id: str) -> _FakeOrder | None:
        if exchange_order_id:
            return self.account.orders.get(exchange_order_id)
        for order in self.account.orders.values():
            if order.result.client_order_id == client_order_id:
                return order
        return None

    async def cancel_order(
        self, *, symbol: str, exchange_order_id: str = "", client_order_id: str = "", trigger: bool = False
    ) -> None:
        fault = self._enter("cancel_order", client_order_id or exchange_order_id)
        with self.account.lock:
            order = self._find(exchange_order_id, client_order_id)
            if order is None or order.result.status != "open":
                raise OrderNotFoundOnExchange("OrderNotFound: no open order", exchange="fake")
            order.result = replace(order.result, status="canceled")
        if fault == "lost_response":
            self.account._raise_for(fault)

    async def fetch_order(
        self,
        *,
        symbol: str,
        exchange_order_id: str = "",
        client_order_id: str = "",
        trigger: bool = False,
        request: OrderRequest | None = None,
    ) -> OrderResult | None:
        self._enter("fetch_order", client_order_id or exchange_order_id)
        with self.account.lock:
            order = self._find(exchange_order_id, client_order_id)
            return order.result if order else None

    async def fetch_open_orders(self, symbol: str | None = None) -> list[OrderResult]:
        self._enter("fetch_open_orders", symbol or "")
        with self.account.lock:
            return [
                o.result
                for o in self.account.orders.values()
                if o.result.status == "open" and (symbol is None or o.result.symbol == symbol)
            ]

    async def fetch_positions(self, symbols: list[str] | None = None) -> list[ExchangePosition]:
        self._enter("fetch_positions")
        with self.account.lock:
            out = []
            for symbol, p in self.account.positions.items():
                if p.quantity == 0 or (symbols and symbol not in symbols):
                    continue
                price = self.account.prices.get(symbol, p.entry_price)
                direction = Decimal("1") if p.quantity > 0 else Decimal("-1")
                out.append(
                    ExchangePosition(
                        symbol=symbol,
                        side="long" if p.quantity > 0 else "short",
                        quantity=abs(p.quantity),
                        entry_price=p.entry_price,
                        unrealised_pnl=(price - p.entry_price) * abs(p.quantity) * direction,
                        realised_pnl=p.realised_pnl,
                        leverage=Decimal(self.account.leverage.get(symbol, 1)),
                        position_id=f"P-{symbol}",
                    )
                )
            return out

    async def fetch_my_trades(self, symbol: str, since_ms: int | None = None) -> list[TradeFill]:
        self._enter("fetch_my_trades", symbol)
        with self.account.lock:
            return [t for t in self.account.trades if t.symbol == symbol]

    async def close(self) -> None:
        return None


FAKE_EXCHANGE_CLIENT = "testsupport.exchanges.fake.fake_exchange_client"  # the value of settings.LIVE_EXCHANGE_CLIENT


def fake_account_name(*, user_id: int) -> str:
    return f"user-{user_id}"


def fake_exchange_client(
    *, exchange: str, api_key: str = "", secret: str = "", passphrase: str = "", user_id: int | None = None
) -> FakeExchangeClient:
    """The factory named by ``LIVE_EXCHANGE_CLIENT = FAKE_EXCHANGE_CLIENT``: one fake account per user."""
    return FakeExchangeClient(fake_account(fake_account_name(user_id=user_id or 0)), exchange_id=exchange)
