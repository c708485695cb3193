"""ExchangeClient for Bitunix USDT-M futures (not in ccxt): a hand-written httpx adapter of its documented REST API.

Source: Bitunix OpenAPI docs (openapidoc.bitunix.com, "Signature", "Place Order", "Cancel Orders", "Get Pending
Orders", "Get Order Detail", "Place/Cancel/Get Pending TP/SL Order", "Get Pending Positions", "Change Leverage",
"Change Margin Mode", "Change Position Mode", "Get Single Account") and the shapes of ccxt's Bitunix request/response
fixtures (``trading/tests/fixtures/ccxt_static/*/bitunix.json``). The one Bitunix client of the project: live trading
uses it with keys, the funding-rate monitor without (``fetch_funding_rate``, public).

Signing (docs, "Signature"): every private request carries the headers ``api-key``, ``nonce`` (32 random
characters), ``timestamp`` (ms) and ``sign`` where
``digest = SHA256(nonce + timestamp + api-key + queryParams + body)`` and ``sign = SHA256(digest + secretKey)``
(hex); ``queryParams`` are the query parameters sorted by key and concatenated as ``key + value`` (``id1uid200``),
``body`` is the compact JSON body (no spaces) exactly as sent.

Mapping to the port:
- quantities are in the base coin (contract size 1), prices rounded to the pair's ``quotePrecision``;
- entries/closes: ``trade/place_order`` in one-way mode with our ``clientId`` and ``reduceOnly``;
- stop-loss / take-profit: ``tpsl/place_order`` (``slPrice``+``slQty`` or ``tpPrice``+``tpQty``, market execution,
  last-price trigger) attached to the exchange's position id. Bitunix TP/SL orders carry NO client id, so a TP/SL
  order sent before a lost answer is found again by what identifies it for us: symbol, kind (stop/target), trigger
  price and quantity (``fetch_order(..., request=...)``); two live stops with the same price and size would be a
  duplicate anyway. A TP/SL order that left the pending list is read from the TP/SL history (triggered → filled at
  its trigger price, the best the API tells; the position's realised PnL comes from ``fetch_positions``);
- ``set_leverage``: one-way position mode (tolerated if it cannot change), margin mode, leverage.

Error mapping: HTTP 429/5xx, timeouts and network errors → retryable; API codes of rate limits → retryable;
signature/key/IP errors → ``AuthenticationFailed``; "insufficient" → ``InsufficientBalance``; everything else final.
Bitunix does not publish a complete error code table in the pages we could read; the codes used are the ones we
could confirm (10007 "Signature Error") plus message keywords.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets as random_secrets
import time
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from exchanges.base import (
    Balance,
    ExchangePosition,
    MarketInfo,
    OrderRequest,
    OrderResult,
    TradeFill,
    positive_price,
    to_decimal,
)
from exchanges.errors import (
    AuthenticationFailed,
    DuplicateClientOrderId,
    ExchangeError,
    FinalExchangeError,
    InsufficientBalance,
    OrderNotFoundOnExchange,
    OrderTooSmall,
    RetryableExchangeError,
    map_http_status,
    redact,
)

logger = logging.getLogger(__name__)

BASE_URL = "https://fapi.bitunix.com"
MARGIN_COIN = "USDT"

RATE_LIMIT_CODES = frozenset({10005, 10006})
AUTH_CODES = frozenset({10003, 10004, 10007})
INSUFFICIENT_CODES = frozenset({20003})
NOT_FOUND_CODES = frozenset({20007})

_ORDER_STATUS = {
    "INIT": "open",
    "NEW": "open",
    "PART_FILLED": "open",
    "FILLED": "closed",
    "CANCELED": "canceled",
    "PART_FILLED_CANCELED": "canceled",
    "CANCELLED": "canceled",
    "REJECTED": "rejected",
}
_TPSL_DONE = {
    "TRIGGERED": "closed",
    "FILLED": "closed",
    "SUCCESS": "closed",
    "CANCELED": "canceled",
    "CANCELLED": "canceled",
    "EXPIRED": "canceled",
    "FAILED": "rejected",
}

# Pairs are public data: cached per process like ccxt's markets.
_PAIRS_CACHE: dict[str, dict[str, dict]] = {}


def query_params_for_signature(params: dict[str, Any]) -> str:
    """Query parameters sorted by key (ASCII) and concatenated as ``key + value`` (docs: ``id1uid200``)."""
    return "".join(f"{key}{params[key]}" for key in sorted(params))


def compact_json(body: dict | list | None) -> str:
    return "" if body is None else json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def bitunix_sign(*, nonce: str, timestamp: str, api_key: str, secret: str, query: str, body: str) -> str:
    digest = hashlib.sha256(f"{nonce}{timestamp}{api_key}{query}{body}".encode()).hexdigest()
    return hashlib.sha256(f"{digest}{secret}".encode()).hexdigest()


def _plain(value: Decimal) -> str:
    """A Decimal as Bitunix wants numbers in strings: no exponent, no trailing zeros."""
    return format(value.normalize(), "f")


def bitunix_market_id(symbol: str) -> str:
    """``BTC/USDT:USDT`` → ``BTCUSDT`` (Bitunix linear perpetual ids)."""
    base, _, rest = symbol.partition("/")
    return base + rest.split(":")[0]


def _unified(market_id: str, quote: str = "USDT") -> str:
    base = market_id[: -len(quote)] if market_id.endswith(quote) else market_id
    return f"{base}/{quote}:{quote}"


def error_for_code(code: int, message: str) -> ExchangeError:
    text = f"bitunix {code}: {message}"
    lowered = message.lower()
    if "duplicate" in lowered and "client" in lowered:
        return DuplicateClientOrderId(text, exchange="bitunix", retry_after=0.5)
    if code in RATE_LIMIT_CODES or "too many" in lowered or "too frequent" in lowered:
        return RetryableExchangeError(text, exchange="bitunix", retry_after=1.0)
    if code in AUTH_CODES or "signature" in lowered or "api-key" in lowered or "api key" in lowered:
        return AuthenticationFailed(text, exchange="bitunix")
    if code in INSUFFICIENT_CODES or "insufficient" in lowered:
        return InsufficientBalance(text, exchange="bitunix")
    if code in NOT_FOUND_CODES or "not found" in lowered or "not exist" in lowered:
        return OrderNotFoundOnExchange(text, exchange="bitunix")
    if "system" in lowered and "busy" in lowered:
        return RetryableExchangeError(text, exchange="bitunix")
    return FinalExchangeError(text, exchange="bitunix")


class BitunixClient:
    exchange_id = "bitunix"

    def __init__(
        self,
        *,
        api_key: str,
        secret: str,
        base_url: str = BASE_URL,
        timeout: float = 10.0,
        transport=None,
        clock: Callable[[], float] = time.time,
        nonce: Callable[[], str] = lambda: random_secrets.token_hex(16),
        stop_trigger: str = "LAST_PRICE",
    ):
        import httpx

        self._api_key = api_key
        self._secret = secret
        self._clock = clock
        self._nonce = nonce
        self.base_url = base_url.rstrip("/")
        self.stop_trigger = stop_trigger
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport)

    def __repr__(self) -> str:  # never show keys
        return f"BitunixClient({self.base_url})"

    # --- transport --------------------------------------------------------------------------------------------------
    def signed_headers(self, *, query: dict[str, Any], body: str) -> dict[str, str]:
        nonce, timestamp = self._nonce(), str(int(self._clock() * 1000))
        sign = bitunix_sign(
            nonce=nonce,
            timestamp=timestamp,
            api_key=self._api_key,
            secret=self._secret,
            query=query_params_for_signature(query),
            body=body,
        )
        return {
            "api-key": self._api_key,
            "nonce": nonce,
            "timestamp": timestamp,
            "sign": sign,
            "language": "en-US",
            "Content-Type": "application/json",
        }

    async def _request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: dict | None = None,
        signed: bool = True,
    ):
        import httpx

        query = {k: v for k, v in (query or {}).items() if v is not None and v != ""}
        body_text = compact_json(body) if method == "POST" else ""
        url = path + ("?" + urlencode(sorted(query.items())) if query else "")
        headers = self.signed_headers(query=query, body=body_text) if signed else {"Content-Type": "application/json"}
        try:
            response = await self._http.request(
                method, url, content=body_text.encode() if body_text else None, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise RetryableExchangeError(
                f"RequestTimeout: bitunix {path}: {type(exc).__name__}", exchange="bitunix"
            ) from None
        except httpx.TransportError as exc:
            raise RetryableExchangeError(
                f"NetworkError: bitunix {path}: {type(exc).__name__}", exchange="bitunix"
            ) from None
        if response.status_code != 200:
            retry_after = to_decimal(response.headers.get("Retry-After"))
            message = redact(
                f"HTTP {response.status_code} on {path}: {response.text[:200]}", [self._api_key, self._secret]
            )
            raise map_http_status(
                response.status_code,
                message,
                exchange="bitunix",
                retry_after=float(retry_after) if retry_after is not None else None,
            )
        try:
            payload = response.json()
        except ValueError:
            raise RetryableExchangeError(
                f"bitunix {path}: answer is not JSON", exchange="bitunix", source="BadResponse"
            ) from None
        code = int(payload.get("code", -1)) if str(payload.get("code", "")).lstrip("-").isdigit() else -1
        if code != 0:
            raise error_for_code(code, redact(str(payload.get("msg") or ""), [self._api_key, self._secret]))
        return payload.get("data")

    # --- markets ----------------------------------------------------------------------------------------------------
    async def _pairs(self) -> dict[str, dict]:
        cached = _PAIRS_CACHE.get(self.base_url)
        if cached:
            return cached
        data = await self._request("GET", "/api/v1/futures/market/trading_pairs", signed=False)
        pairs = {row["symbol"]: row for row in data or []}
        _PAIRS_CACHE[self.base_url] = pairs
        return pairs

    async def fetch_funding_rate(self, symbol: str) -> dict[str, Any]:
        """The public funding-rate row of ``symbol`` as Bitunix answers it (``fundingRate``, ``nextFundingTime``,
        ``markPrice``, ...; docs "Get Funding Rate"). No keys needed."""
        data = await self._request(
            "GET", "/api/v1/futures/market/funding_rate", query={"symbol": bitunix_market_id(symbol)}, signed=False
        )
        if not isinstance(data, dict):
            raise FinalExchangeError(f"bitunix funding rate of {symbol}: unexpected answer", exchange="bitunix")
        return data

    async def market(self, symbol: str) -> MarketInfo:
        pairs = await self._pairs()
        row = pairs.get(bitunix_market_id(symbol))
        if row is None:
            raise FinalExchangeError(f"BadSymbol: bitunix has no futures pair {symbol}", exchange="bitunix")
        amount_step = Decimal(1).scaleb(-int(row.get("basePrecision", 0)))
        return MarketInfo(
            symbol=symbol,
            exchange_symbol=row["symbol"],
            contract_size=Decimal("1"),
            amount_step=amount_step,
            price_tick=Decimal(1).scaleb(-int(row.get("quotePrecision", 0))),
            min_amount=to_decimal(row.get("minTradeVolume")),
            min_notional=None,
            max_leverage=int(row["maxLeverage"]) if row.get("maxLeverage") else None,
        )

    # --- account ----------------------------------------------------------------------------------------------------
    async def fetch_balance(self, currency: str = "USDT") -> Balance:
        data = await self._request("GET", "/api/v1/futures/account", query={"marginCoin": currency})
        rows = data if isinstance(data, list) else [data or {}]
        row = next((r for r in rows if r.get("marginCoin") == currency), rows[0] if rows else {})
        free = to_decimal(row.get("available")) or Decimal("0")
        used = (to_decimal(row.get("frozen")) or Decimal("0")) + (to_decimal(row.get("margin")) or Decimal("0"))
        return Balance(currency=currency, free=free, used=used, total=free + used)

    async def set_leverage(self, symbol: str, leverage: int, margin_mode: str = "isolated") -> None:
        market_id = bitunix_market_id(symbol)
        try:
            await self._request(
                "POST", "/api/v1/futures/account/change_position_mode", body={"positionMode": "ONE_WAY"}
            )
        except FinalExchangeError as exc:  # already one-way, or positions/orders open: orders tell if it matters
            logger.info("bitunix position mode unchanged: %s", exc)
        try:
            await self._request(
                "POST",
                "/api/v1/futures/account/change_margin_mode",
                body={
                    "symbol": market_id,
                    "marginMode": "ISOLATION" if margin_mode == "isolated" else "CROSS",
                    "marginCoin": MARGIN_COIN,
                },
            )
        except FinalExchangeError as exc:  # same mode already, or a position exists
            logger.info("bitunix margin mode of %s unchanged: %s", market_id, exc)
        await self._request(
            "POST",
            "/api/v1/futures/account/change_leverage",
            body={"symbol": market_id, "leverage": int(leverage), "marginCoin": MARGIN_COIN},
        )

    # --- orders -----------------------------------------------------------------------------------------------------
    def order_body(self, request: OrderRequest, market: MarketInfo) -> dict[str, Any]:
        quantity = market.round_quantity(request.quantity)
        if quantity <= 0:
            raise OrderTooSmall(
                f"quantity {request.quantity} is below one step of {request.symbol}", exchange="bitunix"
            )
        body: dict[str, Any] = {
            "symbol": market.exchange_symbol,
            "qty": _plain(quantity),
            "side": request.side.upper(),
            "orderType": request.type.upper(),
        }
        if request.type == "limit":
            body["price"] = _plain(market.round_price(request.price))
            body["effect"] = "GTC"
        body["clientId"] = request.client_order_id
        if request.reduce_only:
            body["reduceOnly"] = True
        return body

    def tpsl_body(self, request: OrderRequest, market: MarketInfo, position_id: str) -> dict[str, Any]:
        if market.round_quantity(request.quantity) <= 0:
            raise OrderTooSmall(
                f"quantity {request.quantity} is below one step of {request.symbol}", exchange="bitunix"
            )
        quantity = _plain(market.round_quantity(request.quantity))
        trigger = _plain(market.round_price(request.trigger_price))
        if request.type == "stop_market":
            kind = {"slPrice": trigger, "slStopType": self.stop_trigger, "slOrderType": "MARKET", "slQty": quantity}
        else:
            kind = {"tpPrice": trigger, "tpStopType": self.stop_trigger, "tpOrderType": "MARKET", "tpQty": quantity}
        return {"symbol": market.exchange_symbol, "positionId": position_id, **kind}

    async def create_order(self, request: OrderRequest) -> OrderResult:
        market = await self.market(request.symbol)
        if request.is_trigger:
            position_id = request.position_id or await self._position_id(request.symbol)
            data = await self._request(
                "POST", "/api/v1/futures/tpsl/place_order", body=self.tpsl_body(request, market, position_id)
            )
            order_id = str((data or {}).get("orderId") or "")
            logger.info("bitunix %s %s placed: id %s", request.type, request.client_order_id, order_id)
            return OrderResult(
                exchange_order_id=order_id,
                client_order_id=request.client_order_id,
                symbol=request.symbol,
                side=request.side,
                type=request.type,
                status="open",
                quantity=market.round_quantity(request.quantity),
                trigger_price=market.round_price(request.trigger_price),
                reduce_only=True,
                info=data or {},
            )
        data = await self._request("POST", "/api/v1/futures/trade/place_order", body=self.order_body(request, market))
        order_id = str((data or {}).get("orderId") or "")
        logger.info("bitunix order %s accepted: id %s", request.client_order_id, order_id)
        # the place-order answer holds only ids; read the order back for its fill
        try:
            found = await self.fetch_order(symbol=request.symbol, exchange_order_id=order_id)
        except RetryableExchangeError:
            found = None
        return found or OrderResult(
            exchange_order_id=order_id,
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            side=request.side,
            type=request.type,
            status="open",
            quantity=market.round_quantity(request.quantity),
            price=request.price,
            reduce_only=request.reduce_only,
            info=data or {},
        )

    async def _position_id(self, symbol: str) -> str:
        positions = await self.fetch_positions([symbol])
        if not positions:
            raise FinalExchangeError(
                f"bitunix holds no {symbol} position to attach a TP/SL order to", exchange="bitunix"
            )
        return positions[0].position_id

    async def cancel_order(
        self, *, symbol: str, exchange_order_id: str = "", client_order_id: str = "", trigger: bool = False
    ) -> None:
        market_id = bitunix_market_id(symbol)
        if trigger:
            if not exchange_order_id:
                raise OrderNotFoundOnExchange(
                    "bitunix TP/SL orders are cancelled by their order id", exchange="bitunix"
                )
            if not any(o.exchange_order_id == exchange_order_id for o in await self._pending_tpsl(symbol)):
                raise OrderNotFoundOnExchange(
                    f"bitunix TP/SL order {exchange_order_id} is not pending", exchange="bitunix"
                )
            await self._request(
                "POST", "/api/v1/futures/tpsl/cancel_order", body={"symbol": market_id, "orderId": exchange_order_id}
            )
            return
        ref = {"orderId": exchange_order_id} if exchange_order_id else {"clientId": client_order_id}
        data = await self._request(
            "POST", "/api/v1/futures/trade/cancel_orders", body={"symbol": market_id, "orderList": [ref]}
        )
        failures = (data or {}).get("failureList") or []
        if failures:
            failure = failures[0]
            raise OrderNotFoundOnExchange(
                f"bitunix could not cancel: {failure.get('errorCode')} {failure.get('errorMsg')}", exchange="bitunix"
            )

    async def fetch_order(
        self,
        *,
        symbol: str,
        exchange_order_id: str = "",
        client_order_id: str = "",
        trigger: bool = False,
        request: OrderRequest | None = None,
    ) -> OrderResult | None:
        if trigger:
            return await self._fetch_tpsl(symbol, exchange_order_id, client_order_id, request)
        query = {"orderId": exchange_order_id} if exchange_order_id else {"clientId": client_order_id}
        try:
            data = await self._request("GET", "/api/v1/futures/trade/get_order_detail", query=query)
        except OrderNotFoundOnExchange:
            return None
        return await self._with_fills(self.parse_order(data), symbol) if data else None

    async def _with_fills(self, order: OrderResult, symbol: str) -> OrderResult:
        """The fill of an order from the trade history: the weighted average price and the fees of the order's own
        trades (Bitunix orders carry no average price; their ``price`` is the limit, or "0"/"market"/nothing for a
        market order, never a fill price). Only the quantity the trades cover counts as filled: an order whose
        trades are not all visible yet stays open, so it is asked again (never booked at a made-up price)."""
        if order.filled_quantity <= 0 or order.average_price is not None:
            return order
        data = await self._request(
            "GET",
            "/api/v1/futures/trade/get_history_trades",
            query={"symbol": bitunix_market_id(symbol), "orderId": order.exchange_order_id, "limit": 100},
        )
        rows = data.get("tradeList", []) if isinstance(data, dict) else (data or [])
        quantity, cost, fee = Decimal("0"), Decimal("0"), Decimal("0")
        for row in rows:
            price, size = positive_price(row.get("price")), to_decimal(row.get("qty"))
            if str(row.get("orderId") or "") != order.exchange_order_id or price is None or not size or size <= 0:
                continue
            quantity += size
            cost += price * size
            fee += abs(to_decimal(row.get("fee")) or Decimal("0"))
        if quantity <= 0:
            logger.warning(
                "bitunix order %s filled %s but no trade of it is visible yet",
                order.exchange_order_id,
                order.filled_quantity,
            )
            return replace(order, filled_quantity=Decimal("0"), status="open")
        covered = min(quantity, order.filled_quantity)
        status = order.status if quantity >= order.filled_quantity else "open"
        return replace(
            order, filled_quantity=covered, average_price=cost / quantity, fee=max(order.fee, fee), status=status
        )

    async def _pending_tpsl(self, symbol: str | None) -> list[OrderResult]:
        data = await self._request(
            "GET",
            "/api/v1/futures/tpsl/get_pending_orders",
            query={"symbol": bitunix_market_id(symbol) if symbol else None, "limit": 100},
        )
        rows = data.get("orderList", []) if isinstance(data, dict) else (data or [])
        return [order for row in rows for order in self.parse_tpsl(row)]

    async def _fetch_tpsl(
        self, symbol: str, exchange_order_id: str, client_order_id: str, request: OrderRequest | None
    ) -> OrderResult | None:
        def same(order: OrderResult) -> bool:
            if exchange_order_id:
                return order.exchange_order_id == exchange_order_id and (request is None or order.type == request.type)
            return (
                request is not None
                and order.type == request.type
                and order.trigger_price == request.trigger_price
                and order.quantity == request.quantity
            )

        if not exchange_order_id and request is None:
            return None  # nothing identifies a TP/SL order without its id or its request
        if request is not None:
            market = await self.market(symbol)
            request = replace(
                request,
                quantity=market.round_quantity(request.quantity),
                trigger_price=market.round_price(request.trigger_price),
            )
        for order in await self._pending_tpsl(symbol):
            if same(order):
                return replace(
                    order,
                    client_order_id=client_order_id or order.client_order_id,
                    side=request.side if request else order.side,
                )
        if not exchange_order_id:
            return None  # never placed: safe to send
        data = await self._request(
            "GET", "/api/v1/futures/tpsl/get_history_orders", query={"symbol": bitunix_market_id(symbol), "limit": 100}
        )
        rows = data.get("orderList", []) if isinstance(data, dict) else (data or [])
        for row in rows:
            for order in self.parse_tpsl(row):
                if same(order):
                    return replace(order, client_order_id=client_order_id, side=request.side if request else order.side)
        return None

    async def fetch_open_orders(self, symbol: str | None = None) -> list[OrderResult]:
        query = {"symbol": bitunix_market_id(symbol)} if symbol else {"limit": 100}
        data = await self._request("GET", "/api/v1/futures/trade/get_pending_orders", query=query)
        rows = (data or {}).get("orderList", []) if isinstance(data, dict) else (data or [])
        return [self.parse_order(row) for row in rows] + await self._pending_tpsl(symbol)

    async def fetch_positions(self, symbols: list[str] | None = None) -> list[ExchangePosition]:
        query = {"symbol": bitunix_market_id(symbols[0])} if symbols and len(symbols) == 1 else {}
        data = await self._request("GET", "/api/v1/futures/position/get_pending_positions", query=query)
        wanted = set(symbols or [])
        positions = []
        for row in data or []:
            position = self.parse_position(row)
            if position.quantity > 0 and (not wanted or position.symbol in wanted):
                positions.append(position)
        return positions

    async def fetch_my_trades(self, symbol: str, since_ms: int | None = None) -> list[TradeFill]:
        data = await self._request(
            "GET",
            "/api/v1/futures/trade/get_history_trades",
            query={"symbol": bitunix_market_id(symbol), "startTime": since_ms, "limit": 100},
        )
        rows = data.get("tradeList", []) if isinstance(data, dict) else (data or [])
        return [
            TradeFill(
                trade_id=str(row.get("tradeId") or ""),
                exchange_order_id=str(row.get("orderId") or ""),
                symbol=symbol,
                side=str(row.get("side") or "BUY").lower(),
                quantity=to_decimal(row.get("qty")) or Decimal("0"),
                price=positive_price(row.get("price")),
                fee=abs(to_decimal(row.get("fee")) or Decimal("0")),
                timestamp_ms=int(row["ctime"]) if row.get("ctime") else None,
                client_order_id=str(row.get("clientId") or ""),
            )
            for row in rows
            if positive_price(row.get("price")) is not None  # a trade without a price is not a fill we can book
        ]

    async def close(self) -> None:
        await self._http.aclose()

    # --- parsing ----------------------------------------------------------------------------------------------------
    @staticmethod
    def parse_order(row: dict) -> OrderResult:
        filled = to_decimal(row.get("tradeQty")) or Decimal("0")
        status = _ORDER_STATUS.get(str(row.get("status") or "").upper(), "open")
        price = positive_price(row.get("price"))  # a limit; market orders say "0", "market" or nothing
        # The documented order has no average price; its fill comes from the trade history (``_with_fills``).
        average = positive_price(row.get("avgPrice") or row.get("averagePrice"))
        realised = to_decimal(row.get("realizedPNL"))
        return OrderResult(
            exchange_order_id=str(row.get("orderId") or ""),
            client_order_id=str(row.get("clientId") or ""),
            symbol=_unified(row.get("symbol") or ""),
            side=str(row.get("side") or "BUY").lower(),
            type=str(row.get("orderType") or "MARKET").lower(),
            status=status,
            quantity=to_decimal(row.get("qty")) or Decimal("0"),
            filled_quantity=filled,
            average_price=average,
            fee=abs(to_decimal(row.get("fee")) or Decimal("0")),
            price=price,
            reduce_only=bool(row.get("reduceOnly")),
            realised_pnl=realised,
            info=row,
        )

    @staticmethod
    def parse_tpsl(row: dict) -> list[OrderResult]:
        """A Bitunix TP/SL order may hold a stop and a target: one OrderResult per leg (same exchange id)."""
        raw_status = str(row.get("status") or "").upper()
        if not raw_status:
            status = "open"  # pending list rows carry no status
        elif raw_status in _TPSL_DONE:
            status = _TPSL_DONE[raw_status]
        else:  # a history row with a status we do not know: not pending any more
            status = "closed" if any(word in raw_status for word in ("TRIGGER", "SUCCESS", "FILL")) else "canceled"
        results = []
        for prefix, order_type in (("sl", "stop_market"), ("tp", "take_profit")):
            trigger = to_decimal(row.get(f"{prefix}Price"))
            if trigger is None:
                continue
            quantity = to_decimal(row.get(f"{prefix}Qty")) or Decimal("0")
            done = status == "closed"
            results.append(
                OrderResult(
                    exchange_order_id=str(row.get("id") or row.get("orderId") or ""),
                    client_order_id="",
                    symbol=_unified(row.get("symbol") or ""),
                    side="sell",
                    type=order_type,
                    status=status,
                    quantity=quantity,
                    filled_quantity=quantity if done else Decimal("0"),
                    average_price=trigger if done else None,
                    trigger_price=trigger,
                    reduce_only=True,
                    info=row,
                )
            )
        return results

    @staticmethod
    def parse_position(row: dict) -> ExchangePosition:
        return ExchangePosition(
            symbol=_unified(row.get("symbol") or ""),
            side="long" if str(row.get("side")).upper() in ("LONG", "BUY") else "short",
            quantity=abs(to_decimal(row.get("qty")) or Decimal("0")),
            entry_price=to_decimal(row.get("avgOpenPrice")),
            unrealised_pnl=to_decimal(row.get("unrealizedPNL")),
            realised_pnl=to_decimal(row.get("realizedPNL")),
            leverage=to_decimal(row.get("leverage")),
            position_id=str(row.get("positionId") or ""),
        )
