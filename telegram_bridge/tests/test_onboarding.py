"""/start walks a new trader through paper/live, size, risk levels and auto-trading with buttons (every choice saved
through preferences_update), skippable, ending on the dashboard; a wrong typed value is asked again."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.models import TelegramUser
from telegram_bridge.conversations import conversation_get
from telegram_bridge.tests.bot_helpers import callback_data, press, say
from trading.models import PaperAccount

pytestmark = pytest.mark.django_db

USER = 670001


def test_the_walk_saves_each_choice_and_ends_on_the_dashboard(bot_api):
    welcome, step = say(bot_api, USER, "/start")
    assert "Welcome" in welcome["text"] and "1/4 · Paper or live?" in step["text"]
    page = step["message_id"]

    [step] = press(bot_api, USER, "o:mode:live", message_id=page)  # no plan, no exchange: said why, stays paper
    assert "2/4 · Position size" in step["text"] and "live" in step["text"].lower()
    assert "/connect" in step["text"] and TelegramUser.objects.get(telegram_id=USER).preferences.paper_mode

    [step] = press(bot_api, USER, "o:size:2", message_id=page)
    assert "3/4 · Risk levels" in step["text"] and step["message_id"] == page  # the same message, edited
    press(bot_api, USER, "o:risk:high", message_id=page)
    [step] = press(bot_api, USER, "o:risk:low", message_id=page)
    assert "Now: <b>medium, high</b>" in step["text"]
    [step] = press(bot_api, USER, "o:risk:next", message_id=page)
    assert "4/4 · Auto-trading" in step["text"] and "paper" in step["text"]

    [dashboard] = press(bot_api, USER, "o:auto:on", message_id=page)
    assert "<b>Dashboard</b>" in dashboard["text"] and "d:settings" in callback_data(dashboard)
    user = TelegramUser.objects.get(telegram_id=USER)
    prefs = user.preferences
    assert prefs.position_size_pct == Decimal("2") and prefs.accepted_risk_levels == ["medium", "high"]
    assert user.auto_trading_enabled and PaperAccount.objects.filter(user=user).exists()
    assert "Auto-trading: <b>on</b>" in say(bot_api, USER, "/status")[0]["text"]


def test_skip_goes_straight_to_the_dashboard_and_a_returning_trader_can_walk_again(bot_api):
    _, step = say(bot_api, USER, "/start")
    [dashboard] = press(bot_api, USER, "o:skip", message_id=step["message_id"])
    assert "<b>Dashboard</b>" in dashboard["text"]
    assert not TelegramUser.objects.get(telegram_id=USER).auto_trading_enabled  # nothing chosen, nothing switched

    [welcome] = say(bot_api, USER, "/start")
    assert "Welcome back" in welcome["text"] and {"o:begin", "d:home"} <= set(callback_data(welcome))
    [step] = press(bot_api, USER, "o:begin", message_id=welcome["message_id"])
    assert "1/4" in step["text"]


def test_a_typed_size_is_asked_again_until_it_is_right_and_cancel_leaves(bot_api):
    _, step = say(bot_api, USER, "/start")
    press(bot_api, USER, "o:mode:paper", message_id=step["message_id"])
    [question] = press(bot_api, USER, "o:size:other", message_id=step["message_id"])
    assert "from 0.1% to 100%" in question["text"]
    [refused] = say(bot_api, USER, "250")
    assert refused["text"] == (
        "⚠️ Position size must be a number from 0.1% to 100%. Send it again, or /cancel to keep the current value."
    )
    [refused] = say(bot_api, USER, "1e1000000")  # read by its shape: refused at once, never computed
    assert "from 0.1% to 100%" in refused["text"]
    saved, following = say(bot_api, USER, "7.5%")
    assert saved["text"] == "✅ Saved." and "3/4 · Risk levels" in following["text"]
    assert TelegramUser.objects.get(telegram_id=USER).preferences.position_size_pct == Decimal("7.5")

    say(bot_api, USER, "/settings")
    press(bot_api, USER, "s:i:max_open_positions")
    assert "from 1 to 50" in say(bot_api, USER, "0")[0]["text"]
    assert conversation_get(telegram_id=USER)["field"] == "max_open_positions"  # still in the input
    assert say(bot_api, USER, "/cancel")[0]["text"] == "Cancelled."
    assert "/dashboard" in say(bot_api, USER, "4")[0]["text"]  # the input is closed: the number is not a value
    assert TelegramUser.objects.get(telegram_id=USER).preferences.max_open_positions == 3
