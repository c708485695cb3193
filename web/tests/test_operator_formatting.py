"""The operators' pages show numbers for people: prices at the market's precision, money in cents, percentages
rounded, dates without seconds, never a raw float (web/tests/test_admin_layout_browser.py checks they fit 1280 px)."""

import re
from decimal import Decimal

import pytest
from django.urls import reverse

from signals.display import money_text, percent_text, price_text, ratio_text, symbol_short
from web.live_updates import admin_health_snapshot
from web.tests.operator_pages import operator_pages_data

pytestmark = pytest.mark.django_db
# 0.000029600000 or 1234.567890123460 (a stored decimal's twelve places), 116.23456789012345 (a raw float): what people
# should not have to read
LONG_FRACTION = re.compile(r"\d\.\d{11,}")


def _results(page: str) -> str:
    return page[page.index('id="result_list"') : page.index("</table>", page.index('id="result_list"'))]


@pytest.mark.parametrize(
    ("value", "tick", "expected"),
    [
        ("65432.123456789012", "0.100000000000", "65432.1"),
        ("0.612345678901", "0.000100000000", "0.6123"),
        ("0.012345678912", "0.000000100000", "0.0123457"),
        ("100.000000000000", "0.010000000000", "100.00"),
        ("65000", "5", "65000"),
        ("0.000029600000", None, "0.0000296"),
        ("65432.123456789012", None, "65432.1"),
        (None, "0.1", "–"),
    ],
)
def test_a_price_has_the_decimals_of_its_markets_tick(value, tick, expected):
    assert price_text(Decimal(value) if value else None, Decimal(tick) if tick else None) == expected


def test_levels_share_the_entrys_precision_when_the_tick_is_unknown():
    assert price_text(Decimal("0.000030314053"), None, reference=Decimal("0.0000296")) == "0.0000303141"


def test_money_percent_ratio_and_symbol_texts():
    assert money_text(Decimal("-157.46283921")) == "-157.46" and money_text(Decimal("9842.537")) == "9,842.54"
    assert percent_text(Decimal("-2.4137"), signed=True) == "-2.41%"
    assert percent_text(0.40540540540540543, 1, fraction=True) == "40.5%"
    assert ratio_text(1.2345678901234567) == "1.23" and ratio_text("inf") == "∞" and ratio_text(None) == "–"
    assert symbol_short("BTC/USDT:USDT") == "BTC/USDT" and symbol_short("BTC/USD:BTC") == "BTC/USD:BTC"


def test_signal_list_shows_prices_at_the_markets_precision(staff_client):
    operator_pages_data()
    page = staff_client.get(reverse("admin:signals_signal_changelist")).content.decode()
    results = _results(page)
    assert not LONG_FRACTION.search(results), LONG_FRACTION.findall(results)
    for text in ("65432.1", "0.6123", "0.0123457", "0.0000296", "stop -2.41%", "Short<br>technical"):
        assert text in results, text
    assert 'title="1000PEPE/USDT:USDT">1000PEPE/USDT<' in results
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d<", results)  # created, without seconds


def test_position_order_and_account_lists_round_money_and_prices(staff_client):
    operator_pages_data()
    for name in ("trading_position", "trading_order", "trading_paperaccount"):
        results = _results(staff_client.get(reverse(f"admin:{name}_changelist")).content.decode())
        assert not LONG_FRACTION.search(results), (name, LONG_FRACTION.findall(results))
    positions = _results(staff_client.get(reverse("admin:trading_position_changelist")).content.decode())
    assert "-178.49" in positions and "1234.568" in positions  # net PnL after fees and funding; the step's decimals
    assert 'title="@a_rather_long_trader_username_2024"' in positions
    accounts = _results(staff_client.get(reverse("admin:trading_paperaccount_changelist")).content.decode())
    assert "9,842.54" in accounts and "10,234.99" in accounts


def test_backtest_report_has_labelled_rounded_metrics_and_no_raw_floats(staff_client):
    run = operator_pages_data()["backtest"]
    page = staff_client.get(reverse("control:backtest-detail", args=[run.pk])).content.decode()
    report = page[page.index('id="backtest-run"') : page.index("</table>", page.index('id="backtest-per-month"'))]
    assert not LONG_FRACTION.search(report), LONG_FRACTION.findall(report)
    assert not re.search(r"\d\.\d{3,}", report)  # nothing beyond two decimals
    for text in (
        "Net PnL",
        "116.23",
        "Win rate",
        "40.5%",
        "Profit factor",
        "1.23",
        "Max drawdown %",
        "3.14%",
        "Average holding",
        "7.3 h",
        "2024-01-31 00:00 UTC",
        "stop_atr_mult=1.5",
        "35.3%",
        "-33.89",
    ):
        assert text in report, text
    assert "{'" not in report  # parameters as words, not a dict


def test_health_card_and_live_push_show_the_last_scan_in_words(staff_client):
    operator_pages_data()
    page = staff_client.get(reverse("control:dashboard")).content.decode()
    cell = re.search(r'id="cp-health-scan">([^<]*)<', page)[1]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC \(\d+ (s|min) ago\)", cell), cell
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC \(\d+ (s|min) ago\)", admin_health_snapshot()["last_scan_text"])
    card = page[page.index('id="cp-trading"') : page.index('id="cp-trading"') + 3000]
    assert "-1,427.89" in card and 'title="1000PEPE/USDT:USDT">1000PEPE/USDT<' in card
