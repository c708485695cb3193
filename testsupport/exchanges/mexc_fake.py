"""A fake MEXC contract (futures) REST API behind ccxt's own HTTP hook (``Exchange.fetch``), for tests and the demo.

The REAL ``ccxt.async_support.mexc`` class builds and signs every request; ``MexcFetchFake`` checks the contract
signature (hex HMAC-SHA256 of ApiKey + Request-Time + JSON body, or + the sorted query string for GETs), answers
with JSON shaped as MEXC's contract API documents it (sides 1 open long, 2 close short, 3 open short, 4 close long;
order states 2 open, 3 filled, 4 cancelled; plan order states 1 untriggered, 2 cancelled, 3 executed) and keeps
state in a ``FakeExchangeAccount`` (volumes in contracts of ``contractSize`` base units). Stop/TP orders are plan
orders (``planorder/place``). Errors go through ccxt's ``handle_errors``.

Faults per path suffix: ``fake.inject("order/create", "timeout" | "rate_limit" | "server_error" | "lost_response")``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import replace
from decimal import Decimal
from urllib.parse import parse_qsl, urlsplit

from exchanges.base import OrderRequest, OrderResult
from exchanges.errors import DuplicateClientOrderId, ExchangeError, InsufficientBalance
from testsupport.exchanges.ccxt_fetch_fake import CcxtFetchFake, NotFoundOnFake, swap_market
from testsupport.exchanges.fake import FakeExchangeAccount

# id, contractSize (base per contract), volume step (contracts), price tick
MEXC_SWAPS = {"ETH/USDT:USDT": ("ETH_USDT", "0.01", "1", "0.01"), "LTC/USDT:USDT": ("LTC_USDT", "0.1", "1", "0.001")}
PREFIX = "/api/v1/private/"


def mexc_markets() -> list[dict]:
    markets = []
    for symbol, (market_id, size, lot, tick) in MEXC_SWAPS.items():
        markets.append(
            swap_market(
                symbol=symbol,
                market_id=market_id,
                contract_size=size,
                lot=lot,
                tick=tick,
                info={"symbol": market_id, "contractSize": size},
            )
        )
    return markets


class MexcFetchFake(CcxtFetchFake):
    def __init__(self, *, api_key: str, secret: str, account: FakeExchangeAccount | None = None):
        super().__init__(account=account, account_name="mexc-fake")
        # how a re-used client id is answered (tests set wordings no adapter pattern knows)
        self.duplicate_response: dict = {
            "success": False,
            "code": 2040,
            "message": "Duplicate client order id (externalOid)",
        }
        self.api_key, self.secret = api_key, secret
        self._by_id = {market_id: symbol for symbol, (market_id, *_rest) in MEXC_SWAPS.items()}

    def markets(self) -> list[dict]:
        return mexc_markets()

    async def __call__(self, url, method="GET", headers=None, body=None):
        import ccxt

        parts = urlsplit(url)
        headers = dict(headers or {})
        payload = json.loads(body) if body else None
        self._record(method, parts, payload)
        fault = self._take_fault(parts.path)
        if fault == "rate_limit":
            raise ccxt.RateLimitExceeded("mexc 429 Too Many Requests")
        if fault == "server_error":
            raise ccxt.ExchangeNotAvailable("mexc 502 Bad Gateway")
        auth = self.api_key + headers.get("Request-Time", "") + (body if method == "POST" else parts.query)
        if (
            headers.get("ApiKey") != self.api_key
            or headers.get("Signature") != hmac.new(self.secret.encode(), auth.encode(), hashlib.sha256).hexdigest()
        ):
            response = {"success": False, "code": 602, "message": "Signature verification failed!"}
        elif self.account.order_api_restricted and parts.path.removeprefix(PREFIX) in (
            "order/create",
            "planorder/place",
        ):
            # what MEXC answers an ordinary account: its futures order API is closed to most users
            response = {"success": False, "code": 1002, "message": "Contract not allow place order!"}
        else:
            try:
                with self.account.lock:
                    response = {
                        "success": True,
                        "code": 0,
                        "data": self._route(
                            method, parts.path.removeprefix(PREFIX), dict(parse_qsl(parts.query)), payload
                        ),
                    }
            except InsufficientBalance:
                response = {"success": False, "code": 2005, "message": "Balance insufficient!"}
            except DuplicateClientOrderId:
                response = json.loads(json.dumps(self.duplicate_response))
            except NotFoundOnFake:
                response = {"success": False, "code": 2009, "message": "Order not exists"}
            except ExchangeError as exc:
                response = {"success": False, "code": 2011, "message": str(exc)}
        if fault in ("lost_response", "timeout"):
            raise ccxt.RequestTimeout("mexc request timed out")
        self.exchange.handle_errors(200, "OK", url, method, {}, json.dumps(response), response, headers, body)
        return response

    def _size(self, symbol: str) -> Decimal:
        return Decimal(MEXC_SWAPS[symbol][1])

    def _route(self, method: str, path: str, query: dict, body):
        a = self.account
        if path == "position/change_leverage":
            a.leverage[self._by_id[body["symbol"]]] = int(body["leverage"])
            return None
        if path == "account/assets":
            used = sum(
                (abs(p.quantity) * p.entry_price / a.leverage.get(s, 1) for s, p in a.positions.items()), Decimal("0")
            )
            return [
                {
                    "currency": "USDT",
                    "positionMargin": float(used),
                    "frozenBalance": 0,
                    "availableBalance": float(a.balance - used),
                    "cashBalance": float(a.balance),
                    "equity": float(a.balance),
                    "unrealized": 0,
                    "bonus": 0,
                }
            ]
        if path == "order/create":
            symbol = self._by_id[body["symbol"]]
            result = a._create(
                OrderRequest(
                    symbol=symbol,
                    side="buy" if body["side"] in (1, 2) else "sell",
                    type="limit" if body["type"] == 1 else "market",
                    quantity=Decimal(str(body["vol"])) * self._size(symbol),
                    client_order_id=body.get("externalOid", ""),
                    price=Decimal(str(body["price"])) if body.get("price") else None,
                    reduce_only=body["side"] in (2, 4),
                )
            )
            return {"orderId": result.exchange_order_id, "ts": int(time.time() * 1000)}
        if path == "planorder/place":
            symbol = self._by_id[body["symbol"]]
            side = "buy" if body["side"] in (1, 2) else "sell"
            falling = body["triggerType"] == 2
            stop = falling == (side == "sell")  # a long's stop (sell) fires when the price falls
            result = a._create(
                OrderRequest(
                    symbol=symbol,
                    side=side,
                    type="stop_market" if stop else "take_profit",
                    quantity=Decimal(str(body["vol"])) * self._size(symbol),
                    client_order_id=body.get("externalOid", ""),
                    trigger_price=Decimal(str(body["triggerPrice"])),
                    reduce_only=True,
                )
            )
            return result.exchange_order_id  # the bare plan order id, as MEXC answers
        if path.startswith("order/get/"):
            return self._order_row(self._regular(path.rsplit("/", 1)[-1], ""))
        if path.startswith("order/external/"):
            return self._order_row(self._regular("", path.rsplit("/", 1)[-1]))
        if path.startswith("order/list/open_orders"):
            return [
                self._order_row(o) for o in a.orders.values() if not o.result.is_trigger and o.result.status == "open"
            ]
        if path == "planorder/list/orders":
            states = {int(x) for x in query.get("states", "1,2,3,4,5").split(",")}
            rows = [self._plan_row(o) for o in a.orders.values() if o.result.is_trigger]
            return [
                r for r in rows if r["state"] in states and (not query.get("symbol") or r["symbol"] == query["symbol"])
            ]
        if path == "order/cancel" and any(order_id is None for order_id in body):
            raise ExchangeError("param error: orderId is null")  # what a [null] cancel gets
        if path == "order/cancel":
            out = []
            for order_id in body:
                order = a.orders.get(str(order_id))
                if order is None or order.result.status != "open":
                    out.append({"orderId": order_id, "errorCode": 2041, "errorMsg": "order state cannot be cancelled"})
                    continue
                order.result = replace(order.result, status="canceled")
                out.append({"orderId": order_id, "errorCode": 0, "errorMsg": "success"})
            return out
        if path == "order/cancel_with_external":  # cancel by our client id (documented: symbol + externalOid)
            order = next(
                (
                    o
                    for o in a.orders.values()
                    if body.get("externalOid")
                    and o.result.client_order_id == body["externalOid"]
                    and not o.result.is_trigger
                    and self._by_id.get(body.get("symbol")) == o.result.symbol
                ),
                None,
            )
            if order is None:
                raise NotFoundOnFake()
            if order.result.status != "open":
                raise ExchangeError("order state cannot be cancelled")
            order.result = replace(order.result, status="canceled")
            return None
        if path == "planorder/cancel":
            for row in body:
                order = a.orders.get(str(row["orderId"]))
                if order is None or order.result.status != "open":
                    raise ExchangeError("plan order state cannot be cancelled")
                order.result = replace(order.result, status="canceled")
            return None
        if path == "position/open_positions":
            rows = []
            for symbol, p in a.positions.items():
                if p.quantity != 0 and (not query.get("symbol") or MEXC_SWAPS[symbol][0] == query["symbol"]):
                    rows.append(
                        {
                            "positionId": 9000 + list(MEXC_SWAPS).index(symbol),
                            "symbol": MEXC_SWAPS[symbol][0],
                            "positionType": 1 if p.quantity > 0 else 2,
                            "openType": 1,
                            "state": 1,
                            "holdVol": float(abs(p.quantity) / self._size(symbol)),
                            "frozenVol": 0,
                            "closeVol": 0,
                            "holdAvgPrice": float(p.entry_price),
                            "openAvgPrice": float(p.entry_price),
                            "closeAvgPrice": 0,
                            "liquidatePrice": 0,
                            "oim": 0,
                            "im": 0,
                            "holdFee": 0,
                            "realised": float(p.realised_pnl),
                            "leverage": a.leverage.get(symbol, 1),
                            "createTime": 1700000000000,
                            "updateTime": int(time.time() * 1000),
                            "autoAddIm": False,
                        }
                    )
            return rows
        if path == "order/list/order_deals":
            symbol = self._by_id.get(query.get("symbol", ""))
            return [
                {
                    "id": t.trade_id,
                    "symbol": MEXC_SWAPS[t.symbol][0],
                    "side": (2 if t.side == "buy" else 4) if self._reduces(t) else (1 if t.side == "buy" else 3),
                    "vol": float(t.quantity / self._size(t.symbol)),
                    "price": float(t.price),
                    "fee": float(t.fee),
                    "feeCurrency": "USDT",
                    "profit": 0,
                    "isTaker": True,
                    "category": 1,
                    "orderId": t.exchange_order_id,
                    "timestamp": t.timestamp_ms,
                    "positionMode": 2,
                }
                for t in a.trades
                if symbol in (None, t.symbol)
            ]
        raise ExchangeError(f"fake MEXC does not serve {method} {path}")

    def _reduces(self, trade) -> bool:
        order = self.account.orders.get(trade.exchange_order_id)
        return bool(order and order.result.reduce_only)

    def _regular(self, order_id: str, external_oid: str):
        orders = self.account.orders
        order = (
            orders.get(order_id)
            if order_id
            else next((o for o in orders.values() if external_oid and o.result.client_order_id == external_oid), None)
        )
        if order is None or order.result.is_trigger:
            raise NotFoundOnFake()
        return order

    def _order_row(self, order) -> dict:
        r: OrderResult = order.result
        size = self._size(r.symbol)
        side = (2 if r.side == "buy" else 4) if r.reduce_only else (1 if r.side == "buy" else 3)
        state = {"open": 2, "closed": 3}.get(r.status, 4)
        return {
            "orderId": r.exchange_order_id,
            "symbol": MEXC_SWAPS[r.symbol][0],
            "positionId": 0,
            "price": float(r.price or 0),
            "vol": float(r.quantity / size),
            "leverage": order.leverage or 1,
            "side": side,
            "category": 1,
            "orderType": 1 if r.type == "limit" else 5,
            "dealAvgPrice": float(r.average_price or 0),
            "dealVol": float(r.filled_quantity / size),
            "orderMargin": 0,
            "takerFee": float(r.fee),
            "makerFee": 0,
            "profit": float(r.realised_pnl or 0),
            "feeCurrency": "USDT",
            "openType": 1,
            "state": state,
            "externalOid": r.client_order_id,
            "errorCode": 0,
            "usedMargin": 0,
            "createTime": 1700000000000,
            "updateTime": 1700000000000,
            "positionMode": 2,
        }

    def _plan_row(self, order) -> dict:
        r: OrderResult = order.result
        falling = (r.type == "stop_market") == (r.side == "sell")
        return {
            "id": r.exchange_order_id,
            "symbol": MEXC_SWAPS[r.symbol][0],
            "leverage": order.leverage or 1,
            "side": 2 if r.side == "buy" else 4,
            "triggerPrice": float(r.trigger_price),
            "price": 0,
            "vol": float(r.quantity / self._size(r.symbol)),
            "openType": 1,
            "triggerType": 2 if falling else 1,
            "state": {"open": 1, "closed": 3}.get(r.status, 2),
            "executeCycle": 87600,
            "trend": 1,
            "orderType": 5,
            "errorCode": 0,
            "createTime": 1700000000000,
            "updateTime": 1700000000000,
        }
