"""End to end through the REAL ccxt KuCoin Futures class (``kucoinfutures``, classic futures account): its request
building, v2 signing and parsing run; ``KucoinFetchFake`` answers behind ``Exchange.fetch`` (checks the signature,
KuCoin-shaped JSON, LTC contracts of 0.1). Entry → ``stop`` down/up orders with our ``clientOid`` → stop fires →
reconcile books it → PnL matches the exchange; faults (timeout, 429, 5xx, lost answer) never double an order."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.models import ApiSecrets
from accounts.tests.factories import ExchangeCredentialFactory, TelegramUserFactory
from exchanges.base import OrderRequest
from testsupport.exchanges.kucoin_fake import KucoinFetchFake
from trading.executors.live import LiveExecutor
from trading.models import Order, Position
from trading.reconcile import reconcile_user
from trading.tests.live_fixtures import ccxt_fake_install, make_live_position

pytestmark = pytest.mark.django_db

KEY, SECRET, PASSPHRASE = "kc-key-0a1b2c3d4e", "kc-secret-5f6a7b8c9d", "kc-pass-42"
LTC = "LTC/USDT:USDT"


@pytest.fixture
def kucoin(settings, monkeypatch):
    fake = KucoinFetchFake(api_key=KEY, secret=SECRET, passphrase=PASSPHRASE)
    fake.account.set_price(LTC, "100")
    return ccxt_fake_install(settings=settings, monkeypatch=monkeypatch, fake=fake)


@pytest.fixture
def user(kucoin):
    user = TelegramUserFactory(auto_trading_enabled=True)
    ExchangeCredentialFactory(
        user=user, exchange="kucoinfutures", secrets=ApiSecrets(api_key=KEY, secret=SECRET, passphrase=PASSPHRASE)
    )
    return user


def ltc_position(user) -> Position:
    return make_live_position(user, symbol=LTC, exchange="kucoinfutures")


def executor(user) -> LiveExecutor:
    return LiveExecutor(user=user, sleep=lambda _seconds: None, fill_poll_attempts=2)


def creates(kucoin) -> list[dict]:
    return kucoin.requests_to("/api/v1/orders", "POST")


def test_entry_stop_fill_and_pnl_through_ccxt_kucoin(kucoin, user):
    position = executor(user).open_position(position=ltc_position(user))
    assert (
        position.status == Position.Status.OPEN
        and position.quantity == Decimal("1.5")
        and position.entry_price == Decimal("100")
    )
    entry, stop, tp1, tp2 = creates(kucoin)
    assert entry["size"] == 15 and entry["leverage"] == 5 and entry["marginMode"] == "ISOLATED"  # 1.5 LTC = 15 × 0.1
    assert (stop["stop"], stop["stopPrice"], stop["reduceOnly"], stop["side"], stop["size"]) == (
        "down",
        "98",
        True,
        "sell",
        15,
    )
    assert (tp1["stop"], tp1["size"], tp2["size"]) == (
        "up",
        7,
        8,
    )  # 0.75 LTC rounds down to 7 contracts; the rest on TP2

    kucoin.account.set_price(LTC, "97.9")  # the stop fires on the exchange
    reconcile_user(user=user, executor=executor(user))
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED and position.close_reason == Position.CloseReason.SL
    assert position.realised_pnl == kucoin.account.positions[LTC].realised_pnl == Decimal("-3.15")
    assert not [o for o in kucoin.account.orders.values() if o.result.status == "open"]


@pytest.mark.parametrize("faults", [("timeout",), ("rate_limit", "server_error"), ("lost_response",)])
def test_entry_faults_through_ccxt_kucoin_never_duplicate(kucoin, user, faults):
    kucoin.inject("/api/v1/orders", *faults)
    position = executor(user).open_position(position=ltc_position(user))
    assert position.status == Position.Status.OPEN
    entries = [o for o in kucoin.account.orders.values() if o.result.client_order_id.endswith("Lentry")]
    assert len(entries) == 1 and kucoin.account.positions[LTC].quantity == Decimal("1.5")
    assert (
        len([o for o in kucoin.account.orders.values() if o.result.type == "stop_market" and o.result.status == "open"])
        == 1
    )
    assert kucoin.requests_to("/api/v1/orders/byClientOid")  # looked up by clientOid before any resend


def test_closed_by_hand_on_kucoin_is_booked_from_its_fills(kucoin, user):
    position = executor(user).open_position(position=ltc_position(user))
    kucoin.account.set_price(LTC, "101")
    kucoin.account._create(
        OrderRequest(
            symbol=LTC, side="sell", type="market", quantity=Decimal("1.5"), client_order_id="byhand", reduce_only=True
        )
    )
    reconcile_user(user=user, executor=executor(user))
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED and position.close_reason == Position.CloseReason.EXCHANGE
    assert position.realised_pnl == Decimal("1.5") == kucoin.account.positions[LTC].realised_pnl
    # the close's fee comes from KuCoin's fills; KuCoin's order details carry no fee, so the entry fee is not booked
    assert position.fills.get(order__leg=Order.Leg.CLOSE).fee == Decimal("0.07575")
