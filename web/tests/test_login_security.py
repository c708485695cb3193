"""Login hygiene: admin lockout after repeated failures (even the right password waits), throttled one-time-link and
Telegram login attempts, one live login link per user, and a Content-Security-Policy that the dashboard, the admin,
the control panel and Swagger UI work under (no inline scripts anywhere)."""

import re
import time

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from accounts.login_links import login_link_create, login_token_consume
from accounts.models import LoginToken
from accounts.tests.factories import TelegramUserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "the-right-password-1"
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
EVENT_HANDLER = re.compile(r"\son[a-z]+\s*=\s*[\"']", re.IGNORECASE)


@pytest.fixture(autouse=True)
def _fresh_counters():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser("operator", "operator@example.com", PASSWORD)


def admin_login(password: str, *, username: str = "operator", ip: str = "203.0.113.7"):
    client = Client(REMOTE_ADDR=ip)
    response = client.post(reverse("admin:login"), {"username": username, "password": password, "next": "/admin/"})
    return client, response


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


class TestAdminLockout:
    def test_two_hundred_wrong_passwords_then_the_right_one_is_refused(self, operator, settings):
        started = time.monotonic()
        for attempt in range(200):
            _, response = admin_login(f"wrong-{attempt}")
            assert response.status_code == 200
        assert time.monotonic() - started < 30
        client, response = admin_login(PASSWORD)
        assert not logged_in(client)
        assert "Too many failed login attempts. Try again in 15 minutes." in response.content.decode()
        # from another address too: the account itself is locked
        client, _ = admin_login(PASSWORD, ip="198.51.100.9")
        assert not logged_in(client)

    def test_the_lockout_ends_and_a_success_clears_the_count(self, operator, settings):
        settings.LOGIN_LOCKOUT_SECONDS = 1
        for _ in range(settings.LOGIN_FAILURE_LIMIT):
            admin_login("wrong", ip="198.51.100.1")
        assert not logged_in(admin_login(PASSWORD, ip="198.51.100.2")[0])
        time.sleep(1.1)
        assert logged_in(admin_login(PASSWORD, ip="198.51.100.2")[0])
        for _ in range(settings.LOGIN_FAILURE_LIMIT - 1):  # the account's count started again from zero
            admin_login("wrong", ip="198.51.100.3")
        assert logged_in(admin_login(PASSWORD, ip="198.51.100.4")[0])

    def test_one_client_guessing_many_usernames_is_locked_out(self, operator, settings):
        for number in range(settings.LOGIN_FAILURE_LIMIT):
            admin_login("wrong", username=f"guess{number}", ip="192.0.2.50")
        client, response = admin_login(PASSWORD, ip="192.0.2.50")
        assert not logged_in(client) and "Too many failed login attempts" in response.content.decode()
        assert logged_in(admin_login(PASSWORD, ip="192.0.2.51")[0])  # the operator elsewhere is not affected

    def test_behind_a_trusted_proxy_the_forwarded_client_counts(self, operator, settings):
        settings.TRUSTED_PROXY_COUNT = 1
        for number in range(settings.LOGIN_FAILURE_LIMIT):
            client = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=f"6.6.6.{number}, 192.0.2.60")
            client.post(reverse("admin:login"), {"username": f"guess{number}", "password": "x"})
        blocked = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="1.1.1.1, 192.0.2.60")
        blocked.post(reverse("admin:login"), {"username": "operator", "password": PASSWORD})
        assert not logged_in(blocked)  # the spoofable left part of the header does not help
        other = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.61")
        other.post(reverse("admin:login"), {"username": "operator", "password": PASSWORD})
        assert logged_in(other)


class TestLoginLinks:
    def test_a_new_link_revokes_the_older_ones(self):
        user = TelegramUserFactory()
        first = login_link_create(user=user).rstrip("/").rsplit("/", 1)[-1]
        second = login_link_create(user=user).rstrip("/").rsplit("/", 1)[-1]
        assert LoginToken.objects.filter(user=user, used_at__isnull=True).count() == 1
        assert login_token_consume(token=first) is None
        assert login_token_consume(token=second) == user

    def test_link_attempts_are_rate_limited_per_client(self, settings):
        user = TelegramUserFactory()
        valid = login_link_create(user=user).rstrip("/").rsplit("/", 1)[-1]
        attacker = Client(REMOTE_ADDR="203.0.113.66")
        for number in range(settings.LOGIN_LINK_ATTEMPT_LIMIT):
            response = attacker.post(reverse("dashboard:login-link", args=[f"guess-{number}"]))
            assert response.status_code == 302
        blocked = attacker.post(reverse("dashboard:login-link", args=[valid]))
        assert blocked.status_code == 429 and int(blocked["Retry-After"]) > 0
        assert "Too many failed login attempts" in blocked.content.decode()
        assert LoginToken.objects.get(user=user).used_at is None  # the blocked attempt consumed nothing
        assert attacker.get(reverse("dashboard:login-telegram"), {"id": "1", "hash": "x"}).status_code == 429
        # another client is not affected and the link still works once
        owner = Client(REMOTE_ADDR="198.51.100.20")
        assert owner.post(reverse("dashboard:login-link", args=[valid])).status_code == 302
        assert logged_in(owner)

    def test_failed_telegram_logins_count_too(self, settings):
        settings.TELEGRAM_BOT_TOKEN = "123:abc"
        client = Client(REMOTE_ADDR="203.0.113.67")
        for _ in range(settings.LOGIN_LINK_ATTEMPT_LIMIT):
            assert (
                client.get(reverse("dashboard:login-telegram"), {"id": "1", "auth_date": "1", "hash": "0"}).status_code
                == 302
            )
        assert client.get(reverse("dashboard:login-telegram"), {"id": "1", "hash": "0"}).status_code == 429


class TestContentSecurityPolicy:
    def policy(self, response) -> dict[str, list[str]]:
        header = response["Content-Security-Policy"]
        return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}

    def test_every_page_has_a_policy_without_inline_scripts(self, operator, settings):
        settings.WEB_BASE_URL = ""
        user = TelegramUserFactory()
        dashboard = Client()
        dashboard.post(
            reverse("dashboard:login-link", args=[login_link_create(user=user).rstrip("/").rsplit("/", 1)[-1]])
        )
        staff = Client()
        staff.force_login(operator)
        pages = [
            (dashboard, reverse("dashboard:pnl")),
            (dashboard, reverse("dashboard:positions")),
            (dashboard, reverse("dashboard:settings")),
            (Client(), reverse("dashboard:login")),
            (Client(), reverse("api:docs")),
            (Client(), reverse("admin:login")),
            (staff, "/admin/"),
            (staff, "/admin/accounts/telegramuser/"),
            (staff, "/admin/control/"),
        ]
        for client, path in pages:
            response = client.get(path)
            assert response.status_code == 200, path
            policy = self.policy(response)
            assert policy["script-src"] == ["'self'", "https://telegram.org"], path
            assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
            assert "ws://testserver" in policy["connect-src"]  # the live-updates socket
            html = response.content.decode()
            assert not INLINE_SCRIPT.search(html), (path, INLINE_SCRIPT.search(html))
            assert not EVENT_HANDLER.search(html), (path, EVENT_HANDLER.search(html))

    def test_report_only_mode(self, settings, client):
        settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = True
        response = client.get(reverse("dashboard:login"))
        assert "Content-Security-Policy" not in response
        assert "script-src 'self'" in response["Content-Security-Policy-Report-Only"]
