"""README's "Running in production" section is true to the letter: its process commands are the Procfile's (which
config/tests/test_graceful_shutdown.py runs in production mode), its variables exist, and the first operator login
it describes works."""

import re
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]


def _section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Running in production")
    return readme[start : readme.index("\n## ", start + 3)]


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)


def test_the_process_commands_are_exactly_the_procfiles():
    procfile = [
        line.split(":", 1)[1].strip()
        for line in (ROOT / "Procfile").read_text().splitlines()
        if line.split(":", 1)[0] in {"web", "worker", "trader", "beat", "bridge"}
    ]
    processes = next(block for block in _code_blocks(_section()) if "celery -A config worker" in block)
    assert processes.strip().splitlines() == procfile


def test_every_variable_it_sets_is_one_the_settings_read():
    documented = set(re.findall(r"^(?:#\s*)?([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    environment = _code_blocks(_section())[0]
    named = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", environment, re.MULTILINE))
    assert {"DJANGO_ENV", "SECRET_KEY", "FERNET_KEYS", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL"} <= named
    assert named <= documented, named - documented


@pytest.mark.django_db
def test_createsuperuser_gives_the_first_operator_a_login_to_admin(client, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "first-operator")
    monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", "ops@example.com")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-and-unguessable-passphrase")
    call_command("createsuperuser", interactive=False, verbosity=0)
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "first-operator", "password": "a-long-and-unguessable-passphrase"}
    )
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
