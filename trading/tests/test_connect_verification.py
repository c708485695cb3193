"""/connect verifies keys before storing them: balance, then the key's permissions where the exchange tells them
(OKX's account configuration, through the REAL ccxt OKX class and the recorded response shape): no trade permission
is refused with what to fix, withdrawal permission is stored with a warning; MEXC keys get the restriction warning.
MEXC's refusal of a futures order (code 1002) is recognised and told in plain words, and auto-trading stops."""

from __future__ import annotations

import pytest

from accounts.models import ApiSecrets, ExchangeCredential, TelegramUser
from accounts.tests.factories import ExchangeCredentialFactory, TelegramUserFactory
from exchanges.errors import ExchangeConnectError
from testsupport.exchanges.mexc_fake import MexcFetchFake
from testsupport.exchanges.okx_fake import OkxFetchFake
from trading.connect import exchange_connect_verified
from trading.executors.live import LiveExecutor
from trading.ledger import refusal_sentence
from trading.models import Position
from trading.tests.live_fixtures import SYMBOL, ccxt_fake_install, make_live_position

pytestmark = pytest.mark.django_db

KEY, SECRET, PASSPHRASE = "okx-key-1a2b3c4d5e6f", "okx-secret-6f5e4d3c2b1a", "okx-pass-99"
MX_KEY, MX_SECRET = "mx-key-0a1b2c3d4e", "mx-secret-5f6a7b8c9d"


@pytest.fixture
def okx(settings, monkeypatch):
    fake = OkxFetchFake(api_key=KEY, secret=SECRET, passphrase=PASSPHRASE)
    fake.account.set_price(SYMBOL, "100")
    return ccxt_fake_install(settings=settings, monkeypatch=monkeypatch, fake=fake)


@pytest.fixture
def mexc(settings, monkeypatch):
    fake = MexcFetchFake(api_key=MX_KEY, secret=MX_SECRET)
    fake.account.set_price("LTC/USDT:USDT", "100")
    return ccxt_fake_install(settings=settings, monkeypatch=monkeypatch, fake=fake)


def connect_okx(user):
    return exchange_connect_verified(user=user, exchange="okx", api_key=KEY, secret=SECRET, passphrase=PASSPHRASE)


def test_a_read_only_key_is_refused_with_what_to_fix_and_nothing_is_stored(okx):
    okx.account.key_perm = "read_only"
    user = TelegramUserFactory()
    with pytest.raises(ExchangeConnectError) as info:
        connect_okx(user)
    assert info.value.reason == "no_trade_permission"
    assert "can read your account but not trade" in str(info.value) and "Trade permission" in str(info.value)
    assert okx.requests_to("/account/config")  # asked the exchange, not guessed
    assert not ExchangeCredential.objects.filter(user=user).exists()


def test_a_key_that_can_withdraw_is_stored_with_a_warning(okx):
    okx.account.key_perm = "read_only,withdraw,trade"  # as recorded from OKX
    outcome = connect_okx(TelegramUserFactory())
    assert outcome.credential.is_active and outcome.credential.validated_at is not None
    assert len(outcome.warnings) == 1 and "can also withdraw" in outcome.warnings[0]


def test_a_trade_key_connects_without_warnings(okx):
    outcome = connect_okx(TelegramUserFactory())
    assert outcome.warnings == [] and outcome.free_balance == okx.account.balance


def test_mexc_keys_come_with_the_restriction_warning(mexc):
    outcome = exchange_connect_verified(user=TelegramUserFactory(), exchange="mexc", api_key=MX_KEY, secret=MX_SECRET)
    assert any("MEXC does not let ordinary accounts place futures orders" in w for w in outcome.warnings)


def test_mexc_refusing_the_order_is_told_in_plain_words_and_stops_auto_trading(mexc, settings, monkeypatch):
    notices = []
    monkeypatch.setattr("trading.executors.live.publish", lambda name, **payload: notices.append(payload))
    mexc.account.order_api_restricted = True
    user = TelegramUserFactory(auto_trading_enabled=True)
    ExchangeCredentialFactory(user=user, exchange="mexc", secrets=ApiSecrets(api_key=MX_KEY, secret=MX_SECRET))
    position = make_live_position(user, symbol="LTC/USDT:USDT", exchange="mexc")
    position = LiveExecutor(user=user, sleep=lambda _s: None, fill_poll_attempts=2).open_position(position=position)
    assert position.status == Position.Status.FAILED
    assert mexc.requests_to("order/create")  # the exchange was asked and refused
    user = TelegramUser.objects.get(pk=user.pk)
    assert (
        not user.auto_trading_enabled
        and user.auto_trading_paused_reason == "MEXC refuses futures orders from your API key"
    )
    [notice] = notices
    assert "does not let ordinary accounts place futures orders through its API" in notice["text"]
    assert "1002" not in notice["text"] and "Contract not allow" not in notice["text"]  # no raw exchange answer


@pytest.mark.parametrize(
    ("reason", "detail", "sentence"),
    [
        ("symbol_busy", "you already have a position on NXT/BTC", "You already have a position on NXT/BTC."),
        ("muted_symbol", "DOGE/USDT:USDT is muted in your settings", "DOGE/USDT:USDT is muted in your settings."),
        ("max_positions", "3 of 3 positions open", "Maximum open positions reached: 3 of 3 positions open"),
        ("daily_loss", "", "Daily loss limit reached."),
    ],
)
def test_a_refusal_says_why_once(reason, detail, sentence):
    assert refusal_sentence(reason=reason, detail=detail) == sentence
