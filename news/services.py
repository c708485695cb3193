"""News → signal pipeline: store fetched articles once, then process each pending article exactly once.

An article becomes a ``Signal(source="news")`` only when it is, in this order (cheap checks first, the sentiment
model — the only paid step — last but one):

1. not a re-post (same normalised headline within ``DUPLICATE_WINDOW``; the URL is unique already);
2. fresh: published at most ``NEWS_MAX_AGE_MINUTES`` before the market-data clock (and not in the future);
3. high-ranked: among the ``NEWS_TOP_RANK_POSITIONS`` first of a rank-sorted answer;
4. about a liquid symbol: one of its tickers is the base of an active, unmuted USDT perpetual;
5. strongly scored: the sentiment model says long/short with confidence ≥ ``NEWS_MIN_CONFIDENCE``;
6. not priced in yet: ``|last price − price at publication| < NEWS_MAX_MOVE_ATR × ATR(14, 15m)``.

Stop and targets follow the technical strategy (``engine.strategy.StrategyParams``: stop ``stop_atr_mult`` ATRs
away, targets ``tp1_r``/``tp2_r`` R), the risk level comes from ``engine.risk`` with the symbol's funding rate.
Every article ends with a ``decision`` (and ``decision_detail``) so a skipped article can be explained.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Q

from engine import indicators
from engine.risk import risk_level
from engine.strategy import SIGNAL_TIMEFRAME_MS, SignalCandidate, StrategyParams
from news.models import NewsArticle
from news.sentiment import (
    SentimentModel,
    SentimentRejected,
    SentimentUnavailable,
    SentimentVerdict,
    analyse_cached,
)
from news.sources.base import NewsItem, NewsSource, NewsSourceError, normalised_title_hash, plain_text
from news.sources.cryptonews import CryptoNewsClient, CryptoNewsSource
from news.sources.recorded import RecordedNewsSource
from signals.funding import latest_funding_rate
from signals.models import Symbol
from signals.services import signal_create

logger = logging.getLogger(__name__)

Decision = NewsArticle.Decision
DUPLICATE_WINDOW = timedelta(hours=48)
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_SYMBOLS_PER_ARTICLE = 2
MAX_ARTICLES_PER_POLL = 50
ATR_PERIOD = 14
CANDLES_NEEDED = 100


@dataclass
class NewsPollReport:
    fetched: int = 0
    new: int = 0
    processed: int = 0
    signals: int = 0
    decisions: Counter = field(default_factory=Counter)
    error: str = ""


@dataclass(frozen=True)
class ProcessResult:
    decision: str
    detail: str = ""
    signal_ids: tuple[int, ...] = ()


# --- selectors used here (reads of other apps go through those apps' selectors where they exist) -------------------------


def liquid_symbols_by_ticker() -> dict[str, Symbol]:
    """Ticker (base) → its active, unmuted USDT-margined perpetual."""
    rows = Symbol.objects.filter(is_active=True, is_muted=False, quote="USDT", symbol__endswith=":USDT")
    return {row.base.upper(): row for row in rows}


def listed_tickers() -> set[str]:
    """The bases of every active market (liquid perpetual or not): what a poll asks the news source about."""
    return {base.upper() for base in Symbol.objects.filter(is_active=True).values_list("base", flat=True) if base}


# --- storing ----------------------------------------------------------------------------------------------------


def news_articles_store(*, items: Sequence[NewsItem]) -> int:
    """Insert the items not seen before (by URL hash). Returns how many were new. Safe to repeat."""
    by_id: dict[str, NewsItem] = {}
    for item in items:
        by_id.setdefault(item.external_id, item)
    if not by_id:
        return 0
    known = set(NewsArticle.objects.filter(external_id__in=list(by_id)).values_list("external_id", flat=True))
    rows = [
        NewsArticle(
            external_id=external_id,
            title_hash=normalised_title_hash(item.title),
            source=item.source[:32],
            source_name=item.source_name[:100],
            url=item.url,
            title=plain_text(item.title, max_length=500),
            text=plain_text(item.text, max_length=4000),
            tickers=list(item.tickers),
            topics=list(item.topics),
            published_at=item.published_at,
            provider_sentiment=item.provider_sentiment,
            provider_score=item.provider_score,
            rank_score=item.rank_score,
            rank_position=item.rank_position,
        )
        for external_id, item in by_id.items()
        if external_id not in known
    ]
    NewsArticle.objects.bulk_create(rows, ignore_conflicts=True)  # a concurrent poll may insert the same ones
    return len(rows)


def article_as_item(article: NewsArticle) -> NewsItem:
    return NewsItem(
        source=article.source,
        url=article.url,
        title=article.title,
        text=article.text,
        source_name=article.source_name,
        published_at=article.published_at,
        tickers=tuple(article.tickers),
        topics=tuple(article.topics),
        provider_sentiment=article.provider_sentiment,
        provider_score=article.provider_score,
        rank_score=article.rank_score,
        rank_position=article.rank_position,
    )


# --- processing -------------------------------------------------------------------------------------------------


def _finish(article: NewsArticle, result: ProcessResult, *, now: datetime) -> ProcessResult:
    article.processed_at = now
    article.decision = result.decision
    article.decision_detail = result.detail[:300]
    article.save(
        update_fields=[
            "processed_at",
            "decision",
            "decision_detail",
            "sentiment",
            "model_used",
            "duplicate_of",
            "signal",
            "attempts",
        ]
    )
    return result


def _earlier_original(article: NewsArticle) -> NewsArticle | None:
    return (
        NewsArticle.objects.filter(
            title_hash=article.title_hash,
            published_at__gte=article.published_at - DUPLICATE_WINDOW,
            published_at__lte=article.published_at + DUPLICATE_WINDOW,
        )
        .exclude(pk=article.pk)
        .filter(Q(published_at__lt=article.published_at) | Q(published_at=article.published_at, pk__lt=article.pk))
        .order_by("published_at", "pk")
        .first()
    )


@dataclass(frozen=True)
class PriceCheck:
    ok: bool
    detail: str
    entry: float = 0.0
    atr: float = 0.0
    candle_ts: int = 0
    move_atr: float = 0.0


def price_not_moved_yet(*, market_data: Any, symbol: str, published_at: datetime, now: datetime) -> PriceCheck:
    """Has the move already happened? Compare the last price with the price at publication, in ATRs (15m, 14)."""
    candles = market_data.ohlcv(symbol, "15m", CANDLES_NEEDED)
    now_ms = int(now.timestamp() * 1000)
    if hasattr(candles, "closed_at"):
        candles = candles.closed_at(now_ms, SIGNAL_TIMEFRAME_MS)
    if len(candles) < ATR_PERIOD + 2:
        return PriceCheck(False, f"only {len(candles)} closed 15m candles")
    atr_values = indicators.atr(candles.high, candles.low, candles.close, ATR_PERIOD)
    atr = float(atr_values[-1])
    if not np.isfinite(atr) or atr <= 0:
        return PriceCheck(False, "ATR not available")
    published_ms = int(published_at.timestamp() * 1000)
    containing = np.flatnonzero(candles.ts <= published_ms)
    if containing.size == 0:
        return PriceCheck(False, "no candle at the publication time")
    at_publication = float(candles.open[containing[-1]])
    last = float(market_data.last_price(symbol))
    move_atr = abs(last - at_publication) / atr
    detail = f"moved {last - at_publication:+.6g} since publication = {move_atr:.2f} ATR"
    if move_atr >= settings.NEWS_MAX_MOVE_ATR:
        return PriceCheck(False, detail, last, atr, int(candles.ts[-1]), move_atr)
    return PriceCheck(True, detail, last, atr, int(candles.ts[-1]), move_atr)


def news_signal_candidate(
    *, symbol: str, side: str, price: PriceCheck, verdict: SentimentVerdict, article: NewsArticle, now: datetime
) -> SignalCandidate:
    """Stops and targets exactly like the technical strategy (ATR stop, R-multiple targets)."""
    params = StrategyParams()
    entry, atr = price.entry, price.atr
    risk = params.stop_atr_mult * atr
    sign = 1.0 if side == "long" else -1.0
    confirmations = ["fresh_high_rank", "strong_sentiment", "price_not_moved"]
    provider = float(article.provider_score) if article.provider_score is not None else None
    if provider is None and article.provider_sentiment in ("Positive", "Negative"):
        provider = 1.0 if article.provider_sentiment == "Positive" else -1.0
    if provider is not None and provider * sign > 0 and not verdict.model_used.startswith("cryptonews"):
        confirmations.append("cryptonews_agrees")  # an independent second opinion (not when it fed the verdict)
    funding = latest_funding_rate(symbol=symbol, at=now)
    level = risk_level(
        atr_pct=100.0 * atr / entry,
        sr_distance_atr=None,
        confirmations=tuple(confirmations),
        funding_rate=float(funding) if funding is not None else None,
        side=side,
    )
    return SignalCandidate(
        symbol=symbol,
        side=side,
        candle_ts=price.candle_ts,
        entry=entry,
        stop=entry - sign * risk,
        tp1=entry + sign * params.tp1_r * risk,
        tp2=entry + sign * params.tp2_r * risk,
        atr=atr,
        risk_level=level,
        confirmations=tuple(confirmations),
        indicators={
            "sentiment_model": verdict.model_used,
            "sentiment_confidence": round(verdict.confidence, 4),
            "sentiment_reason": verdict.reason,
            "move_since_publication_atr": round(price.move_atr, 4),
            "rank_position": article.rank_position,
            "provider_score": float(article.provider_score) if article.provider_score is not None else None,
            "news_article_id": article.pk,
        },
        funding_rate=float(funding) if funding is not None else None,
    )


def _default_signal_creator() -> Callable[..., Any]:
    return signal_create


def article_process(
    *,
    article_id: int,
    model: SentimentModel,
    market_data: Any,
    signal_creator: Callable[..., Any] | None = None,
) -> ProcessResult | None:
    """Process one pending article exactly once (row lock + ``processed_at``). None when there is nothing to do
    (already processed, or locked by another worker)."""
    now = market_data.now()
    with transaction.atomic():
        article = (
            NewsArticle.objects.select_for_update(skip_locked=True)
            .filter(pk=article_id, processed_at__isnull=True)
            .first()
        )
        if article is None:
            return None

        original = _earlier_original(article)
        if original is not None:
            article.duplicate_of = original
            return _finish(article, ProcessResult(Decision.DUPLICATE, f"re-post of article {original.pk}"), now=now)

        age = now - article.published_at
        if age > timedelta(minutes=settings.NEWS_MAX_AGE_MINUTES) or age < -FUTURE_TOLERANCE:
            minutes = int(age.total_seconds() // 60)
            return _finish(article, ProcessResult(Decision.STALE, f"published {minutes} min before now"), now=now)

        if article.rank_position is None or article.rank_position >= settings.NEWS_TOP_RANK_POSITIONS:
            return _finish(article, ProcessResult(Decision.LOW_RANK, f"rank position {article.rank_position}"), now=now)

        liquid = liquid_symbols_by_ticker()
        tradable = [t for t in article.tickers if t in liquid]
        if not tradable:
            detail = f"tickers {', '.join(article.tickers) or 'none'}"
            return _finish(article, ProcessResult(Decision.NO_SYMBOL, detail), now=now)

        item = article_as_item(article)
        try:
            verdict = analyse_cached(model, item)
        except SentimentRejected as exc:
            logger.warning("news article %s: sentiment rejected: %s", article.pk, exc)
            article.model_used = model.name
            return _finish(article, ProcessResult(Decision.SENTIMENT_REJECTED, str(exc)), now=now)
        except SentimentUnavailable as exc:
            article.attempts += 1
            article.model_used = model.name
            logger.warning("news article %s: sentiment unavailable (attempt %d): %s", article.pk, article.attempts, exc)
            if article.attempts >= settings.NEWS_SENTIMENT_MAX_ATTEMPTS:
                return _finish(article, ProcessResult(Decision.SENTIMENT_UNAVAILABLE, str(exc)), now=now)
            article.save(update_fields=["attempts", "model_used"])
            return ProcessResult("retry", str(exc))
        article.sentiment = verdict.as_dict()
        article.model_used = verdict.model_used

        if verdict.direction == "neutral" or verdict.confidence < settings.NEWS_MIN_CONFIDENCE:
            detail = f"{verdict.direction} at confidence {verdict.confidence:.2f}"
            return _finish(article, ProcessResult(Decision.WEAK, detail), now=now)
        affected = [t for t in verdict.tickers if t in tradable][:MAX_SYMBOLS_PER_ARTICLE]
        if not affected:
            detail = f"model names {', '.join(verdict.tickers) or 'no ticker'}; tradable {', '.join(tradable)}"
            return _finish(article, ProcessResult(Decision.NO_SYMBOL, detail), now=now)

        create = signal_creator or _default_signal_creator()
        signal_ids: list[int] = []
        outcomes: list[str] = []
        notes: list[str] = []
        for ticker in affected:
            symbol = liquid[ticker].symbol
            try:
                price = price_not_moved_yet(
                    market_data=market_data, symbol=symbol, published_at=article.published_at, now=now
                )
            except Exception as exc:  # market data for one symbol failing must not lose the article
                logger.warning("news article %s: market data for %s failed: %s", article.pk, symbol, exc)
                outcomes.append(Decision.NO_MARKET_DATA)
                notes.append(f"{symbol}: market data failed ({type(exc).__name__})")
                continue
            if not price.ok:
                outcomes.append(Decision.MOVED if price.atr > 0 else Decision.NO_MARKET_DATA)
                notes.append(f"{symbol}: {price.detail}")
                continue
            candidate = news_signal_candidate(
                symbol=symbol, side=verdict.direction, price=price, verdict=verdict, article=article, now=now
            )
            signal = create(
                candidate=candidate,
                source="news",
                headline=article.title[:500],
                url=article.url,
                expires_in=timedelta(hours=settings.NEWS_SIGNAL_EXPIRY_HOURS),
            )
            if signal is None:
                outcomes.append(Decision.REFUSED)
                notes.append(f"{symbol}: refused by signal_create")
                continue
            outcomes.append(Decision.SIGNAL)
            signal_ids.append(signal.pk)
            if article.signal_id is None:
                article.signal = signal
            notes.append(f"{symbol}: signal {signal.pk} ({price.detail})")

        for decision in (Decision.SIGNAL, Decision.MOVED, Decision.REFUSED, Decision.NO_MARKET_DATA):
            if decision in outcomes:
                break
        return _finish(article, ProcessResult(decision, "; ".join(notes), tuple(signal_ids)), now=now)


def news_pending_ids(*, limit: int = MAX_ARTICLES_PER_POLL) -> list[int]:
    rows = NewsArticle.objects.filter(
        processed_at__isnull=True, attempts__lt=settings.NEWS_SENTIMENT_MAX_ATTEMPTS
    ).order_by("published_at", "pk")
    return list(rows.values_list("pk", flat=True)[:limit])


def news_poll(
    *,
    source: NewsSource,
    model: SentimentModel,
    market_data: Any,
    signal_creator: Callable[..., Any] | None = None,
) -> NewsPollReport:
    """Fetch recent news for the tickers of the listed markets, store the new articles, process every pending one
    (an article about a market that is not a liquid USDT perpetual ends as "no symbol", before the paid model)."""
    report = NewsPollReport()
    tickers = sorted(listed_tickers())
    if tickers:
        try:
            items = source.recent_news(tickers=tickers, window=settings.NEWS_POLL_WINDOW)
        except NewsSourceError as exc:
            logger.warning("news poll: source %s failed: %s", source.name, exc)
            report.error = str(exc)
            items = []
        report.fetched = len(items)
        report.new = news_articles_store(items=items)
    for article_id in news_pending_ids():
        result = article_process(
            article_id=article_id, model=model, market_data=market_data, signal_creator=signal_creator
        )
        if result is None:
            continue
        report.decisions[result.decision] += 1
        if result.decision != "retry":
            report.processed += 1
        report.signals += len(result.signal_ids)
    logger.info(
        "news poll: fetched %d, new %d, processed %d, signals %d %s",
        report.fetched,
        report.new,
        report.processed,
        report.signals,
        dict(report.decisions),
    )
    return report


def news_source_from_settings(*, market_data: Any) -> NewsSource:
    """The one place that picks the source: CryptoNews live, or the recorded file on the market-data clock."""
    if settings.NEWS_SOURCE == "cryptonews":
        client = CryptoNewsClient(api_key=settings.CRYPTONEWS_API_KEY)
        return CryptoNewsSource(client, max_pages=settings.NEWS_MAX_PAGES)
    return RecordedNewsSource(settings.NEWS_RECORDED_FILE, clock=market_data.now)
