"""Commands, buttons and conversations end to end: local server → long polling → update_handle → sender → server."""

import logging
from dataclasses import dataclass
from decimal import Decimal

import pytest

from accounts.models import TelegramUser
from accounts.tests.factories import ExchangeCredentialFactory, SubscriptionFactory, TelegramUserFactory
from analytics.models import UserActivity
from analytics.selectors import active_user_counts
from exchanges.errors import ExchangeConnectError
from signals.tests.factories import SignalFactory
from telegram_bridge import callbacks, commands
from telegram_bridge.models import Delivery, TelegramUpdate
from telegram_bridge.services import update_handle
from telegram_bridge.tests.bot_helpers import buttons, callback_data, press, say
from trading.connect import ConnectOutcome

pytestmark = pytest.mark.django_db


def test_start_registers_welcomes_with_escaped_name_and_records_activity(bot_api):
    welcome, first_step = say(bot_api, 501, "/start", first_name="<b>Eve</b> & co", username="eve")
    assert {"o:mode:paper", "o:mode:live", "o:skip"} <= set(callback_data(first_step))  # onboarding begins
    user = TelegramUser.objects.get(telegram_id=501)
    assert user.username == "eve" and user.preferences.paper_mode is True
    assert "&lt;b&gt;Eve&lt;/b&gt; &amp; co" in welcome["text"] and "not financial advice" in welcome["text"]
    assert list(UserActivity.objects.filter(user=user).values_list("kind", "name")) == [("command", "start")]


def test_help_centre_and_unknown_commands_get_help(bot_api):
    [help_] = say(bot_api, 502, "/help")
    assert "/pnl" in help_["text"] and "/connect" in help_["text"] and "/ban" not in help_["text"]
    [detail] = say(bot_api, 502, "/help pnl")
    assert "today|week|month" in detail["text"]
    [unknown] = say(bot_api, 502, "/frobnicate <x>")
    assert "/frobnicate" in unknown["text"] and "Help centre" in unknown["text"]
    [plain] = say(bot_api, 502, "hello?")
    assert "/dashboard" in plain["text"]


def test_dashboard_buttons_open_pages_by_editing_the_message(bot_api):
    [dashboard] = say(bot_api, 503, "/dashboard")
    assert {"d:signals", "d:pnl", "d:positions", "d:settings", "d:mode", "d:help"} <= set(callback_data(dashboard))
    assert all(b["url"].startswith("http") for b in buttons(dashboard) if "url" in b)
    [page] = press(bot_api, 503, "d:settings", message_id=dashboard["message_id"])
    assert page["method"] == "editMessageText" and page["message_id"] == dashboard["message_id"]
    assert "s:t:dm_alerts" in callback_data(page) and "s:i:leverage" in callback_data(page)
    assert bot_api.calls_of("answerCallbackQuery")
    [help_page] = press(bot_api, 503, "d:help", message_id=dashboard["message_id"])
    assert "Help centre" in help_page["text"]
    assert UserActivity.objects.filter(user__telegram_id=503, kind="callback", name="d:settings").exists()


def test_settings_toggles_cycles_and_validated_inputs(bot_api):
    [settings_message] = say(bot_api, 504, "/settings")
    mid = settings_message["message_id"]
    press(bot_api, 504, "s:t:dm_alerts", message_id=mid)
    press(bot_api, 504, "s:r:high", message_id=mid)
    press(bot_api, 504, "s:c:default_pnl_period", message_id=mid)
    prefs = TelegramUser.objects.get(telegram_id=504).preferences
    assert prefs.dm_alerts is False and prefs.accepted_risk_levels == ["low", "medium", "high"]
    assert prefs.default_pnl_period == "week"

    press(bot_api, 504, "s:i:leverage", message_id=mid)
    refused = say(bot_api, 504, "500")
    # one limit, units, no field name; the input stays open
    assert refused[0]["text"] == (
        "⚠️ Leverage must be a whole number from 1x to 20x. Send it again, or /cancel to keep the current value."
    )
    prefs.refresh_from_db()
    assert prefs.leverage == 5  # accounts.services.preferences_update refused it: nothing saved
    assert "Saved" in say(bot_api, 504, "10x")[0]["text"]  # the retry is read as the value
    press(bot_api, 504, "s:i:position_size_pct", message_id=mid)
    say(bot_api, 504, "2.5%")
    press(bot_api, 504, "s:i:muted_symbols", message_id=mid)
    say(bot_api, 504, "doge, PEPE/USDT")
    prefs.refresh_from_db()
    assert prefs.leverage == 10 and prefs.position_size_pct == Decimal("2.5")
    assert prefs.muted_symbols == ["DOGE/USDT:USDT", "PEPE/USDT:USDT"]


def test_mute_unmute_and_paper_mode(bot_api):
    say(bot_api, 505, "/mute doge")
    user = TelegramUser.objects.get(telegram_id=505)
    assert user.preferences.muted_symbols == ["DOGE/USDT:USDT"]
    assert "Usage" in say(bot_api, 505, "/mute <script>")[0]["text"]
    say(bot_api, 505, "/unmute DOGEUSDT")
    user.preferences.refresh_from_db()
    assert user.preferences.muted_symbols == []
    assert "/subscribe" in say(bot_api, 505, "/toggle_paper_mode")[0]["text"]  # live trading is a paid feature
    SubscriptionFactory(user=user, source="admin", external_id=None)
    assert (
        "Live trading needs a connected exchange: connect one with /connect"
        in say(bot_api, 505, "/toggle_paper_mode")[0]["text"]
    )
    user.preferences.refresh_from_db()
    assert user.preferences.paper_mode is True
    ExchangeCredentialFactory(user=user)
    assert "Live mode is on" in say(bot_api, 505, "/toggle_paper_mode")[0]["text"]
    user.preferences.refresh_from_db()
    assert user.preferences.paper_mode is False
    status = say(bot_api, 505, "/status")[0]["text"]
    assert "Mode: live" in status and "…1234" in status


@pytest.fixture
def fake_trading(monkeypatch):
    """Stand-ins for the trading services (the bridge looks them up by name)."""
    calls = {}

    @dataclass
    class Summary:
        period: str
        trades: int = 3
        wins: int = 2
        losses: int = 1
        win_rate: float = 0.6667
        realised: Decimal = Decimal("12.5")
        unrealised: Decimal = Decimal("-1")
        fees: Decimal = Decimal("0.4")
        funding: Decimal = Decimal("0.1")
        net: Decimal = Decimal("11")
        average_r: Decimal = Decimal("0.8")
        best: Decimal = Decimal("10")
        worst: Decimal = Decimal("-3")

    def exchange_connect(*, user, exchange, api_key, secret, passphrase=""):
        calls["connect"] = (exchange, api_key, secret, passphrase)
        if api_key == "WRONG":
            raise ExchangeConnectError("The exchange refused these keys.")
        return ConnectOutcome(
            credential=ExchangeCredentialFactory(user=user, exchange=exchange), free_balance=Decimal("1000")
        )

    monkeypatch.setattr(commands, "pnl_summary", lambda *, user, period: Summary(period=period))
    monkeypatch.setattr(commands, "position_list_open", lambda *, user: [])
    monkeypatch.setattr(callbacks, "exchange_connect_verified", exchange_connect)
    monkeypatch.setattr(commands, "exchange_disconnect", lambda *, user: calls.setdefault("disconnect", user))
    return calls


def test_pnl_and_positions_through_the_selectors(bot_api, fake_trading):
    text = say(bot_api, 506, "/pnl week")[0]["text"]
    assert "PnL — this week" in text and "+11.00 USDT" in text and "66.7%" in text
    assert "PnL — today" in say(bot_api, 506, "/pnl")[0]["text"]  # the preference's default
    assert "Usage" in say(bot_api, 506, "/pnl decade")[0]["text"]
    assert "Open positions" in say(bot_api, 506, "/positions")[0]["text"]


def test_connect_conversation_deletes_key_messages_and_never_stores_keys(bot_api, fake_trading, caplog):
    caplog.set_level(logging.DEBUG)
    say(bot_api, 507, "/start")
    [question] = say(bot_api, 507, "/connect")
    assert "cx:okx" in callback_data(question)
    press(bot_api, 507, "cx:okx")
    key_messages = []
    for secret in ("APIKEY-live-9f8e7d", "SECRET-live-6c5b4a", "PASSPHRASE-3z2y"):
        bot_api.inject_message(user_id=507, text=secret)
        key_messages.append(max(k[1] for k in bot_api.messages if k[0] == "507"))
        from telegram_bridge.bridge import polling_run

        polling_run(timeout=2, max_updates=1)
    assert fake_trading["connect"] == ("okx", "APIKEY-live-9f8e7d", "SECRET-live-6c5b4a", "PASSPHRASE-3z2y")
    assert all(not bot_api.message_exists(507, mid) for mid in key_messages)  # deleted right after reading
    assert "connected" in bot_api.sent_messages(507)[-1]["text"]
    stored = (
        " ".join(Delivery.objects.values_list("text", flat=True))
        + caplog.text
        + str(list(TelegramUpdate.objects.values_list("kind", flat=True)))
        + str(bot_api.sent_messages())
    )
    for secret in ("APIKEY-live", "SECRET-live", "PASSPHRASE-3z2y"):
        assert secret not in stored

    press(bot_api, 507, "cx:okx")  # no conversation any more: nothing is asked
    say(bot_api, 507, "/connect")
    press(bot_api, 507, "cx:mexc")
    say(bot_api, 507, "WRONG")
    assert "refused these keys" in say(bot_api, 507, "SECRET2")[0]["text"]
    say(bot_api, 507, "/disconnect")
    assert fake_trading["disconnect"].telegram_id == 507


def test_admin_commands_are_refused_to_others_and_nothing_runs(bot_api):
    target = TelegramUserFactory(telegram_id=777)
    for text in ("/ban 777", "/broadcast hi", "/admin", "/backtest BTC 30", "/unban 777"):
        assert "administrators only" in say(bot_api, 509, text)[0]["text"]
    target.refresh_from_db()
    assert target.is_banned is False
    assert not UserActivity.objects.filter(user__telegram_id=509).exists()
    assert bot_api.sent_messages(777) == []


def test_admin_ban_unban_broadcast_and_stats(bot_api, settings, django_capture_on_commit_callbacks):
    settings.ADMIN_TELEGRAM_IDS = [510]
    target = TelegramUserFactory(telegram_id=778)
    other = TelegramUserFactory(telegram_id=779)
    say(bot_api, 510, "/start")
    assert "banned" in say(bot_api, 510, "/ban 778")[0]["text"]
    target.refresh_from_db()
    last_seen = target.last_seen_at
    assert target.is_banned
    # The banned user is refused politely and nothing runs or changes.
    assert "not available to you" in say(bot_api, 778, "/mute BTC")[0]["text"]
    assert press(bot_api, 778, "s:t:dm_alerts") == []
    target.refresh_from_db()
    assert target.last_seen_at == last_seen and target.preferences.muted_symbols == [] and target.preferences.dm_alerts
    assert not UserActivity.objects.filter(user=target).exists()

    with django_capture_on_commit_callbacks(execute=True):  # broadcast.requested → the fan-out → user.notify
        [queued] = say(bot_api, 510, "/broadcast <i>Maintenance</i> at 5 & 6")
    assert queued["text"].startswith("Broadcast ") and "queued to 2 active user(s)" in queued["text"]
    [notice] = bot_api.sent_messages(other.telegram_id)
    assert notice["text"] == "📣 &lt;i&gt;Maintenance&lt;/i&gt; at 5 &amp; 6"
    assert bot_api.sent_messages(778)[-1]["text"] != notice["text"]  # banned: not broadcast to
    stats = say(bot_api, 510, "/admin")[0]["text"]
    assert "DAU / WAU / MAU" in stats and "banned 1" in stats and "Errors today:" in stats
    assert "Events waiting to be dispatched: 0" in stats
    counts = active_user_counts()  # one definition: the control panel's selector
    assert f"DAU / WAU / MAU: {counts['dau']} / {counts['wau']} / {counts['mau']}" in stats
    say(bot_api, 510, "/unban 778")
    target.refresh_from_db()
    assert not target.is_banned
    assert "Usage" in say(bot_api, 510, "/ban someone")[0]["text"]


def test_backtest_command(bot_api, settings, monkeypatch):
    settings.ADMIN_TELEGRAM_IDS = [511]
    started = {}

    class Run:
        pk = 42

    def backtest_run_start(*, params, requested_by_telegram_id=None, created_by=None):
        started.update(params=params, by=requested_by_telegram_id)
        return Run()

    monkeypatch.setattr(commands, "backtest_run_start", backtest_run_start)
    assert "Backtest #42" in say(bot_api, 511, "/backtest btc 30")[0]["text"]
    assert started == {"params": {"symbols": ["BTC/USDT:USDT"], "days": 30}, "by": 511}
    assert "Usage" in say(bot_api, 511, "/backtest btc lots")[0]["text"]


def test_signals_command_lists_open_and_recent(bot_api):
    SignalFactory(symbol__symbol="ETH/USDT:USDT", side="short")
    text = say(bot_api, 512, "/signals")[0]["text"]
    assert "SHORT ETH/USDT:USDT" in text and "Open signals" in text


def test_a_redelivered_update_is_handled_once(bot_api):
    update = {
        "update_id": 9_000_001,
        "message": {
            "message_id": 1,
            "date": 0,
            "chat": {"id": 513, "type": "private"},
            "from": {"id": 513, "is_bot": False, "first_name": "R"},
            "text": "/help",
        },
    }
    update_handle(update)
    update_handle(update)
    assert len(bot_api.sent_messages(513)) == 1


def test_handled_update_ids_are_forgotten_after_a_week():
    from datetime import timedelta

    from django.utils import timezone

    from telegram_bridge.tasks import telegram_updates_prune

    TelegramUpdate.objects.create(
        update_id=1, received_at=timezone.now() - timedelta(days=8), processed_at=timezone.now()
    )
    TelegramUpdate.objects.create(
        update_id=2, received_at=timezone.now() - timedelta(days=1), processed_at=timezone.now()
    )
    assert telegram_updates_prune.delay().get() == 1
    assert list(TelegramUpdate.objects.values_list("update_id", flat=True)) == [2]


def test_pnl_and_positions_with_the_real_trading_selectors(bot_api):
    from datetime import timedelta

    from trading.market import market_now
    from trading.tests.factories import PositionFactory

    say(bot_api, 514, "/start")
    user = TelegramUser.objects.get(telegram_id=514)
    closed_at = max(market_now() - timedelta(minutes=1), market_now().replace(day=1, hour=0, minute=1))
    PositionFactory(
        user=user, status="closed", closed_at=closed_at, realised_pnl=Decimal("12.5"), remaining_quantity=Decimal("0")
    )
    text = say(bot_api, 514, "/pnl month")[0]["text"]
    assert "PnL — this month" in text and "Trades: 1 (wins 1, losses 0, win rate 100.0%)" in text
    PositionFactory(
        user=user,
        status="closed",
        closed_at=market_now() - timedelta(days=400),
        realised_pnl=Decimal("-2.5"),
        remaining_quantity=Decimal("0"),
    )
    text = say(bot_api, 514, "/pnl all")[0]["text"]
    assert "PnL — all time" in text and "Trades: 2 (wins 1, losses 1, win rate 50.0%)" in text
    assert "Open positions" in say(bot_api, 514, "/positions")[0]["text"]


def test_blocking_the_bot_marks_the_user_inactive_and_start_brings_them_back(bot_api):
    say(bot_api, 515, "/start")
    blocked = {
        "update_id": 9_000_100,
        "my_chat_member": {
            "chat": {"id": 515, "type": "private"},
            "from": {"id": 515, "is_bot": False, "first_name": "B"},
            "date": 0,
            "old_chat_member": {"status": "member", "user": {"id": 1, "is_bot": True, "first_name": "bot"}},
            "new_chat_member": {
                "status": "kicked",
                "until_date": 0,
                "user": {"id": 1, "is_bot": True, "first_name": "bot"},
            },
        },
    }
    bot_api.inject_update(blocked)
    from telegram_bridge.bridge import polling_run

    assert polling_run(timeout=1, max_updates=1) == 1  # aiogram parses it and the bridge relays it
    assert TelegramUser.objects.get(telegram_id=515).is_active is False
    # only the welcome and the first setup step: nothing is sent to a user who blocked the bot
    assert len(bot_api.sent_messages(515)) == 2
    say(bot_api, 515, "/start")
    assert TelegramUser.objects.get(telegram_id=515).is_active is True


def test_a_broadcast_too_long_is_refused_with_the_limit_and_nothing_is_queued(bot_api, settings, monkeypatch):
    from analytics.services import BROADCAST_MAX_LENGTH

    settings.ADMIN_TELEGRAM_IDS = [512]
    requested = []
    monkeypatch.setattr("config.events.publish", lambda event, **payload: requested.append(event))
    [answer] = say(bot_api, 512, "/broadcast " + "x" * (BROADCAST_MAX_LENGTH + 1))
    assert f"at most {BROADCAST_MAX_LENGTH} characters" in answer["text"]
    assert requested == []


def test_status_counts_pending_positions_against_the_plans_limit(bot_api, settings):
    from accounts.models import UserPreferences
    from trading.models import Position
    from trading.tests.factories import PositionFactory

    settings.SUBSCRIPTION_FREE_MAX_OPEN_POSITIONS = 3
    user = TelegramUserFactory(telegram_id=6201)
    UserPreferences.objects.filter(user=user).update(max_open_positions=5)  # asked for 5, the free plan keeps 3
    PositionFactory(user=user, status=Position.Status.OPEN)
    PositionFactory(user=user, status=Position.Status.PENDING)
    PositionFactory(user=user, status=Position.Status.CLOSED)
    [answer] = say(bot_api, 6201, "/status")
    assert "Open positions: 2 / 3" in answer["text"]
    SubscriptionFactory(user=user, source="admin", external_id=None)  # a plan with more positions
    [answer] = say(bot_api, 6201, "/status")
    assert "Open positions: 2 / 5" in answer["text"]
