"""The operators' console: staff only, analytics + health on one page, confirmed and logged actions, and the admin
actions of the other apps the console links to (ban/unban, grant/extend, mute a symbol)."""

from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse
from django.utils import timezone

from accounts.models import Subscription, TelegramUser
from accounts.tests.factories import PlanFactory, SubscriptionFactory, TelegramUserFactory
from analytics import selectors
from analytics import tasks as analytics_tasks
from analytics.models import AnalyticsSnapshot, BacktestRun
from analytics.tests.factories import BacktestRunFactory, UserActivityFactory
from signals.tests.factories import SymbolFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(monkeypatch):
    calls = []
    monkeypatch.setattr("config.events.publish", lambda event, **payload: calls.append((event, payload)))
    return calls


@pytest.mark.parametrize("name", ["dashboard", "broadcast", "auto-trading", "snapshot", "backtest-launch"])
def test_only_staff_get_in(client, django_user_model, name):
    url = reverse(f"control:{name}")
    assert "/admin/login/" in client.get(url)["Location"]
    client.force_login(django_user_model.objects.create_user("plain", password="a-long-password-1"))
    response = client.post(url)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_dashboard_shows_analytics_and_health(staff_client):
    UserActivityFactory()
    page = staff_client.get(reverse("control:dashboard")).content.decode()
    assert 'id="cp-health"' in page and "DAU / WAU / MAU" in page and "<td>1 / 1 / 1</td>" in page
    assert "Paper vs live" in page and "no scan recorded" in page
    assert 'Events waiting to be dispatched</th><td id="cp-health-outbox">0</td>' in page


def test_dashboard_flags_events_left_in_the_outbox(staff_client):
    from datetime import timedelta

    from django.utils import timezone

    from config.models import OutboxEvent

    stuck = timezone.now() - timedelta(minutes=10)
    OutboxEvent.objects.create(event="user.notify", payload={}, created_at=stuck, due_at=stuck, attempts=4)
    page = staff_client.get(reverse("control:dashboard")).content.decode()
    assert '<td id="cp-health-outbox"><span class="cp-bad">1</span></td>' in page


def test_broadcast_asks_for_confirmation_then_fans_out_once_per_active_user(
    staff_client, published, django_capture_on_commit_callbacks, monkeypatch
):
    alice, bob = TelegramUserFactory.create_batch(2)
    TelegramUserFactory(is_banned=True)
    url = reverse("control:broadcast")

    preview = staff_client.post(url, {"text": "Maintenance <tonight>"})
    assert preview.status_code == 200 and b"Send this message to 2 active user(s)?" in preview.content
    assert published == [] and not LogEntry.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        done = staff_client.post(url, {"text": "Maintenance <tonight>", "confirm": "yes"})
    assert done.status_code == 302
    [fanout] = [p for event, p in published if event == "broadcast.requested"]
    analytics_tasks.broadcast_fanout(**fanout)  # the consumer of broadcast.requested, on a worker
    notices = [(event, p) for event, p in published if event == "user.notify"]
    assert sorted(p["user_id"] for _, p in notices) == sorted([alice.pk, bob.pk])
    event, payload = notices[0]
    assert event == "user.notify" and payload["text"] == "📣 Maintenance &lt;tonight&gt;"
    assert payload["dedupe_key"].startswith("broadcast:")
    assert "Broadcast" in LogEntry.objects.get().change_message
    progress = [p for event, p in published if event == "broadcast.progress"]
    assert progress == [{"broadcast_id": payload["dedupe_key"].split(":")[1], "queued": 2, "total": 2, "done": True}]


def test_empty_broadcast_is_refused(staff_client, published):
    response = staff_client.post(reverse("control:broadcast"), {"text": "", "confirm": "yes"}, follow=True)
    assert b"empty or too long" in response.content and published == []


def test_pause_and_resume_auto_trading_with_confirmation_and_log(staff_client):
    url = reverse("control:auto-trading")
    preview = staff_client.post(url, {"action": "pause", "reason": "exchange outage"})
    assert b"Pause auto-trading for EVERY user?" in preview.content
    assert selectors.auto_trading_globally_paused() is False

    staff_client.post(url, {"action": "pause", "reason": "exchange outage", "confirm": "yes"})
    assert selectors.auto_trading_globally_paused() is True
    from trading.models import TradingSwitch

    switch = TradingSwitch.current()  # the switch trading's risk manager obeys
    assert switch.auto_trading_paused and switch.reason == "exchange outage"
    entry = LogEntry.objects.get()
    assert entry.change_message == "Paused auto-trading globally. exchange outage" and entry.user.username == "operator"
    page = staff_client.get(reverse("control:dashboard")).content.decode()
    assert "PAUSED globally" in page

    staff_client.post(url, {"action": "resume", "confirm": "yes"})
    assert selectors.auto_trading_globally_paused() is False
    assert LogEntry.objects.count() == 2


def test_snapshot_now(staff_client):
    staff_client.post(reverse("control:snapshot"))
    assert AnalyticsSnapshot.objects.filter(day=timezone.now().date()).exists()


def test_launch_backtest_queues_a_run_and_logs_it(staff_client, django_capture_on_commit_callbacks):
    from signals.models import Symbol

    Symbol.objects.get_or_create(symbol="XRP/USDT:USDT", defaults={"base": "XRP"})
    with django_capture_on_commit_callbacks(execute=False) as callbacks:  # the worker's part is not run here
        response = staff_client.post(reverse("control:backtest-launch"), {"symbols": "XRP/USDT:USDT", "days": 30})
    run = BacktestRun.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("control:backtest-detail", args=[run.pk])
    assert run.status == BacktestRun.Status.PENDING and run.params["symbols"] == ["XRP/USDT:USDT"]
    assert len(callbacks) == 1
    assert f"Launched backtest #{run.pk}" in LogEntry.objects.get().change_message
    assert staff_client.get(response["Location"]).status_code == 200


def test_backtest_without_chart_is_404(staff_client):
    run = BacktestRunFactory()
    assert staff_client.get(reverse("control:backtest-png", args=[run.pk])).status_code == 404


class TestLinkedAdminActions:
    def act(self, client, model_url, action, objects):
        # "confirm": ban and mute ask for confirmation first (accounts.admin_confirmation); the others ignore it.
        return client.post(
            reverse(model_url), {"action": action, "_selected_action": [o.pk for o in objects], "confirm": "yes"}
        )

    def test_ban_and_unban(self, staff_client):
        user = TelegramUserFactory(auto_trading_enabled=True)
        self.act(staff_client, "admin:accounts_telegramuser_changelist", "ban_users", [user])
        user.refresh_from_db()
        assert user.is_banned and not user.auto_trading_enabled
        self.act(staff_client, "admin:accounts_telegramuser_changelist", "unban_users", [user])
        assert not TelegramUser.objects.get(pk=user.pk).is_banned

    def test_grant_then_extend_a_subscription(self, staff_client):
        fresh, subscriber = TelegramUserFactory.create_batch(2)
        until = timezone.now() + timedelta(days=5)
        SubscriptionFactory(user=subscriber, valid_until=until, source=Subscription.Source.ADMIN, external_id=None)
        self.act(
            staff_client, "admin:accounts_telegramuser_changelist", "grant_subscription_30_days", [fresh, subscriber]
        )
        granted = Subscription.objects.get(user=fresh)
        assert granted.source == Subscription.Source.ADMIN and granted.is_current
        extended = Subscription.objects.get(user=subscriber)
        assert extended.valid_until == until + timedelta(days=30)

    def test_mute_a_symbol_globally(self, staff_client):
        symbol = SymbolFactory()
        self.act(staff_client, "admin:signals_symbol_changelist", "mute_globally", [symbol])
        symbol.refresh_from_db()
        assert symbol.is_muted


class TestUserActions:
    def test_ban_asks_for_confirmation_then_bans_and_logs_each_user(self, staff_client):
        alice, bob = TelegramUserFactory.create_batch(2)
        url = reverse("control:user-action")
        ids = f"{alice.telegram_id}, {bob.telegram_id} 999999999"
        preview = staff_client.post(url, {"telegram_ids": ids, "action": "ban"})
        assert preview.status_code == 200 and b"Ban 2 user(s)" in preview.content
        assert b"Unknown ids ignored: [999999999]" in preview.content
        assert not TelegramUser.objects.filter(is_banned=True).exists()

        staff_client.post(url, {"telegram_ids": ids, "action": "ban", "confirm": "yes"})
        assert set(TelegramUser.objects.filter(is_banned=True)) == {alice, bob}
        assert LogEntry.objects.filter(change_message="Banned from the control panel.").count() == 2

        staff_client.post(url, {"telegram_ids": str(alice.telegram_id), "action": "unban", "confirm": "yes"})
        assert list(TelegramUser.objects.filter(is_banned=True)) == [bob]

    def test_grant_then_extend(self, staff_client):
        PlanFactory()
        user = TelegramUserFactory()
        url = reverse("control:user-action")
        staff_client.post(url, {"telegram_ids": str(user.telegram_id), "action": "grant", "days": 10, "confirm": "yes"})
        subscription = Subscription.objects.get(user=user)
        first_end = subscription.valid_until
        assert subscription.source == Subscription.Source.ADMIN and subscription.is_current
        staff_client.post(url, {"telegram_ids": str(user.telegram_id), "action": "grant", "days": 5, "confirm": "yes"})
        subscription.refresh_from_db()
        assert subscription.valid_until == first_end + timedelta(days=5)
        assert Subscription.objects.filter(user=user).count() == 1
        assert LogEntry.objects.filter(change_message__startswith="Granted/extended").count() == 2

    @pytest.mark.parametrize("ids", ["abc", "", "123456789"])
    def test_bad_or_unknown_ids_change_nothing(self, staff_client, ids):
        response = staff_client.post(
            reverse("control:user-action"), {"telegram_ids": ids, "action": "ban", "confirm": "yes"}, follow=True
        )
        assert response.status_code == 200 and not LogEntry.objects.exists()


def test_mute_a_symbol_from_the_panel_with_confirmation_and_log(staff_client):
    from signals.models import Symbol

    SymbolFactory(symbol="DOGE/USDT:USDT", base="DOGE")
    url = reverse("control:symbol-mute")
    preview = staff_client.post(url, {"symbol": "doge", "action": "mute"})
    assert b"Mute DOGE/USDT:USDT for EVERY user?" in preview.content
    assert not Symbol.objects.get(symbol="DOGE/USDT:USDT").is_muted
    staff_client.post(url, {"symbol": "DOGE/USDT:USDT", "action": "mute", "confirm": "yes"})
    assert Symbol.objects.get(symbol="DOGE/USDT:USDT").is_muted
    assert LogEntry.objects.get().change_message == "Muted globally."
    unknown = staff_client.post(url, {"symbol": "NOPE", "action": "mute", "confirm": "yes"}, follow=True)
    assert b"Unknown symbol NOPE/USDT:USDT" in unknown.content
