"""The operators' pages in real headless Chromium at 1280 px: nothing wider than the window (no sideways scrolling),
no text running out of its card. ``ADMIN_SCREENSHOTS=/some/dir`` keeps a PNG of each page for a person to look at."""

import os
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.urls import reverse

from web.tests.browser import asgi_server, browser, chromium  # noqa: F401  (fixtures)
from web.tests.operator_pages import operator_pages_data

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(180)]
WIDTH = 1280

# Elements whose content must stay inside them: the admin result list (Django scrolls it sideways when too wide),
# its cells, every control-panel card and the backtest report's tables.
OVERFLOWING = """
return Array.from(document.querySelectorAll(
    '.results, #result_list td, #result_list th, .cp-card, .cp-card td, #backtest-run, #backtest-run td'))
  .filter(el => el.scrollWidth > el.clientWidth + 1)
  .map(el => (el.id || el.className || el.tagName) + ' ' + el.scrollWidth + '>' + el.clientWidth + ': ' +
             el.textContent.replace(/\\s+/g, ' ').trim().slice(0, 50));
"""


def _login(driver, server) -> None:
    user = get_user_model().objects.create_superuser("layout-operator", "ops@example.com", "x" * 16)
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()
    driver.get(f"{server.url}/healthz")
    driver.add_cookie({"name": "sessionid", "value": session.session_key, "path": "/"})


def test_operator_pages_fit_1280_pixels(asgi_server, browser):  # noqa: F811
    data = operator_pages_data()
    _login(browser, asgi_server)
    browser.set_window_size(WIDTH, 1000)
    inner = browser.execute_script("return window.innerWidth")
    pages = {
        "signals": reverse("admin:signals_signal_changelist"),
        "positions": reverse("admin:trading_position_changelist"),
        "orders": reverse("admin:trading_order_changelist"),
        "paper-accounts": reverse("admin:trading_paperaccount_changelist"),
        "backtests": reverse("admin:analytics_backtestrun_changelist"),
        "control-panel": reverse("control:dashboard"),
        "backtest-report": reverse("control:backtest-detail", args=[data["backtest"].pk]),
    }
    keep = os.environ.get("ADMIN_SCREENSHOTS")
    problems = {}
    for name, path in pages.items():
        browser.get(f"{asgi_server.url}{path}")
        assert "layout-operator" in browser.page_source or name == "control-panel", browser.page_source[:500]
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            height = browser.execute_script("return document.documentElement.scrollHeight")
            browser.set_window_size(WIDTH, min(max(height, 600), 4000))
            browser.save_screenshot(str(Path(keep) / f"{name}.png"))
            browser.set_window_size(WIDTH, 1000)
        scroll_width = browser.execute_script("return document.documentElement.scrollWidth")
        overflowing = browser.execute_script(OVERFLOWING)
        if scroll_width > inner or overflowing:
            problems[name] = {"page width": scroll_width, "window": inner, "overflowing": overflowing}
    assert problems == {}, "\n".join(f"{name}: {found}" for name, found in problems.items())
