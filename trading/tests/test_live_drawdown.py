# ruff: noqa: F811  (pytest fixtures imported from trading.tests.live_fixtures are re-bound as test arguments)
"""Maximum-drawdown protection of LIVE trading, on the in-process fake exchange: the peak equity of the exchange
account (wallet balance + unrealised PnL) is stored by reconcile passes and live entries; past the user's
``max_drawdown_pct`` new live entries are refused and auto-trading pauses with one ``user.notify`` per day; resuming
restarts the peak from the current equity."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import ApiSecrets, UserPreferences
from accounts.tests.factories import ExchangeCredentialFactory, TelegramUserFactory
from exchanges.base import Balance, ExchangePosition
from signals.tests.factories import SignalFactory, SymbolFactory
from testsupport.exchanges.fake import _FakePosition, fake_account, fake_account_name
from trading import ledger, services, tasks
from trading.executors import live as live_module
from trading.executors.live import LiveExecutor, account_equity_of
from trading.models import LiveAccount, Position, TradeRefusal
from trading.reconcile import reconcile_user
from trading.tests.live_fixtures import API_KEY, API_SECRET, PASSPHRASE, SYMBOL, fake_exchange  # noqa: F401

pytestmark = pytest.mark.django_db

ETH = "ETH/USDT:USDT"


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(live_module.time, "sleep", lambda _seconds: None)


@pytest.fixture
def trader(fake_exchange):
    user = TelegramUserFactory(auto_trading_enabled=True, subscribed=True)
    UserPreferences.objects.filter(user=user).update(
        paper_mode=False,
        leverage=5,
        max_drawdown_pct=Decimal("10"),
        position_size_pct=Decimal("50"),
        correlation_filter=False,
        max_open_positions=5,
    )
    ExchangeCredentialFactory(
        user=user, exchange="okx", secrets=ApiSecrets(api_key=API_KEY, secret=API_SECRET, passphrase=PASSPHRASE)
    )
    user.refresh_from_db()
    return user


@pytest.fixture
def exchange(trader):
    account = fake_account(fake_account_name(user_id=trader.pk))
    account.set_price(SYMBOL, "100")
    account.set_price(ETH, "10")
    return account


def _signal(symbol=SYMBOL, base="BTC", entry="100", stop="90", tp1="110", tp2="120"):
    sym = SymbolFactory(symbol=symbol, base=base)
    return SignalFactory(symbol=sym, entry=Decimal(entry), stop=Decimal(stop), tp1=Decimal(tp1), tp2=Decimal(tp2))


def _drawdown_notes(published, user):
    return [p for e, p in published if e == "user.notify" and p["dedupe_key"].startswith(f"drawdown:{user.pk}:")]


def _entries_sent(exchange, signal, user):
    return [c for c in exchange.calls if c == ("create_order", f"P{signal.pk}U{user.pk}Lentry")]


def test_reconcile_stores_the_peak_with_unrealised_pnl_and_pauses_past_the_limit(trader, exchange, published):
    first = _signal()
    assert tasks.execute_signal.run(first.pk)["opened"] == 1
    position = Position.objects.get(user=trader, signal=first)
    assert position.status == Position.Status.OPEN and position.quantity == Decimal("250")  # 50 % of 10 000, 5x
    cash = exchange.balance  # 10 000 − the entry fee
    live = LiveAccount.objects.get(user=trader)
    assert live.exchange == "okx" and live.peak_equity == Decimal("10000")  # observed at the entry decision

    exchange.set_price(SYMBOL, "104")  # +1 000 unrealised
    reconcile_user(user=trader)
    live.refresh_from_db()
    assert live.peak_equity == live.equity == cash + Decimal("1000")
    trader.refresh_from_db()
    assert trader.auto_trading_paused_reason == ""

    exchange.set_price(SYMBOL, "100")  # back to the entry: 1 000 / (cash + 1 000) ≈ 9.1 % < 10 %: still normal
    reconcile_user(user=trader)
    live.refresh_from_db()
    assert live.equity == cash and live.peak_equity == cash + Decimal("1000")  # the peak never falls
    trader.refresh_from_db()
    assert trader.auto_trading_paused_reason == "" and _drawdown_notes(published, trader) == []

    exchange.set_price(SYMBOL, "99.5")  # −125 unrealised: 1 125 below the peak ≈ 10.2 % ≥ 10 %
    reconcile_user(user=trader)
    trader.refresh_from_db()
    assert trader.auto_trading_paused_reason.startswith("max drawdown reached: equity ")
    notes = _drawdown_notes(published, trader)
    assert len(notes) == 1 and notes[0]["user_id"] == trader.pk
    assert notes[0]["dedupe_key"] == f"drawdown:{trader.pk}:{timezone.now().astimezone(UTC).date().isoformat()}"
    assert "10.2% below its peak" in notes[0]["text"]

    reconcile_user(user=trader)  # the next pass, still in drawdown: no second message
    assert len(_drawdown_notes(published, trader)) == 1

    second = _signal(ETH, "ETH", entry="10", stop="9", tp1="11", tp2="12")
    assert tasks.execute_signal.run(second.pk)["refused"] == 1
    refusal = TradeRefusal.objects.get(user=trader, signal=second)
    assert refusal.reason == TradeRefusal.Reason.USER_PAUSED
    assert _entries_sent(exchange, second, trader) == []  # nothing reached the exchange
    position.refresh_from_db()
    assert position.status == Position.Status.OPEN  # the open position keeps its stop; only entries stop


def test_live_entry_refused_at_the_decision_when_equity_fell_below_the_limit(trader, exchange, published):
    ledger.live_account_observe(user=trader, exchange="okx", equity=Decimal("10000"), at=timezone.now())
    exchange.balance = Decimal("8900")  # a loss on the exchange since: 11 % below the peak, no reconcile pass yet
    signal = _signal()
    counts = tasks.execute_signal.run(signal.pk)
    assert counts["refused"] == 1 and counts["opened"] == 0
    refusal = TradeRefusal.objects.get(user=trader, signal=signal)
    assert refusal.reason == TradeRefusal.Reason.DRAWDOWN and refusal.notified
    assert "11.0% below its peak 10000.00" in refusal.detail
    assert not Position.objects.filter(user=trader).exists() and _entries_sent(exchange, signal, trader) == []
    trader.refresh_from_db()
    assert trader.auto_trading_paused_reason.startswith("max drawdown reached")
    # exactly one message: the pause notice (the refusal itself is not announced a second time)
    notes = [p for e, p in published if e == "user.notify"]
    assert len(notes) == 1 and notes[0]["dedupe_key"].startswith(f"drawdown:{trader.pk}:")

    tasks.execute_signal.run(signal.pk)  # redelivered: nothing more
    later = _signal(ETH, "ETH", entry="10", stop="9", tp1="11", tp2="12")
    tasks.execute_signal.run(later.pk)
    assert TradeRefusal.objects.get(user=trader, signal=later).reason == TradeRefusal.Reason.USER_PAUSED
    assert len(_drawdown_notes(published, trader)) == 1


def test_above_the_limit_live_entries_are_normal(trader, exchange, published):
    ledger.live_account_observe(user=trader, exchange="okx", equity=Decimal("10000"), at=timezone.now())
    exchange.balance = Decimal("9100")  # 9 % below the peak, limit 10 %
    reconcile_user(user=trader)
    signal = _signal()
    assert tasks.execute_signal.run(signal.pk)["opened"] == 1
    assert Position.objects.get(user=trader, signal=signal).status == Position.Status.OPEN
    trader.refresh_from_db()
    assert trader.auto_trading_paused_reason == "" and _drawdown_notes(published, trader) == []
    assert LiveAccount.objects.get(user=trader).peak_equity == Decimal("10000")


def test_resume_restarts_the_peak_from_the_current_exchange_equity(trader, exchange, published):
    ledger.live_account_observe(user=trader, exchange="okx", equity=Decimal("10000"), at=timezone.now())
    exchange.balance = Decimal("8500")
    reconcile_user(user=trader)
    trader.refresh_from_db()
    assert trader.auto_trading_paused_reason

    services.user_auto_trading_resume(user=trader)  # reads the equity from the exchange
    trader.refresh_from_db()
    assert trader.auto_trading_paused_reason == ""
    live = LiveAccount.objects.get(user=trader)
    assert live.peak_equity == live.equity == Decimal("8500")
    signal = _signal()
    assert tasks.execute_signal.run(signal.pk)["opened"] == 1  # 0 % below the new peak
    assert len(_drawdown_notes(published, trader)) == 1


def test_resume_with_the_exchange_unreachable_clears_the_peak_until_the_next_observation(trader, exchange):
    ledger.live_account_observe(user=trader, exchange="okx", equity=Decimal("10000"), at=timezone.now())
    services.user_auto_trading_pause(user=trader, reason="max drawdown reached: test")
    exchange.balance = Decimal("8000")
    exchange.inject("fetch_balance", "server_error")
    services.user_auto_trading_resume(user=trader)
    live = LiveAccount.objects.get(user=trader)
    assert live.peak_equity is None
    reconcile_user(user=trader)
    live.refresh_from_db()
    assert live.peak_equity == Decimal("8000")  # restarts at the next observed equity, no pause
    trader.refresh_from_db()
    assert trader.auto_trading_paused_reason == ""


def test_peak_measured_on_another_exchange_restarts():
    user = TelegramUserFactory()
    at = datetime(2026, 1, 1, tzinfo=UTC)
    ledger.live_account_observe(user=user, exchange="okx", equity=Decimal("10000"), at=at)
    live = ledger.live_account_observe(user=user, exchange="bitunix", equity=Decimal("500"), at=at)
    assert (live.exchange, live.peak_equity) == ("bitunix", Decimal("500"))
    assert ledger.live_account_observe(
        user=user, exchange="bitunix", equity=Decimal("400"), at=at
    ).peak_equity == Decimal("500")


def test_a_paper_trader_with_live_positions_is_observed_but_not_paused(trader, exchange, published):
    UserPreferences.objects.filter(user=trader).update(paper_mode=True)
    trader.refresh_from_db()
    ledger.live_account_observe(user=trader, exchange="okx", equity=Decimal("10000"), at=timezone.now())
    exchange.balance = Decimal("5000")
    reconcile_user(user=trader)
    trader.refresh_from_db()
    assert trader.auto_trading_paused_reason == "" and _drawdown_notes(published, trader) == []
    assert LiveAccount.objects.get(user=trader).equity == Decimal("5000")


def test_equity_counts_unrealised_pnl_unless_the_exchange_reports_equity(trader, exchange):
    exchange.positions[SYMBOL] = _FakePosition(quantity=Decimal("-10"), entry_price=Decimal("90"))  # short, −100 at 100
    assert LiveExecutor(user=trader).equity() == Decimal("9900")
    held = [ExchangePosition(symbol=SYMBOL, side="long", quantity=Decimal("1"), unrealised_pnl=Decimal("-40"))]
    wallet = Balance(currency="USDT", free=Decimal("900"), used=Decimal("100"), total=Decimal("1000"))
    assert account_equity_of(balance=wallet, positions=held) == Decimal("960")
    reported = Balance(
        currency="USDT", free=Decimal("900"), used=Decimal("100"), total=Decimal("960"), equity=Decimal("960")
    )
    assert account_equity_of(balance=reported, positions=held) == Decimal("960")  # never counted twice


def test_ccxt_equity_is_the_exchanges_own_figure():
    from exchanges.ccxt_client import CcxtExchangeClient

    okx = CcxtExchangeClient("okx", exchange=object())
    assert okx._equity_of({}, "USDT", Decimal("960")) == Decimal("960")  # no account row: ccxt's total (OKX's eq)
    multi = {"info": {"data": [{"totalEq": "43749472.35962724", "details": [{"ccy": "USDT", "eq": "0.000258796"}]}]}}
    assert okx._equity_of(multi, "USDT", Decimal("0.000258796")) == Decimal("43749472.35962724")  # USD over every coin
    mexc = CcxtExchangeClient("mexc", exchange=object())
    raw = {"info": {"success": True, "data": [{"currency": "USDT", "equity": 960.5, "availableBalance": 500}]}}
    assert mexc._equity_of(raw, "USDT", Decimal("500")) == Decimal("960.5")
    assert mexc._equity_of({"info": {}}, "USDT", Decimal("500")) is None


def test_admin_resume_of_a_live_account_restarts_the_peak_from_the_exchange(client, trader, exchange):
    from django.contrib.auth import get_user_model
    from django.urls import reverse

    client.force_login(get_user_model().objects.create_superuser("root", password="pw-for-tests-only"))
    live = ledger.live_account_observe(user=trader, exchange="okx", equity=Decimal("10000"), at=timezone.now())
    services.user_auto_trading_pause(user=trader, reason="max drawdown reached: equity 8800.00 is 12.0% below its peak")
    exchange.balance = Decimal("8800")
    url = reverse("admin:trading_liveaccount_changelist")
    assert "12.0% below its peak" in client.get(url).content.decode()
    response = client.post(url, {"action": "resume_auto_trading", "_selected_action": [live.pk]})
    assert response.status_code == 302
    trader.refresh_from_db()
    live.refresh_from_db()
    assert trader.auto_trading_paused_reason == "" and live.peak_equity == Decimal("8800")
