# ruff: noqa: F811  (pytest fixtures imported from trading.tests.live_fixtures are re-bound as test arguments)
"""From the ``signal.created`` consumer to a closed live position: signal → risk manager and sizing → stored entry
with its client order id → exchange order → stop/TPs on the exchange → price moves → stop fills → reconcile closes
it → our PnL equals the exchange's. Run on the in-process fake exchange and, over HTTP, on the fake Bitunix server."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.models import ApiSecrets, UserPreferences
from accounts.tests.factories import ExchangeCredentialFactory, TelegramUserFactory
from exchanges import bitunix as bitunix_module
from signals.tests.factories import SignalFactory, SymbolFactory
from testsupport.exchanges.bitunix_fake import BitunixFakeServer
from testsupport.exchanges.fake import fake_account, fake_account_name
from trading import tasks
from trading.executors import live as live_module
from trading.models import Order, Position
from trading.reconcile import reconcile_user
from trading.tests.live_fixtures import API_KEY, API_SECRET, PASSPHRASE, SYMBOL, fake_exchange  # noqa: F401

pytestmark = pytest.mark.django_db


def live_trader(exchange: str):
    user = TelegramUserFactory(auto_trading_enabled=True, subscribed=True)
    UserPreferences.objects.filter(user=user).update(paper_mode=False, leverage=5)
    ExchangeCredentialFactory(
        user=user, exchange=exchange, secrets=ApiSecrets(api_key=API_KEY, secret=API_SECRET, passphrase=PASSPHRASE)
    )
    return user


@pytest.fixture
def no_sleep(monkeypatch):
    monkeypatch.setattr(live_module.time, "sleep", lambda _seconds: None)


def _run_signal_to_stop(user, account) -> Position:
    signal = SignalFactory(symbol=SymbolFactory(symbol=SYMBOL, base="BTC"), entry=Decimal("100"), stop=Decimal("98"))
    counts = tasks.execute_signal.run(signal.pk)
    assert counts["opened"] == 1, counts
    tasks.execute_signal.run(signal.pk)  # the event delivered twice: nothing more is sent
    position = Position.objects.get(user=user, signal=signal)
    assert position.mode == "live" and position.status == Position.Status.OPEN and position.quantity > 0
    entry = position.orders.get(leg=Order.Leg.ENTRY)
    assert entry.client_order_id == f"P{signal.pk}U{user.pk}Lentry" and entry.state == Order.State.FILLED
    entries = [o for o in account.orders.values() if o.result.client_order_id == entry.client_order_id]
    assert len(entries) == 1
    stops = [o.result for o in account.orders.values() if o.result.type == "stop_market" and o.result.status == "open"]
    assert [(s.trigger_price, s.quantity) for s in stops] == [(Decimal("98"), position.quantity)]

    account.set_price(SYMBOL, "98")
    reconcile_user(user=user)
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED and position.close_reason == Position.CloseReason.SL
    assert position.realised_pnl == (Decimal("98") - Decimal("100")) * position.quantity
    return position


def test_signal_to_stop_on_the_in_process_fake_exchange(fake_exchange, no_sleep):
    user = live_trader("okx")
    account = fake_account(fake_account_name(user_id=user.pk))
    account.set_price(SYMBOL, "100")
    position = _run_signal_to_stop(user, account)
    # fees included: what we booked is exactly what the exchange's balance moved
    assert account.balance == Decimal("10000") + position.net_pnl


def test_signal_to_stop_on_bitunix_over_http(settings, no_sleep):
    bitunix_module._PAIRS_CACHE.clear()
    with BitunixFakeServer(api_key=API_KEY, secret=API_SECRET) as server:
        server.account.set_price(SYMBOL, "100")
        settings.LIVE_EXCHANGE_CLIENT = "real"
        settings.BITUNIX_BASE_URL = server.url
        user = live_trader("bitunix")
        position = _run_signal_to_stop(user, server.account)
        assert position.realised_pnl == server.account.positions[SYMBOL].realised_pnl
    bitunix_module._PAIRS_CACHE.clear()
