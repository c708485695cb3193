"""Shared fixtures of the live-trading tests: the fake exchange forced by settings, a user with keys, a stored
pending live position (as ``trading.services.position_prepare`` stores it)."""

from __future__ import annotations

from contextlib import contextmanager
from decimal import Decimal

import pytest

from accounts.models import ApiSecrets
from accounts.tests.factories import ExchangeCredentialFactory, TelegramUserFactory
from exchanges import bitunix as bitunix_module
from exchanges import ccxt_factory
from signals.tests.factories import SignalFactory, SymbolFactory
from testsupport.exchanges.bitunix_fake import BitunixFakeServer
from testsupport.exchanges.fake import FAKE_EXCHANGE_CLIENT, fake_account, fake_account_name, fake_accounts_reset
from trading.models import Order, Position
from trading.orders import client_order_id

SYMBOL = "BTC/USDT:USDT"
API_KEY = "AKlive-4f9c2d7e1b8a6c3d"
API_SECRET = "SKlive-very-secret-0a1b2c3d4e5f"
PASSPHRASE = "pass-phrase-xyz"


BITUNIX_KEY, BITUNIX_SECRET = "BXkey-5a6b7c8d9e0f1a2b", "BXsecret-0f9e8d7c6b5a4f3e"


@contextmanager
def bitunix_fake_server(settings):
    """The Bitunix stand-in over signed HTTP, the real adapter pointed at it, with short timeouts so lost answers
    and slow fills show up within a test."""
    bitunix_module._PAIRS_CACHE.clear()
    with BitunixFakeServer(api_key=BITUNIX_KEY, secret=BITUNIX_SECRET) as fake:
        fake.slow_seconds = 0.5
        fake.account.set_price(SYMBOL, "100")
        settings.LIVE_EXCHANGE_CLIENT = "real"
        settings.BITUNIX_BASE_URL = fake.url
        settings.LIVE_HTTP_TIMEOUT_SECONDS = 0.25
        settings.LIVE_RECONCILE_SUBMITTED_GRACE_SECONDS = 0
        yield fake
    bitunix_module._PAIRS_CACHE.clear()


def bitunix_user_create():
    """An auto-trading user whose Bitunix keys are the stand-in's."""
    user = TelegramUserFactory(auto_trading_enabled=True)
    secrets = ApiSecrets(api_key=BITUNIX_KEY, secret=BITUNIX_SECRET)
    ExchangeCredentialFactory(user=user, exchange="bitunix", secrets=secrets)
    return user


@pytest.fixture
def fake_exchange(settings):
    settings.LIVE_EXCHANGE_CLIENT = FAKE_EXCHANGE_CLIENT
    settings.LIVE_RECONCILE_SUBMITTED_GRACE_SECONDS = 0
    fake_accounts_reset()
    yield
    fake_accounts_reset()


@pytest.fixture
def live_user(fake_exchange):
    user = TelegramUserFactory(auto_trading_enabled=True, subscribed=True)
    ExchangeCredentialFactory(
        user=user, exchange="okx", secrets=ApiSecrets(api_key=API_KEY, secret=API_SECRET, passphrase=PASSPHRASE)
    )
    return user


@pytest.fixture
def account(live_user):
    acct = fake_account(fake_account_name(user_id=live_user.pk))
    acct.set_price(SYMBOL, "100")
    return acct


def ccxt_fake_install(*, settings, monkeypatch, fake):
    """Route every ccxt client built by ``exchanges.ccxt_factory`` (``LIVE_EXCHANGE_CLIENT=real``) to ``fake``, a
    fetch-hook fake of one exchange; removed again at the end of the test."""
    settings.LIVE_EXCHANGE_CLIENT = "real"
    settings.LIVE_RECONCILE_SUBMITTED_GRACE_SECONDS = 0

    def hook(exchange):
        exchange.enableRateLimit = False  # no throttling sleeps against the in-process fake
        fake.install(exchange)

    monkeypatch.setattr(ccxt_factory, "_transport_hook", None)  # what is installed now comes back after the test
    ccxt_factory.install_ccxt_transport(hook)
    return fake


def make_live_position(
    user,
    *,
    side="long",
    quantity="1.5",
    entry="100",
    stop="98",
    tp1="102",
    tp2="104",
    exchange="okx",
    symbol=SYMBOL,
) -> Position:
    symbol = SymbolFactory(symbol=symbol, base=symbol.split("/")[0])
    signal = SignalFactory(
        symbol=symbol, side=side, entry=Decimal(entry), stop=Decimal(stop), tp1=Decimal(tp1), tp2=Decimal(tp2)
    )
    position = Position.objects.create(
        user=user,
        signal=signal,
        symbol=symbol,
        side=side,
        mode="live",
        exchange=exchange,
        status=Position.Status.PENDING,
        leverage=5,
        quantity=Decimal(quantity),
        remaining_quantity=Decimal(quantity),
        stop_price=Decimal(stop),
        initial_stop_price=Decimal(stop),
        tp1_price=Decimal(tp1),
        tp2_price=Decimal(tp2),
    )
    Order.objects.create(
        position=position,
        client_order_id=client_order_id(signal_id=signal.pk, user_id=user.pk, leg="entry"),
        exchange=exchange,
        leg=Order.Leg.ENTRY,
        type=Order.Type.MARKET,
        side="buy" if side == "long" else "sell",
        quantity=Decimal(quantity),
    )
    return position
