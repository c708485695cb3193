"""CryptoNews API (cryptonews-api.com) client, async over httpx, and the `NewsSource` built on it.

Request format (documented): ``GET https://cryptonews-api.com/api/v1?tickers=BTC,ETH&items=50&page=1&sortby=rank
&date=last60min&token=…`` answers ``{"data": [{"news_url", "image_url", "title", "text", "source_name", "date",
"topics", "sentiment", "type", "tickers"}, …], "total_pages": N}``; ``date`` takes ``last5min``, ``last10min``,
``last15min``, ``last30min``, ``last45min``, ``last60min``, ``today``, ``yesterday``, ``last7days``, ``last30days``.
``GET …/api/v1/stat?tickers=BTC&date=today&token=…`` answers ``{"data": {"YYYY-MM-DD": {"BTC": {"Positive": n,
"Negative": n, "Neutral": n, "sentiment_score": s}}}, "total": {…}}`` with ``s`` in −1.5 … +1.5.

The token travels as a query parameter, so URLs are never logged with it (see ``_redacted``). A 429 (or a 5xx, or a
timeout) is retried with backoff: ``Retry-After`` seconds when the answer carries it, else ``backoff × 2**attempt``.
Items that miss a required field (url, title, a parseable date) are logged and skipped; a body that is not the
documented JSON object raises ``NewsSourceError``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from news.sources.base import NewsItem, NewsRateLimited, NewsSourceError, decimal_or_none, plain_text

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://cryptonews-api.com/api/v1"
TIME_WINDOWS = (
    "last5min",
    "last10min",
    "last15min",
    "last30min",
    "last45min",
    "last60min",
    "today",
    "yesterday",
    "last7days",
    "last30days",
)
MAX_ITEMS_PER_PAGE = 50
SCORE_MIN, SCORE_MAX = Decimal("-1.5"), Decimal("1.5")
RETRYABLE_STATUS = {429, 500, 502, 503, 504}


def _redacted(url: httpx.URL) -> str:
    return str(url.copy_remove_param("token"))


def parse_published_at(value: object) -> datetime | None:
    """CryptoNews dates are RFC 2822 (``Tue, 13 Jun 2026 08:00:00 -0400``); ISO 8601 is accepted too."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    if parsed.tzinfo is None:
        return None  # a date without an offset is ambiguous; skip rather than guess
    return parsed.astimezone(UTC)


def _str_tuple(value: object, *, upper: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    items = [plain_text(v, max_length=60) for v in value if isinstance(v, str)]
    return tuple(v.upper() if upper else v for v in items if v)


def parse_article(raw: object, *, rank_position: int | None = None, source: str = "cryptonews") -> NewsItem | None:
    """One documented article object → ``NewsItem``; None (logged) when a required field is missing or broken."""
    if not isinstance(raw, dict):
        logger.warning("cryptonews: skipped an item that is not an object (%s)", type(raw).__name__)
        return None
    url = raw.get("news_url")
    title = plain_text(raw.get("title"), max_length=500)
    published_at = parse_published_at(raw.get("date"))
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 1000:
        logger.warning("cryptonews: skipped an item without a usable news_url (title %r)", title[:80])
        return None
    if not title:
        logger.warning("cryptonews: skipped an item without a title (%s)", url[:200])
        return None
    if published_at is None:
        logger.warning("cryptonews: skipped an item without a parseable date (%s)", url[:200])
        return None
    sentiment = raw.get("sentiment")
    rank_score = decimal_or_none(raw.get("rank_score", raw.get("rankscore")))  # extra-fields=rankscore
    image_url = raw.get("image_url")
    return NewsItem(
        source=source,
        url=url,
        title=title,
        text=plain_text(raw.get("text"), max_length=2000),
        source_name=plain_text(raw.get("source_name"), max_length=100),
        published_at=published_at,
        tickers=_str_tuple(raw.get("tickers"), upper=True),
        topics=_str_tuple(raw.get("topics")),
        provider_sentiment=sentiment if sentiment in ("Positive", "Negative", "Neutral") else "",
        rank_score=rank_score,
        rank_position=rank_position,
        image_url=image_url if isinstance(image_url, str) else "",
        kind=plain_text(raw.get("type"), max_length=20),
        raw=raw,
    )


class CryptoNewsClient:
    """Async client of the documented endpoints. ``transport`` lets tests serve recorded bodies (MockTransport)."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout_seconds: float = 10.0,
        max_retries: int = 3,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if not api_key:
            raise NewsSourceError("CRYPTONEWS_API_KEY is not set")
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._timeout = httpx.Timeout(timeout_seconds)
        self._max_retries = max_retries
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._transport = transport
        self._sleep = sleep

    def __repr__(self) -> str:  # never show the key
        return f"CryptoNewsClient(base_url={self._base_url!r})"

    async def ticker_news(
        self,
        *,
        tickers: Sequence[str],
        window: str = "last60min",
        items: int = MAX_ITEMS_PER_PAGE,
        max_pages: int = 1,
        sort_by: str = "rank",
    ) -> list[NewsItem]:
        """Articles for any of ``tickers`` published in ``window``, ``sort_by`` rank (importance) or date."""
        if window not in TIME_WINDOWS:
            raise ValueError(f"window must be one of {', '.join(TIME_WINDOWS)}, not {window!r}")
        if sort_by not in ("rank", "date"):
            raise ValueError(f"sort_by must be 'rank' or 'date', not {sort_by!r}")
        tickers = [t.upper() for t in tickers if t]
        if not tickers:
            return []
        items = max(1, min(items, MAX_ITEMS_PER_PAGE))
        articles: list[NewsItem] = []
        position = 0
        async with self._client() as client:
            page = 1
            while page <= max_pages:
                params = {
                    "tickers": ",".join(tickers),
                    "items": items,
                    "page": page,
                    "sortby": sort_by,
                    "date": window,
                    "extra-fields": "rankscore",
                }
                body = await self._get_json(client, "", params)
                data = body.get("data")
                if not isinstance(data, list):
                    raise NewsSourceError("cryptonews: answer has no 'data' list")
                for raw in data:
                    item = parse_article(raw, rank_position=position if sort_by == "rank" else None)
                    position += 1
                    if item is not None:
                        articles.append(item)
                total_pages = body.get("total_pages")
                if not data or not isinstance(total_pages, int) or page >= total_pages:
                    break
                page += 1
        return articles

    async def ticker_sentiment(self, *, tickers: Sequence[str], window: str = "today") -> dict[str, Decimal]:
        """Latest daily sentiment score (−1.5 … +1.5) per ticker from ``/stat``; tickers without one are absent."""
        tickers = [t.upper() for t in tickers if t]
        if not tickers:
            return {}
        async with self._client() as client:
            body = await self._get_json(client, "/stat", {"tickers": ",".join(tickers), "date": window, "page": 1})
        data = body.get("data")
        if not isinstance(data, dict):
            raise NewsSourceError("cryptonews: /stat answer has no 'data' object")
        scores: dict[str, Decimal] = {}
        for day in sorted((d for d in data if isinstance(d, str)), reverse=True):  # newest day first
            per_ticker = data.get(day)
            if not isinstance(per_ticker, dict):
                continue
            for ticker, stats in per_ticker.items():
                if ticker in scores or not isinstance(stats, dict):
                    continue
                score = decimal_or_none(stats.get("sentiment_score"))
                if score is not None:
                    scores[ticker.upper()] = max(SCORE_MIN, min(SCORE_MAX, score))
        return scores

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self._base_url,
            timeout=self._timeout,
            transport=self._transport,
            headers={"Accept": "application/json", "User-Agent": "perps-signals/1.0"},
        )

    async def _get_json(self, client: httpx.AsyncClient, path: str, params: dict[str, Any]) -> dict[str, Any]:
        params = {**params, "token": self._api_key}
        url = self._base_url + path
        for attempt in range(self._max_retries + 1):
            last_attempt = attempt == self._max_retries
            try:
                response = await client.get(url, params=params)
            except httpx.TimeoutException as exc:
                if last_attempt:
                    raise NewsSourceError(f"cryptonews: timed out after {attempt + 1} attempt(s)") from exc
                await self._sleep(self._delay(attempt, None))
                continue
            except httpx.HTTPError as exc:
                raise NewsSourceError(f"cryptonews: {type(exc).__name__}") from exc
            if response.status_code in RETRYABLE_STATUS:
                logger.warning(
                    "cryptonews: HTTP %s for %s (attempt %d)",
                    response.status_code,
                    _redacted(response.request.url),
                    attempt + 1,
                )
                if last_attempt:
                    if response.status_code == 429:
                        raise NewsRateLimited("cryptonews: still rate limited (429) after retries")
                    raise NewsSourceError(f"cryptonews: HTTP {response.status_code} after retries")
                await self._sleep(self._delay(attempt, response.headers.get("Retry-After")))
                continue
            if response.status_code != 200:
                raise NewsSourceError(f"cryptonews: HTTP {response.status_code} for {_redacted(response.request.url)}")
            try:
                body = response.json()
            except ValueError as exc:
                raise NewsSourceError("cryptonews: answer is not JSON") from exc
            if not isinstance(body, dict):
                raise NewsSourceError("cryptonews: answer is not a JSON object")
            return body
        raise AssertionError("unreachable")  # pragma: no cover

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(max(float(retry_after), 0.0), self._max_backoff)
            except ValueError:
                pass
        return min(self._backoff * 2**attempt, self._max_backoff)


class CryptoNewsSource:
    """`NewsSource` over the CryptoNews API: rank-sorted ticker news plus each ticker's sentiment score."""

    name = "cryptonews"

    def __init__(self, client: CryptoNewsClient, *, max_pages: int = 1, with_sentiment_scores: bool = True) -> None:
        self._client = client
        self._max_pages = max_pages
        self._with_scores = with_sentiment_scores

    def recent_news(self, *, tickers: Sequence[str], window: str = "last60min") -> list[NewsItem]:
        return asyncio.run(self._recent_news(tickers=tickers, window=window))

    async def _recent_news(self, *, tickers: Sequence[str], window: str) -> list[NewsItem]:
        articles = await self._client.ticker_news(tickers=tickers, window=window, max_pages=self._max_pages)
        if not articles or not self._with_scores:
            return articles
        wanted = sorted({t for a in articles for t in a.tickers if t in {x.upper() for x in tickers}})
        try:
            scores = await self._client.ticker_sentiment(tickers=wanted)
        except NewsSourceError as exc:  # the articles are still useful without the scores
            logger.warning("cryptonews: sentiment scores unavailable: %s", exc)
            return articles
        return [_with_score(a, scores) for a in articles]


def _with_score(article: NewsItem, scores: dict[str, Decimal]) -> NewsItem:
    for ticker in article.tickers:
        if ticker in scores:
            return replace(article, provider_score=scores[ticker])
    return article
