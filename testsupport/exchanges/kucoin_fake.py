"""A fake KuCoin Futures REST API behind ccxt's own HTTP hook (``Exchange.fetch``), for tests and the demo.

The REAL ``ccxt.async_support.kucoinfutures`` class builds and signs every request; ``KucoinFetchFake`` checks the
v2 signature (KC-API-SIGN = base64 HMAC-SHA256 of timestamp + method + endpoint + body; KC-API-PASSPHRASE = base64
HMAC of the passphrase), answers with JSON shaped like KuCoin's recorded responses
(``ccxt_static/response/kucoinfutures.json``) and keeps state in a ``FakeExchangeAccount`` (sizes in contracts of
``multiplier`` base units). Stop orders (``stop`` down/up + ``stopPrice``) stay in ``/api/v1/stopOrders`` until they
fire, then are done orders with their fill, as KuCoin shows them. Errors go through ccxt's ``handle_errors``.

Faults per path suffix: ``fake.inject("/api/v1/orders", "timeout" | "rate_limit" | "server_error" |
"lost_response")`` (``lost_response``/``timeout`` perform the request first).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import replace
from decimal import Decimal
from urllib.parse import parse_qsl, urlsplit

from exchanges.base import OrderRequest, OrderResult
from exchanges.errors import DuplicateClientOrderId, ExchangeError, InsufficientBalance
from testsupport.exchanges.ccxt_fetch_fake import CcxtFetchFake, NotFoundOnFake, plain_number, swap_market
from testsupport.exchanges.fake import FakeExchangeAccount

# contract specifications as KuCoin lists them: id, multiplier (base per contract), lot size (contracts), tick
KUCOIN_SWAPS = {"BTC/USDT:USDT": ("XBTUSDTM", "0.001", "1", "0.1"), "LTC/USDT:USDT": ("LTCUSDTM", "0.1", "1", "0.01")}


def kucoin_markets() -> list[dict]:
    markets = []
    for symbol, (market_id, multiplier, lot, tick) in KUCOIN_SWAPS.items():
        markets.append(
            swap_market(
                symbol=symbol,
                market_id=market_id,
                contract_size=multiplier,
                lot=lot,
                tick=tick,
                info={"symbol": market_id, "multiplier": multiplier, "lotSize": lot, "tickSize": tick},
            )
        )
    return markets


def _b64_hmac(secret: str, message: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()).decode()


class KucoinFetchFake(CcxtFetchFake):
    def __init__(self, *, api_key: str, secret: str, passphrase: str, account: FakeExchangeAccount | None = None):
        super().__init__(account=account, account_name="kucoin-fake")
        # how a re-used client id is answered (tests set wordings no adapter pattern knows)
        self.duplicate_response: dict = {"code": "300000", "msg": "clientOid is duplicate"}
        self.api_key, self.secret, self.passphrase = api_key, secret, passphrase
        self._by_id = {market_id: symbol for symbol, (market_id, *_rest) in KUCOIN_SWAPS.items()}

    def markets(self) -> list[dict]:
        return kucoin_markets()

    def install(self, exchange) -> None:
        exchange.options["uta"] = False  # classic futures account
        super().install(exchange)

    def requests_to(self, path: str, method: str | None = None) -> list:
        return [payload for m, p, payload in self.requests if p == path and method in (None, m)]

    async def __call__(self, url, method="GET", headers=None, body=None):
        import ccxt

        parts = urlsplit(url)
        endpoint = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = dict(headers or {})
        payload = json.loads(body) if body else None
        self._record(method, parts, payload)
        fault = self._take_fault(parts.path, reads_too=False, method=method)
        if fault == "rate_limit":
            raise ccxt.RateLimitExceeded("kucoinfutures 429 Too Many Requests")
        if fault == "server_error":
            raise ccxt.ExchangeNotAvailable("kucoinfutures 503 Service Unavailable")
        signed = _b64_hmac(self.secret, headers.get("KC-API-TIMESTAMP", "") + method + endpoint + (body or ""))
        if (
            headers.get("KC-API-KEY") != self.api_key
            or headers.get("KC-API-SIGN") != signed
            or headers.get("KC-API-PASSPHRASE") != _b64_hmac(self.secret, self.passphrase)
        ):
            response = {"code": "400005", "msg": "Invalid KC-API-SIGN"}
        else:
            try:
                with self.account.lock:
                    response = {
                        "code": "200000",
                        "data": self._route(method, parts.path, dict(parse_qsl(parts.query)), payload),
                    }
            except InsufficientBalance:
                response = {"code": "300003", "msg": "Balance insufficient. The order would cost 150.00."}
            except DuplicateClientOrderId:
                response = json.loads(json.dumps(self.duplicate_response))
            except NotFoundOnFake:
                response = {"code": "100001", "msg": "error.getOrder.orderNotExist"}
            except ExchangeError as exc:
                response = {"code": "300000", "msg": str(exc)}
        if fault in ("lost_response", "timeout"):
            raise ccxt.RequestTimeout("kucoinfutures request timed out")
        self.exchange.handle_errors(200, "OK", url, method, {}, json.dumps(response), response, headers, body)
        return response

    def _multiplier(self, symbol: str) -> Decimal:
        return Decimal(KUCOIN_SWAPS[symbol][1])

    def _route(self, method: str, path: str, query: dict, body):
        a = self.account
        if path == "/api/v1/account-overview":
            used = sum(
                (abs(p.quantity) * p.entry_price / a.leverage.get(s, 1) for s, p in a.positions.items()), Decimal("0")
            )
            return {
                "accountEquity": plain_number(a.balance),
                "availableBalance": plain_number(a.balance - used),
                "currency": "USDT",
                "frozenFunds": "0",
                "marginBalance": plain_number(a.balance),
                "orderMargin": "0",
                "positionMargin": plain_number(used),
                "unrealisedPNL": "0",
            }
        if path == "/api/v2/position/changeMarginMode":
            return {"symbol": body["symbol"], "marginMode": body["marginMode"]}
        if path == "/api/v1/orders" and method == "POST":
            return self._place(body)
        if path == "/api/v1/orders" and method == "GET":
            return {
                "items": [
                    self._row(o) for o in a.orders.values() if not o.result.is_trigger and o.result.status == "open"
                ]
            }
        if path == "/api/v1/stopOrders":
            return {
                "items": [self._row(o) for o in a.orders.values() if o.result.is_trigger and o.result.status == "open"]
            }
        if path == "/api/v1/orders/byClientOid":
            return self._row(self._find("", query.get("clientOid", "")))
        if path.startswith("/api/v1/orders/") and method == "GET":
            return self._row(self._find(path.rsplit("/", 1)[-1], ""))
        if path.startswith("/api/v1/orders/") and method == "DELETE":
            by_client = path.startswith("/api/v1/orders/client-order/")  # cancel by clientOid (as recorded)
            order = self._find("", path.rsplit("/", 1)[-1]) if by_client else self._find(path.rsplit("/", 1)[-1], "")
            if order.result.status != "open":
                raise NotFoundOnFake()
            order.result = replace(order.result, status="canceled")
            if by_client:
                return {"clientOid": order.result.client_order_id}
            return {"cancelledOrderIds": [order.result.exchange_order_id]}
        if path == "/api/v1/positions":
            rows = []
            for symbol, p in a.positions.items():
                if p.quantity == 0:
                    continue
                price = a.prices.get(symbol, p.entry_price)
                rows.append(
                    {
                        "id": f"pos-{KUCOIN_SWAPS[symbol][0]}",
                        "symbol": KUCOIN_SWAPS[symbol][0],
                        "currentQty": int(p.quantity / self._multiplier(symbol)),
                        "avgEntryPrice": plain_number(p.entry_price),
                        "markPrice": plain_number(price),
                        "unrealisedPnl": plain_number((price - p.entry_price) * p.quantity),
                        "realisedPnl": plain_number(p.realised_pnl),
                        "realLeverage": a.leverage.get(symbol, 1),
                        "leverage": a.leverage.get(symbol, 1),
                        "isOpen": True,
                        "crossMode": False,
                        "marginMode": "ISOLATED",
                        "settleCurrency": "USDT",
                        "currentTimestamp": int(time.time() * 1000),
                    }
                )
            return rows
        if path == "/api/v1/fills":
            symbol = self._by_id.get(query.get("symbol", ""))
            items = [
                {
                    "symbol": KUCOIN_SWAPS[t.symbol][0],
                    "tradeId": t.trade_id,
                    "orderId": t.exchange_order_id,
                    "side": t.side,
                    "liquidity": "taker",
                    "price": plain_number(t.price),
                    "size": int(t.quantity / self._multiplier(t.symbol)),
                    "value": plain_number(t.price * t.quantity),
                    "fee": plain_number(t.fee),
                    "feeCurrency": "USDT",
                    "createdAt": t.timestamp_ms,
                    "tradeTime": (t.timestamp_ms or 0) * 1_000_000,
                }
                for t in a.trades
                if symbol in (None, t.symbol)
            ]
            return {"currentPage": 1, "pageSize": 100, "totalNum": len(items), "totalPage": 1, "items": items}
        raise ExchangeError(f"fake KuCoin does not serve {method} {path}")

    def _place(self, body: dict) -> dict:
        symbol = self._by_id[body["symbol"]]
        quantity = Decimal(str(body["size"])) * self._multiplier(symbol)
        if body.get("leverage"):
            self.account.leverage[symbol] = int(body["leverage"])
        if body.get("stop"):
            stop_loss = (body["stop"] == "down") == (body["side"] == "sell")
            request = OrderRequest(
                symbol=symbol,
                side=body["side"],
                type="stop_market" if stop_loss else "take_profit",
                quantity=quantity,
                client_order_id=body["clientOid"],
                trigger_price=Decimal(str(body["stopPrice"])),
                reduce_only=True,
            )
        else:
            request = OrderRequest(
                symbol=symbol,
                side=body["side"],
                type=body["type"],
                quantity=quantity,
                client_order_id=body["clientOid"],
                price=Decimal(str(body["price"])) if body.get("price") else None,
                reduce_only=bool(body.get("reduceOnly")),
            )
        result = self.account._create(request)
        return {"orderId": result.exchange_order_id, "clientOid": result.client_order_id}

    def _find(self, order_id: str, client_oid: str):
        orders = self.account.orders
        order = (
            orders.get(order_id)
            if order_id
            else next((o for o in orders.values() if client_oid and o.result.client_order_id == client_oid), None)
        )
        if order is None:
            raise NotFoundOnFake()
        return order

    def _row(self, order) -> dict:
        r: OrderResult = order.result
        multiplier = self._multiplier(r.symbol)
        stop = ""
        if r.is_trigger:
            stop = "down" if (r.type == "stop_market") == (r.side == "sell") else "up"
        return {
            "id": r.exchange_order_id,
            "symbol": KUCOIN_SWAPS[r.symbol][0],
            "type": "market" if r.is_trigger else r.type,
            "side": r.side,
            "price": plain_number(r.price) or "0",
            "size": int(r.quantity / multiplier),
            "filledSize": int(r.filled_quantity / multiplier),
            "filledValue": plain_number((r.average_price or Decimal("0")) * r.filled_quantity),
            "stop": stop,
            "stopPrice": plain_number(r.trigger_price) or None,
            "stopTriggered": r.is_trigger and r.status == "closed",
            "isActive": r.status == "open",
            "cancelExist": r.status == "canceled",
            "status": "open" if r.status == "open" else "done",
            "clientOid": r.client_order_id,
            "reduceOnly": r.reduce_only,
            "leverage": str(order.leverage or 1),
            "marginMode": "ISOLATED",
            "settleCurrency": "USDT",
            "createdAt": 1700000000000,
            "updatedAt": 1700000000000,
        }
