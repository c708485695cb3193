""".env.example documents every variable config/settings.py reads, and copying it to .env changes no setting."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "config" / "settings.py"
ENV_EXAMPLE = ROOT / ".env.example"
# `NAME=value` or a commented-out `# NAME=value` (variables whose default is computed or secret).
ENTRY = re.compile(r"^(?:#\s*)?([A-Z][A-Z0-9_]*)=")


def _settings_env_names() -> set[str]:
    """Names read in settings.py: env("X"), env.<cast>("X"), os.environ.get("X"), os.getenv("X"), os.environ["X"]."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(SETTINGS.read_text())):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            is_env = (isinstance(func, ast.Name) and func.id == "env") or (
                isinstance(func, ast.Attribute)
                and (
                    (isinstance(func.value, ast.Name) and func.value.id == "env")
                    or ast.unparse(func) in {"os.environ.get", "os.getenv"}
                )
            )
            if is_env and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
        elif (
            isinstance(node, ast.Subscript)
            and ast.unparse(node.value) == "os.environ"
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            names.add(node.slice.value)
    return names


def _example_entries() -> dict[str, int]:
    """Variable name -> line index in .env.example."""
    entries: dict[str, int] = {}
    for index, line in enumerate(ENV_EXAMPLE.read_text().splitlines()):
        match = ENTRY.match(line)
        if match:
            entries.setdefault(match.group(1), index)
    return entries


def test_the_parser_finds_the_variables_settings_reads():
    names = _settings_env_names()
    assert {"DJANGO_ENV", "DATABASE_URL", "FERNET_KEYS", "ADMIN_TELEGRAM_IDS", "FLOW_SYMBOLS"} <= names
    assert len(names) >= 90


def test_every_variable_settings_reads_is_in_env_example():
    missing = sorted(_settings_env_names() - set(_example_entries()))
    assert not missing, f"add these to .env.example (with a comment: what, default): {missing}"


def test_env_example_lists_no_variable_settings_does_not_read():
    stale = sorted(set(_example_entries()) - _settings_env_names())
    assert not stale, f"settings.py no longer reads: {stale}"


def test_every_variable_has_a_comment_line_above_it():
    lines = ENV_EXAMPLE.read_text().splitlines()
    uncommented = [
        name
        for name, index in _example_entries().items()
        if index == 0 or not lines[index - 1].startswith("#") or ENTRY.match(lines[index - 1])
    ]
    assert not uncommented, f"describe these in a comment line right above them: {uncommented}"


_DUMP_SETTINGS = """
import json, sys
import environ
read_env = environ.Env.read_env
environ.Env.read_env = classmethod(lambda cls, *a, **k: None)  # ignore a developer's own .env
if sys.argv[1] != "-":
    read_env(sys.argv[1])  # like a .env: sets only what the environment does not
import config.settings as s
print(json.dumps({name: repr(getattr(s, name)) for name in dir(s) if name.isupper()}))
"""


def _settings_dump(env_file: str, **environment: str) -> dict[str, str]:
    """Every upper-case setting (repr) in a fresh interpreter; only ``environment`` of the variables settings reads."""
    ignored = _settings_env_names() | {"DJANGO_SETTINGS_MODULE"}
    env = {key: value for key, value in os.environ.items() if key not in ignored} | environment
    result = subprocess.run(
        [sys.executable, "-c", _DUMP_SETTINGS, env_file], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _changed(without: dict[str, str], with_example: dict[str, str]) -> dict[str, tuple]:
    return {
        name: (without.get(name), with_example.get(name))
        for name in without.keys() | with_example.keys()
        if without.get(name) != with_example.get(name)
    }


def test_copying_env_example_to_dotenv_changes_no_setting():
    without = _settings_dump("-")
    changed = _changed(without, _settings_dump(str(ENV_EXAMPLE)))
    assert not changed, f"settings that differ with .env.example as .env (default, with the file): {changed}"
    # The embedded defaults: SQLite, no Redis, tasks eager, the development Fernet key.
    assert "sqlite3" in without["DATABASES"]
    assert without["REDIS_URL"] == "''"
    assert without["CELERY_TASK_ALWAYS_EAGER"] == "True"
    assert without["FERNET_KEYS"] != "[]"


def test_env_example_overrides_nothing_of_a_production_environment():
    """Defaults computed from DJANGO_ENV or REDIS_URL (DEBUG, LOG_FORMAT, Celery eager, …) stay computed."""
    production = {
        "DJANGO_ENV": "production",
        "SECRET_KEY": "k3y-" + "a1B2c3D4e5F6g7H8i9J0" * 3,
        "FERNET_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "signals.example.com",
        "DATABASE_URL": "postgres://perps@db.example.com:5432/perps",
        "REDIS_URL": "redis://redis.example.com:6379/0",
        "CRYPTONEWS_API_KEY": "set",
    }
    without = _settings_dump("-", **production)
    changed = _changed(without, _settings_dump(str(ENV_EXAMPLE), **production))
    assert not changed, f"settings .env.example overrides in production (default, with the file): {changed}"
    assert without["DEBUG"] == "False" and without["LOG_FORMAT"] == "'json'"
    assert without["CELERY_TASK_ALWAYS_EAGER"] == "False" and without["NEWS_SOURCE"] == "'cryptonews'"
