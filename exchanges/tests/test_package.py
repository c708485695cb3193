"""The adapter package: one ccxt factory, one error map, one capability table, the client picked by a setting, and
no Django app (nor any test double) imported by it."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import ccxt
import pytest
from django.core.exceptions import ImproperlyConfigured

from exchanges import ccxt_factory
from exchanges.bitunix import BitunixClient
from exchanges.capabilities import CAPABILITIES, CCXT_TRADING_EXCHANGES, capabilities
from exchanges.ccxt_client import CcxtExchangeClient
from exchanges.clients import exchange_client_build
from exchanges.errors import (
    AuthenticationFailed,
    DuplicateClientOrderId,
    FinalExchangeError,
    InsufficientBalance,
    OrderApiRestricted,
    OrderNotFoundOnExchange,
    OrderTooSmall,
    RetryableExchangeError,
    SymbolUnavailable,
    map_ccxt_error,
    retry_call,
)

PACKAGE = Path(__file__).resolve().parents[1]
ROOT = PACKAGE.parent
DJANGO_APPS = (
    "accounts",
    "signals",
    "trading",
    "news",
    "analytics",
    "telegram_bridge",
    "web",
    "demo",
    "config",
    "testsupport",
)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def production_files(package: Path):
    return [p for p in package.rglob("*.py") if "tests" not in p.parts and "migrations" not in p.parts]


def test_the_adapter_layer_imports_no_django_app_and_no_test_double():
    for path in production_files(PACKAGE):
        for module in imported_modules(path):
            top = module.split(".")[0]
            assert top not in DJANGO_APPS, f"{path.relative_to(ROOT)} imports {module}"
            assert not module.startswith("django.") or module in (
                "django.conf",
                "django.core.exceptions",
                "django.utils.module_loading",
            ), module


@pytest.mark.parametrize("package", ["trading", "signals", "news"])
def test_only_the_adapter_package_imports_ccxt(package):
    for path in production_files(ROOT / package):
        for module in imported_modules(path):
            assert module.split(".")[0] != "ccxt", f"{path.relative_to(ROOT)} imports {module}"


def test_live_trading_never_imports_a_test_double():
    for path in production_files(ROOT / "trading"):
        for module in imported_modules(path):
            assert module.split(".")[0] != "testsupport", f"{path.relative_to(ROOT)} imports {module}"


@pytest.mark.parametrize(
    ("exchange_id", "market_type", "asynchronous"),
    [("okx", "swap", True), ("kucoinfutures", "swap", False), ("binance", "spot", True), ("mexc", "swap", True)],
)
def test_one_factory_builds_every_ccxt_client_rate_limited_and_without_network(exchange_id, market_type, asynchronous):
    client = ccxt_factory.ccxt_client_create(
        exchange_id, market_type=market_type, asynchronous=asynchronous, api_key="k", secret="s"
    )
    try:
        assert client.enableRateLimit is True
        assert client.options["defaultType"] == market_type
        assert client.apiKey == "k" and client.secret == "s"
        assert client.markets is None  # nothing loaded: no network at build time
    finally:
        if asynchronous:
            asyncio.run(client.close())
    with pytest.raises(FinalExchangeError, match="does not support"):
        ccxt_factory.ccxt_client_create("no-such-exchange")


@pytest.mark.parametrize("asynchronous", [False, True])
def test_ccxt_rounding_leaves_the_threads_decimal_context_as_it_was(asynchronous):
    import decimal

    client = ccxt_factory.ccxt_client_create("okx", asynchronous=asynchronous)
    client.set_markets(
        [
            {
                "id": "BTC-USDT-SWAP",
                "symbol": "BTC/USDT:USDT",
                "base": "BTC",
                "quote": "USDT",
                "settle": "USDT",
                "type": "swap",
                "spot": False,
                "margin": False,
                "future": False,
                "option": False,
                "swap": True,
                "contract": True,
                "linear": True,
                "active": True,
                "contractSize": 0.01,
                "precision": {"amount": 1, "price": 0.1},
                "limits": {},
            }
        ]
    )
    with decimal.localcontext() as context:
        context.rounding = decimal.ROUND_HALF_EVEN
        assert client.price_to_precision("BTC/USDT:USDT", "123.45") == "123.5"  # ccxt still rounds half up
        assert client.amount_to_precision("BTC/USDT:USDT", "3.99") == "3"
        assert decimal.getcontext().rounding == decimal.ROUND_HALF_EVEN
        assert not decimal.getcontext().traps[decimal.Underflow]
        assert decimal.Decimal("0.125").quantize(decimal.Decimal("0.01")) == decimal.Decimal("0.12")
    if asynchronous:
        asyncio.run(client.close())


def test_the_transport_hook_sees_every_new_client(monkeypatch):
    seen = []
    monkeypatch.setattr(ccxt_factory, "_transport_hook", None)  # restored after the test
    ccxt_factory.install_ccxt_transport(seen.append)
    client = ccxt_factory.ccxt_client_create("okx", asynchronous=False)
    assert seen == [client]
    ccxt_factory.install_ccxt_transport(None)
    ccxt_factory.ccxt_client_create("okx", asynchronous=False)
    assert seen == [client]  # removed: later clients talk to the network again


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ccxt.RequestTimeout("timed out"), RetryableExchangeError),
        (ccxt.RateLimitExceeded("429"), RetryableExchangeError),
        (ccxt.DDoSProtection("cloudflare"), RetryableExchangeError),
        (ccxt.ExchangeNotAvailable("502"), RetryableExchangeError),
        (ccxt.OnMaintenance("maintenance"), RetryableExchangeError),
        (ccxt.InvalidNonce("recvWindow"), RetryableExchangeError),
        (ccxt.BadResponse("not json"), RetryableExchangeError),
        (TimeoutError(), RetryableExchangeError),
        (ccxt.AuthenticationError("bad key"), AuthenticationFailed),
        (ccxt.PermissionDenied("ip"), AuthenticationFailed),
        (ccxt.InsufficientFunds("margin"), InsufficientBalance),
        (ccxt.OrderNotFound("gone"), OrderNotFoundOnExchange),
        (ccxt.BadSymbol("delisted"), SymbolUnavailable),
        (ccxt.DuplicateOrderId("dup"), DuplicateClientOrderId),
        (
            ccxt.InvalidOrder('okx {"code":"1","data":[{"sCode":"51016","sMsg":"Duplicated clOrdId"}]}'),
            DuplicateClientOrderId,
        ),
        (
            ccxt.InvalidOrder("okx amount of BTC/USDT:USDT must be greater than minimum amount precision of 0.01"),
            OrderTooSmall,
        ),
        (
            ccxt.InvalidOrder('mexc {"success":false,"code":1002,"message":"Contract not allow place order!"}'),
            OrderApiRestricted,
        ),
        (ccxt.InvalidOrder("price too far"), FinalExchangeError),
        (ccxt.ExchangeError("something new"), FinalExchangeError),
    ],
)
def test_one_error_map_from_ccxt_to_a_few_own_types(error, expected):
    exchange = "mexc" if "mexc" in str(error) else "okx"
    mapped = map_ccxt_error(error, exchange=exchange, secrets=["supersecret"], context="okx create_order")
    assert type(mapped) is expected
    assert mapped.source == type(error).__name__ and mapped.exchange == exchange
    assert str(mapped).startswith("okx create_order: ")


def test_mapped_messages_never_carry_secrets_and_are_short():
    mapped = map_ccxt_error(ccxt.AuthenticationError("key supersecret rejected " + "x" * 1000), secrets=["supersecret"])
    assert "supersecret" not in str(mapped) and len(str(mapped)) <= 300


def test_retry_helper_retries_only_retryable_errors_with_the_given_pauses():
    answers = [RetryableExchangeError("timeout"), RetryableExchangeError("429", retry_after=3.0), "ok"]
    pauses = []

    def call():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert retry_call(call, attempts=3, pause=lambda attempt: 0.1 * (attempt + 1), sleep=pauses.append) == "ok"
    assert pauses == [0.1, 3.0]  # retry_after wins when longer
    calls = []

    def refused():
        calls.append(1)
        raise FinalExchangeError("invalid order")

    with pytest.raises(FinalExchangeError):
        retry_call(refused, attempts=5, sleep=pauses.append)
    assert calls == [1]  # a final refusal is not retried


def test_the_capability_table_answers_for_known_exchanges_only_and_hands_out_copies():
    """What the table's values do is tested through the adapters against recorded real traffic
    (trading/tests/test_exchange_contracts.py); here: how it is read."""
    assert set(CAPABILITIES) == {"okx", "kucoinfutures", "mexc", "bitunix"}
    with pytest.raises(KeyError, match="binance"):
        capabilities("binance")
    stop = capabilities("okx").params("stop_params")
    stop["reduceOnly"] = False
    assert capabilities("okx").params("stop_params") == {"reduceOnly": True}  # a copy: the table stays as it is
    assert "bitunix" not in CCXT_TRADING_EXCHANGES and "okx" in CCXT_TRADING_EXCHANGES


def test_the_live_client_is_chosen_by_a_setting_real_or_a_dotted_path(settings):
    settings.LIVE_EXCHANGE_CLIENT = "real"
    okx = exchange_client_build(exchange="okx", api_key="k", secret="s", passphrase="p")
    bitunix = exchange_client_build(exchange="bitunix", api_key="k", secret="s")
    try:
        assert isinstance(okx, CcxtExchangeClient) and isinstance(bitunix, BitunixClient)
    finally:
        asyncio.run(okx.close())
        asyncio.run(bitunix.close())
    settings.LIVE_EXCHANGE_CLIENT = "testsupport.exchanges.fake.fake_exchange_client"
    fake = exchange_client_build(exchange="okx", api_key="k", secret="s", user_id=7)
    assert type(fake).__name__ == "FakeExchangeClient" and fake.exchange_id == "okx"
    settings.LIVE_EXCHANGE_CLIENT = "fake"
    with pytest.raises(ImproperlyConfigured, match="LIVE_EXCHANGE_CLIENT='fake'"):
        exchange_client_build(exchange="okx", api_key="k", secret="s")
