"""End to end through the REAL ccxt MEXC class (``mexc``, contract API): its request building, signing and parsing
run; ``MexcFetchFake`` answers behind ``Exchange.fetch`` (checks the signature, MEXC-shaped JSON, LTC contracts of
0.1). Entry with our ``externalOid`` → plan orders (stop/TP, which MEXC lists without our id: found again by the
request) → the stop fires → reconcile books it → PnL matches; faults never double an order."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.models import ApiSecrets
from accounts.tests.factories import ExchangeCredentialFactory, TelegramUserFactory
from exchanges.base import OrderRequest
from testsupport.exchanges.mexc_fake import MexcFetchFake
from trading.executors.live import LiveExecutor
from trading.models import Order, Position
from trading.reconcile import reconcile_user
from trading.tests.live_fixtures import ccxt_fake_install, make_live_position

pytestmark = pytest.mark.django_db

KEY, SECRET = "mx-key-0a1b2c3d4e", "mx-secret-5f6a7b8c9d"
LTC = "LTC/USDT:USDT"


@pytest.fixture
def mexc(settings, monkeypatch):
    fake = MexcFetchFake(api_key=KEY, secret=SECRET)
    fake.account.set_price(LTC, "100")
    return ccxt_fake_install(settings=settings, monkeypatch=monkeypatch, fake=fake)


@pytest.fixture
def user(mexc):
    user = TelegramUserFactory(auto_trading_enabled=True)
    ExchangeCredentialFactory(user=user, exchange="mexc", secrets=ApiSecrets(api_key=KEY, secret=SECRET))
    return user


def ltc_position(user) -> Position:
    return make_live_position(user, symbol=LTC, exchange="mexc")


def executor(user) -> LiveExecutor:
    return LiveExecutor(user=user, sleep=lambda _seconds: None, fill_poll_attempts=2)


def live_stops(mexc):
    return [
        o.result for o in mexc.account.orders.values() if o.result.type == "stop_market" and o.result.status == "open"
    ]


def test_entry_plan_stop_fill_and_pnl_through_ccxt_mexc(mexc, user):
    position = executor(user).open_position(position=ltc_position(user))
    assert (
        position.status == Position.Status.OPEN
        and position.quantity == Decimal("1.5")
        and position.entry_price == Decimal("100")
    )
    (entry,) = mexc.requests_to("order/create")
    assert (
        entry["vol"] == 15 and entry["side"] == 1 and entry["externalOid"].endswith("Lentry") and entry["leverage"] == 5
    )
    plans = mexc.requests_to("planorder/place")
    stop = next(p for p in plans if p["triggerType"] == 2)
    assert (stop["side"], stop["vol"], stop["orderType"]) == (4, 15, 5) and float(
        stop["triggerPrice"]
    ) == 98  # close long, market
    assert [p["triggerType"] for p in plans] == [2, 1, 1]
    assert position.orders.get(leg=Order.Leg.STOP_LOSS).exchange_order_id == live_stops(mexc)[0].exchange_order_id

    mexc.account.set_price(LTC, "98")  # the plan stop fires
    reconcile_user(user=user, executor=executor(user))
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED and position.close_reason == Position.CloseReason.SL
    assert position.realised_pnl == mexc.account.positions[LTC].realised_pnl == Decimal("-3")


@pytest.mark.parametrize("faults", [("timeout",), ("rate_limit", "server_error"), ("lost_response",)])
def test_entry_faults_through_ccxt_mexc_never_duplicate(mexc, user, faults):
    mexc.inject("order/create", *faults)
    position = executor(user).open_position(position=ltc_position(user))
    assert position.status == Position.Status.OPEN
    assert len([o for o in mexc.account.orders.values() if o.result.client_order_id.endswith("Lentry")]) == 1
    assert mexc.account.positions[LTC].quantity == Decimal("1.5") and len(live_stops(mexc)) == 1
    assert mexc.requests_to(
        "order/external/LTC_USDT/" + position.orders.get(leg="entry").client_order_id
    )  # looked up before any resend


def test_plan_stop_answer_lost_is_found_by_its_request(mexc, user):
    mexc.inject("planorder/place", "lost_response")
    position = executor(user).open_position(position=ltc_position(user))
    assert len(live_stops(mexc)) == 1
    assert position.orders.get(leg=Order.Leg.STOP_LOSS).exchange_order_id == live_stops(mexc)[0].exchange_order_id


def test_closed_by_hand_on_mexc_is_booked_from_its_deals(mexc, user):
    position = executor(user).open_position(position=ltc_position(user))
    mexc.account.set_price(LTC, "101")
    mexc.account._create(
        OrderRequest(
            symbol=LTC, side="sell", type="market", quantity=Decimal("1.5"), client_order_id="byhand", reduce_only=True
        )
    )
    reconcile_user(user=user, executor=executor(user))
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED and position.close_reason == Position.CloseReason.EXCHANGE
    assert position.realised_pnl == Decimal("1.5") == mexc.account.positions[LTC].realised_pnl
    assert mexc.account.balance == Decimal("10000") + position.net_pnl
