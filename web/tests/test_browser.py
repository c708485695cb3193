"""Real headless Chromium against the ASGI app served by uvicorn (HTTP + WebSockets):

* log in with the one-time link the bot generates, change a setting, see it in the bot's settings keyboard;
* open the positions page, let a replayed signal open a paper position (signal.created → trading → position.opened →
  the live-updates consumer) and see the row appear without a reload.
"""

from decimal import Decimal

import pytest

from accounts.models import UserPreferences
from accounts.tests.factories import TelegramUserFactory
from signals.tests.factories import SignalFactory, SymbolFactory
from trading.models import Position
from web.tests.browser import asgi_server, browser, chromium, live_layer, web_login  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(180)]


def bot_login_url(user, settings, server) -> str:
    """The URL behind the bot's /dashboard → "Open web dashboard" button."""
    from telegram_bridge.commands import web_dashboard_url
    from telegram_bridge.update_context import UpdateContext

    settings.WEB_BASE_URL = server.url
    url = web_dashboard_url(UpdateContext(update_id=1, user=user, chat_id=str(user.telegram_id)))
    assert url and url.startswith(server.url + "/dashboard/login/link/")
    return url


def wait(driver, condition, timeout=20):
    """Wait for ``condition``; an element that goes stale while the page navigates is looked up again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    waiter = WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,))
    return waiter.until(condition)


def test_login_with_the_bot_link_and_change_a_setting(asgi_server, browser, settings):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    from telegram_bridge.keyboards import settings_keyboard

    user = TelegramUserFactory()
    web_login(browser, asgi_server, bot_login_url(user, settings, asgi_server))
    assert "Profit and loss" in browser.page_source

    browser.find_element(By.ID, "nav-settings").click()
    leverage = wait(browser, ec.presence_of_element_located((By.ID, "id_leverage")))
    # an invalid value is refused by the shared validator and shown on its field
    leverage.clear()
    leverage.send_keys(str(settings.MAX_LEVERAGE + 5))
    browser.find_element(By.ID, "settings-save").click()
    wait(browser, ec.text_to_be_present_in_element((By.ID, "settings-form"), f"from 1x to {settings.MAX_LEVERAGE}x"))
    assert UserPreferences.objects.get(user=user).leverage != settings.MAX_LEVERAGE + 5

    leverage = browser.find_element(By.ID, "id_leverage")
    leverage.clear()
    leverage.send_keys("7")
    news = browser.find_element(By.ID, "id_news_signals")
    news_before = news.is_selected()
    news.click()
    browser.find_element(By.ID, "settings-save").click()
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".messages"), "Settings saved"))

    preferences = UserPreferences.objects.get(user=user)
    assert preferences.leverage == 7 and preferences.news_signals is (not news_before)
    buttons = [b["text"] for row in settings_keyboard(preferences)["inline_keyboard"] for b in row]
    assert "Leverage: 7" in buttons  # what the bot's /settings shows now


def test_a_paper_position_appears_live_without_reload(asgi_server, browser, live_layer, settings):  # noqa: F811
    from selenium.webdriver.common.by import By

    from config.events import publish
    from signals.market_data import get_market_data

    # only the consumers this test is about (no Telegram delivery); the events are the real ones
    settings.DOMAIN_EVENT_CONSUMERS = {
        **settings.DOMAIN_EVENT_CONSUMERS,
        "signal.created": ["trading.tasks.execute_signal", "web.live_updates.push_signal"],
        "position.opened": ["web.live_updates.push_position"],
        "position.updated": ["web.live_updates.push_position"],
        "position.closed": ["web.live_updates.push_position"],
    }
    settings.MARKET_DATA_SOURCE = "replay"  # the bundled candles: the paper executor fills at the replay price
    settings.MAX_LEVERAGE = 20

    user = TelegramUserFactory(auto_trading_enabled=True)
    web_login(browser, asgi_server, bot_login_url(user, settings, asgi_server))
    browser.get(f"{asgi_server.url}/dashboard/positions/")
    wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-live-state") == "live")
    assert "No open positions." in browser.find_element(By.ID, "open-positions").text
    browser.execute_script("window.__sameDocument = 'yes';")  # gone if the page reloads

    symbol = SymbolFactory(symbol="XRP/USDT:USDT", base="XRP")
    price = get_market_data().last_price(symbol.symbol)  # the replay's current price
    signal = SignalFactory(
        symbol=symbol,
        side="long",
        entry=price,
        stop=(price * Decimal("0.98")).quantize(Decimal("0.0001")),
        tp1=(price * Decimal("1.02")).quantize(Decimal("0.0001")),
        tp2=(price * Decimal("1.04")).quantize(Decimal("0.0001")),
        atr=price * Decimal("0.01"),
    )
    publish("signal.created", signal_id=signal.pk)  # no transaction: dispatched now, eagerly

    position = Position.objects.get(user=user, signal=signal)
    assert position.mode == "paper" and position.status == Position.Status.OPEN
    row = wait(
        browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'#open-positions tr[data-position-id="{position.pk}"]')
    )[0]
    assert "XRP/USDT:USDT" in row.text and "paper" in row.text
    assert browser.execute_script("return window.__sameDocument;") == "yes"
    assert "No open positions." not in browser.find_element(By.ID, "open-positions").text


def test_admin_health_updates_live_for_staff(asgi_server, browser, live_layer, django_user_model):  # noqa: F811
    from selenium.webdriver.common.by import By

    from analytics.services import heartbeat_record
    from web.live_updates import push_admin_health

    django_user_model.objects.create_superuser("operator", "op@example.com", "a-long-password-1")
    browser.get(f"{asgi_server.url}/healthz")
    browser.delete_all_cookies()  # the module's browser may carry an earlier test's session
    browser.get(f"{asgi_server.url}/admin/login/?next=/admin/control/")
    wait(browser, lambda d: d.find_elements(By.ID, "id_username"))
    browser.find_element(By.ID, "id_username").send_keys("operator")
    browser.find_element(By.ID, "id_password").send_keys("a-long-password-1")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-live-state") == "live")
    assert "never" in browser.find_element(By.ID, "cp-health-heartbeat").text
    browser.execute_script("window.__sameDocument = 'yes';")

    heartbeat_record(name="worker")
    push_admin_health()  # what the beat task does every 15 s

    wait(browser, lambda d: d.find_element(By.ID, "cp-health-heartbeat").text.endswith("s ago"))
    assert browser.execute_script("return window.__sameDocument;") == "yes"


def test_swagger_ui_and_the_admin_work_under_the_content_security_policy(asgi_server, browser):  # noqa: F811
    """Swagger UI loads its start-up script from the view (no inline script), so it renders under the policy."""
    import urllib.request

    from selenium.webdriver.common.by import By

    with urllib.request.urlopen(f"{asgi_server.url}/api/docs/", timeout=10) as response:
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    browser.get(f"{asgi_server.url}/api/docs/")
    operations = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock"))
    assert any("/api/v1/preferences/" in operation.text for operation in operations)
    browser.get(f"{asgi_server.url}/admin/login/")
    assert browser.find_element(By.ID, "id_username").is_displayed()


def test_the_settings_form_shows_two_wrong_fields_at_once(asgi_server, browser, settings):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    user = TelegramUserFactory()
    web_login(browser, asgi_server, bot_login_url(user, settings, asgi_server))
    browser.find_element(By.ID, "nav-settings").click()
    leverage = wait(browser, ec.presence_of_element_located((By.ID, "id_leverage")))
    leverage.clear()
    leverage.send_keys("999")
    size = browser.find_element(By.ID, "id_position_size_pct")
    size.clear()
    size.send_keys("lots")
    browser.find_element(By.ID, "settings-save").click()
    form = wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "#settings-form .errorlist")))
    text = browser.find_element(By.ID, "settings-form").text
    assert form is not None
    assert f"Leverage must be a whole number from 1x to {settings.MAX_LEVERAGE}x." in text
    assert "Position size must be a number from 0.1% to 100%." in text
    legend = browser.find_element(By.CSS_SELECTOR, "#id_accepted_risk_levels_group legend")
    first_box = browser.find_element(By.CSS_SELECTOR, "#id_accepted_risk_levels_group input[type=checkbox]")
    assert legend.location["y"] < first_box.location["y"]  # the label sits above its checkboxes
    assert UserPreferences.objects.get(user=user).leverage != 999
