"""``/connect``: keys are checked with a read-only balance call BEFORE anything is stored, then kept only encrypted
(last 4 characters for display); a refusal is a polite message with no key in it, in the error or in the logs.
Run against the real Bitunix adapter over HTTP (the fake server checks the signature, so a wrong secret is refused
exactly as Bitunix refuses it) and the in-process fake for the network-failure case."""

from __future__ import annotations

import logging

import pytest

from accounts.models import ExchangeCredential
from accounts.tests.factories import TelegramUserFactory
from exchanges import bitunix as bitunix_module
from exchanges.errors import ExchangeConnectError
from testsupport.exchanges.bitunix_fake import BitunixFakeServer
from testsupport.exchanges.fake import fake_account, fake_account_name
from trading.connect import exchange_connect, exchange_disconnect
from trading.tests.live_fixtures import SYMBOL, fake_exchange  # noqa: F401

pytestmark = pytest.mark.django_db

KEY, SECRET = "BXconnect-key-7788aabbccdd", "BXconnect-secret-11223344eeff"


@pytest.fixture
def bitunix(settings):
    bitunix_module._PAIRS_CACHE.clear()
    with BitunixFakeServer(api_key=KEY, secret=SECRET) as server:
        server.account.set_price(SYMBOL, "100")
        settings.LIVE_EXCHANGE_CLIENT = "real"
        settings.BITUNIX_BASE_URL = server.url
        yield server


def test_valid_keys_are_checked_then_stored_encrypted_with_last4(bitunix, caplog):
    user = TelegramUserFactory()
    caplog.set_level(logging.DEBUG)
    credential = exchange_connect(user=user, exchange="bitunix", api_key=f"  {KEY} ", secret=SECRET)
    assert bitunix.requests_to("/futures/account")  # the read-only balance check reached the exchange
    assert credential.is_active and credential.last4 == KEY[-4:]
    assert credential.secrets().api_key == KEY and credential.secrets().secret == SECRET
    raw = repr(list(ExchangeCredential.objects.filter(user=user).values()))  # the stored column values
    assert KEY not in raw and SECRET not in raw
    assert KEY not in caplog.text and SECRET not in caplog.text and KEY[-4:] in caplog.text
    assert (
        exchange_disconnect(user=user) == 1
        and not ExchangeCredential.objects.filter(user=user, is_active=True).exists()
    )


def test_wrong_secret_is_refused_politely_and_nothing_is_stored(bitunix, caplog):
    user = TelegramUserFactory()
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ExchangeConnectError) as info:
        exchange_connect(user=user, exchange="bitunix", api_key=KEY, secret="wrong-secret-000000")
    assert info.value.reason == "auth" and "Bitunix rejected these API keys" in str(info.value)
    assert KEY not in str(info.value) and "wrong-secret" not in str(info.value)
    assert not ExchangeCredential.objects.filter(user=user).exists()
    assert KEY not in caplog.text and "wrong-secret-000000" not in caplog.text


@pytest.mark.usefixtures("fake_exchange")
def test_unreachable_exchange_is_a_retry_later_message():
    user = TelegramUserFactory()
    fake_account(fake_account_name(user_id=user.pk)).inject("fetch_balance", "timeout", "timeout")
    with pytest.raises(ExchangeConnectError) as info:
        exchange_connect(user=user, exchange="okx", api_key=KEY, secret=SECRET, passphrase="pp")
    assert info.value.reason == "network" and not ExchangeCredential.objects.filter(user=user).exists()


@pytest.mark.usefixtures("fake_exchange")
def test_okx_without_passphrase_is_asked_for_it():
    with pytest.raises(ExchangeConnectError, match="passphrase"):
        exchange_connect(user=TelegramUserFactory(), exchange="okx", api_key=KEY, secret=SECRET)
