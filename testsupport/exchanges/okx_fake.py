"""A fake OKX v5 REST API behind ccxt's own HTTP hook (``Exchange.fetch``), for tests and the demo.

The REAL ``ccxt.async_support.okx`` class builds and signs every request; ``OkxFetchFake`` (installed as the
instance's ``fetch``) checks the signature (HMAC-SHA256 of timestamp + method + path + body, base64, as ccxt and
OKX's docs compute it), answers with JSON shaped like OKX's recorded responses (``ccxt_static/response/okx.json``)
and keeps state in a ``FakeExchangeAccount`` (base units; OKX sizes are contracts of ``ctVal`` base units, so the
contract conversion runs for real too). Error answers go through ccxt's own ``handle_errors`` (OKX codes → ccxt
exceptions → our mapping).

Trigger (stop/TP) orders are OKX ``conditional`` algo orders: once triggered the algo is ``effective`` and names
the market order it placed (``ordId``), which holds the fill, fee and PnL.

Faults per path suffix, raised the way ccxt's transport raises them: ``fake.inject("batch-orders", "timeout" |
"rate_limit" | "server_error" | "lost_response" | "stale_read")``; ``lost_response`` (and ``timeout``) perform the
request first; ``stale_read`` answers "order does not exist" once, as an exchange not yet showing a new order.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
from dataclasses import replace
from decimal import Decimal
from urllib.parse import parse_qsl, urlsplit

from exchanges.base import OrderRequest, OrderResult
from exchanges.errors import DuplicateClientOrderId, ExchangeError, InsufficientBalance
from testsupport.exchanges.ccxt_fetch_fake import FAULTS as COMMON_FAULTS
from testsupport.exchanges.ccxt_fetch_fake import CcxtFetchFake, NotFoundOnFake, plain_number, swap_market
from testsupport.exchanges.fake import FakeExchangeAccount

FAULTS = (*COMMON_FAULTS, "stale_read")

# ccxt unified market structures as OKX lists these swaps (ctVal in base units, lotSz in contracts, tickSz)
OKX_SWAPS = {
    "BTC/USDT:USDT": ("BTC-USDT-SWAP", "0.01", "0.01", "0.1"),
    "ETH/USDT:USDT": ("ETH-USDT-SWAP", "0.1", "0.01", "0.01"),
}


def okx_markets(symbols=None) -> list[dict]:
    markets = []
    for symbol, (market_id, ct_val, lot, tick) in OKX_SWAPS.items():
        if symbols and symbol not in symbols:
            continue
        markets.append(
            swap_market(
                symbol=symbol,
                market_id=market_id,
                contract_size=ct_val,
                lot=lot,
                tick=tick,
                info={"instType": "SWAP", "instId": market_id, "ctVal": ct_val, "lotSz": lot, "tickSz": tick},
            )
        )
    return markets


class OkxFetchFake(CcxtFetchFake):
    known_faults = FAULTS

    def __init__(self, *, api_key: str, secret: str, passphrase: str, account: FakeExchangeAccount | None = None):
        super().__init__(account=account, account_name="okx-fake")
        # how a re-used client id is answered (tests set wordings no adapter pattern knows)
        self.duplicate_response: dict = {
            "code": "1",
            "data": [{"sCode": "51016", "sMsg": "Duplicated clOrdId"}],
            "msg": "All operations failed",
        }
        self.api_key, self.secret, self.passphrase = api_key, secret, passphrase
        self._algo_ids = itertools.count(1)
        self._by_inst = {market_id: symbol for symbol, (market_id, *_rest) in OKX_SWAPS.items()}

    def markets(self) -> list[dict]:
        return okx_markets()

    # --- the transport --------------------------------------------------------------------------------------------
    async def __call__(self, url, method="GET", headers=None, body=None):
        import ccxt

        parts = urlsplit(url)
        path_and_query = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = dict(headers or {})
        payload = json.loads(body) if body else None
        self._record(method, parts, payload)
        fault = self._take_fault(parts.path)
        if fault == "rate_limit":
            raise ccxt.RateLimitExceeded("okx 429 Too Many Requests")
        if fault == "server_error":
            raise ccxt.ExchangeNotAvailable("okx 503 Service Unavailable")
        signed = base64.b64encode(
            hmac.new(
                self.secret.encode(),
                (headers.get("OK-ACCESS-TIMESTAMP", "") + method + path_and_query + (body or "")).encode(),
                hashlib.sha256,
            ).digest()
        ).decode()
        if fault == "stale_read":  # the exchange does not show the order yet (eventual consistency)
            response = {"code": "51603", "data": [], "msg": "Order does not exist"}
        elif (
            headers.get("OK-ACCESS-KEY") != self.api_key
            or headers.get("OK-ACCESS-SIGN") != signed
            or headers.get("OK-ACCESS-PASSPHRASE") != self.passphrase
        ):
            response = {"code": "50113", "data": [], "msg": "Invalid Sign"}
        else:
            try:
                with self.account.lock:
                    response = {
                        "code": "0",
                        "data": self._route(method, parts.path, dict(parse_qsl(parts.query)), payload),
                        "msg": "",
                    }
            except InsufficientBalance:
                response = {
                    "code": "1",
                    "data": [{"sCode": "51008", "sMsg": "Order failed. Insufficient USDT margin in account"}],
                    "msg": "All operations failed",
                }
            except DuplicateClientOrderId:
                response = json.loads(json.dumps(self.duplicate_response))
            except NotFoundOnFake:
                response = {"code": "51603", "data": [], "msg": "Order does not exist"}
            except ExchangeError as exc:
                response = {"code": "1", "data": [{"sCode": "51000", "sMsg": str(exc)}], "msg": "All operations failed"}
        if fault == "lost_response":
            raise ccxt.RequestTimeout("okx request timed out (answer lost)")
        if fault == "timeout":
            raise ccxt.RequestTimeout("okx request timed out")
        self.exchange.handle_errors(200, "OK", url, method, {}, json.dumps(response), response, headers, body)
        return response

    # --- endpoints ------------------------------------------------------------------------------------------------------
    def _symbol(self, inst_id: str) -> str:
        return self._by_inst[inst_id]

    def _ct_val(self, symbol: str) -> Decimal:
        return Decimal(OKX_SWAPS[symbol][1])

    def _route(self, method: str, path: str, query: dict, body):
        a = self.account
        endpoint = path.removeprefix("/api/v5/")
        if endpoint == "account/balance":
            used = sum(
                (abs(p.quantity) * p.entry_price / a.leverage.get(s, 1) for s, p in a.positions.items()), Decimal("0")
            )
            detail = {
                "ccy": "USDT",
                "availBal": plain_number(a.balance - used),
                "cashBal": plain_number(a.balance),
                "eq": plain_number(a.balance),
                "frozenBal": plain_number(used),
                "uTime": "1700000000000",
            }
            return [{"details": [detail], "totalEq": plain_number(a.balance), "uTime": "1700000000000"}]
        if endpoint == "account/config":  # the recorded shape; ``perm`` is the key's permissions
            return [
                {
                    "acctLv": "1",
                    "autoLoan": False,
                    "ctIsoMode": "automatic",
                    "greeksType": "PA",
                    "ip": "",
                    "kycLv": "2",
                    "label": "fake",
                    "level": "Lv1",
                    "levelTmp": "",
                    "liquidationGear": "-1",
                    "mainUid": "374579799097793561",
                    "mgnIsoMode": "automatic",
                    "opAuth": "0",
                    "perm": a.key_perm,
                    "posMode": "net_mode",
                    "roleType": "0",
                    "spotOffsetType": "",
                    "spotRoleType": "0",
                    "spotTraderInsts": [],
                    "traderInsts": [],
                    "uid": "374579799097793561",
                }
            ]
        if endpoint == "account/set-leverage":
            a.leverage[self._symbol(body["instId"])] = int(body["lever"])
            return [{"instId": body["instId"], "lever": body["lever"], "mgnMode": body["mgnMode"], "posSide": ""}]
        if endpoint == "account/positions":
            wanted = set(query["instId"].split(",")) if query.get("instId") else None
            rows = []
            for symbol, p in a.positions.items():
                market_id = OKX_SWAPS[symbol][0]
                if p.quantity == 0 or (wanted and market_id not in wanted):
                    continue
                price = a.prices.get(symbol, p.entry_price)
                rows.append(
                    {
                        "instId": market_id,
                        "instType": "SWAP",
                        "posId": f"pos-{market_id}",
                        "posSide": "net",
                        "mgnMode": "isolated",
                        "pos": plain_number(p.quantity / self._ct_val(symbol)),
                        "avgPx": plain_number(p.entry_price),
                        "markPx": plain_number(price),
                        "last": plain_number(price),
                        "upl": plain_number((price - p.entry_price) * p.quantity),
                        "realizedPnl": plain_number(p.realised_pnl),
                        "lever": str(a.leverage.get(symbol, 1)),
                        "ccy": "USDT",
                        "cTime": "1700000000000",
                        "uTime": "1700000000000",
                    }
                )
            return rows
        if endpoint == "trade/batch-orders":
            return [self._place(row) for row in body]
        if endpoint == "trade/order" and method == "POST":
            return [self._place(body)]
        if endpoint == "trade/order":
            order = self._find_regular(query.get("ordId", ""), query.get("clOrdId", ""))
            return [self._order_row(order)]
        if endpoint == "trade/cancel-order":
            order = self._find_regular(body.get("ordId", ""), body.get("clOrdId", ""))
            if order.result.status != "open":
                raise ExchangeError(
                    "Order cancellation failed as the order has been filled, canceled or does not exist"
                )
            order.result = replace(order.result, status="canceled")
            return [
                {
                    "ordId": order.result.exchange_order_id,
                    "clOrdId": order.result.client_order_id,
                    "sCode": "0",
                    "sMsg": "",
                }
            ]
        if endpoint == "trade/orders-pending":
            return [
                self._order_row(o)
                for o in a.orders.values()
                if not o.result.is_trigger and o.result.status == "open" and self._matches(o, query)
            ]
        if endpoint in ("trade/fills-history", "trade/fills"):
            rows = []
            for t in a.trades:
                if query.get("instId") and OKX_SWAPS[t.symbol][0] != query["instId"]:
                    continue
                order = a.orders.get(t.exchange_order_id)
                triggered = order is not None and order.result.is_trigger
                rows.append(
                    {
                        "instId": OKX_SWAPS[t.symbol][0],
                        "instType": "SWAP",
                        "tradeId": t.trade_id,
                        "ordId": f"{t.exchange_order_id}T" if triggered else t.exchange_order_id,
                        "clOrdId": "" if triggered else t.client_order_id,
                        "side": t.side,
                        "posSide": "net",
                        "fillSz": plain_number(t.quantity / self._ct_val(t.symbol)),
                        "fillPx": plain_number(t.price),
                        "fee": plain_number(-t.fee),
                        "feeCcy": "USDT",
                        "execType": "T",
                        "ts": str(t.timestamp_ms),
                    }
                )
            return rows
        if endpoint == "trade/order-algo" and method == "POST":
            return [self._place_algo(body)]
        if endpoint == "trade/order-algo":
            return [self._algo_row(self._find_algo(query.get("algoId", ""), query.get("algoClOrdId", "")))]
        if endpoint == "trade/orders-algo-pending":
            return [
                self._algo_row(o)
                for o in a.orders.values()
                if o.result.is_trigger and o.result.status == "open" and self._matches(o, query)
            ]
        if endpoint == "trade/cancel-algos":
            out = []
            for row in body:
                order = self._find_algo(row.get("algoId", ""), row.get("algoClOrdId", ""))
                if order.result.status != "open":
                    raise ExchangeError("Algo order cancellation failed: order is not live")
                order.result = replace(order.result, status="canceled")
                out.append({"algoId": order.result.exchange_order_id, "sCode": "0", "sMsg": ""})
            return out
        raise ExchangeError(f"fake OKX does not serve {method} {path}")

    def _matches(self, order, query: dict) -> bool:
        return not query.get("instId") or OKX_SWAPS[order.result.symbol][0] == query["instId"]

    def _place(self, row: dict) -> dict:
        symbol = self._symbol(row["instId"])
        result = self.account._create(
            OrderRequest(
                symbol=symbol,
                side=row["side"],
                type=row["ordType"],
                quantity=Decimal(row["sz"]) * self._ct_val(symbol),
                client_order_id=row.get("clOrdId", ""),
                price=Decimal(row["px"]) if row.get("px") else None,
                reduce_only=str(row.get("reduceOnly")).lower() == "true",
            )
        )
        return {
            "clOrdId": result.client_order_id,
            "ordId": result.exchange_order_id,
            "sCode": "0",
            "sMsg": "Order placed",
            "tag": "",
            "ts": "1700000000000",
        }

    def _place_algo(self, body: dict) -> dict:
        symbol = self._symbol(body["instId"])
        stop = bool(body.get("slTriggerPx"))
        result = self.account._create(
            OrderRequest(
                symbol=symbol,
                side=body["side"],
                type="stop_market" if stop else "take_profit",
                quantity=Decimal(body["sz"]) * self._ct_val(symbol),
                # as OKX does: a sent clOrdId becomes the trigger order's client id (algoClOrdId only when none is sent)
                client_order_id=body.get("clOrdId") or body.get("algoClOrdId", "") or f"algo{next(self._algo_ids)}",
                trigger_price=Decimal(body["slTriggerPx"] if stop else body["tpTriggerPx"]),
                reduce_only=True,
            )
        )
        return {
            "algoClOrdId": result.client_order_id,
            "algoId": result.exchange_order_id,
            "clOrdId": body.get("clOrdId", ""),
            "sCode": "0",
            "sMsg": "",
        }

    def _find_regular(self, ord_id: str, cl_ord_id: str):
        if ord_id.endswith("T") and ord_id[:-1] in self.account.orders:  # the market order a triggered algo placed
            return _Triggered(self.account.orders[ord_id[:-1]])
        order = self._find(ord_id, cl_ord_id)
        if order is None or order.result.is_trigger:
            raise NotFoundOnFake()
        return order

    def _find_algo(self, algo_id: str, algo_cl_ord_id: str):
        order = self._find(algo_id, algo_cl_ord_id)
        if order is None or not order.result.is_trigger:
            raise NotFoundOnFake()
        return order

    def _find(self, exchange_id: str, client_id: str):
        if exchange_id:
            return self.account.orders.get(exchange_id)
        return next(
            (o for o in self.account.orders.values() if client_id and o.result.client_order_id == client_id), None
        )

    def _order_row(self, order) -> dict:
        r: OrderResult = order.result
        ct_val = self._ct_val(r.symbol)
        state = {"open": "partially_filled" if r.filled_quantity else "live", "closed": "filled"}.get(
            r.status, "canceled"
        )
        return {
            "instId": OKX_SWAPS[r.symbol][0],
            "instType": "SWAP",
            "ordId": getattr(order, "ord_id", r.exchange_order_id),
            "clOrdId": "" if r.is_trigger else r.client_order_id,
            "px": plain_number(r.price),
            "sz": plain_number(r.quantity / ct_val),
            "ordType": "market" if r.is_trigger else r.type,
            "side": r.side,
            "posSide": "net",
            "tdMode": "isolated",
            "state": state,
            "accFillSz": plain_number(r.filled_quantity / ct_val),
            "avgPx": plain_number(r.average_price),
            "fee": plain_number(-r.fee),
            "feeCcy": "USDT",
            "pnl": plain_number(r.realised_pnl or Decimal("0")),
            "reduceOnly": "true" if r.reduce_only else "false",
            "lever": str(order.leverage or 1),
            "cTime": "1700000000000",
            "uTime": "1700000000000",
        }

    def _algo_row(self, order) -> dict:
        r: OrderResult = order.result
        ct_val = self._ct_val(r.symbol)
        stop = r.type == "stop_market"
        state = {"open": "live", "closed": "effective"}.get(r.status, "canceled")
        return {
            "instId": OKX_SWAPS[r.symbol][0],
            "instType": "SWAP",
            "algoId": r.exchange_order_id,
            "algoClOrdId": r.client_order_id,
            "ordType": "conditional",
            "side": r.side,
            "posSide": "net",
            "tdMode": "isolated",
            "sz": plain_number(r.quantity / ct_val),
            "state": state,
            "slTriggerPx": plain_number(r.trigger_price) if stop else "",
            "slOrdPx": "-1" if stop else "",
            "tpTriggerPx": "" if stop else plain_number(r.trigger_price),
            "tpOrdPx": "" if stop else "-1",
            "reduceOnly": "true",
            "actualSz": plain_number(r.filled_quantity / ct_val) if r.status == "closed" else "",
            "actualPx": plain_number(r.average_price) if r.status == "closed" else "",
            "ordId": f"{r.exchange_order_id}T" if r.status == "closed" else "",
            "cTime": "1700000000000",
            "uTime": "1700000000000",
        }


class _Triggered:
    """The market order a triggered algo placed (same fill; its own id)."""

    def __init__(self, order):
        self.result = order.result
        self.leverage = order.leverage
        self.ord_id = f"{order.result.exchange_order_id}T"
