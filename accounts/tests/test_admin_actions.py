"""Django admin list actions on Telegram users: ban asks for confirmation first (only the confirmed POST acts), every
action writes an admin LogEntry per changed user, and only staff with the change permission can run them."""

from datetime import timedelta

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse
from django.utils import timezone

from accounts.models import Subscription, TelegramUser
from accounts.tests.factories import SubscriptionFactory, TelegramUserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:accounts_telegramuser_changelist"


def act(client, action: str, users, **extra):
    return client.post(reverse(CHANGELIST), {"action": action, "_selected_action": [u.pk for u in users], **extra})


def user_log(user) -> list[str]:
    return list(
        LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(TelegramUser), object_id=str(user.pk), action_flag=CHANGE
        )
        .order_by("action_time")
        .values_list("change_message", flat=True)
    )


def test_ban_renders_a_confirmation_page_and_changes_nothing_until_confirmed(staff_client):
    alice, bob = TelegramUserFactory.create_batch(2, auto_trading_enabled=True)
    page = act(staff_client, "ban_users", [alice, bob])
    assert page.status_code == 200
    html = page.content.decode()
    assert "Ban 2 user(s)?" in html and str(alice) in html and str(bob) in html
    assert f'name="_selected_action" value="{alice.pk}"' in html and f'name="_selected_action" value="{bob.pk}"' in html
    assert 'name="action" value="ban_users"' in html and 'name="confirm" value="yes"' in html
    assert TelegramUser.objects.filter(is_banned=True).count() == 0
    assert TelegramUser.objects.filter(auto_trading_enabled=True).count() == 2
    assert not LogEntry.objects.exists()


def test_confirmed_ban_bans_stops_auto_trading_and_logs_each_user(staff_client):
    alice, bob = TelegramUserFactory.create_batch(2, auto_trading_enabled=True)
    response = act(staff_client, "ban_users", [alice, bob], confirm="yes")
    assert response.status_code == 302
    for user in (alice, bob):
        user.refresh_from_db()
        assert user.is_banned and not user.auto_trading_enabled
        assert user_log(user) == ["Banned (admin action); auto-trading switched off."]
    assert set(LogEntry.objects.values_list("user__username", flat=True)) == {"operator"}
    # A confirm field with another value is not a confirmation.
    carol = TelegramUserFactory()
    assert act(staff_client, "ban_users", [carol], confirm="no").status_code == 200
    assert not TelegramUser.objects.get(pk=carol.pk).is_banned


def test_unban_and_make_admin_act_directly_and_log_only_real_changes(staff_client):
    banned = TelegramUserFactory(is_banned=True)
    free = TelegramUserFactory()
    act(staff_client, "unban_users", [banned, free])
    assert not TelegramUser.objects.filter(is_banned=True).exists()
    assert user_log(banned) == ["Unbanned (admin action)."] and user_log(free) == []

    act(staff_client, "make_admin", [free])
    assert TelegramUser.objects.get(pk=free.pk).is_admin
    assert user_log(free) == ["Made a bot admin (admin action)."]


def test_grant_30_days_creates_or_extends_and_logs(staff_client):
    fresh, subscriber = TelegramUserFactory.create_batch(2)
    until = timezone.now() + timedelta(days=5)
    SubscriptionFactory(user=subscriber, valid_until=until, source=Subscription.Source.ADMIN, external_id=None)
    act(staff_client, "grant_subscription_30_days", [fresh, subscriber])
    granted = Subscription.objects.get(user=fresh)
    assert granted.source == Subscription.Source.ADMIN and granted.is_current
    assert Subscription.objects.get(user=subscriber).valid_until == until + timedelta(days=30)
    assert user_log(fresh)[0].startswith("Granted/extended 30 day(s)")
    assert user_log(subscriber)[0].startswith("Granted/extended 30 day(s)")


def test_non_staff_cannot_run_the_actions(client, django_user_model):
    user = TelegramUserFactory(auto_trading_enabled=True)
    # Anonymous: redirected to the login page.
    response = act(client, "ban_users", [user], confirm="yes")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    # Logged in but not staff: the admin refuses too.
    client.force_login(django_user_model.objects.create_user("visitor", password="a-long-password-1"))
    for action in ("ban_users", "make_admin", "grant_subscription_30_days"):
        response = act(client, action, [user], confirm="yes")
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    user.refresh_from_db()
    assert not user.is_banned and not user.is_admin and user.auto_trading_enabled
    assert not Subscription.objects.filter(user=user).exists() and not LogEntry.objects.exists()


def test_staff_with_view_permission_only_cannot_ban(client, django_user_model):
    viewer = django_user_model.objects.create_user("viewer", password="a-long-password-1", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_telegramuser"))
    client.force_login(viewer)
    user = TelegramUserFactory()
    response = act(client, "ban_users", [user], confirm="yes")
    assert response.status_code in (200, 302)  # the action is not offered: "No action selected" / unknown action
    assert not TelegramUser.objects.get(pk=user.pk).is_banned and not LogEntry.objects.exists()


def test_ending_a_subscription_now_downgrades_it_and_tells_the_user(staff_client, monkeypatch):
    told = []
    monkeypatch.setattr("accounts.subscriptions.publish", lambda event, **payload: told.append((event, payload)))
    active = SubscriptionFactory(valid_until=timezone.now() + timedelta(days=10))
    gone = SubscriptionFactory(status=Subscription.Status.CANCELLED)
    url = reverse("admin:accounts_subscription_changelist")
    selected = {"action": "end_now", "_selected_action": [active.pk, gone.pk]}
    assert staff_client.post(url, selected).status_code == 200  # the confirmation page first
    assert staff_client.post(url, {**selected, "confirm": "yes"}).status_code == 302
    active.refresh_from_db()
    assert active.status == Subscription.Status.CANCELLED and active.valid_until <= timezone.now()
    assert [(event, payload["user_id"]) for event, payload in told] == [("user.notify", active.user_id)]
    assert "plan has ended" in told[0][1]["text"]


def test_the_user_page_shows_the_settings_and_flags_but_changes_them_only_through_the_actions(staff_client):
    user = TelegramUserFactory(is_banned=False)
    page = staff_client.get(reverse("admin:accounts_telegramuser_change", args=[user.pk])).content.decode()
    assert 'name="is_banned"' not in page and 'name="auto_trading_enabled"' not in page
    assert 'name="preferences-0-leverage"' not in page and "Leverage" in page
