"""The Bitunix adapter offline: signing against the documented example, requests against ccxt's recorded Bitunix
request cases (URL, query and body) and parsing against its recorded/documented response bodies.

HTTP goes through ``httpx.MockTransport``: the adapter's real request building, signing and parsing run.
Fixtures: ``fixtures/ccxt_static/{request,response}/bitunix.json`` (ccxt repository, see fixtures/README.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from exchanges import bitunix as bitunix_module
from exchanges.base import OrderRequest
from exchanges.bitunix import BitunixClient, bitunix_sign, compact_json, query_params_for_signature
from exchanges.errors import (
    AuthenticationFailed,
    DuplicateClientOrderId,
    InsufficientBalance,
    OrderNotFoundOnExchange,
    RetryableExchangeError,
)

FIXTURES = Path(__file__).parent / "fixtures" / "ccxt_static"
KEY, SECRET = "bitunix-test-key-0001", "bitunix-test-secret-0002"
BTC = "BTC/USDT:USDT"
PAIRS = {
    "code": 0,
    "data": json.loads((FIXTURES / "response" / "bitunix.json").read_text())["methods"]["fetchMarkets"][0][
        "httpResponse"
    ]["data"],
    "msg": "Success",
}


def case(kind: str, method: str, description: str | None = None) -> dict:
    cases = json.loads((FIXTURES / kind / "bitunix.json").read_text())["methods"][method]
    return cases[0] if description is None else next(c for c in cases if c["description"] == description)


class Recorder:
    """An httpx transport answering from a list (the trading pairs are always served), recording every request."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/market/trading_pairs"):
            return httpx.Response(200, json=PAIRS)
        self.requests.append(request)
        answer = self.answers.pop(0) if self.answers else {"code": 0, "data": {}, "msg": "Success"}
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, json=answer)


@pytest.fixture(autouse=True)
def _fresh_pairs_cache():
    bitunix_module._PAIRS_CACHE.clear()
    yield
    bitunix_module._PAIRS_CACHE.clear()


def call(recorder: Recorder, method: str, *args, **kwargs):
    async def run():
        client = BitunixClient(
            api_key=KEY,
            secret=SECRET,
            transport=httpx.MockTransport(recorder),
            clock=lambda: 1_700_000_000.123,
            nonce=lambda: "n" * 32,
        )
        try:
            return await getattr(client, method)(*args, **kwargs)
        finally:
            await client.close()

    return asyncio.run(run())


def assert_request(sent: httpx.Request, fixture: dict, *, body_subset: bool = False, ignore_body_keys=()):
    got, want = urlsplit(str(sent.url)), urlsplit(fixture["url"])
    assert got.path == want.path
    assert dict(parse_qsl(got.query)) == dict(parse_qsl(want.query))
    if fixture.get("output") is not None:
        expected = json.loads(fixture["output"]) if isinstance(fixture["output"], str) else fixture["output"]
        body = {k: v for k, v in json.loads(sent.content).items() if k not in ignore_body_keys}
        if body_subset:
            assert {k: body[k] for k in expected} == expected
        else:
            assert body == expected


# --- signing ---------------------------------------------------------------------------------------------------------
def test_signature_matches_the_documented_example():
    # openapidoc.bitunix.com/doc/common/sign.html: nonce "123456", timestamp "20241120123045", apiKey "yourApiKey",
    # secretKey "yourSecretKey", queryParams "id1uid200", body {"uid":"2899","arr":[{"id":1,"name":"maple"},...]}
    body = {"uid": "2899", "arr": [{"id": 1, "name": "maple"}, {"id": 2, "name": "lily"}]}
    assert query_params_for_signature({"uid": 200, "id": 1}) == "id1uid200"
    assert compact_json(body) == '{"uid":"2899","arr":[{"id":1,"name":"maple"},{"id":2,"name":"lily"}]}'
    digest = hashlib.sha256(("12345620241120123045yourApiKeyid1uid200" + compact_json(body)).encode()).hexdigest()
    expected = hashlib.sha256((digest + "yourSecretKey").encode()).hexdigest()
    assert (
        bitunix_sign(
            nonce="123456",
            timestamp="20241120123045",
            api_key="yourApiKey",
            secret="yourSecretKey",
            query="id1uid200",
            body=compact_json(body),
        )
        == expected
    )
    assert len(expected) == 64


def test_private_requests_carry_the_documented_headers_and_a_verifiable_sign():
    recorder = Recorder(case("response", "fetchBalance")["httpResponse"])
    call(recorder, "fetch_balance", "USDT")
    sent = recorder.requests[0]
    headers = sent.headers
    assert headers["api-key"] == KEY and headers["nonce"] == "n" * 32 and headers["timestamp"] == "1700000000123"
    assert headers["sign"] == bitunix_sign(
        nonce="n" * 32, timestamp="1700000000123", api_key=KEY, secret=SECRET, query="marginCoinUSDT", body=""
    )
    assert SECRET not in str(sent.url) and SECRET not in "".join(headers.values())


# --- requests against ccxt's recorded Bitunix request cases --------------------------------------------------------------
def test_fetch_balance_request():
    recorder = Recorder(case("response", "fetchBalance")["httpResponse"])
    call(recorder, "fetch_balance", "USDT")
    assert_request(recorder.requests[0], case("request", "fetchBalance"))


def test_limit_order_request_body_and_client_id():
    recorder = Recorder(
        {"code": 0, "data": {"orderId": "11111", "clientId": "P1U2Lentry"}, "msg": "Success"},
        {"code": 0, "data": {}, "msg": "Success"},
    )
    request = OrderRequest(
        symbol=BTC,
        side="buy",
        type="limit",
        quantity=Decimal("0.01"),
        price=Decimal("60000"),
        client_order_id="P1U2Lentry",
    )
    call(recorder, "create_order", request)
    fixture = case("request", "createOrder", "signed limit order request body")
    assert_request(recorder.requests[0], fixture, ignore_body_keys=("clientId",))
    assert json.loads(recorder.requests[0].content)["clientId"] == "P1U2Lentry"
    assert urlsplit(str(recorder.requests[1].url)).path.endswith("/trade/get_order_detail")  # read back for the fill


def test_market_reduce_only_close_is_rounded_down_to_the_pair_precision():
    recorder = Recorder(
        {"code": 0, "data": {"orderId": "1"}, "msg": "Success"}, {"code": 0, "data": {}, "msg": "Success"}
    )
    call(
        recorder,
        "create_order",
        OrderRequest(
            symbol=BTC,
            side="sell",
            type="market",
            quantity=Decimal("0.123456"),
            client_order_id="P1U2Lclose",
            reduce_only=True,
        ),
    )
    body = json.loads(recorder.requests[0].content)
    assert body == {
        "symbol": "BTCUSDT",
        "qty": "0.1234",
        "side": "SELL",
        "orderType": "MARKET",
        "clientId": "P1U2Lclose",
        "reduceOnly": True,
    }


def test_cancel_order_request():
    recorder = Recorder(
        {"code": 0, "data": {"successList": [{"orderId": "123456789"}], "failureList": []}, "msg": "Success"}
    )
    call(recorder, "cancel_order", symbol=BTC, exchange_order_id="123456789")
    assert_request(recorder.requests[0], case("request", "cancelOrder"))


def test_cancel_failure_is_order_not_found():
    answer = {
        "code": 0,
        "data": {
            "successList": [],
            "failureList": [{"orderId": "1", "errorMsg": "Order status error", "errorCode": 10013}],
        },
        "msg": "Success",
    }
    with pytest.raises(OrderNotFoundOnExchange):
        call(Recorder(answer), "cancel_order", symbol=BTC, exchange_order_id="1")


def test_fetch_order_request():
    recorder = Recorder({"code": 0, "data": case("response", "parseOrder")["input"][0], "msg": "Success"})
    call(recorder, "fetch_order", symbol=BTC, exchange_order_id="123456789")
    assert_request(recorder.requests[0], case("request", "fetchOrder"))


def test_fetch_open_orders_request_lists_tp_sl_orders_too():
    recorder = Recorder(
        {"code": 0, "data": {"orderList": []}, "msg": "Success"}, {"code": 0, "data": [], "msg": "Success"}
    )
    call(recorder, "fetch_open_orders", BTC)
    assert_request(recorder.requests[0], case("request", "fetchOpenOrders"))
    assert urlsplit(str(recorder.requests[1].url)).path == "/api/v1/futures/tpsl/get_pending_orders"


@pytest.mark.parametrize(
    "description",
    ["signed pending positions request for one symbol", "signed pending positions request for all symbols"],
)
def test_fetch_positions_requests(description):
    fixture = case("request", "fetchPositions", description)
    recorder = Recorder({"code": 0, "data": [], "msg": "Success"})
    call(recorder, "fetch_positions", *fixture["input"])
    assert_request(recorder.requests[0], fixture)


def test_set_leverage_sets_one_way_isolated_margin_then_leverage():
    recorder = Recorder()
    call(recorder, "set_leverage", BTC, 10, "isolated")
    paths = [urlsplit(str(r.url)).path.rsplit("/", 1)[-1] for r in recorder.requests]
    assert paths == ["change_position_mode", "change_margin_mode", "change_leverage"]
    assert json.loads(recorder.requests[0].content) == {"positionMode": "ONE_WAY"}  # cf. the recorded HEDGE case
    assert_request(recorder.requests[1], case("request", "setMarginMode", "maps unified isolated to Bitunix ISOLATION"))
    assert_request(recorder.requests[2], case("request", "setLeverage"))


def test_stop_loss_is_a_tpsl_order_on_the_position():
    positions = {"code": 0, "data": [case("response", "parsePosition")["input"][0]], "msg": "Success"}
    recorder = Recorder(positions, {"code": 0, "data": {"orderId": "11111"}, "msg": "Success"})
    request = OrderRequest(
        symbol=BTC,
        side="sell",
        type="stop_market",
        quantity=Decimal("0.5"),
        client_order_id="P1U2Lsl",
        trigger_price=Decimal("58000.04"),
        reduce_only=True,
    )
    result = call(recorder, "create_order", request)
    assert urlsplit(str(recorder.requests[1].url)).path == "/api/v1/futures/tpsl/place_order"
    assert json.loads(recorder.requests[1].content) == {
        "symbol": "BTCUSDT",
        "positionId": "12345678",
        "slPrice": "58000",
        "slStopType": "LAST_PRICE",
        "slOrderType": "MARKET",
        "slQty": "0.5",
    }
    assert (result.exchange_order_id, result.client_order_id, result.type, result.status) == (
        "11111",
        "P1U2Lsl",
        "stop_market",
        "open",
    )


def test_tpsl_order_sent_before_a_lost_answer_is_found_by_its_request():
    pending = {
        "code": 0,
        "data": [
            {
                "id": "777",
                "positionId": "12345678",
                "symbol": "BTCUSDT",
                "slPrice": "58000",
                "slStopType": "LAST_PRICE",
                "slQty": "0.5",
            }
        ],
        "msg": "Success",
    }
    request = OrderRequest(
        symbol=BTC,
        side="sell",
        type="stop_market",
        quantity=Decimal("0.5"),
        client_order_id="P1U2Lsl",
        trigger_price=Decimal("58000"),
        reduce_only=True,
    )
    found = call(Recorder(pending), "fetch_order", symbol=BTC, client_order_id="P1U2Lsl", trigger=True, request=request)
    assert found is not None and found.exchange_order_id == "777" and found.client_order_id == "P1U2Lsl"
    other = OrderRequest(
        symbol=BTC,
        side="sell",
        type="take_profit",
        quantity=Decimal("0.5"),
        client_order_id="P1U2Ltp1",
        trigger_price=Decimal("58000"),
        reduce_only=True,
    )
    assert (
        call(Recorder(pending), "fetch_order", symbol=BTC, client_order_id="P1U2Ltp1", trigger=True, request=other)
        is None
    )


# --- recorded / documented responses -------------------------------------------------------------------------------------
def test_balance_response_matches_ccxt_parsed():
    fixture = case("response", "fetchBalance")
    balance = call(Recorder(fixture["httpResponse"]), "fetch_balance", "USDT")
    parsed = fixture["parsedResponse"]["USDT"]
    assert (balance.free, balance.used, balance.total) == (
        Decimal(str(parsed["free"])),
        Decimal(str(parsed["used"])),
        Decimal(str(parsed["total"])),
    )


def test_market_from_trading_pairs_matches_ccxt_parsed():
    parsed = case("response", "fetchMarkets")["parsedResponse"][0]
    market = call(Recorder(), "market", BTC)
    assert market.exchange_symbol == parsed["id"] and market.symbol == parsed["symbol"]
    assert market.amount_step == Decimal(str(parsed["precision"]["amount"])) and market.price_tick == Decimal(
        str(parsed["precision"]["price"])
    )
    assert (
        market.min_amount == Decimal(str(parsed["limits"]["amount"]["min"]))
        and market.max_leverage == parsed["limits"]["leverage"]["max"]
    )


def test_partial_fill_order_response_matches_ccxt_parsed_with_its_fill_from_the_trade_history():
    fixture = case("response", "parseOrder")
    trade = case("response", "parseTrade")["input"][0]  # the documented trade row of order 11111
    trades = {
        "code": 0,
        "data": {
            "tradeList": [
                {**trade, "qty": "0.2"},
                {**trade, "tradeId": "124", "qty": "0.3", "price": "60100"},
                {**trade, "tradeId": "125", "orderId": "99999", "price": "1"},
            ]
        },
        "msg": "Success",
    }
    recorder = Recorder({"code": 0, "data": fixture["input"][0], "msg": "Success"}, trades)
    order = call(recorder, "fetch_order", symbol=BTC, exchange_order_id="11111")
    parsed = fixture["parsedResponse"]
    assert (order.exchange_order_id, order.client_order_id, order.symbol, order.side, order.type, order.status) == (
        parsed["id"],
        parsed["clientOrderId"],
        parsed["symbol"],
        parsed["side"],
        parsed["type"],
        parsed["status"],
    )
    assert order.quantity == Decimal(str(parsed["amount"])) and order.filled_quantity == Decimal(str(parsed["filled"]))
    assert order.price == Decimal(str(parsed["price"]))  # the limit, never taken as the fill price
    assert parsed["average"] is None  # the order itself has no average price ...
    assert order.average_price == Decimal("60060")  # ... its fill is the weighted average of its own trades
    assert order.fee == Decimal("0.02")  # the trades' fees (0.01 each) over the order's own 0.01
    assert recorder.requests[1].url.path.endswith("/trade/get_history_trades")
    assert dict(recorder.requests[1].url.params) == {"symbol": "BTCUSDT", "orderId": "11111", "limit": "100"}


@pytest.mark.parametrize(
    ("method", "index"), [("fetchClosedOrders", 0), ("fetchCanceledOrders", 0), ("fetchCanceledOrders", 1)]
)
def test_history_order_statuses_match_ccxt_parsed(method, index):
    fixture = json.loads((FIXTURES / "response" / "bitunix.json").read_text())["methods"][method][index]
    row = fixture["httpResponse"]["data"]["orderList"][0]
    order = BitunixClient.parse_order(row)
    parsed = fixture["parsedResponse"][0]
    assert order.status == parsed["status"] and order.filled_quantity == Decimal(str(parsed["filled"]))


def test_position_response_matches_ccxt_parsed():
    fixture = case("response", "parsePosition")
    (position,) = call(Recorder({"code": 0, "data": [fixture["input"][0]], "msg": "Success"}), "fetch_positions", [BTC])
    parsed = fixture["parsedResponse"]
    assert (position.symbol, position.side, position.position_id) == (parsed["symbol"], parsed["side"], parsed["id"])
    assert position.quantity == Decimal(str(parsed["contracts"])) and position.entry_price == Decimal(
        str(parsed["entryPrice"])
    )
    assert position.unrealised_pnl == Decimal(str(parsed["unrealizedPnl"])) and position.leverage == Decimal(
        str(parsed["leverage"])
    )
    assert position.realised_pnl == Decimal("102.9")


# --- errors --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (httpx.Response(429, text="Too Many Requests"), RetryableExchangeError),
        (httpx.Response(502, text="Bad Gateway"), RetryableExchangeError),
        (httpx.ReadTimeout("timed out"), RetryableExchangeError),
        (httpx.ConnectError("refused"), RetryableExchangeError),
        ({"code": 10007, "data": None, "msg": "Signature Error"}, AuthenticationFailed),
        ({"code": 20003, "data": None, "msg": "Insufficient balance"}, InsufficientBalance),
        (httpx.Response(401, text=f"bad key {KEY}"), AuthenticationFailed),
        ({"code": 10008, "data": None, "msg": "Duplicate clientId"}, DuplicateClientOrderId),
    ],
)
def test_errors_are_mapped_and_never_carry_keys(answer, expected):
    with pytest.raises(expected) as info:
        call(Recorder(answer), "fetch_balance", "USDT")
    assert KEY not in str(info.value) and SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, "open"),
        ("TRIGGERED", "closed"),
        ("TRIGGER_SUCCESS", "closed"),
        ("CANCELED", "canceled"),
        ("EXPIRED_BY_SYSTEM", "canceled"),
    ],
)
def test_tpsl_rows_pending_or_history(status, expected):
    row = {
        "id": "1",
        "positionId": "2",
        "symbol": "BTCUSDT",
        "slPrice": "58000",
        "slQty": "0.5",
        **({"status": status} if status else {}),
    }
    (order,) = BitunixClient.parse_tpsl(row)
    assert order.status == expected and order.type == "stop_market" and order.trigger_price == Decimal("58000")
    assert order.filled_quantity == (Decimal("0.5") if expected == "closed" else Decimal("0"))
