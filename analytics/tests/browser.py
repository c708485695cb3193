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


@pytest.fixture
def asgi_server(postgres_database, redis_url):
    """``daphne config.asgi:application`` on a free loopback port; its channel layer is the test's Redis."""
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_ENV": "development",  # DEBUG: whitenoise serves app static files (live.js) from the finders
        "DATABASE_URL": _database_url(postgres_database),
        "REDIS_URL": redis_url,
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
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
                pytest.fail(f"daphne did not start:\n{process.communicate(timeout=10)[0]}")
            time.sleep(0.25)
    yield server
    process.terminate()
    try:
        process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


@pytest.fixture
def browser():
    """Headless Chromium (Debian's package) driven by its matching chromedriver."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        _unavailable("chromium and chromedriver are not installed (apt-get install -y chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=414,900", "--disable-extensions", "--no-first-run"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


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

