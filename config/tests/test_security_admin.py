"""Admin-only paths refuse non-admins: every Telegram admin command, the Django admin (and its control panel), and
backtests (Telegram /backtest and the control panel's launch/detail/plot). One test per path, each checking that
nothing ran, plus a check that an admin does get through (so a refusal is not just a broken path)."""

import time

import pytest
from django.urls import reverse

from accounts.tests.factories import TelegramUserFactory
from analytics.models import BacktestRun
from telegram_bridge.commands import ADMIN_HANDLERS
from trading.models import TradingSwitch

pytestmark = pytest.mark.django_db

ADMIN_COMMAND_ARGS = {"ban": "777001", "unban": "777002", "broadcast": "hello everyone", "backtest": "XRP 30"}
REFUSAL = "administrators only"


@pytest.fixture
def bot_api(settings):
    from django.core.cache import cache

    from testsupport.telegram_bot_api import running_local_bot_api

    settings.ADMIN_TELEGRAM_IDS = []
    settings.TELEGRAM_RATE_GLOBAL_PER_SECOND = settings.TELEGRAM_RATE_CHAT_PER_SECOND = 1000.0
    cache.clear()
    with running_local_bot_api() as server:
        yield server


def _say(bot_api, telegram_id: int, text: str, _n=[0]) -> list[str]:  # noqa: B006 — a per-process update counter
    from telegram_bridge.services import update_handle

    _n[0] += 1
    before = len(bot_api.sent_messages(telegram_id))
    update_handle(
        {
            "update_id": 880_000 + _n[0],
            "message": {
                "message_id": _n[0],
                "date": int(time.time()),
                "text": text,
                "chat": {"id": telegram_id, "type": "private"},
                "from": {"id": telegram_id, "is_bot": False, "first_name": "U", "username": f"u{telegram_id}"},
            },
        }
    )
    return [m.get("text", "") for m in bot_api.sent_messages(telegram_id)[before:]]


@pytest.mark.parametrize("name", sorted(ADMIN_HANDLERS))
def test_telegram_admin_command_is_refused_to_a_non_admin(bot_api, name):
    TelegramUserFactory(telegram_id=777001)
    TelegramUserFactory(telegram_id=777002, is_banned=True)
    bystander = TelegramUserFactory(telegram_id=777003)
    user = TelegramUserFactory(telegram_id=555001, is_admin=False)
    replies = _say(bot_api, user.telegram_id, f"/{name} {ADMIN_COMMAND_ARGS.get(name, '')}".strip())
    assert replies and all(REFUSAL in reply for reply in replies), replies
    # nothing ran: no ban/unban, no broadcast reached anyone, no backtest queued
    from accounts.models import TelegramUser

    assert not TelegramUser.objects.get(telegram_id=777001).is_banned
    assert TelegramUser.objects.get(telegram_id=777002).is_banned
    assert bot_api.sent_messages(bystander.telegram_id) == []
    assert not BacktestRun.objects.exists()


def test_telegram_admin_commands_do_run_for_an_admin(bot_api):
    admin = TelegramUserFactory(telegram_id=555002, is_admin=True)
    replies = _say(bot_api, admin.telegram_id, "/admin")
    assert replies and not any(REFUSAL in reply for reply in replies)


DJANGO_ADMIN_PAGES = [
    "/admin/",
    "/admin/accounts/telegramuser/",
    "/admin/accounts/exchangecredential/",
    "/admin/trading/position/",
    "/admin/control/",
]


@pytest.mark.parametrize("path", DJANGO_ADMIN_PAGES)
def test_django_admin_page_refuses_anonymous_and_non_staff(client, django_user_model, path):
    assert client.get(path).status_code == 302 and "/admin/login/" in client.get(path)["Location"]
    member = django_user_model.objects.create_user("member", "m@example.com", "a-long-password-1")  # not staff
    client.force_login(member)
    response = client.get(path)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.parametrize("path", DJANGO_ADMIN_PAGES)
def test_django_admin_page_opens_for_staff(staff_client, path):
    assert staff_client.get(path).status_code == 200


def test_control_panel_actions_refuse_non_staff(client, django_user_model):
    member = django_user_model.objects.create_user("member", "m@example.com", "a-long-password-1")
    client.force_login(member)
    paused_before = TradingSwitch.current().auto_trading_paused
    response = client.post(reverse("control:auto-trading"), {"action": "pause", "reason": "x", "confirm": "yes"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert TradingSwitch.current().auto_trading_paused == paused_before
    TelegramUserFactory(telegram_id=777009)
    response = client.post(reverse("control:user-action"), {"telegram_ids": "777009", "action": "ban"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    from accounts.models import TelegramUser

    assert not TelegramUser.objects.get(telegram_id=777009).is_banned


def test_backtest_launch_and_results_refuse_non_staff(client, django_user_model):
    existing = BacktestRun.objects.create(params={"symbols": ["XRP/USDT:USDT"], "days": 30})
    member = django_user_model.objects.create_user("member", "m@example.com", "a-long-password-1")
    for logged_in in (False, True):
        if logged_in:
            client.force_login(member)
        response = client.post(reverse("control:backtest-launch"), {"symbols": "XRP/USDT:USDT", "days": 30})
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
        for name in ("control:backtest-detail", "control:backtest-png"):
            response = client.get(reverse(name, kwargs={"run_id": existing.pk}))
            assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert list(BacktestRun.objects.values_list("pk", flat=True)) == [existing.pk]  # nothing launched


def test_backtest_by_telegram_is_refused_to_a_non_admin(bot_api):
    user = TelegramUserFactory(telegram_id=555003)
    replies = _say(bot_api, user.telegram_id, "/backtest XRP 30")
    assert replies and REFUSAL in replies[0]
    assert not BacktestRun.objects.exists()
