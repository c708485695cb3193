"""Regression tests of the real-money safety items, each at its cause, through the real adapters and the fakes that
answer in the recorded real shapes (Bitunix orders without an average price; OKX honouring a sent clOrdId)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.models import ApiSecrets
from accounts.tests.factories import ExchangeCredentialFactory, TelegramUserFactory
from exchanges.base import OrderRequest, to_decimal
from testsupport.exchanges.okx_fake import OkxFetchFake
from trading.executors.live import LiveExecutor
from trading.models import Order, Position
from trading.reconcile import reconcile_user
from trading.tests.live_fixtures import (  # noqa: F401
    BITUNIX_KEY,
    BITUNIX_SECRET,
    SYMBOL,
    account,
    bitunix_fake_server,
    bitunix_user_create,
    ccxt_fake_install,
    fake_exchange,
    live_user,
    make_live_position,
)

pytestmark = pytest.mark.django_db

BX_KEY, BX_SECRET = BITUNIX_KEY, BITUNIX_SECRET
OKX_KEY, OKX_SECRET, OKX_PASS = "okx-key-1a2b3c4d5e6f", "okx-secret-6f5e4d3c2b1a", "okx-pass-99"


def executor(user) -> LiveExecutor:
    return LiveExecutor(user=user, sleep=lambda _seconds: None, fill_poll_attempts=2)


# --- 1. Bitunix fills come from the trade history, never from the order's price ----------------------------------------
@pytest.fixture
def bitunix(settings):
    with bitunix_fake_server(settings) as fake:
        yield fake


@pytest.fixture
def bitunix_user(bitunix):
    return bitunix_user_create()


@pytest.mark.parametrize("price_field", ["0", "market", None])
def test_bitunix_market_fill_is_the_weighted_average_of_its_trades_whatever_the_order_price_says(
    bitunix, bitunix_user, price_field
):
    bitunix.market_order_price = price_field
    bitunix.account.partial_fill_ratio = Decimal("0.4")  # the entry fills in two trades at different prices
    position = make_live_position(bitunix_user, exchange="bitunix")
    LiveExecutor(
        user=bitunix_user, sleep=lambda _s: bitunix.account.set_price(SYMBOL, "101"), fill_poll_attempts=2
    ).open_position(position=position)
    position.refresh_from_db()
    assert position.status == Position.Status.OPEN and position.quantity == Decimal("1.5")
    assert position.entry_price == (Decimal("0.6") * 100 + Decimal("0.9") * 101) / Decimal(
        "1.5"
    )  # 100.6, from the two trades
    assert [o.result.status for o in bitunix.account.orders.values() if o.result.type == "stop_market"] == ["open"]
    assert all("orderId" in q for q in bitunix.requests_to("/trade/get_history_trades"))

    bitunix.account.set_price(SYMBOL, "97")  # the stop fires: the PnL is a real loss, not 0
    reconcile_user(user=bitunix_user, executor=executor(bitunix_user))
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED and position.realised_pnl < Decimal("-3")


def test_a_fill_without_a_price_is_never_booked_and_reconcile_books_it_once_the_trades_show(bitunix, bitunix_user):
    bitunix.trades_visible = False  # the trade history lags: the order says filled, no trade is visible yet
    position = executor(bitunix_user).open_position(position=make_live_position(bitunix_user, exchange="bitunix"))
    bitunix.trades_visible = True
    entry = position.orders.get(leg=Order.Leg.ENTRY)
    assert position.status == Position.Status.PENDING and entry.filled_quantity == 0 and not entry.fills.exists()
    assert entry.state in (Order.State.OPEN, Order.State.SUBMITTED)  # not terminal: asked again

    report = reconcile_user(user=bitunix_user, executor=executor(bitunix_user))
    position.refresh_from_db()
    assert position.status == Position.Status.OPEN and position.entry_price == Decimal("100"), report
    assert position.orders.get(leg=Order.Leg.STOP_LOSS).state == Order.State.OPEN


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("market", None),
        ("0", Decimal("0")),
        ("", None),
        (None, None),
        ("NaN", None),
        ("1.50", Decimal("1.50")),
        (0.1, Decimal("0.1")),
    ],
)
def test_odd_price_fields_never_raise(raw, expected):
    assert to_decimal(raw) == expected


# --- 2. OKX trigger orders carry only our algoClOrdId -------------------------------------------------------------------
@pytest.fixture
def okx(settings, monkeypatch):
    fake = OkxFetchFake(api_key=OKX_KEY, secret=OKX_SECRET, passphrase=OKX_PASS)
    fake.account.set_price(SYMBOL, "100")
    return ccxt_fake_install(settings=settings, monkeypatch=monkeypatch, fake=fake)


@pytest.fixture
def okx_user(okx):
    user = TelegramUserFactory(auto_trading_enabled=True)
    ExchangeCredentialFactory(
        user=user, exchange="okx", secrets=ApiSecrets(api_key=OKX_KEY, secret=OKX_SECRET, passphrase=OKX_PASS)
    )
    return user


def test_okx_stop_leaves_with_only_our_algo_client_id_and_a_lost_answer_never_doubles_it(okx, okx_user):
    okx.inject("/trade/order-algo", "lost_response")  # the stop is placed, its answer lost
    position = executor(okx_user).open_position(position=make_live_position(okx_user))
    algo_bodies = okx.requests_to("/trade/order-algo")
    assert algo_bodies and all(
        "clOrdId" not in body and "tag" not in body for body in algo_bodies
    )  # signature re-checked by the fake
    stops = [
        o.result for o in okx.account.orders.values() if o.result.type == "stop_market" and o.result.status == "open"
    ]
    assert len(stops) == 1 and stops[0].client_order_id == position.orders.get(leg=Order.Leg.STOP_LOSS).client_order_id


def test_okx_fake_stores_a_sent_clordid_as_the_trigger_orders_client_id_as_okx_does(okx):
    row = okx._place_algo(
        {
            "instId": "BTC-USDT-SWAP",
            "side": "sell",
            "sz": "1",
            "slTriggerPx": "98",
            "algoClOrdId": "P1U1Lsl",
            "clOrdId": "6b9ad766b55dBCDEabc",
        }
    )
    assert row["algoClOrdId"] == "6b9ad766b55dBCDEabc"  # what real OKX does with a broker clOrdId: ours is lost
    assert okx._find("", "P1U1Lsl") is None


# --- 5. OKX equity over every currency ------------------------------------------------------------------------------------
def test_okx_equity_is_the_accounts_usd_total_not_the_usdt_line(okx, okx_user):
    okx.account.balance = Decimal("0.000258796")
    original = okx._route

    def multi_currency(method, path, query, body):
        rows = original(method, path, query, body)
        if path.endswith("account/balance"):
            rows[0]["totalEq"] = "43749472.35962724"  # as recorded: 3000 TUSD, 1.06 BTC, ... and 0.0003 USDT
        return rows

    okx._route = multi_currency
    assert executor(okx_user).equity() == Decimal("43749472.35962724")


# --- 3. an unclear answer (a duplicate-id wording no pattern knows) is "ask the exchange", never "failed" -------------
UNKNOWN_DUPLICATE = {"code": 30020, "data": None, "msg": "Order already exists"}


def test_unknown_duplicate_wording_adopts_the_live_order_instead_of_failing(bitunix, bitunix_user):
    bitunix.duplicate_answer = UNKNOWN_DUPLICATE
    bitunix.inject("/trade/place_order", "lost_response")  # placed, answer lost
    bitunix.inject("/trade/get_order_detail", "stale_read")  # the look-up does not see it yet: sent again
    position = executor(bitunix_user).open_position(position=make_live_position(bitunix_user, exchange="bitunix"))
    assert position.status == Position.Status.OPEN and position.entry_price == Decimal("100")
    assert len([o for o in bitunix.account.orders.values() if o.result.client_order_id.endswith("Lentry")]) == 1
    assert [o.result.status for o in bitunix.account.orders.values() if o.result.type == "stop_market"] == ["open"]


def test_unknown_answer_and_failing_look_up_keeps_the_position_pending_until_reconcile_sees_it(bitunix, bitunix_user):
    from exchanges.errors import RetryableExchangeError

    bitunix.duplicate_answer = UNKNOWN_DUPLICATE
    bitunix.inject("/trade/place_order", "lost_response")
    bitunix.inject("/trade/get_order_detail", "stale_read", *["http_502"] * 8)
    position = make_live_position(bitunix_user, exchange="bitunix")
    with pytest.raises(RetryableExchangeError):  # unknown: the task retries; nothing concluded
        executor(bitunix_user).open_position(position=position)
    position.refresh_from_db()
    assert position.status == Position.Status.PENDING
    assert position.orders.get(leg=Order.Leg.ENTRY).state == Order.State.SUBMITTED
    bitunix.faults.clear()
    reconcile_user(user=bitunix_user, executor=executor(bitunix_user))
    position.refresh_from_db()
    assert (
        position.status == Position.Status.OPEN
        and position.orders.get(leg=Order.Leg.STOP_LOSS).state == Order.State.OPEN
    )


def test_reconcile_revives_a_failed_position_whose_refused_entry_is_live_on_the_exchange(bitunix, bitunix_user):
    position = make_live_position(bitunix_user, exchange="bitunix")
    entry = position.orders.get(leg=Order.Leg.ENTRY)
    bitunix.account._create(
        OrderRequest(
            symbol=SYMBOL, side="buy", type="market", quantity=Decimal("1.5"), client_order_id=entry.client_order_id
        )
    )
    Order.objects.filter(pk=entry.pk).update(state=Order.State.REJECTED, error="bitunix 30020: Order already exists")
    Position.objects.filter(pk=position.pk).update(status=Position.Status.FAILED)  # what the old mapping left behind

    report = reconcile_user(user=bitunix_user, executor=executor(bitunix_user))
    position.refresh_from_db()
    assert position.status == Position.Status.OPEN and position.entry_price == Decimal("100"), report
    assert [o.result.status for o in bitunix.account.orders.values() if o.result.type == "stop_market"] == ["open"]
    assert any("was failed but its entry" in r for r in report.repairs)


# --- 4. reconcile survives any error of one user and reconciles the rest ------------------------------------------------
def test_one_users_unexpected_error_is_logged_counted_alerted_and_the_others_are_reconciled(
    bitunix, bitunix_user, monkeypatch
):
    from decimal import InvalidOperation

    from trading import reconcile as reconcile_module

    broken_user = TelegramUserFactory(auto_trading_enabled=True)
    ExchangeCredentialFactory(
        user=broken_user, exchange="bitunix", secrets=ApiSecrets(api_key=BX_KEY, secret=BX_SECRET)
    )
    bitunix.account.set_price("ETH/USDT:USDT", "10")
    broken = make_live_position(
        broken_user, exchange="bitunix", symbol="ETH/USDT:USDT", entry="10", stop="9.8", tp1="10.2", tp2="10.4"
    )
    healthy = make_live_position(bitunix_user, exchange="bitunix", symbol=SYMBOL)
    for position in (broken, healthy):  # both entries were sent, then the worker died: fills not yet recorded
        Order.objects.filter(position=position).update(state=Order.State.SUBMITTED)
    entry = healthy.orders.get(leg=Order.Leg.ENTRY)
    bitunix.account._create(
        OrderRequest(
            symbol=SYMBOL, side="buy", type="market", quantity=Decimal("1.5"), client_order_id=entry.client_order_id
        )
    )
    real = reconcile_module._reconcile_position

    def odd_field(executor_, client, position, held, report):
        if position.user_id == broken_user.pk:
            raise InvalidOperation("price 'market'")  # not an ExchangeError
        return real(executor_, client, position, held, report)

    monkeypatch.setattr(reconcile_module, "_reconcile_position", odd_field)
    sent = []
    monkeypatch.setattr(reconcile_module, "publish", lambda event, **payload: sent.append((event, payload)))
    reports = {r.user_id: r for r in reconcile_module.reconcile_all()}

    assert set(reports) == {broken_user.pk, bitunix_user.pk}
    assert any("InvalidOperation" in e for e in reports[broken_user.pk].errors)
    assert any("had no live stop" in r for r in reports[bitunix_user.pk].repairs), reports[bitunix_user.pk]
    assert [o.result.status for o in bitunix.account.orders.values() if o.result.type == "stop_market"] == ["open"]
    assert any(
        event == "admins.notify" and "Reconcile failed" in payload["text"] and str(broken_user.pk) in payload["text"]
        for event, payload in sent
    )


# --- 6. MEXC cancel by client id never sends [null] ---------------------------------------------------------------------
def test_mexc_cancel_by_client_id_uses_the_external_id_endpoint(settings, monkeypatch):
    from exchanges import SyncExchangeClient
    from exchanges.clients import exchange_client_build
    from testsupport.exchanges.mexc_fake import MexcFetchFake

    fake = ccxt_fake_install(settings=settings, monkeypatch=monkeypatch, fake=MexcFetchFake(api_key="mk", secret="ms"))
    fake.account.set_price("ETH/USDT:USDT", "2000")
    with SyncExchangeClient(exchange_client_build(exchange="mexc", api_key="mk", secret="ms")) as client:
        client.create_order(
            OrderRequest(
                symbol="ETH/USDT:USDT",
                side="buy",
                type="limit",
                quantity=Decimal("0.05"),
                price=Decimal("1900"),
                client_order_id="P9U9Lentry",
                leverage=5,
            )
        )
        client.cancel_order(symbol="ETH/USDT:USDT", client_order_id="P9U9Lentry")
        assert client.fetch_order(symbol="ETH/USDT:USDT", client_order_id="P9U9Lentry").status == "canceled"
    assert fake.requests_to("/order/cancel_with_external") == [{"symbol": "ETH_USDT", "externalOid": "P9U9Lentry"}]
    assert not fake.requests_to("/order/cancel")


# --- 7. below one contract: our own error before protect(), so the safety close runs -----------------------------------
def test_below_one_contract_is_order_too_small_not_a_raw_ccxt_error():
    import ccxt.async_support as ccxt_async

    from exchanges.ccxt_client import CcxtExchangeClient
    from exchanges.errors import OrderTooSmall
    from testsupport.exchanges.okx_fake import okx_markets

    ex = ccxt_async.okx({"apiKey": "k", "secret": "s", "password": "p"})
    ex.set_markets(okx_markets())
    client = CcxtExchangeClient("okx", exchange=ex)
    request = OrderRequest(
        symbol=SYMBOL,
        side="sell",
        type="stop_market",
        quantity=Decimal("0.00005"),
        client_order_id="P1U1Lsl",
        trigger_price=Decimal("98"),
    )
    with pytest.raises(OrderTooSmall):
        client.build_order_arguments(request, ex.market(SYMBOL))  # half of the 0.01-contract lot (0.0001 BTC)


def test_a_stop_refused_as_too_small_still_gets_the_safety_close(live_user, account, monkeypatch):  # noqa: F811
    from exchanges.errors import OrderTooSmall
    from testsupport.exchanges.fake import FakeExchangeClient

    real_create = FakeExchangeClient.create_order

    async def create_order(self, request):
        if request.type == "stop_market":
            raise OrderTooSmall(
                "InvalidOrder: amount must be greater than minimum amount precision of 1", exchange="okx"
            )
        return await real_create(self, request)

    monkeypatch.setattr(FakeExchangeClient, "create_order", create_order)
    position = executor(live_user).open_position(position=make_live_position(live_user))
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED  # closed at market: never left without a stop
    assert position.orders.filter(leg=Order.Leg.CLOSE, state=Order.State.FILLED).exists()
    assert account.positions[SYMBOL].quantity == 0
