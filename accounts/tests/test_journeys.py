# ruff: noqa: F401, F811  (pytest fixtures imported from the trading tests are re-bound as test arguments)
"""Whole user journeys: a scripted trader goes from /start to a closed live position and reads the same PnL
everywhere.

/start → onboarding (buttons) → /connect (fake exchange: keys verified, then stored) → live mode and auto-trading
switched on through one interface (the bot, the web settings form or the REST API) → a signal → a live position on
the fake exchange with its stop and targets → TP1 → TP2 closes it → ``/pnl`` in the bot, the dashboard's PnL page
and the API's PnL agree to the cent, for the period "all" and for "today" on the market clock (a replay clock set
in the past: the demo's dashboard shows its figures). Driven through the local Bot API server and the polling
bridge; runs on SQLite and, with ``DATABASE_URL``, on PostgreSQL.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from accounts.login_links import web_user_for
from accounts.models import TelegramUser, UserPreferences
from accounts.tests.factories import PlanFactory, SubscriptionFactory
from config.events import dispatch_now
from signals.tests.factories import SignalFactory, SymbolFactory
from telegram_bridge.tests.bot_helpers import callback_data, press, say
from testsupport.exchanges.fake import fake_account, fake_account_name
from trading.models import Position
from trading.reconcile import reconcile_user
from trading.tests.live_fixtures import fake_exchange
from trading.tests.paper_fixtures import market, paper_settings
from web.dashboard.forms import PreferencesForm

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

TRADER = 990001
SYMBOL = "BTC/USDT:USDT"
KEYS = ("3f1c9a2e-7b4d-4e8a-9c6f-1a2b3c4d5e6f", "9A8B7C6D5E4F30211203F4E5D6C7B8A9", "Journey-pass-42")
CONSUMERS = {
    "signal.created": ["telegram_bridge.tasks.broadcast_signal", "trading.tasks.execute_signal"],
    "signal.closed": [],
    "position.opened": ["telegram_bridge.tasks.notify_position"],
    "position.updated": ["telegram_bridge.tasks.notify_position"],
    "position.closed": ["telegram_bridge.tasks.notify_position"],
    "user.notify": ["telegram_bridge.tasks.notify_user"],
}
NET = re.compile(r"<b>Net: ([+-]?[\d.]+) USDT</b>")


def cents(value) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


class Trader:
    """The trader's three doors: the Telegram chat, the web dashboard (logged in), the REST API (token)."""

    def __init__(self, bot_api):
        self.bot_api = bot_api
        self.web = Client()
        self.api = Client()
        self.api_auth = ""

    @property
    def user(self) -> TelegramUser:
        return TelegramUser.objects.select_related("preferences").get(telegram_id=TRADER)

    def say(self, text: str) -> list[dict]:
        return say(self.bot_api, TRADER, text)

    def press(self, data: str, message_id: int | None = None) -> list[dict]:
        return press(self.bot_api, TRADER, data, message_id=message_id)

    def log_in_everywhere(self) -> None:
        web_user = web_user_for(telegram_user=self.user)
        self.web.force_login(web_user)
        self.api_auth = f"Token {Token.objects.create(user=web_user).key}"

    # --- the settings step, through one interface ---
    def go_live_with_auto_trading(self, interface: str) -> None:
        if interface == "bot":
            assert "Live mode is on" in self.say("/toggle_paper_mode")[0]["text"]
            assert "Auto-trading is on" in self.say("/autotrade on")[0]["text"]
        elif interface == "web":
            initial = PreferencesForm.initial_from(UserPreferences.objects.get(user=self.user))
            initial.update(paper_mode=False, auto_trading=True)
            data = {k: (v if isinstance(v, list) else str(v)) for k, v in initial.items() if not isinstance(v, bool)}
            data.update({k: "on" for k, v in initial.items() if v is True})
            response = self.web.post(reverse("dashboard:settings"), data)
            assert response.status_code == 302, response.context["form"].errors
        else:
            response = self.api.patch(
                reverse("api:preferences"),
                json.dumps({"paper_mode": False, "auto_trading": True}),
                content_type="application/json",
                HTTP_AUTHORIZATION=self.api_auth,
            )
            assert response.status_code == 200, response.content
            assert response.json()["auto_trading_status"]["state"] == "on"

    # --- what each door says the PnL is ---
    def bot_net(self, period: str) -> Decimal:
        [answer] = self.say(f"/pnl {period}")
        return Decimal(NET.search(answer["text"]).group(1))

    def dashboard_net(self, period: str) -> Decimal:
        page = self.web.get(reverse("dashboard:pnl"), {"period": period})
        assert page.status_code == 200
        net = Decimal(str(page.context["summary"]["net"]))
        assert f"{cents(net)}" in page.content.decode()  # the figure the trader reads, to the cent
        return net

    def api_net(self, period: str) -> Decimal:
        response = self.api.get(reverse("api:pnl"), {"period": period}, HTTP_AUTHORIZATION=self.api_auth)
        assert response.status_code == 200
        text = response.json()["summary"]["net"]
        assert "E" not in text  # a plain decimal string
        return Decimal(text)


@pytest.fixture
def trader(bot_api, market, paper_settings, fake_exchange, settings):
    settings.DOMAIN_EVENT_CONSUMERS = CONSUMERS
    settings.WEB_BASE_URL = "https://perps.example"
    market.prices[SYMBOL] = Decimal("100")
    return Trader(bot_api)


def onboarding(trader: Trader) -> None:
    welcome, step = trader.say("/start")
    assert "Welcome" in welcome["text"] and "o:mode:paper" in callback_data(step)
    page = step["message_id"]
    trader.press("o:mode:paper", page)
    trader.press("o:size:5", page)
    trader.press("o:risk:high", page)
    [step] = trader.press("o:risk:next", page)
    assert "4/4" in step["text"]
    [dashboard] = trader.press("o:auto:off", page)  # auto-trading comes after the exchange
    assert "<b>Dashboard</b>" in dashboard["text"]
    prefs = trader.user.preferences
    assert prefs.paper_mode and prefs.position_size_pct == Decimal("5")
    assert prefs.accepted_risk_levels == ["low", "medium", "high"] and not trader.user.auto_trading_enabled


def connect(trader: Trader) -> None:
    [question] = trader.say("/connect")
    assert "cx:okx" in callback_data(question)
    trader.press("cx:okx")
    answers = []
    for key in KEYS:
        trader.bot_api.inject_message(user_id=TRADER, text=key)
        message_id = max(k[1] for k in trader.bot_api.messages if k[0] == str(TRADER))
        from telegram_bridge.bridge import polling_run

        assert polling_run(timeout=2, max_updates=1) == 1
        assert not trader.bot_api.message_exists(TRADER, message_id)  # each key message deleted
        answers.append(trader.bot_api.sent_messages(TRADER)[-1]["text"])
    assert answers[0].startswith("Received (message deleted).")
    assert "✅ OKX connected" in answers[-1] and "Free balance: 10000.00 USDT" in answers[-1]
    credential = trader.user.credentials.get(is_active=True)
    assert credential.validated_at is not None and credential.last4 == KEYS[0][-4:]


@pytest.mark.parametrize("interface", ["bot", "web", "api"])
def test_a_trader_goes_from_start_to_a_closed_live_position_and_every_door_shows_the_same_pnl(
    trader, market, interface, django_capture_on_commit_callbacks
):
    onboarding(trader)
    connect(trader)
    SubscriptionFactory(user=trader.user, plan=PlanFactory(features=["live_trading"]), source="admin", external_id=None)
    trader.log_in_everywhere()
    trader.go_live_with_auto_trading(interface)
    assert (
        "Auto-trading: <b>on</b>" in trader.say("/status")[0]["text"]
        and "Mode: live" in trader.say("/status")[0]["text"]
    )

    account = fake_account(fake_account_name(user_id=trader.user.pk))
    account.set_price(SYMBOL, "100")
    signal = SignalFactory(
        symbol=SymbolFactory(symbol=SYMBOL, base="BTC"),
        risk_level="medium",
        entry=Decimal("100"),
        stop=Decimal("98"),
        tp1=Decimal("102"),
        tp2=Decimal("104"),
    )
    with django_capture_on_commit_callbacks(execute=True):  # the domain events announced after each commit
        dispatch_now("signal.created", {"signal_id": signal.pk})
    card = [m for m in trader.bot_api.sent_messages(TRADER) if f"{SYMBOL}</b>" in m["text"] and "Entry:" in m["text"]]
    assert len(card) == 1
    position = Position.objects.get(user=trader.user, signal=signal)
    assert position.mode == "live" and position.status == Position.Status.OPEN and position.exchange == "okx"
    assert account.positions[SYMBOL].quantity == position.quantity  # the position is on the exchange
    assert "Position opened" in trader.bot_api.sent_messages(TRADER)[-1]["text"]

    account.set_price(SYMBOL, "102")  # TP1 fires on the exchange
    with django_capture_on_commit_callbacks(execute=True):
        reconcile_user(user=trader.user)
    position.refresh_from_db()
    assert position.tp1_done and position.status == Position.Status.OPEN
    assert "TP1 taken" in trader.bot_api.sent_messages(TRADER)[-1]["text"]

    account.set_price(SYMBOL, "104")  # TP2 closes the rest
    with django_capture_on_commit_callbacks(execute=True):
        reconcile_user(user=trader.user)
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED and position.remaining_quantity == 0
    closed = trader.bot_api.sent_messages(TRADER)[-1]["text"]
    assert "Position closed" in closed and f"Net PnL: <b>+{cents(position.net_pnl)} USDT</b>" in closed
    assert account.balance == Decimal("10000") + position.net_pnl  # what we booked is what the exchange moved

    expected = cents(position.net_pnl)
    assert expected > 0
    for period in ("all", "today", "week", "month"):  # on the market clock (a replayed Monday, not the wall clock)
        assert (
            trader.bot_net(period) == cents(trader.dashboard_net(period)) == cents(trader.api_net(period)) == expected
        ), period
    assert position.closed_at.date() == market.now().date()
