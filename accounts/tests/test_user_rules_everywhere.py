# ruff: noqa: F401, F811  (pytest fixtures imported from the trading tests are re-bound as test arguments)
"""One rule, one place: every user rule set through every interface has the same four effects.

Each rule (mute, risk levels, max open positions, paper/live, auto-trading) is set by a trader through the bot (the
local Bot API server and the bridge's update handling), the web settings form (HTTP, Django test client) and the
REST API (HTTP, token auth). Then a signal is published as the signals app does (``signal.created`` to its three
consumers), and the test checks what the trader gets: the Telegram card (recorded by the local Bot API server), the
WebSocket push (what the push task hands to the channel layer), a position opened or not (paper, or live on the fake
exchange), and what ``/status`` in the bot and the web dashboard show.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from accounts.models import RISK_LEVELS, Subscription, TelegramUser, UserPreferences
from accounts.services import preferences_update
from accounts.symbols import symbol_base
from accounts.tests.factories import ExchangeCredentialFactory, SubscriptionFactory, TelegramUserFactory
from config.events import dispatch_now
from signals.models import Signal
from signals.tests.factories import SignalFactory, SymbolFactory
from telegram_bridge.tests.bot_helpers import press, say
from testsupport.exchanges.fake import fake_account, fake_account_name
from trading.ledger import paper_account_get_or_create
from trading.models import PaperAccount, Position
from trading.tests.factories import PositionFactory
from trading.tests.live_fixtures import fake_exchange
from trading.tests.paper_fixtures import market, paper_settings
from web.dashboard.forms import PreferencesForm

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

TELEGRAM_ID = 770001
ONLY_SIGNAL_CONSUMERS = {
    "signal.created": [
        "telegram_bridge.tasks.broadcast_signal",
        "trading.tasks.execute_signal",
        "web.live_updates.push_signal",
    ],
    "signal.closed": [],
    "position.opened": [],
    "position.updated": [],
    "position.closed": [],
    "user.notify": [],
}


@dataclass
class Effects:
    card: bool
    push: bool
    position: Position | None


class World:
    """The trader (one account: Telegram chat, web login, API token), the bot's server, the pushes, the market."""

    def __init__(self, *, bot_api, market, pushes, user, web: Client):
        self.bot_api, self.market, self.pushes, self.user, self.web = bot_api, market, pushes, user, web

    def preferences(self) -> UserPreferences:
        return UserPreferences.objects.select_related("user").get(user=self.user)

    def publish_signal(self, symbol: str, *, risk_level: str = "medium") -> Effects:
        """A new signal announced as signals.services does; what reached the trader."""
        self.market.prices[symbol] = Decimal("100")
        fake_account(fake_account_name(user_id=self.user.pk)).set_price(symbol, "100")
        Signal.objects.filter(symbol__symbol=symbol, status="open").update(status="closed")  # one open per market
        signal = SignalFactory(symbol=SymbolFactory(symbol=symbol), risk_level=risk_level)
        cards_before = len(self.cards(symbol))
        pushes_before = len(self.pushes)
        dispatch_now("signal.created", {"signal_id": signal.pk})
        pushed = [
            (group, payload)
            for group, payload in self.pushes[pushes_before:]
            if payload.get("type") == "signal" and payload.get("id") == signal.pk
        ]
        assert all(group == f"user.{self.user.pk}" for group, _ in pushed)
        return Effects(
            card=len(self.cards(symbol)) > cards_before,
            push=bool(pushed),
            position=Position.objects.filter(user=self.user, signal=signal).first(),
        )

    def cards(self, symbol: str) -> list[dict]:
        return [
            m
            for m in self.bot_api.sent_messages(TELEGRAM_ID)
            if m.get("method") != "editMessageText" and f" {symbol}</b>" in m["text"] and "Entry:" in m["text"]
        ]

    def status(self) -> str:
        [answer] = say(self.bot_api, TELEGRAM_ID, "/status")
        return answer["text"]

    def dashboard(self) -> str:
        pages = [self.web.get(reverse("dashboard:pnl")), self.web.get(reverse("dashboard:settings"))]
        assert all(page.status_code == 200 for page in pages)
        return "\n".join(page.content.decode() for page in pages)


# ---- the three interfaces, each driven as a trader drives it -------------------------------------------------------


class BotInterface:
    name = "bot"

    def __init__(self, world: World):
        self.world = world

    def _say(self, text: str) -> str:
        return "\n".join(m["text"] for m in say(self.world.bot_api, TELEGRAM_ID, text))

    def _settings_page(self) -> int:
        [page] = say(self.world.bot_api, TELEGRAM_ID, "/settings")
        return page["message_id"]

    def mute(self, symbol: str) -> str:
        return self._say(f"/mute {symbol}")

    def unmute(self, symbol: str) -> str:
        return self._say(f"/unmute {symbol}")

    def risk_levels(self, levels: list[str]) -> str:
        page = self._settings_page()
        current = self.world.preferences().accepted_risk_levels
        for level in RISK_LEVELS:
            if (level in levels) != (level in current):
                press(self.world.bot_api, TELEGRAM_ID, f"s:r:{level}", message_id=page)
        return ""

    def max_positions(self, value: int) -> str:
        press(self.world.bot_api, TELEGRAM_ID, "s:i:max_open_positions", message_id=self._settings_page())
        return self._say(str(value))

    def paper_mode(self, paper: bool) -> str:
        return "" if self.world.preferences().paper_mode == paper else self._say("/toggle_paper_mode")

    def auto_trading(self, on: bool) -> str:
        if on:
            return self._say("/autotrade on")
        [dashboard] = say(self.world.bot_api, TELEGRAM_ID, "/dashboard")  # off: the dashboard's button
        press(self.world.bot_api, TELEGRAM_ID, "d:auto", message_id=dashboard["message_id"])
        return self.world.bot_api.calls_of("answerCallbackQuery")[-1]["text"]


class WebFormInterface:
    name = "web"

    def __init__(self, world: World):
        self.world = world

    def _submit(self, **overrides) -> str:
        """Post the settings form as the browser does (the current values, with the trader's changes)."""
        initial = PreferencesForm.initial_from(self.world.preferences())
        initial.update(overrides)
        data = {}
        for name, value in initial.items():
            if isinstance(value, bool):
                if value:
                    data[name] = "on"
            else:
                data[name] = value if isinstance(value, list) else str(value)
        response = self.world.web.post(reverse("dashboard:settings"), data)
        if response.status_code == 302:
            return ""
        assert response.status_code == 200
        return " ".join(message for messages in response.context["form"].errors.values() for message in messages)

    def _muted(self) -> list[str]:
        return [symbol_base(s) for s in self.world.preferences().muted_symbols]

    def mute(self, symbol: str) -> str:
        return self._submit(muted_symbols=", ".join([*self._muted(), symbol]))

    def unmute(self, symbol: str) -> str:
        return self._submit(muted_symbols=", ".join(s for s in self._muted() if s != symbol_base(symbol)))

    def risk_levels(self, levels: list[str]) -> str:
        return self._submit(accepted_risk_levels=levels)

    def max_positions(self, value: int) -> str:
        return self._submit(max_open_positions=value)

    def paper_mode(self, paper: bool) -> str:
        return self._submit(paper_mode=paper)

    def auto_trading(self, on: bool) -> str:
        return self._submit(auto_trading=on)


class ApiInterface:
    name = "api"

    def __init__(self, world: World):
        self.world = world
        self.client = Client()
        self.auth = f"Token {Token.objects.create(user=world.user.web_user).key}"

    def _patch(self, body: dict) -> str:
        response = self.client.patch(
            reverse("api:preferences"),
            data=json.dumps(body),
            content_type="application/json",
            HTTP_AUTHORIZATION=self.auth,
        )
        if response.status_code == 200:
            assert (
                response.json()["auto_trading"] == TelegramUser.objects.get(pk=self.world.user.pk).auto_trading_enabled
            )
            return ""
        assert response.status_code == 400, response.content
        detail = response.json()["detail"]
        return " ".join(m for messages in detail.values() for m in messages)

    def _current(self) -> dict:
        response = self.client.get(reverse("api:preferences"), HTTP_AUTHORIZATION=self.auth)
        assert response.status_code == 200
        return response.json()

    def mute(self, symbol: str) -> str:
        return self._patch({"muted_symbols": [*self._current()["muted_symbols"], symbol]})

    def unmute(self, symbol: str) -> str:
        muted = self._current()["muted_symbols"]
        return self._patch({"muted_symbols": [s for s in muted if symbol_base(s) != symbol_base(symbol)]})

    def risk_levels(self, levels: list[str]) -> str:
        return self._patch({"accepted_risk_levels": levels})

    def max_positions(self, value: int) -> str:
        return self._patch({"max_open_positions": value})

    def paper_mode(self, paper: bool) -> str:
        return self._patch({"paper_mode": paper})

    def auto_trading(self, on: bool) -> str:
        return self._patch({"auto_trading": on})


INTERFACES = {"bot": BotInterface, "web": WebFormInterface, "api": ApiInterface}
# How each interface spells the symbol it mutes: all of them mean DOGE.
MUTE_SPELLING = {"bot": "doge", "web": "Doge/usdt", "api": "DOGE/USDT:USDT"}


# ---- the rules: set, publish, check the four effects ---------------------------------------------------------------


def rule_mute(world: World, interface) -> None:
    assert interface.mute(MUTE_SPELLING[interface.name]).find("⚠️") == -1
    assert world.preferences().muted_symbols == ["DOGE/USDT:USDT"]
    effects = world.publish_signal("DOGE/USDT:USDT")
    assert (effects.card, effects.push, effects.position) == (False, False, None)
    assert "Muted: DOGE" in world.status()
    assert 'name="muted_symbols" value="DOGE"' in world.dashboard()

    interface.unmute("DOGE")
    effects = world.publish_signal("DOGE/USDT:USDT")
    assert effects.card and effects.push and effects.position is not None
    assert "Muted: none" in world.status()
    assert re.search(r'name="muted_symbols"(?! value="DOGE")', world.dashboard())


def rule_risk_levels(world: World, interface) -> None:
    interface.risk_levels(["low"])
    effects = world.publish_signal("XRP/USDT:USDT", risk_level="medium")
    assert (effects.card, effects.push, effects.position) == (False, False, None)
    assert "risk levels: low\n" in world.status()
    assert not re.search(r'value="medium"[^>]*checked', world.dashboard())

    interface.risk_levels(["low", "medium"])
    effects = world.publish_signal("SOL/USDT:USDT", risk_level="medium")
    assert effects.card and effects.push and effects.position is not None
    assert "risk levels: low, medium\n" in world.status()
    assert re.search(r'value="medium"[^>]*checked', world.dashboard())


def rule_max_positions(world: World, interface) -> None:
    PositionFactory(user=world.user, signal=SignalFactory(symbol=SymbolFactory(symbol="BTC/USDT:USDT")))
    refused = interface.max_positions(0)
    assert "Max open positions must be a whole number from 1 to 50." in refused  # one bound, one message
    assert "max_open_positions" not in refused

    assert interface.max_positions(1).find("⚠️") == -1
    effects = world.publish_signal("XRP/USDT:USDT")
    assert effects.card and effects.push and effects.position is None  # delivered, not traded
    assert "Open positions: 1 / 1" in world.status()
    assert 'name="max_open_positions" value="1"' in world.dashboard()

    interface.max_positions(2)
    effects = world.publish_signal("SOL/USDT:USDT")
    assert effects.card and effects.push and effects.position is not None
    assert "Open positions: 2 / 2" in world.status()


def rule_paper_live(world: World, interface) -> None:
    refused = interface.paper_mode(False)  # no exchange connected: refused, and said why
    assert "Live trading needs a connected exchange" in refused
    effects = world.publish_signal("XRP/USDT:USDT")
    assert effects.card and effects.push and effects.position is not None and effects.position.mode == "paper"
    assert "Mode: paper" in world.status()
    assert "(paper mode)" in world.dashboard()

    ExchangeCredentialFactory(user=world.user, exchange="okx")  # as /connect stores verified keys
    assert interface.paper_mode(False).find("⚠️") == -1
    effects = world.publish_signal("SOL/USDT:USDT")
    assert effects.card and effects.push and effects.position is not None
    assert effects.position.mode == "live" and effects.position.status == Position.Status.OPEN
    assert "Mode: live" in world.status()
    assert "(live mode)" in world.dashboard()


def rule_auto_trading(world: World, interface) -> None:
    interface.auto_trading(False)
    effects = world.publish_signal("XRP/USDT:USDT")
    assert effects.card and effects.push and effects.position is None
    assert "Auto-trading: <b>off</b>" in world.status()
    page = world.dashboard()
    assert 'id="auto-trading-state">off<' in page and "Switch auto-trading on" in page

    PaperAccount.objects.filter(user=world.user).update(balance=Decimal("0"))  # a spent paper account
    refused = interface.auto_trading(True)
    assert "cannot be switched on yet" in refused and "paper account has no balance left" in refused
    effects = world.publish_signal("ADA/USDT:USDT")
    assert effects.position is None
    assert "Auto-trading: <b>off</b>" in world.status()

    PaperAccount.objects.filter(user=world.user).update(balance=Decimal("10000"))
    assert interface.auto_trading(True).find("⚠️") == -1
    effects = world.publish_signal("SOL/USDT:USDT")
    assert effects.card and effects.push and effects.position is not None and effects.position.mode == "paper"
    assert "Auto-trading: <b>on</b>" in world.status()
    assert 'id="auto-trading-state">on<' in world.dashboard()


def rule_live_needs_the_plan(world: World, interface) -> None:
    ExchangeCredentialFactory(user=world.user, exchange="okx")
    assert interface.paper_mode(False).find("⚠️") == -1  # live, with the plan and an exchange
    interface.auto_trading(False)
    Subscription.objects.filter(user=world.user).update(valid_until=timezone.now() - timedelta(days=1))  # it ended

    refused = interface.auto_trading(True)
    assert "cannot be switched on yet" in refused and "live trading is part of a paid plan" in refused
    assert "Auto-trading: <b>off</b>" in world.status()
    effects = world.publish_signal("SOL/USDT:USDT")
    assert effects.card and effects.position is None


RULES = {
    "mute": rule_mute,
    "risk_levels": rule_risk_levels,
    "max_positions": rule_max_positions,
    "paper_live": rule_paper_live,
    "auto_trading": rule_auto_trading,
    "live_needs_the_plan": rule_live_needs_the_plan,
}


@pytest.fixture
def world(bot_api, market, paper_settings, fake_exchange, settings, monkeypatch, django_user_model):
    settings.DOMAIN_EVENT_CONSUMERS = ONLY_SIGNAL_CONSUMERS
    pushes: list[tuple[str, dict]] = []
    monkeypatch.setattr("web.live_updates.push", lambda group, payload: pushes.append((group, payload)))
    login = django_user_model.objects.create_user("trader", password="a-long-password-1")
    user = TelegramUserFactory(telegram_id=TELEGRAM_ID, web_user=login, first_name="Ada")
    SubscriptionFactory(user=user, source="admin", external_id=None)  # a plan with every feature (live trading too)
    preferences_update(
        user=user,
        changes={
            "accepted_risk_levels": ["low", "medium", "high"],
            "correlation_filter": False,
            "max_open_positions": 5,
            "auto_trading": True,
        },
    )
    assert PaperAccount.objects.filter(user=user).exists()  # switching auto-trading on opened the paper account
    paper_account_get_or_create(user=user)
    web = Client()
    web.force_login(login)
    return World(bot_api=bot_api, market=market, pushes=pushes, user=user, web=web)


@pytest.mark.parametrize("interface_name", list(INTERFACES))
@pytest.mark.parametrize("rule", list(RULES))
def test_a_rule_set_anywhere_has_the_same_effects_everywhere(world, rule, interface_name):
    RULES[rule](world, INTERFACES[interface_name](world))
