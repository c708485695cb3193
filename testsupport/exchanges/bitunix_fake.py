"""A local fake Bitunix futures REST server (HTTP on 127.0.0.1) for tests and the demo: the stand-in for Bitunix.

It speaks the documented endpoints and JSON shapes ``exchanges.bitunix.BitunixClient`` uses, checks every
private request's signature exactly as Bitunix documents it (code 10007 "Signature Error" otherwise), and keeps its
state in a ``FakeExchangeAccount`` (order-book-less fills, reduce-only TP/SL triggers, PnL and fees), so the real
adapter runs end to end over real HTTP.

Faults per path suffix: ``server.inject("place_order", "http_429" | "http_502" | "timeout" | "lost_response" |
"stale_read")``; ``timeout`` performs the request and answers after ``server.slow_seconds`` (longer than the client's
timeout), ``lost_response`` performs the request and then answers 502 (as if the answer was lost after the exchange
accepted it), ``stale_read`` answers "not exists" once (an exchange not yet showing a new order).

Recorded shapes kept on purpose: an order detail has no average price and a market order's ``price`` is "0" (or
``market_order_price``: "market", or None to leave it out), so fills come only from the trade history;
``duplicate_answer`` sets how a re-used client id is answered.

Usage::

    with BitunixFakeServer(api_key="k", secret="s") as server:
        server.account.set_price("BTC/USDT:USDT", "100")
        client = BitunixClient(api_key="k", secret="s", base_url=server.url)
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import zlib
from dataclasses import replace
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from exchanges.base import OrderRequest, OrderResult
from exchanges.bitunix import bitunix_sign, query_params_for_signature
from exchanges.errors import DuplicateClientOrderId, ExchangeError, InsufficientBalance
from testsupport.exchanges.fake import DEFAULT_MARKET, FakeExchangeAccount

FAULTS = ("http_429", "http_502", "timeout", "lost_response", "stale_read")


def _plain(value: Decimal | None) -> str:
    return "" if value is None else format(value.normalize(), "f")


def _market_id(symbol: str) -> str:
    base, rest = symbol.split("/")
    return base + rest.split(":")[0]


def _unified(market_id: str) -> str:
    return f"{market_id[:-4]}/USDT:USDT"


class BitunixFakeServer:
    def __init__(self, *, api_key: str, secret: str, account: FakeExchangeAccount | None = None):
        self.api_key = api_key
        self.secret = secret
        self.account = account or FakeExchangeAccount(name="bitunix-fake")
        self.faults: dict[str, list[str]] = {}
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, body or query)
        self.slow_seconds = 1.0
        # What a market order's ``price`` field says (Bitunix orders carry no average price): "0" as the API
        # documents, "market" as third-party clients recorded it, or None to leave the field out.
        self.market_order_price: str | None = "0"
        self.trades_visible = True  # False: the trade history lags behind the orders (answers no trade)
        # how a re-used client id is answered (tests set wordings no adapter pattern knows)
        self.duplicate_answer = {"code": 10008, "data": None, "msg": "Duplicate clientId"}
        self._tpsl_ids = itertools.count(1)
        self._client_ids = itertools.count(1)
        self._seen_nonces: set[str] = set()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="bitunix-fake", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> BitunixFakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def inject(self, path_suffix: str, *faults: str) -> None:
        for fault in faults:
            if fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}")
        self.faults.setdefault(path_suffix, []).extend(faults)

    def requests_to(self, path_suffix: str) -> list[dict]:
        return [payload for _method, path, payload in self.requests if path.endswith(path_suffix)]

    # --- HTTP plumbing ----------------------------------------------------------------------------------------------
    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                return

            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                query = dict(parse_qsl(parts.query))
                length = int(self.headers.get("Content-Length") or 0)
                body_text = self.rfile.read(length).decode() if length else ""
                status, payload = server.handle(method, parts.path, query, body_text, dict(self.headers.items()))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

        return Handler

    def _fault_for(self, path: str) -> str | None:
        for suffix, queue in self.faults.items():
            if path.endswith(suffix) and queue:
                return queue.pop(0)
        return None

    def handle(self, method: str, path: str, query: dict, body_text: str, headers: dict) -> tuple[int, dict]:
        headers = {k.lower(): v for k, v in headers.items()}
        body = json.loads(body_text) if body_text else {}
        self.requests.append((method, path, body if method == "POST" else query))
        fault = self._fault_for(path)
        if fault == "http_429":
            return 429, {"code": 429, "msg": "Too Many Requests"}
        if fault == "http_502":
            return 502, {"code": 502, "msg": "Bad Gateway"}
        if not path.endswith("/market/trading_pairs"):
            expected = bitunix_sign(
                nonce=headers.get("nonce", ""),
                timestamp=headers.get("timestamp", ""),
                api_key=self.api_key,
                secret=self.secret,
                query=query_params_for_signature(query),
                body=body_text,
            )
            if (
                headers.get("api-key") != self.api_key
                or headers.get("sign") != expected
                or len(headers.get("nonce", "")) != 32
            ):
                return 200, {"code": 10007, "data": None, "msg": "Signature Error"}
            if headers["nonce"] in self._seen_nonces:
                return 200, {"code": 10007, "data": None, "msg": "Signature Error (nonce reused)"}
            self._seen_nonces.add(headers["nonce"])
        if fault == "stale_read":  # the exchange does not show the order yet (eventual consistency)
            return 200, {"code": 20007, "data": None, "msg": "Order not exists"}
        try:
            with self.account.lock:
                data = self._route(method, path, query, body)
        except InsufficientBalance:
            return 200, {"code": 20003, "data": None, "msg": "Insufficient balance"}
        except DuplicateClientOrderId:
            return 200, dict(self.duplicate_answer)
        except _NotFound as exc:
            return 200, {"code": 20007, "data": None, "msg": str(exc)}
        except ExchangeError as exc:
            return 200, {"code": 10008, "data": None, "msg": str(exc)}
        if fault == "lost_response":
            return 502, {"code": 502, "msg": "Bad Gateway"}
        if fault == "timeout":  # executed, but the answer comes after the client gave up
            time.sleep(self.slow_seconds)
        return 200, {"code": 0, "data": data, "msg": "Success"}

    # --- endpoints ----------------------------------------------------------------------------------------------------
    def _route(self, method: str, path: str, query: dict, body: dict):
        a = self.account
        endpoint = path.removeprefix("/api/v1/futures/")
        if endpoint == "market/trading_pairs":
            decimals = lambda step: -step.normalize().as_tuple().exponent  # noqa: E731
            return [
                {
                    "symbol": _market_id(symbol),
                    "base": symbol.split("/")[0],
                    "quote": "USDT",
                    "minTradeVolume": _plain(DEFAULT_MARKET["min_amount"]),
                    "basePrecision": decimals(DEFAULT_MARKET["amount_step"]),
                    "quotePrecision": decimals(DEFAULT_MARKET["price_tick"]),
                    "maxLeverage": DEFAULT_MARKET["max_leverage"],
                    "minLeverage": 1,
                    "symbolStatus": "OPEN",
                    "isApiSupported": True,
                }
                for symbol in a.prices
            ]
        if endpoint == "account":
            used = sum(
                (abs(p.quantity) * p.entry_price / a.leverage.get(s, 1) for s, p in a.positions.items()), Decimal("0")
            )
            return [
                {
                    "marginCoin": query.get("marginCoin", "USDT"),
                    "available": _plain(a.balance - used),
                    "frozen": "0",
                    "margin": _plain(used),
                }
            ]
        if endpoint in ("account/change_position_mode", "account/change_margin_mode"):
            return {}
        if endpoint == "account/change_leverage":
            a.leverage[_unified(body["symbol"])] = int(body["leverage"])
            return {
                "symbol": body["symbol"],
                "leverage": int(body["leverage"]),
                "marginCoin": body.get("marginCoin", "USDT"),
            }
        if endpoint == "trade/place_order":
            client_id = body.get("clientId") or f"auto{next(self._client_ids)}"
            result = a._create(
                OrderRequest(
                    symbol=_unified(body["symbol"]),
                    side=body["side"].lower(),
                    type=body["orderType"].lower(),
                    quantity=Decimal(body["qty"]),
                    client_order_id=client_id,
                    price=Decimal(body["price"]) if body.get("price") else None,
                    reduce_only=bool(body.get("reduceOnly")),
                )
            )
            return {"orderId": result.exchange_order_id, "clientId": body.get("clientId", "")}
        if endpoint == "trade/get_order_detail":
            order = self._order(query.get("orderId", ""), query.get("clientId", ""))
            return self._order_row(order)
        if endpoint == "trade/cancel_orders":
            success, failure = [], []
            for ref in body.get("orderList", []):
                order = self._find(ref.get("orderId", ""), ref.get("clientId", ""))
                if order is None or order.result.status != "open":
                    failure.append({**ref, "errorMsg": "Order status error", "errorCode": 10013})
                    continue
                order.result = replace(order.result, status="canceled")
                success.append({"orderId": order.result.exchange_order_id, "clientId": order.result.client_order_id})
            return {"successList": success, "failureList": failure}
        if endpoint == "trade/get_pending_orders":
            symbol = _unified(query["symbol"]) if query.get("symbol") else None
            rows = [
                self._order_row(o)
                for o in a.orders.values()
                if o.result.status == "open" and not o.result.is_trigger and symbol in (None, o.result.symbol)
            ]
            return {"orderList": rows, "total": str(len(rows))}
        if endpoint == "trade/get_history_trades":
            symbol = _unified(query["symbol"]) if query.get("symbol") else None
            rows = [
                {
                    "tradeId": t.trade_id,
                    "orderId": t.exchange_order_id,
                    "clientId": "" if t.client_order_id.startswith(("auto", "tpsl")) else t.client_order_id,
                    "symbol": _market_id(t.symbol),
                    "qty": _plain(t.quantity),
                    "price": _plain(t.price),
                    "side": t.side.upper(),
                    "fee": _plain(t.fee),
                    "positionMode": "ONE_WAY",
                    "marginMode": "ISOLATION",
                    "orderType": "MARKET",
                    "roleType": "TAKER",
                    "ctime": t.timestamp_ms,
                }
                for t in a.trades
                if self.trades_visible
                and symbol in (None, t.symbol)
                and query.get("orderId") in (None, "", t.exchange_order_id)
            ]
            return {"tradeList": rows, "total": len(rows)}
        if endpoint == "position/get_pending_positions":
            symbol = _unified(query["symbol"]) if query.get("symbol") else None
            return [self._position_row(s, p) for s, p in a.positions.items() if p.quantity != 0 and symbol in (None, s)]
        if endpoint == "tpsl/place_order":
            symbol = _unified(body["symbol"])
            position = a.positions.get(symbol)
            if position is None or position.quantity == 0 or body.get("positionId") != self._position_id(symbol):
                raise ExchangeError("Position not exist")
            stop = "slPrice" in body
            trigger = Decimal(body["slPrice"] if stop else body["tpPrice"])
            quantity = Decimal(body["slQty"] if stop else body["tpQty"])
            result = a._create(
                OrderRequest(
                    symbol=symbol,
                    side="sell" if position.quantity > 0 else "buy",
                    type="stop_market" if stop else "take_profit",
                    quantity=quantity,
                    client_order_id=f"tpsl{next(self._tpsl_ids)}",
                    trigger_price=trigger,
                    reduce_only=True,
                )
            )
            return {"orderId": result.exchange_order_id}
        if endpoint == "tpsl/get_pending_orders":
            symbol = _unified(query["symbol"]) if query.get("symbol") else None
            return [
                self._tpsl_row(o.result)
                for o in a.orders.values()
                if o.result.is_trigger and o.result.status == "open" and symbol in (None, o.result.symbol)
            ]
        if endpoint == "tpsl/get_history_orders":
            symbol = _unified(query["symbol"]) if query.get("symbol") else None
            rows = [
                self._tpsl_row(o.result)
                for o in a.orders.values()
                if o.result.is_trigger and o.result.status != "open" and symbol in (None, o.result.symbol)
            ]
            return {"orderList": rows, "total": len(rows)}
        if endpoint == "tpsl/cancel_order":
            order = self._find(body.get("orderId", ""), "")
            if order is None or order.result.status != "open" or not order.result.is_trigger:
                raise _NotFound("TP/SL order not found")
            order.result = replace(order.result, status="canceled")
            return {"orderId": order.result.exchange_order_id}
        raise ExchangeError(f"unknown endpoint {path}")

    # --- helpers ------------------------------------------------------------------------------------------------------
    def _find(self, order_id: str, client_id: str):
        if order_id:
            return self.account.orders.get(order_id)
        return next(
            (o for o in self.account.orders.values() if client_id and o.result.client_order_id == client_id), None
        )

    def _order(self, order_id: str, client_id: str):
        order = self._find(order_id, client_id)
        if order is None or order.result.is_trigger:
            raise _NotFound("Order not found")
        return order

    @staticmethod
    def _position_id(symbol: str) -> str:
        return str(zlib.crc32(symbol.encode()))

    def _order_row(self, order) -> dict:
        r: OrderResult = order.result
        status = {"open": "PART_FILLED" if r.filled_quantity else "NEW", "closed": "FILLED"}.get(
            r.status, "PART_FILLED_CANCELED" if r.filled_quantity else "CANCELED"
        )
        # as the documented order detail: NO average price; ``price`` is the limit (a market order's says "0",
        # "market" or nothing), so the fill price is only in the trade history
        row = {
            "orderId": r.exchange_order_id,
            "clientId": r.client_order_id if not r.client_order_id.startswith("auto") else "",
            "symbol": _market_id(r.symbol),
            "qty": _plain(r.quantity),
            "tradeQty": _plain(r.filled_quantity),
            "positionMode": "ONE_WAY",
            "marginMode": "ISOLATION",
            "leverage": order.leverage or 1,
            "price": _plain(r.price) if r.type == "limit" else self.market_order_price,
            "side": r.side.upper(),
            "orderType": r.type.upper(),
            "effect": "GTC",
            "reduceOnly": r.reduce_only,
            "status": status,
            "fee": _plain(r.fee),
            "realizedPNL": _plain(r.realised_pnl or Decimal("0")),
            "ctime": 1_700_000_000_000,
            "mtime": 1_700_000_000_000,
        }
        if row["price"] is None:
            del row["price"]
        return row

    def _tpsl_row(self, r: OrderResult) -> dict:
        stop = r.type == "stop_market"
        prefix = "sl" if stop else "tp"
        row = {
            "id": r.exchange_order_id,
            "positionId": self._position_id(r.symbol),
            "symbol": _market_id(r.symbol),
            "base": r.symbol.split("/")[0],
            "quote": "USDT",
            f"{prefix}Price": _plain(r.trigger_price),
            f"{prefix}StopType": "LAST_PRICE",
            f"{prefix}OrderType": "MARKET",
            f"{prefix}Qty": _plain(r.quantity),
        }
        if r.status != "open":
            row["status"] = "TRIGGERED" if r.status == "closed" else "CANCELED"
        return row

    def _position_row(self, symbol: str, p) -> dict:
        price = self.account.prices.get(symbol, p.entry_price)
        direction = Decimal("1") if p.quantity > 0 else Decimal("-1")
        return {
            "positionId": self._position_id(symbol),
            "symbol": _market_id(symbol),
            "qty": _plain(abs(p.quantity)),
            "entryValue": _plain(abs(p.quantity) * p.entry_price),
            "side": "LONG" if p.quantity > 0 else "SHORT",
            "positionMode": "ONE_WAY",
            "marginMode": "ISOLATION",
            "leverage": self.account.leverage.get(symbol, 1),
            "fee": "0",
            "funding": "0",
            "realizedPNL": _plain(p.realised_pnl),
            "unrealizedPNL": _plain((price - p.entry_price) * abs(p.quantity) * direction),
            "avgOpenPrice": _plain(p.entry_price),
            "ctime": 1_700_000_000_000,
            "mtime": 1_700_000_000_000,
        }


class _NotFound(Exception):
    pass
