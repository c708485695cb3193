"""Funding-rate monitor: ccxt/Bitunix recorded responses, snapshots, extreme and arbitrage alerts, dedupe."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import ccxt
import httpx
import pytest

from accounts.tests.factories import TelegramUserFactory
from news.funding import funding_poll
from news.funding_sources import (
    BitunixFundingRateSource,
    CcxtFundingRateSource,
    FundingSourceError,
    MarketDataFundingRateSource,
    parse_ccxt_funding_rate,
    period_start,
)
from news.messages import funding_extreme_text
from news.models import FundingAlert
from news.tests.doubles import StubMarketData, utc
from signals.funding import FundingRate, funding_snapshot_record, latest_funding_rate
from signals.models import FundingSnapshot
from signals.tests.factories import FundingSnapshotFactory, SymbolFactory

CCXT_FIXTURES = Path(__file__).parent / "fixtures" / "ccxt"
BITUNIX_FIXTURE = CCXT_FIXTURES / "bitunix_fetch_funding_rate.json"
BTC = "BTC/USDT:USDT"
KUCOIN_BTC_MARKET = {
    "id": "XBTUSDTM",
    "symbol": BTC,
    "base": "BTC",
    "quote": "USDT",
    "settle": "USDT",
    "baseId": "XBT",
    "quoteId": "USDT",
    "settleId": "USDT",
    "type": "swap",
    "spot": False,
    "margin": False,
    "swap": True,
    "future": False,
    "option": False,
    "contract": True,
    "linear": True,
    "inverse": False,
    "active": True,
    "contractSize": 0.001,
    "precision": {"amount": 1, "price": 0.1},
    "limits": {
        "amount": {"min": 1, "max": None},
        "price": {"min": None, "max": None},
        "cost": {"min": None, "max": None},
        "leverage": {"min": 1, "max": 125},
    },
    "info": {},
}


def kucoin_case() -> dict:
    return json.loads((CCXT_FIXTURES / "kucoinfutures_fetch_funding_rate.json").read_text())


def replayed_kucoin(http_response, calls: list) -> ccxt.kucoinfutures:
    """The real ccxt class with its HTTP layer (``fetch``) replaced by the recorded answer."""
    exchange = ccxt.kucoinfutures()
    exchange.set_markets([copy.deepcopy(KUCOIN_BTC_MARKET)])

    def fetch(url, method="GET", headers=None, body=None):
        calls.append((method, url))
        if isinstance(http_response, Exception):
            raise http_response
        return copy.deepcopy(http_response)

    exchange.fetch = fetch
    return exchange


# --- sources ------------------------------------------------------------------------------------------------


def test_kucoinfutures_recorded_funding_rate_through_the_real_ccxt_class():
    case = kucoin_case()
    calls: list = []
    source = CcxtFundingRateSource("kucoinfutures", exchange=replayed_kucoin(case["httpResponse"], calls), bulk=False)
    rates = source.fetch_funding_rates([BTC, "DOGE/USDT:USDT"])  # DOGE is not a market there: not asked

    assert calls == [("GET", "https://api-futures.kucoin.com/api/v1/funding-rate/XBTUSDTM/current")]
    assert rates == [
        FundingRate(
            exchange="kucoinfutures",
            symbol=BTC,
            rate=Decimal(str(case["parsedResponse"]["fundingRate"])),
            funding_time=utc(2024, 1, 22, 4, 0),
            interval_hours=8,
            mark_price=None,
        )
    ]


def test_ccxt_network_errors_become_funding_source_errors():
    source = CcxtFundingRateSource(
        "kucoinfutures", exchange=replayed_kucoin(ccxt.RequestTimeout("timed out"), []), bulk=False
    )
    with pytest.raises(FundingSourceError, match="RequestTimeout"):
        source.fetch_funding_rates([BTC])


def test_ccxt_malformed_answer_skips_the_symbol():
    calls: list = []
    broken = {"code": "200000", "data": {"symbol": ".XBTUSDTMFPI8H", "granularity": 28800000}}  # no value/time
    source = CcxtFundingRateSource("kucoinfutures", exchange=replayed_kucoin(broken, calls), bulk=False)
    assert source.fetch_funding_rates([BTC]) == []


@pytest.mark.parametrize(
    "entry",
    [
        None,
        {"fundingRate": 0.0001},
        {"symbol": BTC, "fundingRate": None, "fundingTimestamp": 1705896000000},
        {"symbol": BTC, "fundingRate": "nan", "fundingTimestamp": 1705896000000},
        {"symbol": BTC, "fundingRate": 0.2, "fundingTimestamp": 1705896000000},  # 20 % per 8 h: a parse error
    ],
)
def test_unusable_ccxt_entries_are_skipped(entry):
    assert parse_ccxt_funding_rate("okx", entry) is None


def test_ccxt_entry_without_time_uses_the_next_settlement():
    rate = parse_ccxt_funding_rate("okx", {"symbol": BTC, "fundingRate": 0.0001}, now=utc(2026, 11, 25, 9, 31))
    assert rate.funding_time == utc(2026, 11, 25, 16, 0)


def test_bitunix_documented_answer_parses_like_ccxt():
    case = json.loads(BITUNIX_FIXTURE.read_text())
    requests: list[httpx.Request] = []

    def handler(request):
        requests.append(request)
        return httpx.Response(200, json=case["httpResponse"])

    rates = BitunixFundingRateSource(transport=httpx.MockTransport(handler)).fetch_funding_rates([BTC])
    assert str(requests[0].url) == "https://fapi.bitunix.com/api/v1/futures/market/funding_rate?symbol=BTCUSDT"
    parsed = case["parsedResponse"]
    assert rates == [
        FundingRate(
            exchange="bitunix",
            symbol=BTC,
            rate=Decimal(str(parsed["fundingRate"])),
            funding_time=utc(2023, 11, 15, 6, 13, 20),  # parsed["nextFundingDatetime"]
            interval_hours=8,
            mark_price=Decimal(str(parsed["markPrice"])),
        )
    ]


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>maintenance</html>"),
        httpx.Response(200, json={"code": 10001, "msg": "symbol not found"}),
        httpx.Response(200, json={"code": 0, "data": {"symbol": "BTCUSDT", "fundingRate": "0.0001"}}),  # no time
        httpx.Response(200, json={"code": 0, "data": {"fundingRate": "abc", "nextFundingTime": "1700028800000"}}),
    ],
)
def test_bitunix_malformed_answers_are_skipped(response):
    source = BitunixFundingRateSource(transport=httpx.MockTransport(lambda request: response))
    assert source.fetch_funding_rates([BTC]) == []


def test_bitunix_rate_limit_and_timeouts_raise():
    limited = BitunixFundingRateSource(transport=httpx.MockTransport(lambda r: httpx.Response(429)))
    with pytest.raises(FundingSourceError):
        limited.fetch_funding_rates([BTC])

    def timeout(request):
        raise httpx.ConnectTimeout("slow")

    with pytest.raises(FundingSourceError):
        BitunixFundingRateSource(transport=httpx.MockTransport(timeout)).fetch_funding_rates([BTC])


def test_replay_source_reads_the_market_data_port_at_its_clock():
    market = StubMarketData(
        now=utc(2021, 11, 18, 9, 30), prices={}, funding={"XRP/USDT:USDT": Decimal("0.0001"), BTC: None}
    )
    rates = MarketDataFundingRateSource(market).fetch_funding_rates(["XRP/USDT:USDT", BTC, "ETH/USDT:USDT"])
    assert rates == [FundingRate("replay", "XRP/USDT:USDT", Decimal("0.0001"), utc(2021, 11, 18, 8, 0), 8)]


def test_period_start_absorbs_millisecond_jitter():
    assert period_start(utc(2021, 11, 18, 8, 0, 0) + timedelta(milliseconds=7), 8) == utc(2021, 11, 18, 8, 0)


# --- snapshots and alerts ----------------------------------------------------------------------------------


class Rates:
    """A FundingRateSource serving fixed rates (or failing)."""

    def __init__(self, name, rates=(), error=None):
        self.name = name
        self.rates = list(rates)
        self.error = error

    def fetch_funding_rates(self, symbols):
        if self.error:
            raise self.error
        return [r for r in self.rates if r.symbol in symbols]


@pytest.fixture
def notifications(monkeypatch):
    sent: list[dict] = []
    monkeypatch.setattr("news.funding.publish", lambda event, **payload: sent.append({"event": event, **payload}))
    return sent


@pytest.fixture
def btc(db):
    return SymbolFactory(symbol=BTC, base="BTC")


def subscribers():
    on = TelegramUserFactory(preferences__funding_alerts=True)
    TelegramUserFactory(preferences__funding_alerts=False)
    TelegramUserFactory(preferences__funding_alerts=True, is_banned=True)
    TelegramUserFactory(preferences__funding_alerts=True, is_active=False)
    TelegramUserFactory(preferences__funding_alerts=True, preferences__muted_symbols=[BTC])
    return on


PERIOD = utc(2026, 11, 25, 8, 0)


def rate(exchange, value, *, at=PERIOD, interval=8):
    return FundingRate(exchange, BTC, Decimal(value), at, interval)


@pytest.mark.django_db
def test_extreme_rate_alerts_subscribers_once_per_period(btc, notifications):
    user = subscribers()
    source = Rates("okx", [rate("okx", "0.0015")])

    report = funding_poll(sources=[source])
    assert report.stored == 1 and len(report.alerts) == 1
    alert = report.alerts[0]
    assert alert.kind == "extreme" and alert.recipients == 1
    assert alert.dedupe_key == f"funding:extreme:{BTC}:20261125T0800"
    assert notifications == [
        {"event": "user.notify", "user_id": user.pk, "text": alert.text, "dedupe_key": f"{alert.dedupe_key}:u{user.pk}"}
    ]
    assert "+0.1500%" in alert.text and "longs pay shorts" in alert.text and "164.2% a year" in alert.text

    # the same period polled again (rate refreshed, even higher): no second alert, one snapshot row
    source.rates = [rate("okx", "0.0020")]
    assert funding_poll(sources=[source]).alerts == []
    assert len(notifications) == 1
    assert FundingSnapshot.objects.get().rate == Decimal("0.0020")

    # the next funding period alerts again
    source.rates = [rate("okx", "-0.0012", at=PERIOD + timedelta(hours=8))]
    alerts = funding_poll(sources=[source]).alerts
    assert len(alerts) == 1 and "shorts pay longs" in alerts[0].text
    assert len(notifications) == 2


@pytest.mark.django_db
def test_normal_rates_do_not_alert(btc, notifications):
    subscribers()
    report = funding_poll(sources=[Rates("okx", [rate("okx", "0.0001")]), Rates("mexc", [rate("mexc", "0.00012")])])
    assert report.stored == 2 and report.alerts == [] and notifications == []


@pytest.mark.django_db
def test_cross_exchange_spread_alerts_with_the_annualised_figure(btc, notifications):
    subscribers()
    report = funding_poll(
        sources=[
            Rates("okx", [rate("okx", "0.0004")]),
            Rates("kucoinfutures", [rate("kucoinfutures", "-0.0003")]),
            Rates("mexc", [rate("mexc", "0.0001")]),
        ]
    )
    [alert] = report.alerts
    assert alert.kind == "arbitrage"
    assert alert.details["short_on"] == "okx" and alert.details["long_on"] == "kucoinfutures"
    assert alert.details["annualised_spread_pct"] == "76.65"  # 0.07 % per 8 h × 3 × 365
    assert "short on okx, long on kucoinfutures" in alert.text
    assert "76.6% a year" in alert.text or "76.7% a year" in alert.text
    assert len(notifications) == 1
    funding_poll(sources=[Rates("okx", [rate("okx", "0.0004")])])
    assert len(notifications) == 1  # same period: no repeat


@pytest.mark.django_db
def test_spread_compares_rates_annualised_with_their_own_interval(btc, notifications):
    # 0.0002 per 4 h equals 0.0004 per 8 h: no spread against 0.0004 per 8 h
    report = funding_poll(
        sources=[Rates("okx", [rate("okx", "0.0004")]), Rates("mexc", [rate("mexc", "0.0002", interval=4)])]
    )
    assert [a.kind for a in report.alerts] == []


@pytest.mark.django_db
def test_a_failing_exchange_is_skipped_and_the_others_still_alert(btc, notifications, caplog):
    subscribers()
    report = funding_poll(
        sources=[Rates("bitunix", error=FundingSourceError("bitunix: HTTP 503")), Rates("okx", [rate("okx", "0.002")])]
    )
    assert report.failed_sources == ["bitunix"]
    assert [a.kind for a in report.alerts] == ["extreme"]
    assert "source bitunix failed" in caplog.text


@pytest.mark.django_db
def test_no_subscribers_still_records_the_alert_once(btc, notifications):
    report = funding_poll(sources=[Rates("okx", [rate("okx", "0.002")])])
    assert report.alerts[0].recipients == 0 and notifications == []
    assert FundingAlert.objects.count() == 1


def test_alert_text_escapes_html():
    text = funding_extreme_text(
        symbol="<b>X</b>/USDT:USDT", rates=[("ex<i>", Decimal("0.002"), 8)], period=PERIOD, threshold=Decimal("0.001")
    )
    assert "<b>X</b>" not in text and "&lt;b&gt;X&lt;/b&gt;" in text and "ex&lt;i&gt;" in text


# --- reads for the risk level ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_latest_funding_rate_prefers_the_market_data_exchange(settings, btc):
    settings.MARKET_DATA_EXCHANGE = "okx"
    assert latest_funding_rate(symbol=BTC) is None
    FundingSnapshotFactory(symbol=btc, exchange="mexc", rate=Decimal("0.0009"), funding_time=PERIOD)
    assert latest_funding_rate(symbol=BTC) == Decimal("0.0009")  # fallback: any exchange
    FundingSnapshotFactory(symbol=btc, exchange="okx", rate=Decimal("0.0002"), funding_time=PERIOD - timedelta(hours=8))
    FundingSnapshotFactory(symbol=btc, exchange="okx", rate=Decimal("0.0003"), funding_time=PERIOD)
    assert latest_funding_rate(symbol=BTC) == Decimal("0.0003")
    assert latest_funding_rate(symbol=BTC, exchange="mexc") == Decimal("0.0009")
    assert latest_funding_rate(symbol=BTC, at=PERIOD - timedelta(hours=1)) == Decimal("0.0002")  # replay clock


@pytest.mark.django_db
def test_funding_snapshot_record_is_idempotent(btc):
    first, created = funding_snapshot_record(symbol=btc, rate=rate("okx", "0.0001"))
    again, created_again = funding_snapshot_record(symbol=btc, rate=rate("okx", "0.00015"))
    assert created and not created_again and first.pk == again.pk
    assert FundingSnapshot.objects.get().rate == Decimal("0.00015")
