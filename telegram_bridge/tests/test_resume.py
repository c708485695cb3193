"""/resume and the settings page's Resume button: a user paused by the max-drawdown or daily-loss rule restarts
auto-trading through trading.services.user_auto_trading_resume (end to end through the local Bot API server)."""

from datetime import UTC
from decimal import Decimal

import pytest

from accounts.models import TelegramUser
from accounts.tests.factories import TelegramUserFactory
from analytics.models import UserActivity
from telegram_bridge import keyboards
from telegram_bridge.tests.bot_helpers import callback_data, press, say
from trading.market import market_now
from trading.models import DailyRiskState, PaperAccount, TradingSwitch
from trading.tests.factories import PaperAccountFactory

pytestmark = pytest.mark.django_db

DRAWDOWN_REASON = "max drawdown reached: <b>22%</b> & over the 20% limit"


def drawdown_paused_user(telegram_id: int) -> TelegramUser:
    user = TelegramUserFactory(
        telegram_id=telegram_id, auto_trading_enabled=True, auto_trading_paused_reason=DRAWDOWN_REASON
    )
    PaperAccountFactory(user=user, balance=Decimal("780"), peak_equity=Decimal("1000"))
    return user


def today():
    return market_now().astimezone(UTC).date()


def test_settings_page_offers_resume_to_a_drawdown_paused_user_and_the_button_resumes(bot_api):
    user = drawdown_paused_user(601)
    [page] = say(bot_api, 601, "/settings")
    assert "d:resume" in callback_data(page)
    assert "&lt;b&gt;22%&lt;/b&gt; &amp; over" in page["text"] and "<b>22%</b>" not in page["text"]

    [edited] = press(bot_api, 601, "d:resume", message_id=page["message_id"])
    user.refresh_from_db()
    assert user.auto_trading_paused_reason == ""
    # The drawdown peak restarts from the current equity (trading's service), so the next signal is not paused again.
    assert PaperAccount.objects.get(user=user).peak_equity == Decimal("780")
    assert edited["method"] == "editMessageText" and edited["message_id"] == page["message_id"]
    assert "Auto-trading resumed" in edited["text"] and "&lt;b&gt;22%&lt;/b&gt;" in edited["text"]
    assert "d:resume" not in callback_data(edited) and "s:t:dm_alerts" in callback_data(edited)
    assert bot_api.calls_of("answerCallbackQuery")[-1]["text"] == "Auto-trading resumed."
    assert UserActivity.objects.filter(user=user, kind="callback", name="d:resume").exists()


def test_resume_command_lifts_the_daily_loss_pause_and_says_the_limit_still_holds(bot_api):
    user = TelegramUserFactory(telegram_id=602, auto_trading_enabled=True)
    DailyRiskState.objects.create(
        user=user, day=today(), start_equity=Decimal("1000"), realised_pnl=Decimal("-60"), loss_limit_hit=True
    )
    assert "d:resume" in callback_data(say(bot_api, 602, "/settings")[0])

    [answer] = say(bot_api, 602, "/resume")
    assert "Auto-trading resumed" in answer["text"] and "daily loss limit reached" in answer["text"]
    assert "still at your daily loss limit" in answer["text"]  # 60 lost of a 5% × 1000 limit: honest about it
    assert not DailyRiskState.objects.get(user=user).loss_limit_hit
    assert UserActivity.objects.filter(user=user, kind="command", name="resume").exists()
    assert "d:resume" not in callback_data(say(bot_api, 602, "/settings")[0])


def test_resume_when_nothing_is_paused_is_a_polite_no_op(bot_api, monkeypatch):
    calls = []
    monkeypatch.setattr("trading.services.user_auto_trading_resume", lambda **kwargs: calls.append(kwargs))
    user = TelegramUserFactory(telegram_id=603, auto_trading_enabled=True)
    # Yesterday's flag does not pause today.
    DailyRiskState.objects.create(
        user=user,
        day=today().replace(year=today().year - 1),
        start_equity=Decimal("1000"),
        realised_pnl=Decimal("-60"),
        loss_limit_hit=True,
    )
    [answer] = say(bot_api, 603, "/resume")
    assert "not paused" in answer["text"] and "nothing to resume" in answer["text"]
    [settings_page] = say(bot_api, 603, "/settings")
    assert "d:resume" not in callback_data(settings_page) and "paused" not in settings_page["text"]
    # A stale Resume button (pressed after someone else already resumed) is answered politely as well.
    [edited] = press(bot_api, 603, "d:resume", message_id=settings_page["message_id"])
    assert "nothing to resume" in edited["text"]
    assert bot_api.calls_of("answerCallbackQuery")[-1]["text"] == "Nothing to resume."
    assert calls == []


def test_resume_mentions_the_operator_pause_and_an_account_with_auto_trading_off(bot_api):
    user = drawdown_paused_user(604)
    TelegramUser.objects.filter(pk=user.pk).update(auto_trading_enabled=False)
    switch = TradingSwitch.current()
    switch.auto_trading_paused = True
    switch.save()
    [answer] = say(bot_api, 604, "/resume")
    assert "Auto-trading resumed" in answer["text"] and "paused for everybody by the operator" in answer["text"]
    assert "switched off for your account" in answer["text"]
    assert TelegramUser.objects.get(pk=user.pk).auto_trading_paused_reason == ""


def test_resume_is_in_the_help_centre_and_a_known_callback():
    from telegram_bridge import texts

    assert "/resume" in texts.help_text(is_admin=False)
    assert "max-drawdown" in texts.help_text(is_admin=False, topic="resume")
    assert "d:resume" in keyboards.issued_callback_data()
