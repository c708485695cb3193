"""Thin Celery tasks (beat: every minute). Each run is idempotent: articles are processed once, alerts sent once."""

from __future__ import annotations

from celery import shared_task
from django.core.cache import cache

from signals.market_data import get_market_data


def _single_run(name: str, seconds: int):
    """A short-lived lock so two overlapping beats do not poll at once (the row locks already keep it correct)."""
    return cache.add(f"news:lock:{name}", "1", seconds)


@shared_task(name="news.tasks.poll_news", time_limit=120, soft_time_limit=100, ignore_result=True)
def poll_news() -> dict:
    from news.sentiment import sentiment_model_from_settings
    from news.services import news_poll, news_source_from_settings

    if not _single_run("poll_news", 55):
        return {"skipped": "another poll is running"}
    try:
        market_data = get_market_data()
        report = news_poll(
            source=news_source_from_settings(market_data=market_data),
            model=sentiment_model_from_settings(),
            market_data=market_data,
        )
    finally:
        cache.delete("news:lock:poll_news")
    return {"fetched": report.fetched, "new": report.new, "processed": report.processed, "signals": report.signals}


@shared_task(name="news.tasks.poll_funding_rates", time_limit=120, soft_time_limit=100, ignore_result=True)
def poll_funding_rates() -> dict:
    from news.funding import funding_poll
    from news.funding_sources import funding_sources_from_settings

    if not _single_run("poll_funding_rates", 55):
        return {"skipped": "another poll is running"}
    try:
        report = funding_poll(sources=funding_sources_from_settings())
    finally:
        cache.delete("news:lock:poll_funding_rates")
    return {"stored": report.stored, "alerts": len(report.alerts), "failed_sources": report.failed_sources}
