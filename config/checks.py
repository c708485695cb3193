"""Start-up checks of what would only fail later: Django system checks (``manage.py check``, ``check --deploy``,
``migrate`` and ``runserver`` run them) and the same list in ``/readyz``.

* ``config.E001`` every FERNET_KEYS entry is a Fernet key (url-safe base64 of 32 bytes). A malformed key otherwise
  passes start-up and then fails every encryption: each Telegram webhook (payloads are stored encrypted) answers 500.
* ``config.E002`` in production, SECRET_KEY is long, random-looking and not the development key.
* ``config.E003`` the Celery broker URL has a known scheme and a host (``redis://host:6379/0``).
* ``config.E004`` the database settings have a known engine, a name and a numeric port.
* ``config.W001`` production on SQLite, ``config.W002`` production without a broker (tasks would run in-process).

``configuration_problems()`` runs them without touching the database or the network, fast enough for every probe.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured

BROKER_SCHEMES = {
    "redis",
    "rediss",
    "amqp",
    "amqps",
    "pyamqp",
    "librabbitmq",
    "sqs",
    "sentinel",
    "memory",
    "filesystem",
}
DATABASE_ENGINES = {
    "django.db.backends.postgresql",
    "django.db.backends.sqlite3",
    "django.db.backends.mysql",
    "django.db.backends.oracle",
}


def _fernet_key_problem(key: object) -> str | None:
    if not isinstance(key, str | bytes) or not key:
        return "is empty"
    try:
        raw = base64.urlsafe_b64decode(key.encode() if isinstance(key, str) else key)
    except (binascii.Error, ValueError):
        return "is not url-safe base64"
    if len(raw) != 32:
        return f"decodes to {len(raw)} bytes instead of 32"
    return None


def fernet_keys_check(**kwargs) -> list[Error]:
    keys = list(settings.FERNET_KEYS or [])
    if not keys:
        return [
            Error(
                "FERNET_KEYS is empty: exchange keys and stored Telegram updates cannot be encrypted.",
                hint='Generate one with: python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())"',
                id="config.E001",
            )
        ]
    errors = []
    for position, key in enumerate(keys, start=1):
        problem = _fernet_key_problem(key)
        if problem:  # never echo the key itself
            errors.append(
                Error(
                    f"FERNET_KEYS entry {position} of {len(keys)} {problem}: it is not a Fernet key "
                    "(url-safe base64 of 32 bytes).",
                    hint="Keys are comma-separated, newest first; generate one with Fernet.generate_key().",
                    id="config.E001",
                )
            )
    return errors


def secret_key_check(**kwargs) -> list[Error]:
    if not settings.IS_PRODUCTION:
        return []
    try:
        key = settings.SECRET_KEY or ""
    except ImproperlyConfigured:  # empty: Django refuses to read it
        key = ""
    # Django's own rule and limits (security.W009, a warning there), made an error in production
    if (
        key.startswith(SECRET_KEY_INSECURE_PREFIX)
        or len(key) < SECRET_KEY_MIN_LENGTH
        or len(set(key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
    ):
        return [
            Error(
                f"SECRET_KEY is not fit for production: use at least {SECRET_KEY_MIN_LENGTH} random characters "
                f"(not the development key, nothing starting with '{SECRET_KEY_INSECURE_PREFIX}').",
                hint='python -c "import secrets; print(secrets.token_urlsafe(64))"',
                id="config.E002",
            )
        ]
    return []


def broker_url_check(**kwargs) -> list[Error | Warning]:
    url = settings.CELERY_BROKER_URL or ""
    if not url:
        if settings.IS_PRODUCTION:
            return [
                Warning(
                    "No Celery broker (CELERY_BROKER_URL / REDIS_URL) in production: tasks run in the calling process.",
                    id="config.W002",
                )
            ]
        return []
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a non-numeric or out-of-range port
    except ValueError:
        return [Error("CELERY_BROKER_URL is not a valid URL (check the port).", id="config.E003")]
    scheme = parts.scheme.split("+")[0]
    if scheme not in BROKER_SCHEMES:
        return [
            Error(
                f"CELERY_BROKER_URL has the scheme {parts.scheme!r}; expected one of "
                f"{', '.join(sorted(BROKER_SCHEMES))} (e.g. redis://127.0.0.1:6379/0).",
                id="config.E003",
            )
        ]
    if scheme not in {"memory", "filesystem", "sqs"} and not parts.hostname:
        return [Error("CELERY_BROKER_URL has no host (e.g. redis://127.0.0.1:6379/0).", id="config.E003")]
    return []


def database_check(**kwargs) -> list[Error | Warning]:
    database = settings.DATABASES.get("default") or {}
    engine = database.get("ENGINE", "")
    messages: list[Error | Warning] = []
    if engine not in DATABASE_ENGINES:
        messages.append(
            Error(
                f"The database engine {engine!r} is not supported: check DATABASE_URL "
                "(e.g. postgres://user:password@host:5432/name).",
                id="config.E004",
            )
        )
    if not database.get("NAME"):
        messages.append(
            Error("DATABASE_URL names no database (e.g. postgres://user:password@host:5432/name).", id="config.E004")
        )
    port = database.get("PORT")
    if port not in (None, "") and not str(port).isdigit():
        messages.append(Error("The database port in DATABASE_URL is not a number.", id="config.E004"))
    if settings.IS_PRODUCTION and engine == "django.db.backends.sqlite3":
        messages.append(Warning("Production on SQLite: use PostgreSQL (DATABASE_URL=postgres://…).", id="config.W001"))
    return messages


CHECKS = (fernet_keys_check, secret_key_check, broker_url_check, database_check)


def configuration_problems() -> list[Error | Warning]:
    """Every message of the checks above (no I/O): what ``manage.py check`` reports and ``/readyz`` shows."""
    return [message for check in CHECKS for message in check()]


def register_checks() -> None:
    for check in CHECKS:
        register(check, Tags.security if check is secret_key_check else "configuration")
