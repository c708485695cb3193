"""Offline tests of the REAL ccxt classes (ccxt.async_support 4.5.90) behind CcxtExchangeClient.

The instance's HTTP transport (``Exchange.fetch``, async) is replaced by a recorder that answers with recorded
responses, so request building, signing and parsing run for real. Fixtures: ccxt's own static request/response
cases, copied to ``fixtures/ccxt_static`` (see the README there for source commits and the cases left out).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import ccxt
import pytest

from exchanges.base import OrderRequest
from exchanges.ccxt_client import CcxtExchangeClient, ccxt_exchange
from exchanges.errors import AuthenticationFailed, DuplicateClientOrderId, InsufficientBalance, RetryableExchangeError

FIXTURES = Path(__file__).parent / "fixtures" / "ccxt_static"
KEY, SECRET, PASSPHRASE = "key", "secret", "pass"


def swap_market(symbol: str, market_id: str, contract_size, amount_step, price_tick) -> dict:
    base, rest = symbol.split("/")
    quote = rest.split(":")[0]
    return {
        "id": market_id,
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "settle": quote,
        "baseId": base,
        "quoteId": quote,
        "settleId": quote,
        "type": "swap",
        "spot": False,
        "margin": False,
        "swap": True,
        "future": False,
        "option": False,
        "contract": True,
        "linear": True,
        "inverse": False,
        "active": True,
        "contractSize": contract_size,
        "expiry": None,
        "precision": {"amount": amount_step, "price": price_tick},
        "limits": {
            "amount": {"min": amount_step, "max": None},
            "price": {"min": None, "max": None},
            "cost": {"min": None, "max": None},
            "leverage": {"min": 1, "max": 100},
        },
        "info": {"instType": "SWAP", "instId": market_id},
    }


# Contract specifications as the exchanges list them (contract size in base units, lot step in contracts, tick).
MARKETS = {
    "okx": [
        swap_market("LTC/USDT:USDT", "LTC-USDT-SWAP", 1, 0.01, 0.01),
        swap_market("BTC/USDT:USDT", "BTC-USDT-SWAP", 0.01, 0.01, 0.1),
        swap_market("ETH/USDT:USDT", "ETH-USDT-SWAP", 0.1, 0.01, 0.01),
        swap_market("ADA/USDT:USDT", "ADA-USDT-SWAP", 100, 1, 0.0001),
    ],
    "kucoinfutures": [
        swap_market("LTC/USDT:USDT", "LTCUSDTM", 0.1, 1, 0.01),
        swap_market("BTC/USDT:USDT", "XBTUSDTM", 0.001, 1, 0.1),
        swap_market("ADA/USDT:USDT", "ADAUSDTM", 10, 1, 0.00001),
    ],
    "mexc": [
        swap_market("LTC/USDT:USDT", "LTC_USDT", 0.1, 1, 0.001),
        swap_market("ADA/USDT:USDT", "ADA_USDT", 1, 1, 0.0001),
        swap_market("BTC/USDT:USDT", "BTC_USDT", 0.0001, 1, 0.1),
    ],
}

# Cases whose recorded request no longer matches ccxt 4.5.90 (the fixture is older than the release); not replayed.
DRIFTED = {
    ("kucoinfutures", "Fetch order by client order id"),  # 4.5.90 calls /api/v1/orders/byClientOid
    ("okx", "create a trailinPrice order to close a long position"),  # trailing stops are not used here
}


class Recorder:
    """Stands in for ``Exchange.fetch``: records each request and answers from a queue (or stops the call)."""

    class Stop(Exception):
        pass

    def __init__(self, responses=()):
        self.calls: list[dict] = []
        self.responses = list(responses)

    async def __call__(self, url, method="GET", headers=None, body=None):
        self.calls.append({"url": url, "method": method, "headers": dict(headers or {}), "body": body})
        if not self.responses:
            raise Recorder.Stop(url)
        response = self.responses.pop(0)
        if isinstance(response, BaseException):
            raise response
        return response


def exchange(exchange_id: str, recorder: Recorder):
    ex = ccxt_exchange(exchange_id, api_key=KEY, secret=SECRET, passphrase=PASSPHRASE)
    ex.set_markets(MARKETS[exchange_id])
    ex.options["uta"] = False  # KuCoin: classic futures account (4.5.90 otherwise first asks /api/ua/v1/account/mode)
    ex.fetch = recorder
    return ex


def run(coroutine):
    return asyncio.run(coroutine)


def without(value, skip: set):
    if isinstance(value, dict):
        return {k: without(v, skip) for k, v in value.items() if k not in skip}
    if isinstance(value, list):
        return [without(v, skip) for v in value]
    return value


def request_cases():
    for exchange_id in ("okx", "kucoinfutures", "mexc"):
        data = json.loads((FIXTURES / "request" / f"{exchange_id}.json").read_text())
        for method, cases in data["methods"].items():
            for case in cases:
                if (exchange_id, case["description"]) in DRIFTED:
                    continue
                yield pytest.param(
                    exchange_id,
                    method,
                    case,
                    set(data.get("skipKeys", [])),
                    id=f"{exchange_id}-{method}-{case['description'][:40]}",
                )


@pytest.mark.parametrize(("exchange_id", "method", "case", "skip_keys"), list(request_cases()))
def test_ccxt_builds_the_recorded_request(exchange_id, method, case, skip_keys):
    recorder = Recorder()

    async def call():
        ex = exchange(exchange_id, recorder)
        try:
            await getattr(ex, method)(*case["input"])  # ccxt keeps camelCase aliases of its methods
        except Recorder.Stop:
            pass
        finally:
            await ex.close()

    run(call())
    assert recorder.calls, "no request was made"
    sent = recorder.calls[0]
    got, want = urlsplit(sent["url"]), urlsplit(case["url"])
    assert (got.scheme, got.netloc, got.path) == (want.scheme, want.netloc, want.path)
    ignore = skip_keys | {"timestamp", "signature", "recvWindow"}
    assert without(parse_qs(got.query), ignore) == without(parse_qs(want.query), ignore)
    if case.get("output") is not None:
        expected = json.loads(case["output"]) if isinstance(case["output"], str) else case["output"]
        assert without(json.loads(sent["body"]), skip_keys) == without(expected, skip_keys)


# --- signing: recomputed independently from the recorded headers --------------------------------------------------
def _first_call(exchange_id: str, method: str, *args) -> dict:
    recorder = Recorder()

    async def call():
        ex = exchange(exchange_id, recorder)
        try:
            await getattr(ex, method)(*args)
        except Recorder.Stop:
            pass
        finally:
            await ex.close()

    run(call())
    return recorder.calls[0]


def _b64_hmac(message: str) -> str:
    return base64.b64encode(hmac.new(SECRET.encode(), message.encode(), hashlib.sha256).digest()).decode()


def test_okx_signature():
    sent = _first_call("okx", "set_leverage", 5, "LTC/USDT:USDT")
    headers, url = sent["headers"], urlsplit(sent["url"])
    assert headers["OK-ACCESS-KEY"] == KEY and headers["OK-ACCESS-PASSPHRASE"] == PASSPHRASE
    payload = headers["OK-ACCESS-TIMESTAMP"] + "POST" + url.path + sent["body"]
    assert headers["OK-ACCESS-SIGN"] == _b64_hmac(payload)


def test_kucoin_futures_signature_and_passphrase():
    sent = _first_call("kucoinfutures", "cancel_order", "126611245292855296")
    headers, url = sent["headers"], urlsplit(sent["url"])
    assert headers["KC-API-KEY"] == KEY and headers["KC-API-KEY-VERSION"] == "2"
    assert headers["KC-API-PASSPHRASE"] == _b64_hmac(PASSPHRASE)  # v2 keys: the passphrase is HMAC'd
    assert headers["KC-API-SIGN"] == _b64_hmac(headers["KC-API-TIMESTAMP"] + "DELETE" + url.path)


def test_mexc_contract_signature():
    sent = _first_call("mexc", "cancel_order", "129402018493145088", "LTC/USDT:USDT")
    headers = sent["headers"]
    expected = hmac.new(
        SECRET.encode(), (KEY + headers["Request-Time"] + sent["body"]).encode(), hashlib.sha256
    ).hexdigest()
    assert headers["ApiKey"] == KEY and headers["Signature"] == expected


# --- our client's orders through the real classes ------------------------------------------------------------------
def _client_create(exchange_id: str, request: OrderRequest, response) -> tuple[dict, object]:
    recorder = Recorder([response])

    async def call():
        client = CcxtExchangeClient(exchange_id, exchange=exchange(exchange_id, recorder))
        try:
            return await client.create_order(request)
        finally:
            await client.close()

    result = run(call())
    return recorder.calls[0], result


def test_okx_stop_loss_is_a_reduce_only_conditional_algo_order_with_our_client_id():
    request = OrderRequest(
        symbol="ETH/USDT:USDT",
        side="sell",
        type="stop_market",
        quantity=Decimal("0.35"),
        client_order_id="P12U7Lsl",
        trigger_price=Decimal("1999.996"),
    )
    response = {
        "code": "0",
        "data": [{"algoClOrdId": "P12U7Lsl", "algoId": "2896574163517353984", "clOrdId": "", "sCode": "0", "sMsg": ""}],
        "msg": "",
    }
    sent, result = _client_create("okx", request, response)
    body = json.loads(sent["body"])
    assert urlsplit(sent["url"]).path == "/api/v5/trade/order-algo"
    assert body["ordType"] == "conditional" and body["slTriggerPx"] == "2000" and body["slOrdPx"] == "-1"
    assert body["sz"] == "3.5"  # 0.35 ETH / 0.1 ETH per contract
    assert body["algoClOrdId"] == "P12U7Lsl" and body["reduceOnly"] is True and body["tdMode"] == "isolated"
    assert (
        result.exchange_order_id == "2896574163517353984"
        and result.client_order_id == "P12U7Lsl"
        and result.type == "stop_market"
    )


def test_okx_market_entry_rounds_down_to_the_lot_in_contracts():
    request = OrderRequest(
        symbol="BTC/USDT:USDT",
        side="buy",
        type="market",
        quantity=Decimal("0.012345"),
        client_order_id="P12U7Lentry",
        leverage=5,
    )
    response = {
        "code": "0",
        "data": [
            {
                "clOrdId": "P12U7Lentry",
                "ordId": "2896576259728695296",
                "sCode": "0",
                "sMsg": "Order placed",
                "tag": "",
                "ts": "1758827099512",
            }
        ],
        "msg": "",
    }
    sent, result = _client_create("okx", request, response)
    body = json.loads(sent["body"])[0]
    assert urlsplit(sent["url"]).path == "/api/v5/trade/batch-orders"
    assert body["sz"] == "1.23" and body["clOrdId"] == "P12U7Lentry" and body["ordType"] == "market"
    assert result.exchange_order_id == "2896576259728695296"


def test_kucoin_stop_loss_uses_stop_down_reduce_only_and_client_oid():
    request = OrderRequest(
        symbol="LTC/USDT:USDT",
        side="sell",
        type="stop_market",
        quantity=Decimal("2.37"),
        client_order_id="P12U7Lsl",
        trigger_price=Decimal("65.123"),
        leverage=5,
    )
    sent, result = _client_create(
        "kucoinfutures", request, {"code": "200000", "data": {"orderId": "234125150956625920", "clientOid": "P12U7Lsl"}}
    )
    body = json.loads(sent["body"])
    assert urlsplit(sent["url"]).path == "/api/v1/orders"  # 4.5.90 routes a stopPrice order here with stop/stopPrice
    assert (body["stop"], body["stopPrice"], body["reduceOnly"]) == ("down", "65.12", True)
    assert (
        body["size"] == 23
        and body["clientOid"] == "P12U7Lsl"
        and body["leverage"] == 5
        and body["marginMode"] == "ISOLATED"
    )
    assert result.exchange_order_id == "234125150956625920"


def test_mexc_take_profit_is_a_plan_order_triggering_upwards_with_external_oid():
    request = OrderRequest(
        symbol="ADA/USDT:USDT",
        side="sell",
        type="take_profit",
        quantity=Decimal("12"),
        client_order_id="P12U7Ltp1",
        trigger_price=Decimal("0.71234"),
        leverage=5,
    )
    sent, result = _client_create("mexc", request, {"success": True, "code": 0, "data": 259208506303929856})
    body = json.loads(sent["body"])
    assert urlsplit(sent["url"]).path == "/api/v1/private/planorder/place"
    assert body["triggerPrice"] == "0.7123" and body["triggerType"] == 1 and body["orderType"] == 5
    assert body["side"] == 4 and body["vol"] == 12 and body["externalOid"] == "P12U7Ltp1" and body["openType"] == 1
    assert result.exchange_order_id == "259208506303929856"


def test_mexc_stop_of_a_long_triggers_downwards():
    request = OrderRequest(
        symbol="ADA/USDT:USDT",
        side="sell",
        type="stop_market",
        quantity=Decimal("12"),
        client_order_id="P12U7Lsl",
        trigger_price=Decimal("0.5"),
        leverage=5,
    )
    sent, _ = _client_create("mexc", request, {"success": True, "code": 0, "data": 1})
    assert json.loads(sent["body"])["triggerType"] == 2


# --- recorded responses parsed by the real classes and by our client -----------------------------------------------
def response_case(exchange_id: str, method: str, description: str) -> dict:
    data = json.loads((FIXTURES / "response" / f"{exchange_id}.json").read_text())
    return next(c for c in data["methods"][method] if c["description"] == description)


def test_okx_positions_response():
    case = response_case("okx", "fetchPositions", "linear swap position")
    recorder = Recorder([case["httpResponse"]])

    async def call():
        client = CcxtExchangeClient("okx", exchange=exchange("okx", recorder))
        try:
            return await client.fetch_positions(["LTC/USDT:USDT"])
        finally:
            await client.close()

    (position,) = run(call())
    parsed = case["parsedResponse"][0]
    assert position.symbol == parsed["symbol"] == "LTC/USDT:USDT"
    assert position.side == parsed["side"]
    # contracts × OUR market's contract size (1 LTC, as OKX lists LTC-USDT-SWAP; ccxt's static test markets use 0.001)
    assert position.quantity == Decimal(str(parsed["contracts"])) * Decimal("1")
    assert position.entry_price == Decimal(str(parsed["entryPrice"])) == Decimal("68.24")
    assert position.leverage == Decimal("3")


def test_okx_trigger_open_orders_response_keeps_the_algo_client_id():
    case = response_case("okx", "fetchOpenOrders", "fetchOpenOrders trigger with since = 0")
    recorder = Recorder([case["httpResponse"]])

    async def call():
        ex = exchange("okx", recorder)
        try:
            return await ex.fetch_open_orders(*case["input"])
        finally:
            await ex.close()

    raw = run(call())
    assert [(o["id"], o["clientOrderId"], o["triggerPrice"]) for o in raw] == [
        (o["id"], o["clientOrderId"], o["triggerPrice"]) for o in case["parsedResponse"]
    ]
    ours = CcxtExchangeClient("okx", exchange=exchange("okx", Recorder())).parse_order(raw[0], MARKETS["okx"][0])
    assert ours.client_order_id == "e847386590ce4dBC510e616e0438b78a" and ours.is_trigger
    assert ours.trigger_price == Decimal(str(case["parsedResponse"][0]["stopLossPrice"]))  # ccxt: stopLossPrice 100


def test_okx_balance_response():
    case = response_case("okx", "fetchBalance", "spot balance")
    recorder = Recorder([case["httpResponse"]])

    async def call():
        client = CcxtExchangeClient("okx", exchange=exchange("okx", recorder))
        try:
            return await client.fetch_balance("USDT")
        finally:
            await client.close()

    balance = run(call())
    parsed = case["parsedResponse"]["USDT"]
    assert (balance.free, balance.used, balance.total) == tuple(
        Decimal(str(parsed[k])) for k in ("free", "used", "total")
    )


def test_kucoin_filled_reduce_only_order_response():
    case = response_case("kucoinfutures", "fetchOrder", "market reduceOnly order")
    recorder = Recorder([case["httpResponse"]])

    async def call():
        client = CcxtExchangeClient("kucoinfutures", exchange=exchange("kucoinfutures", recorder))
        try:
            return await client.fetch_order(symbol="LTC/USDT:USDT", exchange_order_id=case["input"][0])
        finally:
            await client.close()

    order = run(call())
    parsed = case["parsedResponse"]
    assert order.exchange_order_id == parsed["id"] and order.client_order_id == parsed["clientOrderId"]
    assert order.status == "closed" == parsed["status"]
    assert order.filled_quantity == Decimal(str(parsed["filled"])) * Decimal("0.1")  # contracts × 0.1 LTC
    assert order.average_price == Decimal(str(parsed["average"]))


def test_kucoin_open_orders_response_matches_ccxt_parsed_fixture():
    case = response_case("kucoinfutures", "fetchOpenOrders", "Fetch open orders")
    recorder = Recorder([case["httpResponse"], {"code": "200000", "data": {"items": []}}])

    async def call():
        client = CcxtExchangeClient("kucoinfutures", exchange=exchange("kucoinfutures", recorder))
        try:
            return await client.fetch_open_orders("LTC/USDT:USDT")
        finally:
            await client.close()

    (order,) = run(call())
    parsed = case["parsedResponse"][0]
    assert (order.exchange_order_id, order.client_order_id, order.side, order.status) == (
        parsed["id"],
        parsed["clientOrderId"],
        parsed["side"],
        "open",
    )
    assert order.price == Decimal(str(parsed["price"])) and order.quantity == Decimal(str(parsed["amount"])) * Decimal(
        "0.1"
    )
    assert urlsplit(recorder.calls[1]["url"]).path == "/api/v1/stopOrders"  # trigger orders are listed too


# --- errors ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (ccxt.RequestTimeout("timed out"), RetryableExchangeError),
        (ccxt.DDoSProtection("429"), RetryableExchangeError),
        (ccxt.ExchangeNotAvailable("502"), RetryableExchangeError),
        (ccxt.AuthenticationError(f"okx {{'msg': 'Invalid OK-ACCESS-KEY {KEY}xyz'}}"), AuthenticationFailed),
        (ccxt.InsufficientFunds("okx 51008 Insufficient margin"), InsufficientBalance),
        (ccxt.InvalidOrder('okx {"sCode":"51016","sMsg":"Duplicated clOrdId"}'), DuplicateClientOrderId),
    ],
)
def test_ccxt_errors_are_mapped_and_redacted(raised, expected):
    client = CcxtExchangeClient(
        "okx", api_key="AKsecret-9f8e", secret="S3cr3t-value", exchange=exchange("okx", Recorder([raised]))
    )
    client._secrets = ("AKsecret-9f8e", "S3cr3t-value", KEY + "xyz")

    async def call():
        try:
            return await client.fetch_balance()
        finally:
            await client.close()

    with pytest.raises(expected) as info:
        run(call())
    assert KEY + "xyz" not in str(info.value)


# --- looking an order up after a lost answer (the core of "a retry never places twice") -----------------------------
def _client_call(exchange_id: str, responses, method: str, **kwargs):
    recorder = Recorder(responses)

    async def call():
        client = CcxtExchangeClient(exchange_id, exchange=exchange(exchange_id, recorder))
        try:
            return await getattr(client, method)(**kwargs)
        finally:
            await client.close()

    return run(call()), recorder.calls


def test_kucoin_lookup_by_client_oid_parses_the_recorded_order_and_sends_no_trigger_flag():
    case = response_case("kucoinfutures", "fetchOrder", "market reduceOnly order")
    client_id = case["parsedResponse"]["clientOrderId"]
    for trigger in (False, True):
        order, calls = _client_call(
            "kucoinfutures",
            [case["httpResponse"]],
            "fetch_order",
            symbol="LTC/USDT:USDT",
            client_order_id=client_id,
            trigger=trigger,
        )
        url = urlsplit(calls[0]["url"])
        assert url.path == "/api/v1/orders/byClientOid" and parse_qs(url.query) == {"clientOid": [client_id]}
        assert order.client_order_id == client_id and order.exchange_order_id == case["parsedResponse"]["id"]


def test_kucoin_stop_cancel_has_no_trigger_flag_in_the_signed_query():
    _, calls = _client_call(
        "kucoinfutures",
        [{"code": "200000", "data": {"cancelledOrderIds": ["12345"]}}],
        "cancel_order",
        symbol="LTC/USDT:USDT",
        exchange_order_id="12345",
        trigger=True,
    )
    assert calls[0]["method"] == "DELETE" and calls[0]["url"].endswith("/api/v1/orders/12345")


# MEXC's "get order by external oid" answer, shaped as in MEXC's docs / ccxt's mexc.py comment for order/get
MEXC_ORDER = {
    "orderId": "264995729269765120",
    "symbol": "LTC_USDT",
    "positionId": "0",
    "price": "0",
    "vol": "15",
    "leverage": "5",
    "side": "1",
    "category": "1",
    "orderType": "5",
    "dealAvgPrice": "70.5",
    "dealVol": "15",
    "orderMargin": "0",
    "takerFee": "0.0529",
    "makerFee": "0",
    "profit": "0",
    "feeCurrency": "USDT",
    "openType": "1",
    "state": "3",
    "externalOid": "P12U7Lentry",
    "errorCode": "0",
    "usedMargin": "0",
    "createTime": "1648850305236",
    "updateTime": "1648850305245",
    "positionMode": "1",
}


def test_mexc_lookup_by_external_oid_uses_the_documented_endpoint():
    order, calls = _client_call(
        "mexc",
        [{"success": True, "code": 0, "data": MEXC_ORDER}],
        "fetch_order",
        symbol="LTC/USDT:USDT",
        client_order_id="P12U7Lentry",
    )
    assert urlsplit(calls[0]["url"]).path == "/api/v1/private/order/external/LTC_USDT/P12U7Lentry"
    assert order.exchange_order_id == "264995729269765120" and order.client_order_id == "P12U7Lentry"
    assert (
        order.status == "closed" and order.filled_quantity == Decimal("1.5") and order.average_price == Decimal("70.5")
    )  # 15 × 0.1 LTC


def test_mexc_plan_order_is_found_by_its_request_when_the_external_oid_is_not_echoed():
    plan = {
        "id": "5555",
        "symbol": "LTC_USDT",
        "leverage": 5,
        "side": 4,
        "triggerPrice": "65.123",
        "price": "0",
        "vol": "23",
        "openType": 1,
        "triggerType": 2,
        "state": 1,
        "executeCycle": 87600,
        "trend": 1,
        "orderType": 5,
        "errorCode": 0,
        "createTime": 1648850305236,
        "updateTime": 1648850305236,
    }
    request = OrderRequest(
        symbol="LTC/USDT:USDT",
        side="sell",
        type="stop_market",
        quantity=Decimal("2.3"),
        client_order_id="P12U7Lsl",
        trigger_price=Decimal("65.123"),
    )
    order, calls = _client_call(
        "mexc",
        [{"success": True, "code": 0, "data": [plan]}],
        "fetch_order",
        symbol="LTC/USDT:USDT",
        client_order_id="P12U7Lsl",
        trigger=True,
        request=request,
    )
    assert urlsplit(calls[0]["url"]).path == "/api/v1/private/planorder/list/orders"
    assert (
        order is not None
        and order.exchange_order_id == "5555"
        and order.client_order_id == "P12U7Lsl"
        and order.type == "stop_market"
    )
    other = OrderRequest(
        symbol="LTC/USDT:USDT",
        side="sell",
        type="stop_market",
        quantity=Decimal("2.3"),
        client_order_id="P12U7Lsl",
        trigger_price=Decimal("60"),
    )
    missing, _ = _client_call(
        "mexc",
        [{"success": True, "code": 0, "data": [plan]}],
        "fetch_order",
        symbol="LTC/USDT:USDT",
        client_order_id="P12U7Lsl",
        trigger=True,
        request=other,
    )
    assert missing is None  # never placed: safe to send


def test_okx_lookup_by_client_id_after_a_lost_answer():
    case = response_case("okx", "fetchOpenOrders", "fetchOpenOrders trigger with since = 0")
    algo = case["httpResponse"]["data"][0]
    order, calls = _client_call(
        "okx",
        [{"code": "0", "data": [algo], "msg": ""}],
        "fetch_order",
        symbol="LTC/USDT:USDT",
        client_order_id=algo["algoClOrdId"],
        trigger=True,
    )
    url = urlsplit(calls[0]["url"])
    assert url.path == "/api/v5/trade/order-algo" and parse_qs(url.query)["algoClOrdId"] == [algo["algoClOrdId"]]
    assert order.exchange_order_id == algo["algoId"] and order.status == "open" and order.is_trigger


def test_kucoin_isolated_leverage_is_set_per_order_not_by_set_leverage():
    answer = {"code": "200000", "data": {"symbol": "LTCUSDTM", "marginMode": "ISOLATED"}}
    _, calls = _client_call(
        "kucoinfutures", [answer], "set_leverage", symbol="LTC/USDT:USDT", leverage=5, margin_mode="isolated"
    )
    assert [(c["method"], urlsplit(c["url"]).path) for c in calls] == [("POST", "/api/v2/position/changeMarginMode")]
    assert json.loads(calls[0]["body"]) == {"symbol": "LTCUSDTM", "marginMode": "ISOLATED"}
