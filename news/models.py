"""News articles (each processed once) and funding-rate alerts (one per symbol, kind and funding period)."""

from __future__ import annotations

from django.db import models


class NewsArticle(models.Model):
    """One article from a news source. ``external_id`` (hash of the normalised URL) makes a fetch insert it once;
    ``title_hash`` (normalised headline) finds re-posts of the same story by other publishers."""

    class Decision(models.TextChoices):
        PENDING = "", "Not processed yet"
        SIGNAL = "signal", "Signal created"
        DUPLICATE = "duplicate", "Re-post of an earlier article"
        STALE = "stale", "Too old (or dated in the future)"
        LOW_RANK = "low_rank", "Not high-ranked"
        NO_SYMBOL = "no_symbol", "No liquid symbol among its tickers"
        WEAK = "weak", "Sentiment neutral or not confident enough"
        SENTIMENT_REJECTED = "sentiment_rejected", "Sentiment model refused or answered garbage"
        SENTIMENT_UNAVAILABLE = "sentiment_unavailable", "Sentiment model unreachable (retries exhausted)"
        MOVED = "moved", "Price already moved since publication"
        NO_MARKET_DATA = "no_market_data", "No candles or price for the symbol"
        REFUSED = "refused", "Signal refused (muted, inactive, already open)"

    external_id = models.CharField(max_length=64, unique=True, help_text="sha256 of the normalised article URL")
    title_hash = models.CharField(max_length=64, db_index=True, help_text="sha256 of the normalised headline")
    source = models.CharField(max_length=32, help_text="The NewsSource that delivered it, e.g. cryptonews")
    source_name = models.CharField(max_length=100, blank=True, help_text="The publisher, e.g. CoinDesk")
    url = models.URLField(max_length=1000)
    title = models.CharField(max_length=500, help_text="Plain text (tags stripped); escape when rendering HTML")
    text = models.TextField(blank=True)
    tickers = models.JSONField(default=list, blank=True)
    topics = models.JSONField(default=list, blank=True)
    published_at = models.DateTimeField()
    provider_sentiment = models.CharField(max_length=10, blank=True, help_text="CryptoNews label")
    provider_score = models.DecimalField(max_digits=6, decimal_places=3, null=True, blank=True, help_text="−1.5…+1.5")
    rank_score = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    rank_position = models.PositiveIntegerField(null=True, blank=True, help_text="0 = most important in its answer")
    fetched_at = models.DateTimeField(auto_now_add=True)
    duplicate_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reposts")
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Sentiment attempts that failed transiently")
    processed_at = models.DateTimeField(null=True, blank=True, help_text="Set once; a processed article is final")
    decision = models.CharField(max_length=24, choices=Decision.choices, blank=True, default=Decision.PENDING)
    decision_detail = models.CharField(max_length=300, blank=True)
    sentiment = models.JSONField(default=dict, blank=True, help_text="direction, confidence, tickers, reason")
    model_used = models.CharField(max_length=64, blank=True, help_text="Which sentiment model judged it")
    signal = models.ForeignKey(
        "signals.Signal", null=True, blank=True, on_delete=models.SET_NULL, related_name="news_articles"
    )

    class Meta:
        ordering = ["-published_at"]
        indexes = [
            models.Index(fields=["processed_at", "published_at"], name="news_pending_idx"),
            models.Index(fields=["decision", "published_at"], name="news_decision_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.source_name or self.source}: {self.title[:80]}"


class FundingAlert(models.Model):
    """An alert sent to users with funding alerts on. ``dedupe_key`` = kind:symbol:funding period → sent once."""

    class Kind(models.TextChoices):
        EXTREME = "extreme", "Extreme funding rate"
        ARBITRAGE = "arbitrage", "Cross-exchange funding spread"

    dedupe_key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    symbol = models.ForeignKey("signals.Symbol", on_delete=models.CASCADE, related_name="funding_alerts")
    period_start = models.DateTimeField(help_text="Start of the funding period the alert is about")
    details = models.JSONField(default=dict, blank=True, help_text="rates per exchange, spread, annualised %")
    text = models.TextField(help_text="The escaped HTML sent to users")
    recipients = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} {self.symbol} @ {self.period_start:%Y-%m-%d %H:%M}"
