"""The user policy decides, from plain facts, whether a signal reaches a user and may open a position for them."""

from types import SimpleNamespace

import pytest

from accounts.models import Feature
from accounts.policy import (
    TELEGRAM,
    WEB,
    SignalFacts,
    auto_trading_status,
    position_allowed_for_user,
    signal_reaches_user,
)
from accounts.tests.factories import ExchangeCredentialFactory, TelegramUserFactory

DOGE = SignalFacts(symbol="DOGE/USDT:USDT", side="long", risk_level="medium", source="technical")

ALL_FEATURES = frozenset(Feature.values)


def _prefs(**overrides):
    values = {
        "dm_alerts": True,
        "news_signals": True,
        "flow_signals": True,
        "accepted_risk_levels": ["low", "medium"],
        "muted_symbols": [],
        "paper_mode": True,
        "max_open_positions": 3,
        "correlation_filter": False,
    }
    return SimpleNamespace(**{**values, **overrides})


def _user(**overrides):
    prefs = overrides.pop("preferences", _prefs())
    values = {"is_banned": False, "is_active": True, "auto_trading_enabled": True, "auto_trading_paused_reason": ""}
    return SimpleNamespace(preferences=prefs, **{**values, **overrides})


@pytest.mark.parametrize(
    ("user", "telegram", "web"),
    [
        (_user(), True, True),
        (_user(is_banned=True), False, False),
        (_user(is_active=False), False, True),  # blocked the bot: no card, the dashboard still gets the push
        (_user(preferences=_prefs(dm_alerts=False)), False, True),
        (_user(preferences=_prefs(muted_symbols=["doge"])), False, False),
        (_user(preferences=_prefs(accepted_risk_levels=["low"])), False, False),
    ],
)
def test_signal_reaches_user_per_channel(user, telegram, web):
    assert signal_reaches_user(user=user, signal=DOGE, channel=TELEGRAM) is telegram
    assert signal_reaches_user(user=user, signal=DOGE, channel=WEB) is web


def test_signal_facts_are_read_from_a_signal_shaped_object():
    signal = SimpleNamespace(
        symbol=SimpleNamespace(symbol="DOGE/USDT:USDT"), side="long", risk_level="high", source="news"
    )
    assert SignalFacts.of(signal) == SignalFacts("DOGE/USDT:USDT", "long", "high", "news")
    assert not signal_reaches_user(user=_user(preferences=_prefs(news_signals=False)), signal=signal)


@pytest.mark.parametrize(
    ("user", "open_symbols", "reason"),
    [
        (_user(is_banned=True), [], "banned"),
        (_user(auto_trading_enabled=False), [], "auto_trading_off"),
        (_user(auto_trading_paused_reason="max drawdown reached"), [], "user_paused"),
        (_user(preferences=_prefs(flow_signals=False, muted_symbols=["DOGE"])), [], "muted_symbol"),
        (_user(preferences=_prefs(accepted_risk_levels=["high"])), [], "risk_level"),
        (_user(), ["DOGE/USDT:USDT"], "symbol_busy"),
        (_user(preferences=_prefs(max_open_positions=1)), ["BTC/USDT:USDT"], "max_positions"),
        (_user(preferences=_prefs(correlation_filter=True)), ["SHIB/USDT:USDT"], "correlated"),
        (_user(preferences=_prefs(paper_mode=False)), [], "no_exchange"),
    ],
)
def test_position_allowed_names_the_first_rule_that_refuses(user, open_symbols, reason):
    refusal = position_allowed_for_user(
        features=ALL_FEATURES, user=user, signal=DOGE, open_symbols=open_symbols, exchange_ready=False
    )
    assert refusal is not None and refusal.reason == reason and refusal.detail


def test_position_allowed_when_every_rule_agrees():
    assert (
        position_allowed_for_user(features=ALL_FEATURES, user=_user(), signal=DOGE, open_symbols=["BTC/USDT:USDT"])
        is None
    )
    live = _user(preferences=_prefs(paper_mode=False))
    assert (
        position_allowed_for_user(
            features=ALL_FEATURES, user=live, signal=DOGE, open_symbols=[], exchange_ready=lambda: True
        )
        is None
    )


@pytest.mark.django_db
def test_live_mode_needs_an_active_and_verified_credential():
    user = TelegramUserFactory(auto_trading_enabled=True)
    user.preferences.paper_mode = False
    assert (
        position_allowed_for_user(features=ALL_FEATURES, user=user, signal=DOGE, open_symbols=[]).reason
        == "no_exchange"
    )
    unverified = ExchangeCredentialFactory(user=user, validated_at=None)
    assert (
        position_allowed_for_user(features=ALL_FEATURES, user=user, signal=DOGE, open_symbols=[]).reason
        == "no_exchange"
    )
    unverified.is_active = False
    unverified.save()
    ExchangeCredentialFactory(user=user)
    assert position_allowed_for_user(features=ALL_FEATURES, user=user, signal=DOGE, open_symbols=[]) is None


@pytest.mark.parametrize(
    ("user", "facts", "expected"),
    [
        (_user(), {}, ("on", "", "")),
        (_user(auto_trading_enabled=False), {}, ("off", "switched off", "switch_on")),
        (
            _user(auto_trading_enabled=False, auto_trading_paused_reason="InsufficientFunds"),
            {},
            ("off", "InsufficientFunds", "switch_on"),
        ),
        (_user(auto_trading_paused_reason="max drawdown reached"), {}, ("paused", "max drawdown reached", "resume")),
        (_user(), {"daily_loss_hit": True}, ("paused", "daily loss limit reached", "resume")),
        (
            _user(),
            {"global_pause_reason": "maintenance"},
            ("paused", "paused for everybody by the operator (maintenance)", "wait_operator"),
        ),
    ],
)
def test_auto_trading_status_says_why_and_the_one_action(user, facts, expected):
    status = auto_trading_status(user=user, **facts)
    assert (status.state, status.reason, status.action) == expected


def test_a_plan_unlocks_live_trading_news_and_flow_trading_and_more_positions():
    live = _user(preferences=_prefs(paper_mode=False, max_open_positions=10))
    refusal = position_allowed_for_user(user=live, signal=DOGE, open_symbols=[], exchange_ready=True, features=())
    assert refusal.reason == "plan_required" and "/subscribe" in refusal.detail
    paper = _user(preferences=_prefs(max_open_positions=10))
    news = SignalFacts(symbol="DOGE/USDT:USDT", side="long", risk_level="low", source="news")
    assert position_allowed_for_user(user=paper, signal=news, open_symbols=[], features=()).reason == "plan_required"
    assert position_allowed_for_user(user=paper, signal=news, open_symbols=[], features={Feature.NEWS_TRADING}) is None
    three = ["BTC/USDT:USDT", "ETH/USDT:USDT", "XRP/USDT:USDT"]
    capped = position_allowed_for_user(user=paper, signal=DOGE, open_symbols=three, features=())
    assert capped.reason == "max_positions" and "free plan" in capped.detail
    assert (
        position_allowed_for_user(user=paper, signal=DOGE, open_symbols=three, features={Feature.MORE_POSITIONS})
        is None
    )
