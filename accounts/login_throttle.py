"""Login throttling and lockout, in the shared cache (Redis in production, so every web process counts together).

Two scopes:

* ``password`` — the Django admin's username/password login (and any other ``authenticate()`` with a password).
  ``LOGIN_FAILURE_LIMIT`` failures within ``LOGIN_FAILURE_WINDOW_SECONDS``, counted per username and per client IP,
  lock that username / that client out for ``LOGIN_LOCKOUT_SECONDS``: even the right password is refused meanwhile
  (``LoginLockoutBackend``, first in AUTHENTICATION_BACKENDS, raises PermissionDenied), and the admin's login form
  says for how long. A successful login clears the username's count.
* ``link`` — the dashboard's one-time login links and Telegram Login Widget checks: ``LOGIN_LINK_ATTEMPT_LIMIT``
  failed attempts per client IP within the window block further attempts from it for the lockout time (HTTP 429).

The client IP is REMOTE_ADDR, or, behind ``TRUSTED_PROXY_COUNT`` reverse proxies that append to X-Forwarded-For, the
address the outermost of them saw (the client cannot forge it). Identities are hashed in the cache keys.
"""

from __future__ import annotations

import hashlib
import logging
import time

from django.conf import settings
from django.contrib.auth.backends import BaseBackend, ModelBackend
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver

logger = logging.getLogger(__name__)

PASSWORD, LINK = "password", "link"


def client_ip(request) -> str:
    if request is None:
        return ""
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= proxies:
            return forwarded[-proxies][:64]
    return str(request.META.get("REMOTE_ADDR", ""))[:64]


def _key(scope: str, kind: str, value: str, suffix: str) -> str:
    digest = hashlib.sha256(value.strip().lower().encode("utf-8", "replace")).hexdigest()[:40]
    return f"login-throttle:{scope}:{kind}:{digest}:{suffix}"


def _identities(scope: str, *, request=None, username: str | None = None) -> list[tuple[str, str]]:
    identities = []
    ip = client_ip(request)
    if ip:
        identities.append(("ip", ip))
    if username and scope == PASSWORD:
        identities.append(("user", str(username)[:256]))
    return identities


def _limit(scope: str) -> int:
    return settings.LOGIN_LINK_ATTEMPT_LIMIT if scope == LINK else settings.LOGIN_FAILURE_LIMIT


def lockout_remaining(scope: str, *, request=None, username: str | None = None) -> int:
    """Seconds until the client (or the username) may try again; 0 when not locked out."""
    now = time.time()
    remaining = 0.0
    for kind, value in _identities(scope, request=request, username=username):
        until = cache.get(_key(scope, kind, value, "locked"))
        if until:
            remaining = max(remaining, float(until) - now)
    return max(0, int(remaining + 0.999))


def failure_record(scope: str, *, request=None, username: str | None = None) -> None:
    """Count a failed attempt; at the limit the identity is locked out for LOGIN_LOCKOUT_SECONDS."""
    window, lockout, limit = settings.LOGIN_FAILURE_WINDOW_SECONDS, settings.LOGIN_LOCKOUT_SECONDS, _limit(scope)
    for kind, value in _identities(scope, request=request, username=username):
        counter = _key(scope, kind, value, "failures")
        cache.add(counter, 0, timeout=window)
        try:
            failures = cache.incr(counter)
        except ValueError:  # expired between add and incr
            cache.set(counter, 1, timeout=window)
            failures = 1
        if failures >= limit and cache.add(_key(scope, kind, value, "locked"), time.time() + lockout, timeout=lockout):
            logger.warning("login lockout (%s, by %s) for %d s after %d failures", scope, kind, lockout, failures)


def failures_clear(scope: str, *, request=None, username: str | None = None) -> None:
    for kind, value in _identities(scope, request=request, username=username):
        if kind == "user":  # a success clears the account's count, never the client's (it may try other accounts)
            cache.delete_many([_key(scope, kind, value, "failures"), _key(scope, kind, value, "locked")])


def lockout_message(seconds: int) -> str:
    minutes = max(1, (seconds + 59) // 60)
    return f"Too many failed login attempts. Try again in {minutes} minute{'s' if minutes != 1 else ''}."


class LoginLockoutBackend(BaseBackend):
    """First in AUTHENTICATION_BACKENDS: refuses every password check of a locked-out username or client, so even
    the right password fails until the lockout ends. Authenticates nobody itself."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if password is not None and lockout_remaining(PASSWORD, request=request, username=username):
            raise PermissionDenied("locked out")
        return None

    def get_user(self, user_id):
        """Sessions that name this backend (the first one: ``login()`` without a backend) resolve like ModelBackend's."""
        return ModelBackend().get_user(user_id)


@receiver(user_login_failed, dispatch_uid="accounts.login_throttle.failed")
def _login_failed(sender, credentials, request=None, **kwargs):
    failure_record(PASSWORD, request=request, username=credentials.get("username"))


@receiver(user_logged_in, dispatch_uid="accounts.login_throttle.logged_in")
def _logged_in(sender, request, user, **kwargs):
    failures_clear(PASSWORD, request=request, username=user.get_username())
