"""ExchangeClient over ccxt.async_support for KuCoin Futures, OKX and MEXC USDT-margined perpetual swaps.

Per exchange (ccxt 4.5.90; the parameter names were read in ccxt's source and checked offline against ccxt's
recorded request fixtures, see trading/tests/test_ccxt_client.py); the differences are stated once in
``exchanges.capabilities`` and read from there (``self.has``):

- client order id: OKX ``clOrdId`` (``algoClOrdId`` for trigger orders), KuCoin ``clientOid``, MEXC ``externalOid``;
- stop-loss / take-profit: OKX and KuCoin via ccxt's ``stopLossPrice`` / ``takeProfitPrice`` (OKX → order-algo
  ``conditional``; KuCoin → ``stop`` down/up + ``stopPrice``); MEXC via ``triggerPrice`` + ``triggerType``
  (1: price ≥ trigger, 2: price ≤ trigger) → ``planorder/place``; all reduce-only;
- trigger orders are listed/cancelled/fetched with ``{"trigger": True}`` (OKX also ``ordType=conditional``);
- leverage + margin mode: OKX ``set_margin_mode(mode, symbol, {"leverage": n})`` (one set-leverage call);
  KuCoin ``set_margin_mode`` then ``set_leverage``; MEXC ``set_leverage`` per position type with ``openType``.

Quantities: the port speaks base units; ccxt swap amounts are contracts, so ``contracts = base / contractSize``
rounded with ``amount_to_precision`` (truncation) and prices with ``price_to_precision``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from decimal import Decimal
from typing import Any

from exchanges.base import (
    Balance,
    ExchangePosition,
    KeyPermissions,
    MarketInfo,
    OrderRequest,
    OrderResult,
    TradeFill,
    positive_price,
    to_decimal,
)
from exchanges.capabilities import CCXT_TRADING_EXCHANGES, capabilities
from exchanges.ccxt_factory import ccxt_client_create
from exchanges.errors import (
    FinalExchangeError,
    OrderNotFoundOnExchange,
    OrderTooSmall,
    RetryableExchangeError,
    library_errors,
    map_ccxt_error,
)

logger = logging.getLogger(__name__)

SUPPORTED_EXCHANGES = CCXT_TRADING_EXCHANGES

# Markets are public data: cache them per process so each short-lived client does not reload them.
_MARKETS_CACHE: dict[str, dict[str, Any]] = {}

MEXC_SIDES = {"1": "buy", "2": "buy", "3": "sell", "4": "sell"}  # open long, close short, open short, close long

_STATUS = {
    "open": "open",
    "closed": "closed",
    "canceled": "canceled",
    "cancelled": "canceled",
    "expired": "canceled",
    "rejected": "rejected",
}


def ccxt_exchange(exchange_id: str, *, api_key: str = "", secret: str = "", passphrase: str = ""):
    """A ccxt.async_support swap instance with these keys (no network until a call is made)."""
    if exchange_id not in SUPPORTED_EXCHANGES:
        raise FinalExchangeError(f"unsupported exchange {exchange_id!r}", exchange=exchange_id)
    return ccxt_client_create(exchange_id, market_type="swap", api_key=api_key, secret=secret, passphrase=passphrase)


TRIGGER_ORDER_PATHS = frozenset({"trade/order-algo"})


def trigger_orders_without_injected_params(ex, forbidden: tuple[str, ...]) -> None:
    """OKX: ccxt adds a random broker ``clOrdId`` (its ``brokerId`` + 16 hex, with ``tag``) to every order-algo
    request that has none (in ``create_order`` and again in ``sign``). OKX stores a sent ``clOrdId`` as the trigger
    order's client id, so a stop sent with our ``algoClOrdId`` would not be found by it after a lost answer, and a
    retry would place a second live stop. This wraps the instance's ``sign`` so a trigger order carrying our
    ``algoClOrdId`` leaves with ONLY our id: the injected keys are removed and the request is signed again (OKX:
    base64 HMAC-SHA256 of timestamp + method + path + body, as ccxt computes it)."""
    original = ex.sign

    def injected(params) -> bool:
        broker = str(ex.safe_string(ex.options, "brokerId", "6b9ad766b55dBCDE"))
        return any(str(params.get(key) or "").startswith(broker) for key in forbidden)

    def sign(path, api=["public"], method="GET", params={}):  # noqa: B006 - ccxt's signature
        request = original(path, api, method, params)
        if not (
            method == "POST"
            and path in TRIGGER_ORDER_PATHS
            and isinstance(params, dict)
            and params.get("algoClOrdId")
            and injected(params)
        ):
            return request
        for key in (*forbidden, "tag"):
            params.pop(key, None)
        body = ex.json(ex.omit(params, ex.extract_params(path)))
        request_path = "/api/" + ex.version + "/" + ex.implode_params(path, params)
        headers = dict(request["headers"])
        auth = headers["OK-ACCESS-TIMESTAMP"] + method + request_path + body
        headers["OK-ACCESS-SIGN"] = ex.hmac(ex.encode(auth), ex.encode(ex.secret), hashlib.sha256, "base64")
        return {**request, "body": body, "headers": headers}

    ex.sign = sign


class CcxtExchangeClient:
    def __init__(
        self,
        exchange_id: str,
        *,
        api_key: str = "",
        secret: str = "",
        passphrase: str = "",
        exchange=None,
        margin_mode: str = "isolated",
    ):
        self.exchange_id = exchange_id
        self.has = capabilities(exchange_id)
        self._secrets = tuple(s for s in (api_key, secret, passphrase) if s)
        self.ex = (
            exchange
            if exchange is not None
            else ccxt_exchange(exchange_id, api_key=api_key, secret=secret, passphrase=passphrase)
        )
        if self.has.trigger_forbidden_params and hasattr(self.ex, "sign"):
            trigger_orders_without_injected_params(self.ex, self.has.trigger_forbidden_params)
        self.margin_mode = margin_mode

    def __repr__(self) -> str:  # never show keys
        return f"CcxtExchangeClient({self.exchange_id})"

    # --- plumbing -------------------------------------------------------------------------------------------------
    async def _call(self, method: str, *args, **kwargs):
        try:
            return await getattr(self.ex, method)(*args, **kwargs)
        except Exception as exc:  # every ccxt/network error leaves here as one of ours
            raise map_ccxt_error(exc, exchange=self.exchange_id, secrets=self._secrets) from None

    async def _load_markets(self) -> None:
        if self.ex.markets:
            return
        cached = _MARKETS_CACHE.get(self.exchange_id)
        if cached:
            self.ex.set_markets(list(cached.values()))
            return
        markets = await self._call("load_markets")
        _MARKETS_CACHE[self.exchange_id] = markets

    async def _ccxt_market(self, symbol: str) -> dict:
        await self._load_markets()
        try:
            return self.ex.market(symbol)
        except Exception as exc:
            raise map_ccxt_error(exc, exchange=self.exchange_id) from None

    @staticmethod
    def _contract_size(market: dict) -> Decimal:
        return to_decimal(market.get("contractSize")) or Decimal("1")

    # --- port -----------------------------------------------------------------------------------------------------
    async def fetch_balance(self, currency: str = "USDT") -> Balance:
        raw = await self._call("fetch_balance", self.has.params("balance_params"))
        entry = raw.get(currency) or {}
        free, used, total = (to_decimal(entry.get(k)) or Decimal("0") for k in ("free", "used", "total"))
        return Balance(
            currency=currency,
            free=free,
            used=used,
            total=total or free + used,
            equity=self._equity_of(raw, currency, total),
        )

    async def key_permissions(self) -> KeyPermissions | None:
        """OKX reports the key's permissions in its account configuration (``perm``: "read_only,withdraw,trade");
        KuCoin Futures and MEXC's contract API do not (None)."""
        if self.exchange_id != "okx":
            return None
        accounts = await self._call("fetch_accounts")
        perm = next(
            (str((row.get("info") or {}).get("perm", "")) for row in accounts or [] if isinstance(row, dict)), ""
        )
        if not perm:
            return None
        granted = {part.strip() for part in perm.split(",")}
        return KeyPermissions(
            read="read_only" in granted or "trade" in granted, trade="trade" in granted, withdraw="withdraw" in granted
        )

    def _equity_of(self, raw: dict, currency: str, total: Decimal) -> Decimal | None:
        """Equity incl. unrealised PnL. OKX: the account's ``totalEq`` (USD equivalent over every currency; ccxt's
        per-currency ``total`` is that currency's ``eq`` only, 0.0003 USDT of a 43.7 M account in the recording);
        KuCoin: ccxt's ``total`` is ``accountEquity``; MEXC: its swap ``total`` is available + frozen only, the raw
        row's ``equity`` is the figure."""
        rows = (raw.get("info") or {}).get("data") if isinstance(raw.get("info"), dict) else None
        if self.has.equity_field == "totalEq":
            first = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else {}
            return to_decimal(first.get("totalEq")) or total or None
        if self.has.equity_field == "total":
            return total or None
        if self.has.equity_field == "info_equity":
            for row in rows or []:
                if isinstance(row, dict) and row.get("currency") == currency and row.get("equity") is not None:
                    return to_decimal(row.get("equity"))
        return None

    async def market(self, symbol: str) -> MarketInfo:
        market = await self._ccxt_market(symbol)
        contract_size = self._contract_size(market)
        precision = market.get("precision") or {}
        limits = market.get("limits") or {}
        amount_step = to_decimal(precision.get("amount"))  # ccxt 4.x: TICK_SIZE precision mode for these exchanges
        min_amount = to_decimal((limits.get("amount") or {}).get("min"))
        return MarketInfo(
            symbol=market["symbol"],
            exchange_symbol=market["id"],
            contract_size=contract_size,
            amount_step=amount_step * contract_size if amount_step else None,
            price_tick=to_decimal(precision.get("price")),
            min_amount=min_amount * contract_size if min_amount else None,
            min_notional=to_decimal((limits.get("cost") or {}).get("min")),
            max_leverage=int((limits.get("leverage") or {}).get("max") or 0) or None,
        )

    async def set_leverage(self, symbol: str, leverage: int, margin_mode: str = "isolated") -> None:
        import ccxt  # loaded with the first client (see exchanges.ccxt_factory)

        await self._ccxt_market(symbol)
        self.margin_mode = margin_mode
        try:
            if self.has.leverage_style == "margin_mode_with_leverage":
                await self._call("set_margin_mode", margin_mode, symbol, {"leverage": leverage})
            elif self.has.leverage_style == "margin_mode_then_cross_leverage":
                try:
                    await self._call("set_margin_mode", margin_mode, symbol)
                except FinalExchangeError as exc:
                    if not isinstance(exc.__context__, ccxt.NoChange):
                        raise
                if margin_mode == "cross":  # isolated leverage goes on every order (ccxt: setLeverage is cross-only)
                    await self._call("set_leverage", leverage, symbol, {"marginMode": margin_mode})
            else:  # mexc: leverage is per position type (1 long, 2 short) and margin type (1 isolated, 2 cross)
                open_type = 1 if margin_mode == "isolated" else 2
                for position_type in (1, 2):
                    await self._call(
                        "set_leverage", leverage, symbol, {"openType": open_type, "positionType": position_type}
                    )
        except FinalExchangeError as exc:
            if "already" in str(exc).lower() or "NoChange" in str(exc) or "MarginModeAlreadySet" in str(exc):
                return
            raise

    def build_order_arguments(
        self, request: OrderRequest, market: dict
    ) -> tuple[str, str, str, float, float | None, dict]:
        """The positional arguments and params of ccxt's create_order for ``request`` (pure; tested offline)."""
        symbol = market["symbol"]
        contracts = request.quantity / self._contract_size(market)
        try:  # ccxt raises its own InvalidOrder below one amount step: our OrderTooSmall (nothing was sent)
            amount = float(self.ex.amount_to_precision(symbol, str(contracts)))
            price = float(self.ex.price_to_precision(symbol, str(request.price))) if request.price is not None else None
            trigger = (
                float(self.ex.price_to_precision(symbol, str(request.trigger_price))) if request.is_trigger else None
            )
        except library_errors() as exc:
            raise map_ccxt_error(
                exc, exchange=self.exchange_id, context=f"{request.client_order_id} {symbol}"
            ) from None
        if amount <= 0:
            raise OrderTooSmall(
                f"quantity {request.quantity} is below one contract step of {symbol}", exchange=self.exchange_id
            )
        params: dict[str, Any] = {}
        if request.is_trigger:
            if self.has.trigger_style == "trigger_type":
                # stop of a long (sell) fires when price <= trigger; TP of a long when price >= trigger; mirrored for shorts
                falling = (request.type == "stop_market") == (request.side == "sell")
                params.update({"triggerPrice": trigger, "triggerType": 2 if falling else 1, "orderType": 5})
            else:
                params["stopLossPrice" if request.type == "stop_market" else "takeProfitPrice"] = trigger
            params.update(self.has.stop_params)
            ccxt_type = "market"
        else:
            ccxt_type = request.type
            if request.reduce_only:
                params["reduceOnly"] = True
        params[self.has.trigger_client_id_param if request.is_trigger else self.has.client_id_param] = (
            request.client_order_id
        )
        params["marginMode"] = self.margin_mode
        if self.has.leverage_on_order and request.leverage:
            params["leverage"] = request.leverage
        return symbol, ccxt_type, request.side, amount, price, params

    async def create_order(self, request: OrderRequest) -> OrderResult:
        market = await self._ccxt_market(request.symbol)
        symbol, ccxt_type, side, amount, price, params = self.build_order_arguments(request, market)
        raw = await self._call("create_order", symbol, ccxt_type, side, amount, price, params)
        result = self.parse_order(raw, market, request=request)
        logger.info("%s order %s accepted: id %s", self.exchange_id, request.client_order_id, result.exchange_order_id)
        if request.type == "market" and result.filled_quantity == 0 and result.exchange_order_id:
            # OKX and KuCoin answer a new order with its ids only: read it back for the fill of a market order
            try:
                found = await self.fetch_order(symbol=request.symbol, exchange_order_id=result.exchange_order_id)
            except RetryableExchangeError:
                found = None
            if found is not None:
                return replace(found, client_order_id=found.client_order_id or request.client_order_id)
        return result

    async def cancel_order(
        self, *, symbol: str, exchange_order_id: str = "", client_order_id: str = "", trigger: bool = False
    ) -> None:
        market = await self._ccxt_market(symbol)
        if not exchange_order_id and not client_order_id:
            raise OrderNotFoundOnExchange("nothing identifies the order to cancel", exchange=self.exchange_id)
        params: dict[str, Any] = {"trigger": True} if trigger and self.has.trigger_flag_on_fetch else {}
        if not exchange_order_id and self.has.cancel_by_client_id == "endpoint":
            # MEXC: ccxt's cancel_order sends the bare id list ([null] without an id); regular orders have a
            # documented cancel by externalOid, plan orders are looked up for their id first
            if not trigger:
                await self._call(
                    "contract_private_post_order_cancel_with_external",
                    {"symbol": market["id"], "externalOid": client_order_id},
                )
                return
            found = await self.fetch_order(symbol=symbol, client_order_id=client_order_id, trigger=True)
            if found is None or not found.exchange_order_id:
                raise OrderNotFoundOnExchange(
                    f"no {self.exchange_id} trigger order with client id {client_order_id}", exchange=self.exchange_id
                )
            exchange_order_id = found.exchange_order_id
        elif not exchange_order_id:
            params["clientOrderId"] = client_order_id
        await self._call("cancel_order", exchange_order_id or None, symbol, params)

    async def fetch_order(
        self,
        *,
        symbol: str,
        exchange_order_id: str = "",
        client_order_id: str = "",
        trigger: bool = False,
        request: OrderRequest | None = None,
    ) -> OrderResult | None:
        market = await self._ccxt_market(symbol)
        if self.has.order_lookup == "mexc_contract_api":
            return await self._mexc_fetch_order(market, exchange_order_id, client_order_id, trigger, request)
        # OKX routes trigger orders to its algo endpoints; KuCoin Futures serves stop orders on the same order
        # endpoints (a ``trigger`` flag would only leak into its signed query string)
        params: dict[str, Any] = {"trigger": True} if trigger and self.has.trigger_flag_on_fetch else {}
        if not exchange_order_id:
            params["clientOrderId"] = client_order_id
        try:
            raw = await self._call("fetch_order", exchange_order_id or None, symbol, params)
        except OrderNotFoundOnExchange:
            return None
        if not raw or not (raw.get("id") or raw.get("clientOrderId")):
            return None
        return await self._with_trigger_fill(
            self.parse_order(raw, market, request=request if trigger else None), market, trigger
        )

    async def _with_trigger_fill(self, result: OrderResult, market: dict, trigger: bool) -> OrderResult:
        if trigger and result.status == "closed" and (result.filled_quantity == 0 or result.average_price is None):
            return await self._triggered_fill(result, market)
        return result

    async def _mexc_fetch_order(
        self, market: dict, exchange_order_id: str, client_order_id: str, trigger: bool, request: OrderRequest | None
    ) -> OrderResult | None:
        """MEXC swap: ccxt's fetch_order reads ``order/get/{id}`` only. By client id we call the documented
        ``order/external/{symbol}/{external_oid}``; plan (trigger) orders are found in the plan order list (every
        state) by id, ``externalOid`` or, when MEXC dropped it, by what identifies the request."""
        symbol = market["symbol"]
        if not trigger:
            try:
                if exchange_order_id:
                    raw = await self._call("fetch_order", exchange_order_id, symbol, {})
                else:
                    answer = await self._call(
                        "contract_private_get_order_external_symbol_external_oid",
                        {"symbol": market["id"], "external_oid": client_order_id},
                    )
                    data = (answer or {}).get("data")
                    raw = self.ex.parse_order(data, market) if data else None
            except OrderNotFoundOnExchange:
                return None
            except FinalExchangeError as exc:  # MEXC answers an unknown order with a generic error code
                if "not exist" in str(exc).lower() or "not found" in str(exc).lower():
                    return None
                raise
            return self.parse_order(raw, market) if raw and raw.get("id") else None
        answer = await self._call(
            "contract_private_get_planorder_list_orders", {"symbol": market["id"], "page_size": 100}
        )
        rows = self.ex.parse_orders((answer or {}).get("data") or [], market)
        for raw in rows:
            order = self.parse_order(raw, market)
            info = raw.get("info") or {}
            same = (
                (exchange_order_id and order.exchange_order_id == exchange_order_id)
                or (
                    not exchange_order_id
                    and client_order_id
                    and client_order_id in (order.client_order_id, info.get("externalOid"))
                )
                or (
                    not exchange_order_id
                    and request is not None
                    and order.trigger_price
                    == to_decimal(self.ex.price_to_precision(symbol, str(request.trigger_price)))
                    and order.quantity == request.quantity
                    and order.side == request.side
                )
            )
            if same:
                result = replace(
                    order,
                    client_order_id=client_order_id or order.client_order_id,
                    type=request.type if request else order.type,
                )
                return await self._with_trigger_fill(result, market, True)
        return None

    async def _triggered_fill(self, result: OrderResult, market: dict) -> OrderResult:
        """A stop/TP that fired: its fill lives on the order it placed (OKX: the algo's ``ordId``, with fee and
        average price); otherwise the executed size/price the trigger order reports, or at worst its own size at
        its trigger price."""
        info = result.info or {}
        child_id = info.get("ordId") or next(iter(info.get("ordIdList") or []), "")
        if self.exchange_id == "okx" and child_id:
            try:
                child = self.parse_order(await self._call("fetch_order", child_id, market["symbol"]), market)
            except OrderNotFoundOnExchange:
                child = None
            if child is not None and child.filled_quantity > 0:
                return replace(
                    result,
                    filled_quantity=child.filled_quantity,
                    average_price=child.average_price,
                    fee=child.fee,
                    realised_pnl=child.realised_pnl,
                )
        contract_size = self._contract_size(market)
        actual_size, actual_price = to_decimal(info.get("actualSz")), to_decimal(info.get("actualPx"))
        if actual_size:
            return replace(
                result, filled_quantity=actual_size * contract_size, average_price=actual_price or result.trigger_price
            )
        logger.warning(
            "%s trigger order %s fired without fill details: booked at its trigger price",
            self.exchange_id,
            result.exchange_order_id,
        )
        return replace(result, filled_quantity=result.quantity, average_price=result.trigger_price)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[OrderResult]:
        if symbol:
            await self._ccxt_market(symbol)
        else:
            await self._load_markets()
        trigger_params = self.has.params("trigger_query_params")
        regular_params: dict[str, Any] = {}
        if (
            symbol is None and self.has.order_lookup == "mexc_contract_api"
        ):  # without a symbol ccxt's mexc lists SPOT orders
            regular_params["type"] = trigger_params["type"] = "swap"
        regular = await self._call("fetch_open_orders", symbol, None, None, regular_params)
        triggers = await self._call("fetch_open_orders", symbol, None, None, trigger_params)
        seen, results = set(), []
        for raw in [*regular, *triggers]:
            if raw.get("id") in seen:
                continue
            seen.add(raw.get("id"))
            market = self.ex.markets.get(raw.get("symbol")) if raw.get("symbol") else None
            results.append(self.parse_order(raw, market))
        return results

    async def fetch_positions(self, symbols: list[str] | None = None) -> list[ExchangePosition]:
        await self._load_markets()
        raw_positions = await self._call("fetch_positions", symbols)
        positions = []
        for raw in raw_positions:
            contracts = to_decimal(raw.get("contracts")) or Decimal("0")
            if contracts == 0:
                continue
            market = self.ex.markets.get(raw.get("symbol")) or {}
            contract_size = to_decimal(raw.get("contractSize")) or self._contract_size(market)
            side = raw.get("side") or ("long" if contracts > 0 else "short")
            positions.append(
                ExchangePosition(
                    symbol=raw["symbol"],
                    side=side,
                    quantity=abs(contracts) * contract_size,
                    entry_price=to_decimal(raw.get("entryPrice")),
                    unrealised_pnl=to_decimal(raw.get("unrealizedPnl")),
                    realised_pnl=to_decimal(raw.get("realizedPnl")),
                    leverage=to_decimal(raw.get("leverage")),
                    position_id=str(raw.get("id") or ""),
                )
            )
        return positions

    async def fetch_my_trades(self, symbol: str, since_ms: int | None = None) -> list[TradeFill]:
        market = await self._ccxt_market(symbol)
        contract_size = self._contract_size(market)
        raw_trades = await self._call("fetch_my_trades", symbol, since_ms, 100)
        return [
            TradeFill(
                trade_id=str(t.get("id") or ""),
                exchange_order_id=str(t.get("order") or ""),
                symbol=symbol,
                side=MEXC_SIDES.get(str(t.get("side")), t.get("side") or "buy"),
                quantity=(to_decimal(t.get("amount")) or Decimal("0")) * contract_size,
                price=to_decimal(t.get("price")) or Decimal("0"),
                fee=abs(to_decimal((t.get("fee") or {}).get("cost")) or Decimal("0")),
                timestamp_ms=t.get("timestamp"),
                client_order_id=str(
                    (t.get("info") or {}).get("clOrdId") or (t.get("info") or {}).get("clientOid") or ""
                ),
            )
            for t in raw_trades
        ]

    async def close(self) -> None:
        try:
            await self.ex.close()
        except Exception:  # closing a never-opened session must not mask the real outcome
            logger.debug("closing %s session failed", self.exchange_id, exc_info=True)

    # --- parsing ----------------------------------------------------------------------------------------------------
    def parse_order(self, raw: dict, market: dict | None, *, request: OrderRequest | None = None) -> OrderResult:
        contract_size = self._contract_size(market) if market else Decimal("1")
        info = raw.get("info") or {}
        amount = to_decimal(raw.get("amount"))
        filled = to_decimal(raw.get("filled"))
        trigger_price = to_decimal(
            raw.get("triggerPrice") or raw.get("stopPrice") or raw.get("stopLossPrice") or raw.get("takeProfitPrice")
        )
        fee = to_decimal((raw.get("fee") or {}).get("cost")) or Decimal("0")
        status = _STATUS.get(raw.get("status") or "", "open")
        side = raw.get("side") or (request.side if request else "buy")
        side = MEXC_SIDES.get(str(side), side)  # ccxt leaves MEXC plan orders' numeric sides as they come
        order_type = raw.get("type") or (request.type if request else "market")
        if request is not None and request.is_trigger:
            order_type = request.type
        elif raw.get("takeProfitPrice") is not None and raw.get("stopLossPrice") is None:
            order_type = "take_profit"
        elif trigger_price is not None and order_type not in ("stop_market", "take_profit"):
            order_type = "stop_market"
        return OrderResult(
            exchange_order_id=str(raw.get("id") or ""),
            # a trigger order's own client id first (OKX algo orders: ``algoClOrdId``; ccxt's clientOrderId is the
            # ``clOrdId`` of the order it places)
            client_order_id=str(
                info.get("algoClOrdId")
                or raw.get("clientOrderId")
                or info.get("externalOid")
                or (request.client_order_id if request else "")
                or ""
            ),
            symbol=raw.get("symbol") or (market or {}).get("symbol") or (request.symbol if request else ""),
            side=side,
            type=order_type,
            status=status,
            quantity=amount * contract_size if amount is not None else (request.quantity if request else Decimal("0")),
            filled_quantity=(filled or Decimal("0")) * contract_size,
            average_price=positive_price(raw.get("average")),
            fee=abs(fee),
            trigger_price=trigger_price if trigger_price is not None else (request.trigger_price if request else None),
            price=to_decimal(raw.get("price")),
            reduce_only=bool(raw.get("reduceOnly")) or bool(request and request.reduce_only),
            info=raw.get("info") or {},
        )
