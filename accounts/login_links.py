"""Web dashboard logins: one-time links from the bot and the Telegram Login Widget.

* ``login_link_create(*, user) -> str`` — the bot's "Open web dashboard" button. The token is random (256 bits), only
  its SHA-256 is stored, it works once and expires after ``WEB_LOGIN_LINK_TTL_SECONDS``. One live link per user:
  creating one revokes the user's older unused links. Failed attempts are throttled per client
  (accounts/login_throttle.py).
* ``telegram_login_verify(*, data)`` — the Login Widget's check (https://core.telegram.org/widgets/login): the
  data-check-string is every received field except ``hash``, sorted by key, as ``key=value`` lines joined by ``\\n``;
  the expected hash is hex(HMAC-SHA256(key=SHA256(bot token), data-check-string)); ``auth_date`` must be recent.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from accounts.models import LoginToken, TelegramUser


class TelegramLoginError(Exception):
    """The widget data is not authentic or too old; the message is safe to show."""


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _base_url() -> str:
    return settings.WEB_BASE_URL.rstrip("/")


def login_link_create(*, user: TelegramUser) -> str:
    """A single-use, short-lived absolute URL (relative when WEB_BASE_URL is unset) that logs ``user`` in."""
    ttl = settings.WEB_LOGIN_LINK_TTL_SECONDS
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        TelegramUser.objects.select_for_update().filter(pk=user.pk).first()  # one link creation per user at a time
        LoginToken.objects.filter(user=user, used_at__isnull=True).delete()  # older links stop working
        LoginToken.objects.create(
            user=user, token_hash=_token_hash(token), expires_at=timezone.now() + timedelta(seconds=ttl)
        )
    return f"{_base_url()}{reverse('dashboard:login-link', args=[token])}"


def login_token_consume(*, token: str) -> TelegramUser | None:
    """The token's user, marking the token used; None if unknown, used, expired or the user is banned.

    The conditional UPDATE makes it single-use even when two requests race.
    """
    if not token or len(token) > 100:
        return None
    now = timezone.now()
    token_hash = _token_hash(token)
    with transaction.atomic():
        used = LoginToken.objects.filter(token_hash=token_hash, used_at__isnull=True, expires_at__gt=now).update(
            used_at=now
        )
        if used != 1:
            return None
        user = LoginToken.objects.select_related("user").get(token_hash=token_hash).user
    return None if user.is_banned else user


def telegram_login_verify(
    *,
    data: Mapping[str, str],
    bot_token: str | None = None,
    max_age_seconds: int | None = None,
    now: float | None = None,
) -> dict[str, str]:
    """Check the Login Widget's fields; returns them (without ``hash``) or raises TelegramLoginError."""
    bot_token = settings.TELEGRAM_BOT_TOKEN if bot_token is None else bot_token
    if max_age_seconds is None:
        max_age_seconds = settings.TELEGRAM_LOGIN_MAX_AGE_SECONDS
    if not bot_token:
        raise TelegramLoginError("Telegram login is not configured on this server.")
    fields = {key: str(value) for key, value in data.items() if key != "hash"}
    received = str(data.get("hash", ""))
    if not received or "id" not in fields or "auth_date" not in fields:
        raise TelegramLoginError("The Telegram login data is incomplete.")
    check_string = "\n".join(f"{key}={fields[key]}" for key in sorted(fields))
    secret_key = hashlib.sha256(bot_token.encode()).digest()
    expected = hmac.new(secret_key, check_string.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, received.lower()):
        raise TelegramLoginError("The Telegram login could not be verified.")
    try:
        auth_date = int(fields["auth_date"])
        int(fields["id"])
    except ValueError:
        raise TelegramLoginError("The Telegram login data is malformed.") from None
    current = time.time() if now is None else now
    if current - auth_date > max_age_seconds or auth_date - current > 60:
        raise TelegramLoginError("This Telegram login has expired; please log in again.")
    return fields


@transaction.atomic
def web_user_for(*, telegram_user: TelegramUser):
    """The Django auth user that carries the web session of ``telegram_user`` (created on first login, no password)."""
    telegram_user = TelegramUser.objects.select_for_update().get(pk=telegram_user.pk)
    if telegram_user.web_user_id:
        return telegram_user.web_user
    user_model = get_user_model()
    web_user, _ = user_model.objects.get_or_create(username=f"tg{telegram_user.telegram_id}")
    if web_user.is_staff or web_user.is_superuser:  # never hand an operator account to a Telegram login
        raise TelegramLoginError("This account cannot log in with Telegram.")
    if web_user.has_usable_password():
        web_user.set_unusable_password()
        web_user.save(update_fields=["password"])
    telegram_user.web_user = web_user
    telegram_user.save(update_fields=["web_user"])
    return web_user
