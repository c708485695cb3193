""".env.example documents every variable config/settings.py reads, and copying it to .env changes no setting; every
setting the code reads is declared in config/settings.py and read without a fallback default."""

from __future__ import annotations

import ast
import functools
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
    """Names read in settings.py: env("X"), env.<cast>("X"), env_choice("X"), os.environ.get("X"), os.getenv("X"),
    os.environ["X"]."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(SETTINGS.read_text())):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            is_env = (isinstance(func, ast.Name) and func.id in {"env", "env_choice"}) or (
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


def _python_files() -> list[Path]:
    """The project's Python files (tracked or not), without migrations, data and virtualenvs."""
    skipped = {".git", ".venv", "venv", "node_modules", "migrations", "data", "var", "staticfiles", "__pycache__"}
    files = []
    for folder, subfolders, names in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if name not in skipped and not name.startswith(".")]
        files += [Path(folder) / name for name in names if name.endswith(".py")]
    return files


def _is_settings(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "settings"


@functools.cache
def _settings_reads() -> tuple[dict[str, set[str]], list[str]]:
    """{NAME: files} of ``settings.NAME`` read anywhere, and every ``getattr(settings, "NAME", default)``."""
    reads: dict[str, set[str]] = {}
    with_default: list[str] = []
    for path in _python_files():
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(), filename=where)):
            if (
                isinstance(node, ast.Attribute)
                and _is_settings(node.value)
                and node.attr.isupper()
                and isinstance(node.ctx, ast.Load)
            ):
                reads.setdefault(node.attr, set()).add(where)
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in {"getattr", "hasattr"}
                and len(node.args) >= 2
                and _is_settings(node.args[0])
                and isinstance(node.args[1], ast.Constant)
            ):
                reads.setdefault(node.args[1].value, set()).add(where)
                with_default.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return reads, with_default


def test_the_settings_reads_finder_sees_the_code():
    reads, _ = _settings_reads()
    assert {"MARKET_DATA_SOURCE", "TELEGRAM_BOT_TOKEN", "LIVE_ENTRY_ORDER_TYPE"} <= set(reads)
    assert "trading/executors/live.py" in reads["LIVE_ENTRY_ORDER_TYPE"]


def test_every_setting_the_code_reads_is_declared_in_settings():
    """A setting read but never declared would silently take the caller's fallback (or fail only on its path)."""
    from django.conf import global_settings

    import config.settings as declared

    names = {name for name in dir(declared) if name.isupper()} | {n for n in dir(global_settings) if n.isupper()}
    reads, _ = _settings_reads()
    undeclared = {name: sorted(files) for name, files in reads.items() if name not in names}
    assert not undeclared, (
        f"declare these in config/settings.py (and .env.example when read from the environment): {undeclared}"
    )


def test_no_setting_is_read_with_a_fallback_default():
    _, with_default = _settings_reads()
    assert not with_default, (
        f"read declared settings as settings.NAME (the default lives in settings.py): {with_default}"
    )


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
