"""The beat tasks on the offline stand-ins (replay market data, recorded news): idempotent, no duplicate alerts,
funding alerts leave as ``user.notify`` domain events for the Telegram bridge."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.cache import cache

from accounts.tests.factories import TelegramUserFactory
from news.models import FundingAlert, NewsArticle
from news.tasks import poll_funding_rates, poll_news
from news.tests.doubles import utc
from signals.market_data import get_market_data
from signals.models import FundingSnapshot, Signal
from signals.services import symbol_sync_markets

pytestmark = pytest.mark.django_db
XRP = "XRP/USDT:USDT"


@pytest.fixture
def replay(settings):
    settings.MARKET_DATA_SOURCE = "replay"
    settings.NEWS_SOURCE = "recorded"
    settings.NEWS_POLL_WINDOW = "last30min"
    settings.OPENAI_API_KEY = ""
    cache.clear()
    market_data = get_market_data()
    yield market_data
    market_data.reset_clock()
    cache.clear()


def test_poll_news_task_turns_the_demo_news_into_one_signal(replay):
    replay.advance_to(utc(2021, 11, 15, 9, 30))
    symbol_sync_markets(markets=replay.markets())
    first = poll_news()
    assert first == {"fetched": 2, "new": 2, "processed": 2, "signals": 1}
    assert poll_news() == {"fetched": 2, "new": 0, "processed": 0, "signals": 0}
    assert Signal.objects.filter(source=Signal.Source.NEWS).count() == 1
    assert NewsArticle.objects.filter(processed_at__isnull=True).count() == 0


def test_poll_news_task_skips_while_another_poll_holds_the_lock(replay):
    cache.add("news:lock:poll_news", "1", 55)
    assert poll_news() == {"skipped": "another poll is running"}
    assert not NewsArticle.objects.exists()


def test_poll_funding_task_stores_snapshots_and_alerts_once_per_period(replay, settings, monkeypatch):
    settings.FUNDING_ALERT_THRESHOLD = Decimal("0.00005")  # the recorded XRP rates are ~0.01 %/8h
    published: list[tuple[str, dict]] = []
    monkeypatch.setattr("news.funding.publish", lambda event, **payload: published.append((event, payload)))
    replay.advance_to(utc(2021, 11, 19, 9, 0))
    symbol_sync_markets(markets=replay.markets())
    user = TelegramUserFactory(preferences__funding_alerts=True)
    TelegramUserFactory(preferences__funding_alerts=False)

    report = poll_funding_rates()  # the replay's own rate and the second venue recorded under data/funding/
    assert report["stored"] == 2 and report["alerts"] == 1 and report["failed_sources"] == []
    snapshot = FundingSnapshot.objects.get(exchange="replay")
    assert snapshot.symbol.symbol == XRP and snapshot.rate == replay.funding_rate(XRP)
    assert FundingSnapshot.objects.get(exchange="okx").rate == Decimal("0.0001")
    [(event, payload)] = published
    assert event == "user.notify" and payload["user_id"] == user.pk
    assert XRP in payload["text"] and payload["dedupe_key"].endswith(f":u{user.pk}")

    again = poll_funding_rates()  # same funding period: the snapshot is refreshed, nobody is alerted twice
    assert again["stored"] == 2 and again["alerts"] == 0
    assert len(published) == 1 and FundingAlert.objects.count() == 1


def test_two_venues_recorded_rates_raise_a_cross_exchange_alert(replay, monkeypatch):
    published: list[tuple[str, dict]] = []
    monkeypatch.setattr("news.funding.publish", lambda event, **payload: published.append((event, payload)))
    replay.advance_to(utc(2021, 11, 19, 16, 5))  # OKX's recorded answer settles -0.04 %, the replay 0.01 %
    symbol_sync_markets(markets=replay.markets())
    TelegramUserFactory(preferences__funding_alerts=True)
    report = poll_funding_rates()
    assert report["stored"] == 2 and report["alerts"] == 1
    alert = FundingAlert.objects.get()
    assert alert.kind == FundingAlert.Kind.ARBITRAGE and alert.details["long_on"] == "okx"
    assert alert.details["short_on"] == "replay" and set(alert.details["rates"]) == {"okx", "replay"}
    assert "okx" in published[0][1]["text"]
