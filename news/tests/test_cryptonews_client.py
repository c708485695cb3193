"""The CryptoNews client against documented response bodies served by httpx.MockTransport (no network)."""

from __future__ import annotations

import asyncio
import json
import logging
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from news.sources.base import NewsRateLimited, NewsSourceError, normalised_title_hash, url_hash
from news.sources.cryptonews import CryptoNewsClient, CryptoNewsSource, parse_published_at
from news.tests.doubles import utc

FIXTURES = Path(__file__).parent / "fixtures" / "cryptonews"
TOKEN = "test-token-abc123"


def body(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


class Recorder:
    """A MockTransport handler that answers from a queue of (status, body, headers) and records requests."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, content, headers = self.answers.pop(0)
        if isinstance(content, Exception):
            raise content
        if isinstance(content, dict):
            return httpx.Response(status, json=content, headers=headers)
        return httpx.Response(status, text=content, headers=headers)


def client_for(recorder: Recorder, sleeps: list[float] | None = None, **kwargs) -> CryptoNewsClient:
    async def fake_sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    return CryptoNewsClient(api_key=TOKEN, transport=httpx.MockTransport(recorder), sleep=fake_sleep, **kwargs)


def run(coroutine):
    return asyncio.run(coroutine)


def test_ticker_news_builds_the_documented_query_and_follows_pages():
    recorder = Recorder([(200, body("ticker_news_page1.json"), {}), (200, body("ticker_news_page2.json"), {})])
    articles = run(
        client_for(recorder).ticker_news(tickers=["eth", "BTC", "SOL"], window="last15min", max_pages=5, items=50)
    )

    first = recorder.requests[0].url
    assert first.host == "cryptonews-api.com" and first.path == "/api/v1"
    assert first.params["tickers"] == "ETH,BTC,SOL"
    assert first.params["sortby"] == "rank"
    assert first.params["date"] == "last15min"
    assert first.params["items"] == "50"
    assert first.params["page"] == "1"
    assert first.params["token"] == TOKEN
    assert recorder.requests[1].url.params["page"] == "2"
    assert len(recorder.requests) == 2  # total_pages = 2: no third call

    assert [a.rank_position for a in articles] == [0, 1, 2, 3]
    eth = articles[0]
    assert eth.title == "SEC Approves Spot Ether Staking ETFs, Ether Jumps"
    assert eth.tickers == ("ETH",)
    assert eth.provider_sentiment == "Positive"
    assert eth.source_name == "CoinDesk"
    assert eth.published_at == utc(2026, 11, 25, 9, 52)
    assert eth.external_id == url_hash(eth.url)


def test_html_in_headlines_is_stripped_and_entities_decoded():
    recorder = Recorder([(200, body("ticker_news_page1.json"), {})])
    articles = run(client_for(recorder).ticker_news(tickers=["BTC"]))
    hack = articles[1]
    assert hack.title == "Exchange hack: attacker drains $210M in BTC & stablecoins"
    assert "<" not in hack.title
    # the same story with other markup or case hashes the same (re-post detection)
    assert normalised_title_hash("EXCHANGE HACK: attacker drains $210M in BTC & stablecoins!") == normalised_title_hash(
        hack.title
    )


def test_max_pages_bounds_the_calls():
    recorder = Recorder([(200, body("ticker_news_page1.json"), {})])
    articles = run(client_for(recorder).ticker_news(tickers=["BTC"], max_pages=1))
    assert len(recorder.requests) == 1
    assert len(articles) == 3


def test_malformed_items_are_logged_and_skipped(caplog):
    recorder = Recorder([(200, body("ticker_news_malformed_items.json"), {})])
    with caplog.at_level(logging.WARNING, logger="news.sources.cryptonews"):
        articles = run(client_for(recorder).ticker_news(tickers=["BTC", "XRP"]))
    # only the last item has url, title and date; its wrong-typed fields are dropped, not fatal
    assert [a.url for a in articles] == ["https://u.today/xrp-listed-on-new-exchange"]
    assert articles[0].tickers == ()
    assert articles[0].provider_sentiment == ""
    assert articles[0].source_name == ""
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "without a usable news_url" in messages
    assert "without a title" in messages
    assert "without a parseable date" in messages
    assert "not an object" in messages


@pytest.mark.parametrize(
    "answer",
    [
        (200, "<html><body>Bad gateway</body></html>", {}),
        (200, {"message": "no data key"}, {}),
        (200, {"data": "not a list", "total_pages": 1}, {}),
        (401, {"message": "Invalid token"}, {}),
    ],
)
def test_malformed_bodies_raise_news_source_error(answer):
    recorder = Recorder([answer])
    with pytest.raises(NewsSourceError) as excinfo:
        run(client_for(recorder).ticker_news(tickers=["BTC"]))
    assert TOKEN not in str(excinfo.value)


def test_429_backs_off_with_retry_after_then_succeeds():
    sleeps: list[float] = []
    recorder = Recorder(
        [
            (429, {"message": "Too many requests"}, {"Retry-After": "3"}),
            (429, {"message": "Too many requests"}, {}),
            (200, body("ticker_news_page2.json"), {}),
        ]
    )
    articles = run(client_for(recorder, sleeps, backoff_seconds=0.5).ticker_news(tickers=["BTC"]))
    assert len(articles) == 1
    assert sleeps == [3.0, 1.0]  # Retry-After honoured, then exponential backoff 0.5 × 2**1
    assert len(recorder.requests) == 3


def test_429_exhausting_retries_raises_rate_limited_without_leaking_the_token(caplog):
    sleeps: list[float] = []
    recorder = Recorder([(429, {"message": "Too many requests"}, {})] * 3)
    with caplog.at_level(logging.WARNING), pytest.raises(NewsRateLimited):
        run(client_for(recorder, sleeps, max_retries=2).ticker_news(tickers=["BTC"]))
    assert sleeps == [1.0, 2.0]
    assert TOKEN not in caplog.text


def test_timeouts_are_retried_then_reported():
    sleeps: list[float] = []
    timeout = httpx.ReadTimeout("read timed out")
    recorder = Recorder([(0, timeout, {}), (0, timeout, {})])
    with pytest.raises(NewsSourceError, match="timed out"):
        run(client_for(recorder, sleeps, max_retries=1).ticker_news(tickers=["BTC"]))
    assert len(recorder.requests) == 2


def test_sentiment_scores_from_stat_newest_day_wins():
    recorder = Recorder([(200, body("stat_btc_eth.json"), {})])
    scores = run(client_for(recorder).ticker_sentiment(tickers=["BTC", "ETH"]))
    assert recorder.requests[0].url.path == "/api/v1/stat"
    assert recorder.requests[0].url.params["tickers"] == "BTC,ETH"
    assert scores == {"BTC": Decimal("-0.85"), "ETH": Decimal("1.31")}


def test_source_attaches_each_articles_ticker_score():
    recorder = Recorder([(200, body("ticker_news_page1.json"), {}), (200, body("stat_btc_eth.json"), {})])
    source = CryptoNewsSource(client_for(recorder))
    articles = source.recent_news(tickers=["BTC", "ETH", "SOL"], window="last15min")
    by_ticker = {a.tickers[0]: a for a in articles}
    assert by_ticker["ETH"].provider_score == Decimal("1.31")
    assert by_ticker["BTC"].provider_score == Decimal("-0.85")
    assert by_ticker["SOL"].provider_score is None


def test_source_keeps_articles_when_the_stat_call_fails():
    recorder = Recorder([(200, body("ticker_news_page1.json"), {}), (500, "oops", {})])
    source = CryptoNewsSource(client_for(recorder, max_retries=0))
    articles = source.recent_news(tickers=["BTC", "ETH"])
    assert len(articles) == 3
    assert all(a.provider_score is None for a in articles)


def test_invalid_arguments_and_missing_key():
    with pytest.raises(NewsSourceError):
        CryptoNewsClient(api_key="")
    client = client_for(Recorder([]))
    with pytest.raises(ValueError):
        run(client.ticker_news(tickers=["BTC"], window="last2hours"))
    assert run(client.ticker_news(tickers=[])) == []
    assert TOKEN not in repr(client)


def test_published_at_parsing():
    assert parse_published_at("Tue, 13 Jun 2026 08:00:00 -0400") == utc(2026, 6, 13, 12, 0)
    assert parse_published_at("2026-06-13T12:00:00Z") == utc(2026, 6, 13, 12, 0)
    assert parse_published_at("2026-06-13T12:00:00") is None  # no offset: ambiguous
    assert parse_published_at(None) is None
    assert parse_published_at("") is None
