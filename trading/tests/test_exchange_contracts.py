"""Contract suite: the same scenarios through every exchange adapter, checked against recorded real traffic.

Each adapter runs for real — ccxt's own classes build and sign the OKX, KuCoin Futures and MEXC requests, the Bitunix
client signs over real HTTP — against the stand-in of its exchange, which checks every signature and answers in the
recorded shapes (missing average price, string prices, two id fields). For each scenario the request the adapter sent
is compared with the recorded real request of the same operation (``fixtures/ccxt_static/request``, see the README
there): same endpoint, and every parameter the real request carries is carried too (minus the ones named as not used
here, e.g. hedge-mode ``posSide``). The parsed answers are checked against the exchange's state.

Scenarios: balance, entry, stop, take-profit, fetch by client id, positions, cancel, duplicate client id, partial fill.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from exchanges import SyncExchangeClient
from exchanges import bitunix as bitunix_module
from exchanges.base import OrderRequest
from exchanges.clients import exchange_client_build
from exchanges.errors import DuplicateClientOrderId
from testsupport.exchanges.bitunix_fake import BitunixFakeServer
from testsupport.exchanges.kucoin_fake import KucoinFetchFake
from testsupport.exchanges.mexc_fake import MexcFetchFake
from testsupport.exchanges.okx_fake import OkxFetchFake
from trading.tests.live_fixtures import ccxt_fake_install

FIXTURES = Path(__file__).parent / "fixtures" / "ccxt_static" / "request"
KEY, SECRET, PASSPHRASE = "contract-key-0001", "contract-secret-0002", "contract-pass"


def recorded(exchange: str, method: str, description: str) -> dict:
    cases = json.loads((FIXTURES / f"{exchange}.json").read_text())["methods"][method]
    return next(c for c in cases if c["description"] == description)


def recorded_keys(case: dict) -> set[str]:
    body = case.get("output")
    if isinstance(body, str):
        body = json.loads(body)
    if isinstance(body, list):
        body = body[0] if body and isinstance(body[0], dict) else {}
    return set(body or {})


@dataclass
class Venue:
    """One exchange in the suite: its adapter (through the real client factory) and its stand-in."""

    exchange: str
    symbol: str
    price: Decimal
    quantity: Decimal  # base units, whole contracts
    fake: object
    # (scenario) -> (recorded method, recorded description, keys of the recording we do not send, extra keys we send)
    contracts: dict[str, tuple[str, str, set[str], set[str]]] = field(default_factory=dict)

    @property
    def account(self):
        return self.fake.account

    def client(self) -> SyncExchangeClient:
        return SyncExchangeClient(
            exchange_client_build(exchange=self.exchange, api_key=KEY, secret=SECRET, passphrase=PASSPHRASE)
        )

    def requests(self, path: str) -> list:
        return self.fake.requests_to(path)


OKX_CONTRACTS = {
    "entry": ("createOrder", "Swap market buy with posSide = long", {"posSide", "tag"}, {"clOrdId"}),
    "stop": (
        "createOrder",
        "Swap limit sell with stopLossPrice and posSide = long.",
        {"posSide", "tag", "clOrdId"},
        {"algoClOrdId", "reduceOnly"},
    ),
    "take_profit": (
        "createOrder",
        "Swap limit sell with takeProfitPrice and posSide = long.",
        {"posSide", "tag", "clOrdId"},
        {"algoClOrdId", "reduceOnly"},
    ),
    "cancel": ("cancelOrder", "Swap cancel order", set(), set()),
    "fetch": ("fetchOrder", "Swap fetch order", set(), set()),
    "positions": ("fetchPositions", "Fetch positions with no arguments", set(), set()),
    "balance": ("fetchBalance", "spot balance", set(), set()),
}
KUCOIN_CONTRACTS = {
    "entry": ("createOrder", "Swap market buy", set(), {"marginMode"}),
    "cancel": ("cancelOrder", "cancel order", set(), set()),
    "cancel_by_client_id": ("cancelOrder", "Cancel order with clientOrderId", set(), set()),
    "positions": ("fetchPositions", "Fetch linear position", set(), set()),
}
MEXC_CONTRACTS = {
    "entry": ("createOrder", "place swap order", set(), {"externalOid", "leverage"}),
    # reduce-only is MEXC's side 4 (close long), not a key
    "stop": ("createOrder", "Swap limit sell - stop order", {"price", "trend", "executeCycle"}, {"externalOid"}),
    "take_profit": ("createOrder", "Swap limit sell - stop order", {"price", "trend", "executeCycle"}, {"externalOid"}),
    "cancel": ("cancelOrder", "Cancel swap orders", set(), set()),
    "positions": ("fetchPositions", "Fetch linear position", set(), set()),
    "balance": ("fetchBalance", "Fetch swap Balance", set(), set()),
}
BITUNIX_CONTRACTS = {
    "entry": ("createOrder", "signed limit order request body", {"price", "effect"}, {"clientId"}),
    "cancel": ("cancelOrder", "signed cancel order request body", set(), set()),
    "fetch": ("fetchOrder", "omits unified symbol from order detail request", set(), set()),
    "positions": ("fetchPositions", "signed pending positions request for one symbol", set(), set()),
    "balance": ("fetchBalance", "signed account balance request", set(), set()),
}
# the endpoint of a recorded request, as the stand-in logs it (the path; MEXC/KuCoin order ids stripped)
PATHS = {
    ("kucoinfutures", "cancel"): "/api/v1/orders/",
    ("kucoinfutures", "cancel_by_client_id"): "/api/v1/orders/client-order/",
}


@pytest.fixture(params=["okx", "kucoinfutures", "mexc", "bitunix"])
def venue(request, settings, monkeypatch):
    exchange = request.param
    settings.LIVE_RECONCILE_SUBMITTED_GRACE_SECONDS = 0
    if exchange == "bitunix":
        bitunix_module._PAIRS_CACHE.clear()
        with BitunixFakeServer(api_key=KEY, secret=SECRET) as server:
            settings.LIVE_EXCHANGE_CLIENT = "real"
            settings.BITUNIX_BASE_URL = server.url
            settings.LIVE_HTTP_TIMEOUT_SECONDS = 2.0
            server.account.set_price("BTC/USDT:USDT", "100")
            yield Venue("bitunix", "BTC/USDT:USDT", Decimal("100"), Decimal("1.5"), server, BITUNIX_CONTRACTS)
        bitunix_module._PAIRS_CACHE.clear()
        return
    if exchange == "okx":
        fake, symbol, price, quantity, contracts = (
            OkxFetchFake(api_key=KEY, secret=SECRET, passphrase=PASSPHRASE),
            "BTC/USDT:USDT",
            "100",
            "1.5",
            OKX_CONTRACTS,
        )
    elif exchange == "kucoinfutures":
        fake, symbol, price, quantity, contracts = (
            KucoinFetchFake(api_key=KEY, secret=SECRET, passphrase=PASSPHRASE),
            "BTC/USDT:USDT",
            "100",
            "1.5",
            KUCOIN_CONTRACTS,
        )
    else:
        fake, symbol, price, quantity, contracts = (
            MexcFetchFake(api_key=KEY, secret=SECRET),
            "ETH/USDT:USDT",
            "2000",
            "0.5",
            MEXC_CONTRACTS,
        )
    fake.account.set_price(symbol, price)
    ccxt_fake_install(settings=settings, monkeypatch=monkeypatch, fake=fake)
    yield Venue(exchange, symbol, Decimal(price), Decimal(quantity), fake, contracts)


def check_request(venue: Venue, scenario: str, sent: list) -> None:
    """The adapter's request of ``scenario`` matches the recorded real request of the same operation."""
    if scenario not in venue.contracts:
        return
    method, description, not_used, ours = venue.contracts[scenario]
    case = recorded(venue.exchange, method, description)
    path = PATHS.get((venue.exchange, scenario)) or urlsplit(case["url"]).path
    writes = scenario in (
        "entry",
        "stop",
        "take_profit",
        "cancel",
        "cancel_by_client_id",
    )  # compare what we POSTed/DELETEd, not a read-back
    matching = [
        payload for m, p, payload in sent if (p.startswith(path) or p.endswith(path)) and (m != "GET") == writes
    ]
    assert matching, f"{venue.exchange} {scenario}: no request to {path} (sent {[p for _m, p, _ in sent]})"
    body = matching[-1]
    if isinstance(body, list):
        body = body[0] if body and isinstance(body[0], dict) else {}
    keys = set(body or {}) if isinstance(body, dict) else set()
    if case.get("output") is not None and isinstance(body, dict):
        missing = recorded_keys(case) - not_used - keys
        assert not missing, (
            f"{venue.exchange} {scenario}: the recorded request carries {sorted(missing)}, ours does not"
        )
        assert ours <= keys, f"{venue.exchange} {scenario}: ours must carry {sorted(ours - keys)}"


def sent_since(venue: Venue, start: int) -> list:
    log = venue.fake.requests
    return [(m, p, payload) for m, p, payload in log[start:]]


def scenario(venue: Venue, name: str, call):
    start = len(venue.fake.requests)
    with venue.client() as client:
        result = call(client)
    check_request(venue, name, sent_since(venue, start))
    return result


def entry_request(venue: Venue, cid: str = "P1U1Lentry", **kwargs) -> OrderRequest:
    return OrderRequest(
        symbol=venue.symbol,
        side="buy",
        type="market",
        quantity=venue.quantity,
        client_order_id=cid,
        leverage=5,
        **kwargs,
    )


def trigger_request(venue: Venue, kind: str, trigger: Decimal, cid: str) -> OrderRequest:
    return OrderRequest(
        symbol=venue.symbol,
        side="sell",
        type=kind,
        quantity=venue.quantity,
        client_order_id=cid,
        trigger_price=trigger,
        reduce_only=True,
        leverage=5,
    )


def test_balance(venue):
    balance = scenario(venue, "balance", lambda c: c.fetch_balance("USDT"))
    assert balance.currency == "USDT" and balance.total == venue.account.balance and balance.free <= balance.total


def test_entry_fills_at_the_exchanges_price_and_reads_back_by_client_id(venue):
    result = scenario(venue, "entry", lambda c: c.create_order(entry_request(venue)))
    assert (
        result.status == "closed" and result.filled_quantity == venue.quantity and result.average_price == venue.price
    )
    found = scenario(venue, "fetch", lambda c: c.fetch_order(symbol=venue.symbol, client_order_id="P1U1Lentry"))
    assert (found.exchange_order_id, found.client_order_id, found.filled_quantity, found.average_price) == (
        result.exchange_order_id,
        "P1U1Lentry",
        venue.quantity,
        venue.price,
    )


@pytest.mark.parametrize(("kind", "offset"), [("stop_market", Decimal("-0.05")), ("take_profit", Decimal("0.05"))])
def test_stop_and_take_profit_are_reduce_only_triggers_found_again(venue, kind, offset):
    with venue.client() as client:
        client.set_leverage(venue.symbol, 5, "isolated")
        client.create_order(entry_request(venue))
    trigger = venue.price * (1 + offset)
    cid = "P1U1Lsl" if kind == "stop_market" else "P1U1Ltp1"
    request = trigger_request(venue, kind, trigger, cid)
    placed = scenario(venue, "stop" if kind == "stop_market" else "take_profit", lambda c: c.create_order(request))
    assert placed.status == "open" and placed.is_trigger and placed.trigger_price == trigger
    with venue.client() as client:
        found = client.fetch_order(symbol=venue.symbol, client_order_id=cid, trigger=True, request=request)
        listed = [o for o in client.fetch_open_orders(venue.symbol) if o.is_trigger]
    assert found is not None and found.exchange_order_id == placed.exchange_order_id and found.type == kind
    assert [o.exchange_order_id for o in listed] == [placed.exchange_order_id]
    assert [o.result.reduce_only for o in venue.account.orders.values() if o.result.is_trigger] == [True]


def test_positions(venue):
    with venue.client() as client:
        client.create_order(entry_request(venue))
    (position,) = scenario(venue, "positions", lambda c: c.fetch_positions(None))
    assert (position.symbol, position.side, position.quantity, position.entry_price) == (
        venue.symbol,
        "long",
        venue.quantity,
        venue.price,
    )


def test_cancel_a_resting_order_by_id_and_by_client_id(venue):
    limit = venue.price * Decimal("0.9")
    with venue.client() as client:
        first = client.create_order(
            OrderRequest(
                symbol=venue.symbol,
                side="buy",
                type="limit",
                quantity=venue.quantity,
                price=limit,
                client_order_id="P2U1Lentry",
                leverage=5,
            )
        )
        second = client.create_order(
            OrderRequest(
                symbol=venue.symbol,
                side="buy",
                type="limit",
                quantity=venue.quantity,
                price=limit,
                client_order_id="P3U1Lentry",
                leverage=5,
            )
        )
    assert first.status == second.status == "open" and first.filled_quantity == 0
    scenario(venue, "cancel", lambda c: c.cancel_order(symbol=venue.symbol, exchange_order_id=first.exchange_order_id))
    scenario(venue, "cancel_by_client_id", lambda c: c.cancel_order(symbol=venue.symbol, client_order_id="P3U1Lentry"))
    with venue.client() as client:
        states = [
            client.fetch_order(symbol=venue.symbol, client_order_id=cid).status for cid in ("P2U1Lentry", "P3U1Lentry")
        ]
    assert states == ["canceled", "canceled"]
    assert not any(payload == [None] for _m, _p, payload in venue.fake.requests)  # never a cancel of [null]


def test_duplicate_client_id_is_our_duplicate_error(venue):
    with venue.client() as client:
        client.create_order(entry_request(venue))
        with pytest.raises(DuplicateClientOrderId):
            client.create_order(entry_request(venue))
    assert len([o for o in venue.account.orders.values() if o.result.client_order_id == "P1U1Lentry"]) == 1


def test_partial_fill_reports_the_filled_part_at_its_real_price(venue):
    venue.account.partial_fill_ratio = Decimal("0.4")
    with venue.client() as client:
        result = client.create_order(entry_request(venue))
        assert (
            result.status == "open" and result.filled_quantity < venue.quantity and result.average_price == venue.price
        )
        venue.account.set_price(venue.symbol, venue.price * Decimal("1.01"))  # the rest fills higher
        done = client.fetch_order(symbol=venue.symbol, client_order_id="P1U1Lentry")
    part = result.filled_quantity
    expected = (part * venue.price + (venue.quantity - part) * venue.price * Decimal("1.01")) / venue.quantity
    assert done.status == "closed" and done.filled_quantity == venue.quantity and done.average_price == expected
