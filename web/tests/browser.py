"""Fixtures of the real-browser tests: the ASGI app served by daphne in a subprocess (HTTP + WebSockets, sharing the
PostgreSQL test database and the Redis channel layer with the test), and headless Debian Chromium through Selenium.

CI needs ``apt-get install -y chromium chromium-driver`` and the selenium pin of requirements-dev.txt.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _unavailable(reason: str):
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def _database_url(db: dict) -> str:
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db.get('USER') or 'postgres'}{password}@{host}:{port}/{db['NAME']}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AsgiServer:
    def __init__(self, process: subprocess.Popen, port: int):
        self.process, self.port = process, port
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def asgi_server(django_db_setup, django_db_blocker):
    """``uvicorn config.asgi:application`` on a free loopback port, shared by a module's tests; it uses the test
    database (tests must be transactional to share rows with it) and the test's Redis as its channel layer."""
    from django.conf import settings
    from django.db import connection

    if connection.vendor != "postgresql":
        _unavailable("the browser tests need PostgreSQL (DATABASE_URL=postgres://…)")
    if not settings.REDIS_URL:
        _unavailable("REDIS_URL is not set (the browser tests need the Redis channel layer)")
    with django_db_blocker.unblock():
        database_url = _database_url(connection.settings_dict)
    redis_url = settings.REDIS_URL
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",  # same password hasher as the test process
        "DJANGO_ENV": "development",  # DEBUG: whitenoise serves app static files (live.js) from the finders
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--ws",
            "wsproto",
            "--lifespan",
            "off",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = AsgiServer(process, port)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"uvicorn did not start:\n{process.communicate(timeout=10)[0]}")
            time.sleep(0.25)
    yield server
    process.terminate()
    try:
        process.communicate(timeout=3)
    except subprocess.TimeoutExpired:  # open sockets keep the server waiting; nothing of it needs to survive
        process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def chromium():
    """Headless Chromium (Debian's package) driven by its matching chromedriver."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        _unavailable("chromium and chromedriver are not installed (apt-get install -y chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=414,900",
        "--disable-extensions",
        "--no-first-run",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def browser(chromium, transactional_db):
    """The module's Chromium with a clean cookie jar (each test logs in afresh)."""
    chromium.delete_all_cookies()
    return chromium


@pytest.fixture
def live_layer(settings):
    """The test process publishes through the same Redis channel layer the server's consumers listen on."""
    if not settings.REDIS_URL:
        _unavailable("REDIS_URL is not set (the browser tests need the Redis channel layer)")
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def web_login(driver, server: AsgiServer, login_url: str) -> None:
    """Open a one-time login link the bot generated and press Continue, as a user would."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    path = login_url.split("://", 1)[-1].split("/", 1)[-1]
    driver.get(f"{server.url}/{path}")
    driver.find_element(By.ID, "login-continue").click()
    WebDriverWait(driver, 20).until(ec.presence_of_element_located((By.ID, "nav-settings")))
