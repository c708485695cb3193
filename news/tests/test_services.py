"""News → signal pipeline: filters, price confirmation, dedupe, idempotency and bad input."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import httpx2
import pytest
from django.core.cache import cache

from news.models import NewsArticle
from news.sentiment import KeywordSentimentModel, OpenAISentimentModel
from news.services import article_process, news_articles_store, news_poll
from news.sources.base import NewsItem, NewsSourceError
from news.sources.cryptonews import CryptoNewsClient, CryptoNewsSource
from news.sources.recorded import RecordedNewsSource
from news.tests.doubles import StubMarketData, utc
from news.tests.factories import NewsArticleFactory
from signals.models import Signal
from signals.tests.factories import SignalFactory, SymbolFactory

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures"
NOW = utc(2026, 11, 25, 10, 0)
ETH = "ETH/USDT:USDT"
BTC = "BTC/USDT:USDT"


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def symbols():
    return {
        "ETH": SymbolFactory(symbol=ETH, base="ETH", tick_size=Decimal("0.01")),
        "BTC": SymbolFactory(symbol=BTC, base="BTC", tick_size=Decimal("0.1")),
    }


class SignalRecorder:
    """Stands in for ``signals.services.signal_create`` (same keyword arguments); stores a real Signal row."""

    def __init__(self, *, refuse: bool = False):
        self.calls: list[dict] = []
        self.refuse = refuse

    def __call__(self, *, candidate, source, headline, url, expires_in):
        self.calls.append(
            {"candidate": candidate, "source": source, "headline": headline, "url": url, "expires_in": expires_in}
        )
        if self.refuse:
            return None
        from signals.models import Symbol

        return SignalFactory(
            symbol=Symbol.objects.get(symbol=candidate.symbol),
            side=candidate.side,
            source=source,
            headline=headline,
            url=url,
            candle_ts=candidate.candle_ts,
        )


def market(**overrides) -> StubMarketData:
    values = {"now": NOW, "prices": {ETH: 3000.0, BTC: 90000.0}, "half_range": 15.0}
    values.update(overrides)
    return StubMarketData(**values)


def cryptonews_source(*bodies: str) -> CryptoNewsSource:
    answers = [json.loads((FIXTURES / "cryptonews" / name).read_text()) for name in bodies]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answers.pop(0))

    async def no_sleep(_seconds: float) -> None:
        return None

    client = CryptoNewsClient(api_key="k", transport=httpx.MockTransport(handler), sleep=no_sleep, max_retries=0)
    return CryptoNewsSource(client)


class ListSource:
    name = "list"

    def __init__(self, items: list[NewsItem] | None = None, error: Exception | None = None):
        self.items = items or []
        self.error = error
        self.calls = 0

    def recent_news(self, *, tickers, window="last60min"):
        self.calls += 1
        if self.error:
            raise self.error
        return list(self.items)


def item(**overrides) -> NewsItem:
    values = {
        "source": "list",
        "url": "https://www.coindesk.com/eth-staking-etf-approved",
        "title": "SEC approves spot ether staking ETFs",
        "text": "The SEC approved the first staking ETFs.",
        "source_name": "CoinDesk",
        "published_at": NOW - timedelta(minutes=8),
        "tickers": ("ETH",),
        "provider_sentiment": "Positive",
        "provider_score": Decimal("1.31"),
        "rank_position": 0,
    }
    values.update(overrides)
    return NewsItem(**values)


# --- the happy path over the real CryptoNews client -----------------------------------------------------------


def test_poll_turns_strong_fresh_news_into_signals_with_atr_stops(symbols):
    recorder = SignalRecorder()
    report = news_poll(
        source=cryptonews_source("ticker_news_page1.json", "stat_btc_eth.json"),
        model=KeywordSentimentModel(),
        market_data=market(),
        signal_creator=recorder,
    )

    assert report.fetched == 3 and report.new == 3 and report.processed == 3
    assert report.signals == 2
    assert report.decisions == {"signal": 2, "no_symbol": 1}
    by_symbol = {c["candidate"].symbol: c for c in recorder.calls}

    eth = by_symbol[ETH]["candidate"]
    assert eth.side == "long"
    assert eth.entry == 3000.0
    assert eth.atr == pytest.approx(30.0)
    assert eth.stop == pytest.approx(3000 - 1.5 * 30)  # StrategyParams.stop_atr_mult
    assert eth.tp1 == pytest.approx(3000 + 1.0 * 45)
    assert eth.tp2 == pytest.approx(3000 + 2.0 * 45)
    assert eth.indicators["sentiment_model"] == "cryptonews+keywords"
    assert eth.risk_level in ("low", "medium", "high")
    assert by_symbol[ETH]["source"] == "news"
    assert by_symbol[ETH]["headline"] == "SEC Approves Spot Ether Staking ETFs, Ether Jumps"
    assert by_symbol[ETH]["url"].startswith("https://www.coindesk.com/")

    btc = by_symbol[BTC]["candidate"]
    assert btc.side == "short"
    assert btc.stop == pytest.approx(90000 + 45) and btc.tp1 == pytest.approx(90000 - 45)
    assert by_symbol[BTC]["headline"] == "Exchange hack: attacker drains $210M in BTC & stablecoins"  # no markup

    article = NewsArticle.objects.get(tickers=["ETH"])
    assert article.decision == "signal" and article.processed_at == NOW
    assert article.model_used == "cryptonews+keywords"
    assert article.sentiment["direction"] == "long"
    assert article.signal is not None and article.signal.source == Signal.Source.NEWS
    assert article.provider_score == Decimal("1.31")


def test_an_article_is_processed_once_across_polls(symbols):
    recorder = SignalRecorder()
    source = ListSource([item()])
    for _ in range(3):
        news_poll(source=source, model=KeywordSentimentModel(), market_data=market(), signal_creator=recorder)
    assert source.calls == 3
    assert NewsArticle.objects.count() == 1
    assert len(recorder.calls) == 1


def test_reposts_by_other_publishers_are_duplicates(symbols):
    recorder = SignalRecorder()
    original = item()
    repost = item(
        url="https://cryptoslate.com/sec-approves-spot-ether-staking-etfs/?utm_source=x",
        title="SEC APPROVES spot Ether staking ETFs!",
        source_name="CryptoSlate",
        published_at=NOW - timedelta(minutes=5),
    )
    same_url = item(url="https://coindesk.com/eth-staking-etf-approved/", title="Updated headline")
    news_poll(
        source=ListSource([original, repost, same_url]),
        model=KeywordSentimentModel(),
        market_data=market(),
        signal_creator=recorder,
    )
    assert NewsArticle.objects.count() == 2  # same normalised URL → one row
    repost_row = NewsArticle.objects.get(source_name="CryptoSlate")
    assert repost_row.decision == "duplicate"
    assert repost_row.duplicate_of.source_name == "CoinDesk"
    assert len(recorder.calls) == 1


@pytest.mark.parametrize(
    ("overrides", "decision"),
    [
        ({"published_at": NOW - timedelta(minutes=45)}, "stale"),
        ({"published_at": NOW + timedelta(hours=2)}, "stale"),
        ({"rank_position": 25}, "low_rank"),
        ({"rank_position": None}, "low_rank"),
        ({"tickers": ("DOGE",)}, "no_symbol"),
        ({"provider_score": Decimal("0.1"), "provider_sentiment": "Neutral", "title": "ETH weekly recap"}, "weak"),
    ],
)
def test_filters_skip_with_a_reason(symbols, overrides, decision):
    recorder = SignalRecorder()
    news_poll(
        source=ListSource([item(**overrides)]),
        model=KeywordSentimentModel(),
        market_data=market(),
        signal_creator=recorder,
    )
    article = NewsArticle.objects.get()
    assert article.decision == decision
    assert article.processed_at is not None
    assert recorder.calls == []


def test_inactive_or_muted_symbols_are_not_liquid(symbols):
    symbols["ETH"].is_muted = True
    symbols["ETH"].save()
    recorder = SignalRecorder()
    news_poll(source=ListSource([item()]), model=KeywordSentimentModel(), market_data=market(), signal_creator=recorder)
    assert NewsArticle.objects.get().decision == "no_symbol"


def test_price_already_moved_is_skipped(symbols):
    recorder = SignalRecorder()
    moved = market(last_prices={ETH: 3000.0 + 1.2 * 30})  # 1.2 ATR above the price at publication
    news_poll(source=ListSource([item()]), model=KeywordSentimentModel(), market_data=moved, signal_creator=recorder)
    article = NewsArticle.objects.get()
    assert article.decision == "moved"
    assert "1.20 ATR" in article.decision_detail
    assert recorder.calls == []


def test_small_move_still_signals_from_the_last_price(symbols):
    recorder = SignalRecorder()
    small = market(last_prices={ETH: 3000.0 + 0.5 * 30})
    news_poll(source=ListSource([item()]), model=KeywordSentimentModel(), market_data=small, signal_creator=recorder)
    candidate = recorder.calls[0]["candidate"]
    assert candidate.entry == 3015.0
    assert candidate.indicators["move_since_publication_atr"] == pytest.approx(0.5)


def test_refused_by_signal_create_is_recorded(symbols):
    news_poll(
        source=ListSource([item()]),
        model=KeywordSentimentModel(),
        market_data=market(),
        signal_creator=SignalRecorder(refuse=True),
    )
    assert NewsArticle.objects.get().decision == "refused"


def test_market_data_failure_skips_the_symbol_without_crashing(symbols):
    broken = market(prices={BTC: 90000.0})  # no ETH candles: the stub raises KeyError
    news_poll(source=ListSource([item()]), model=KeywordSentimentModel(), market_data=broken, signal_creator=None)
    article = NewsArticle.objects.get()
    assert article.decision == "no_market_data"
    assert "market data failed" in article.decision_detail


def test_source_failure_is_logged_and_pending_articles_still_processed(symbols, caplog):
    NewsArticleFactory(published_at=NOW - timedelta(minutes=3), provider_score=Decimal("1.4"), title="ETH approval")
    recorder = SignalRecorder()
    report = news_poll(
        source=ListSource(error=NewsSourceError("cryptonews: answer is not JSON")),
        model=KeywordSentimentModel(),
        market_data=market(),
        signal_creator=recorder,
    )
    assert report.error == "cryptonews: answer is not JSON"
    assert "source list failed" in caplog.text
    assert report.processed == 1


# --- OpenAI answers that cannot be used ---------------------------------------------------------------------


def openai_model(*answers) -> OpenAISentimentModel:
    queue = list(answers)

    def handler(request: httpx2.Request) -> httpx2.Response:
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return httpx2.Response(200, content=(FIXTURES / "openai" / answer).read_bytes())

    client = httpx2.Client(transport=httpx2.MockTransport(handler))
    return OpenAISentimentModel(api_key="sk-test", model="gpt-4o-mini", http_client=client, max_retries=0)


@pytest.mark.parametrize("fixture", ["chat_completion_invalid_json.json", "chat_completion_refusal.json"])
def test_openai_garbage_or_refusal_skips_the_article_once(symbols, fixture, caplog):
    recorder = SignalRecorder()
    source = ListSource([item()])
    news_poll(source=source, model=openai_model(fixture), market_data=market(), signal_creator=recorder)
    news_poll(source=source, model=openai_model(), market_data=market(), signal_creator=recorder)  # no 2nd call
    article = NewsArticle.objects.get()
    assert article.decision == "sentiment_rejected"
    assert article.model_used == "openai:gpt-4o-mini"
    assert "sentiment rejected" in caplog.text
    assert recorder.calls == []


def test_openai_timeouts_are_retried_on_later_polls_then_given_up(symbols, settings):
    settings.NEWS_SENTIMENT_MAX_ATTEMPTS = 2
    source = ListSource([item()])
    recorder = SignalRecorder()
    timeout = httpx2.ReadTimeout("timed out")
    news_poll(source=source, model=openai_model(timeout), market_data=market(), signal_creator=recorder)
    article = NewsArticle.objects.get()
    assert article.processed_at is None and article.attempts == 1
    news_poll(source=source, model=openai_model(timeout), market_data=market(), signal_creator=recorder)
    article.refresh_from_db()
    assert article.decision == "sentiment_unavailable" and article.attempts == 2
    assert recorder.calls == []


def test_openai_verdict_drives_the_signal_and_names_the_model(symbols):
    recorder = SignalRecorder()
    news_poll(
        source=ListSource([item()]),
        model=openai_model("chat_completion_long.json"),
        market_data=market(),
        signal_creator=recorder,
    )
    candidate = recorder.calls[0]["candidate"]
    assert candidate.indicators["sentiment_model"] == "openai:gpt-4o-mini"
    assert "cryptonews_agrees" in candidate.confirmations  # the provider's positive label is a second opinion


def test_processing_an_already_processed_article_is_a_no_op(symbols):
    article = NewsArticleFactory(published_at=NOW - timedelta(minutes=3), processed_at=NOW, decision="weak")
    assert article_process(article_id=article.pk, model=KeywordSentimentModel(), market_data=market()) is None


# --- storing and rendering ----------------------------------------------------------------------------------


def test_html_headlines_are_stored_plain(symbols):
    # the bot escapes the headline again when it renders the card (telegram_bridge/tests/test_broadcasts.py)
    news_articles_store(items=[item(title='<img src=x onerror="alert(1)">ETH <b>pumps</b> & dumps')])
    assert NewsArticle.objects.get().title == "ETH pumps & dumps"


def test_recorded_source_releases_articles_on_the_clock(tmp_path):
    path = tmp_path / "news.json"
    path.write_text((FIXTURES / "cryptonews" / "ticker_news_page1.json").read_text())
    clock = {"now": utc(2026, 11, 25, 9, 50)}
    source = RecordedNewsSource(path, clock=lambda: clock["now"])
    assert [i.tickers for i in source.recent_news(tickers=["ETH", "BTC", "SOL"], window="last15min")] == [
        ("BTC",),
        ("SOL",),
    ]
    clock["now"] = utc(2026, 11, 25, 10, 0)
    later = source.recent_news(tickers=["ETH", "BTC", "SOL"], window="last15min")
    assert [i.tickers for i in later] == [("ETH",), ("BTC",)]  # SOL (09:40) left the 15-minute window
    assert source.recent_news(tickers=["XRP"], window="last15min") == []
    path.write_text("{broken")
    with pytest.raises(NewsSourceError):
        source.recent_news(tickers=["ETH"])


def test_the_real_signal_create_stores_a_news_signal(symbols):
    news_poll(source=ListSource([item()]), model=KeywordSentimentModel(), market_data=market())
    signal = Signal.objects.get(source=Signal.Source.NEWS)
    assert signal.symbol.symbol == ETH and signal.side == "long"
    assert signal.headline == "SEC approves spot ether staking ETFs"
    assert signal.url == "https://www.coindesk.com/eth-staking-etf-approved"
    assert signal.indicators["sentiment_model"] == "cryptonews+keywords"
    assert NewsArticle.objects.get().signal == signal
