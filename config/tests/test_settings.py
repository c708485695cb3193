"""Production refuses to start without its secrets; `check --deploy` is clean with a production environment; a variable
with a fixed set of values refuses any other value at start-up."""

import ast
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

ROOT = Path(__file__).resolve().parents[2]


def _run(args, **env):
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SECRET_KEY", "FERNET_KEYS", "DJANGO_ENV", "DATABASE_URL", "REDIS_URL"}
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("missing", ["SECRET_KEY", "FERNET_KEYS"])
def test_production_refuses_to_start_without_secrets(missing):
    env = {
        "DJANGO_ENV": "production",
        "SECRET_KEY": "x" * 60,
        "FERNET_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "example.com",
    }
    del env[missing]
    result = _run(["check"], **env)
    assert result.returncode != 0
    assert f"{missing} must be set in production" in result.stderr


def test_check_deploy_is_clean_in_production():
    result = _run(
        ["check", "--deploy", "--fail-level", "WARNING"],
        DJANGO_ENV="production",
        SECRET_KEY="k3y-" + "a1B2c3D4e5F6g7H8i9J0" * 3,
        FERNET_KEYS=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="signals.example.com",
        DATABASE_URL="postgres://perps:perps@db.internal:5432/perps",  # the check does not connect
        REDIS_URL="redis://redis.internal:6379/0",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


# --- Variables with a fixed set of values ------------------------------------------------------------------------------
SETTINGS_FILE = ROOT / "config" / "settings.py"
# The variables whose value picks a behaviour: a typo must stop start-up, never silently mean the default.
CHOICE_VARIABLES = {
    "DJANGO_ENV",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "MARKET_DATA_SOURCE",
    "NEWS_SOURCE",
    "FLOW_SOURCE",
    "LIVE_ENTRY_ORDER_TYPE",
    "TRADING_TRAILING_MODE",
}


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("real", True),
        ("testsupport.exchanges.fake.fake_exchange_client", True),
        ("tyop", False),
        ("fake", False),
        ("a..b", False),
    ],
)
def test_the_live_exchange_client_is_real_or_a_factory_path(value, accepted, monkeypatch):
    monkeypatch.setenv("LIVE_EXCHANGE_CLIENT", value)
    if accepted:
        assert runpy.run_path(str(SETTINGS_FILE))["LIVE_EXCHANGE_CLIENT"] == value
        return
    with pytest.raises(ImproperlyConfigured) as error:
        runpy.run_path(str(SETTINGS_FILE))
    assert (
        f"LIVE_EXCHANGE_CLIENT={value!r}" in str(error.value)
        and "real" in str(error.value)
        and "dotted path" in str(error.value)
    )


def _choices() -> dict[str, tuple[str, ...]]:
    """{variable: allowed values} of every ``env_choice(...)`` call in settings.py."""
    choices = {}
    for node in ast.walk(ast.parse(SETTINGS_FILE.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "env_choice":
            allowed = next(k.value for k in node.keywords if k.arg == "allowed")
            choices[node.args[0].value] = tuple(ast.literal_eval(allowed))
    return choices


def test_every_variable_with_a_fixed_set_of_values_is_checked():
    assert set(_choices()) == CHOICE_VARIABLES
    assert _choices()["LIVE_ENTRY_ORDER_TYPE"] == ("market", "limit")


@pytest.mark.parametrize("name", sorted(CHOICE_VARIABLES))
def test_an_unknown_value_stops_start_up_with_a_clear_message(name, monkeypatch):
    monkeypatch.setenv(name, "tyop")
    with pytest.raises(ImproperlyConfigured) as error:
        runpy.run_path(str(SETTINGS_FILE))  # the settings module executed afresh, as at start-up
    message = str(error.value)
    assert f"{name}='tyop'" in message
    assert all(value in message for value in _choices()[name]), message


@pytest.mark.parametrize("name", sorted(CHOICE_VARIABLES))
def test_every_allowed_value_is_accepted(name, monkeypatch):
    for value in _choices()[name]:
        monkeypatch.setenv(name, value)
        if name == "DJANGO_ENV" and value == "production":
            monkeypatch.setenv("SECRET_KEY", "x" * 60)
            monkeypatch.setenv("FERNET_KEYS", Fernet.generate_key().decode())
        assert runpy.run_path(str(SETTINGS_FILE))[name] == value


def test_a_typo_in_the_entry_order_type_stops_the_real_start_up():
    result = _run(["check"], LIVE_ENTRY_ORDER_TYPE="limt")
    assert result.returncode != 0
    assert (
        "ImproperlyConfigured: LIVE_ENTRY_ORDER_TYPE='limt' is not a valid value; allowed: market, limit."
        in result.stderr
    )
