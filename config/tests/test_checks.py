"""Start-up checks (config/checks.py): a malformed Fernet key, a weak production SECRET_KEY, a malformed broker or
database URL fail `manage.py check --deploy` and /readyz with a clear message (and never echo the secret)."""

import pytest
from cryptography.fernet import Fernet

from config.checks import configuration_problems
from config.tests.test_settings import _run

GOOD_KEY = Fernet.generate_key().decode()


def _ids(messages) -> list[str]:
    return [message.id for message in messages]


@pytest.mark.parametrize("keys", [["not-a-key"], [GOOD_KEY, GOOD_KEY[:-4]], ["A" * 44 + "!"], [""], []])
def test_a_malformed_fernet_key_is_an_error(settings, keys):
    settings.FERNET_KEYS = keys
    errors = [m for m in configuration_problems() if m.id == "config.E001"]
    assert errors and all(m.is_serious() for m in errors)
    assert "Fernet key" in errors[0].msg or "empty" in errors[0].msg
    assert all(key not in m.msg for m in errors for key in keys if key)  # the key itself is never shown


def test_valid_keys_pass(settings):
    settings.FERNET_KEYS = [GOOD_KEY, Fernet.generate_key().decode()]
    assert "config.E001" not in _ids(configuration_problems())


def test_production_needs_a_real_secret_key(settings):
    settings.IS_PRODUCTION = True
    for weak in ("short", "django-insecure-" + "x" * 60, "ab" * 40):
        settings.SECRET_KEY = weak
        assert "config.E002" in _ids(configuration_problems()), weak
    settings.SECRET_KEY = "k3y-" + "a1B2c3D4e5F6g7H8i9J0" * 3
    assert "config.E002" not in _ids(configuration_problems())
    settings.IS_PRODUCTION = False
    settings.SECRET_KEY = "short"
    assert "config.E002" not in _ids(configuration_problems())  # development keeps its fixed key


@pytest.mark.parametrize(
    ("url", "bad"),
    [
        ("redis://127.0.0.1:6379/0", False),
        ("rediss://r.example:6380/1", False),
        ("amqp://guest@rabbit//", False),
        ("redis:/localhost", True),
        ("http://127.0.0.1:6379", True),
        ("redis://host:port/0", True),
        ("127.0.0.1:6379", True),
    ],
)
def test_broker_url_shape(settings, url, bad):
    settings.CELERY_BROKER_URL = url
    assert ("config.E003" in _ids(configuration_problems())) is bad


def test_database_settings_shape(settings):
    settings.DATABASES = {"default": {**settings.DATABASES["default"], "ENGINE": "django.db.backends.postgresq"}}
    assert "config.E004" in _ids(configuration_problems())
    settings.DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "", "PORT": "x"}}
    assert _ids(configuration_problems()).count("config.E004") == 2


@pytest.mark.django_db
def test_readyz_is_503_with_the_reason_when_a_key_is_malformed(client, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    assert client.get("/readyz").json()["configuration"] == "ok"
    settings.FERNET_KEYS = ["definitely-not-a-fernet-key"]
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready" and body["database"] is True
    assert any("config.E001" in problem and "not a Fernet key" in problem for problem in body["configuration"])
    assert "definitely-not-a-fernet-key" not in response.content.decode()


def test_check_deploy_fails_on_a_malformed_fernet_key():
    result = _run(
        ["check", "--deploy"],
        DJANGO_ENV="production",
        SECRET_KEY="k3y-" + "a1B2c3D4e5F6g7H8i9J0" * 3,
        FERNET_KEYS=f"{GOOD_KEY},{GOOD_KEY[:20]}",
        ALLOWED_HOSTS="signals.example.com",
        DATABASE_URL="postgres://perps:perps@db.internal:5432/perps",
        REDIS_URL="redis://redis.internal:6379/0",
    )
    assert result.returncode != 0
    assert "(config.E001) FERNET_KEYS entry 2 of 2" in result.stderr and "not a Fernet key" in result.stderr
    assert GOOD_KEY[:20] not in result.stderr
