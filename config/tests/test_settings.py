"""Production refuses to start without its secrets; `check --deploy` is clean with a production environment."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]


def _run(args, **env):
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "FERNET_KEYS", "DJANGO_ENV", "DATABASE_URL", "REDIS_URL"}}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("missing", ["SECRET_KEY", "FERNET_KEYS"])
def test_production_refuses_to_start_without_secrets(missing):
    env = {"DJANGO_ENV": "production", "SECRET_KEY": "x" * 60, "FERNET_KEYS": Fernet.generate_key().decode(), "ALLOWED_HOSTS": "example.com"}
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
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
