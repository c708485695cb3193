"""The offline stand-in: the recorded demo news file, released by the replay clock, through the whole pipeline."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache

from news.models import NewsArticle
from news.sentiment import KeywordSentimentModel
from news.services import news_poll, news_source_from_settings
from news.sources.recorded import RecordedNewsSource
from news.tests.doubles import utc
from signals.market_data.replay import ReplayMarketData
from signals.models import Signal
from signals.services import symbol_sync_markets

pytestmark = pytest.mark.django_db

XRP = "XRP/USDT:USDT"


@pytest.fixture
def replay(settings):
    settings.NEWS_SOURCE = "recorded"
    settings.NEWS_POLL_WINDOW = "last30min"
    cache.clear()
    market_data = ReplayMarketData(cache=LocMemCache("demo-news-clock", {}))
    yield market_data
    cache.clear()


def test_demo_file_is_the_default_and_parses_completely(settings, replay):
    assert settings.NEWS_RECORDED_FILE.exists()
    source = news_source_from_settings(market_data=replay)
    assert isinstance(source, RecordedNewsSource)
    everything = RecordedNewsSource(settings.NEWS_RECORDED_FILE, clock=lambda: utc(2030, 1, 1))
    items = everything.recent_news(tickers=["XRP", "ETH", "LTC"], window="last30days")
    assert items == []  # nothing that recent: the file is dated inside the replay windows
    items = RecordedNewsSource(settings.NEWS_RECORDED_FILE, clock=lambda: utc(2021, 11, 22)).recent_news(
        tickers=["XRP"], window="last7days"
    )
    assert len(items) == 6 and all(i.url.startswith("https://example.invalid/") for i in items)


def test_replay_clock_releases_demo_news_into_signals_once(replay):
    replay.advance_to(utc(2021, 11, 15, 9, 30))  # the first XRP story (09:10) and its re-post (09:25)
    symbol_sync_markets(markets=replay.markets())
    source = news_source_from_settings(market_data=replay)
    model = KeywordSentimentModel()

    first = news_poll(source=source, model=model, market_data=replay)
    assert first.fetched == 2 and first.new == 2 and first.processed == 2
    articles = {a.url.rsplit("/", 1)[-1]: a for a in NewsArticle.objects.all()}
    assert articles["xrp-remittance-corridor"].decision == NewsArticle.Decision.DUPLICATE
    original = articles["xrp-remittance-corridor-launch"]
    assert original.decision == NewsArticle.Decision.SIGNAL, original.decision_detail
    signal = Signal.objects.get(source=Signal.Source.NEWS)
    assert signal.symbol.symbol == XRP and signal.side == "long" and original.signal == signal
    assert signal.indicators["sentiment_model"] == "cryptonews+keywords"

    again = news_poll(source=source, model=model, market_data=replay)  # same window: nothing processed twice
    assert again.new == 0 and again.processed == 0

    replay.advance_to(utc(2021, 11, 16, 14, 20))  # the HTML-headline delisting story
    news_poll(source=source, model=model, market_data=replay)
    negative = NewsArticle.objects.get(url__endswith="exchange-delists-xrp-pairs")
    assert negative.title == "Exchange delists several XRP pairs & halts deposits"
    assert negative.decision == NewsArticle.Decision.SIGNAL, negative.decision_detail
    assert negative.signal.side == "short" and negative.signal.headline == negative.title
    assert NewsArticle.objects.filter(processed_at__isnull=True).count() == 0
    assert replay.now() - negative.published_at < timedelta(minutes=30)
