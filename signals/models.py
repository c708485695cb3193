"""Markets, signals and funding snapshots."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from config.model_fields import PercentField, PriceField, QuantityField, decimal_plain


class Sector(models.TextChoices):
    L1 = "l1", "Layer 1"
    L2 = "l2", "Layer 2"
    DEFI = "defi", "DeFi"
    MEME = "meme", "Meme"
    AI = "ai", "AI"
    EXCHANGE = "exchange", "Exchange tokens"
    PAYMENTS = "payments", "Payments"
    GAMING = "gaming", "Gaming"
    INFRA = "infra", "Infrastructure"
    OTHER = "other", "Other"


class Symbol(models.Model):
    """A perpetual market we scan, with the metadata order sizing needs (from the market-data exchange)."""

    symbol = models.CharField(max_length=40, unique=True, help_text="ccxt unified form, e.g. BTC/USDT:USDT")
    base = models.CharField(max_length=20)
    quote = models.CharField(max_length=10, default="USDT")
    sector = models.CharField(max_length=16, choices=Sector.choices, default=Sector.OTHER)
    tick_size = PriceField(null=True, blank=True)
    step_size = QuantityField(null=True, blank=True)
    min_quantity = QuantityField(null=True, blank=True)
    min_notional = PriceField(null=True, blank=True)
    contract_size = QuantityField(default=1)
    max_leverage = models.PositiveSmallIntegerField(default=20)
    is_active = models.BooleanField(default=True, help_text="Scanned; false once delisted")
    is_muted = models.BooleanField(default=False, help_text="Muted globally by an operator: no signals")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["symbol"]
        indexes = [models.Index(fields=["is_active", "is_muted"], name="symbol_active_muted_idx")]

    def __str__(self) -> str:
        return self.symbol


class Side(models.TextChoices):
    LONG = "long", "Long"
    SHORT = "short", "Short"


class Signal(models.Model):
    class Source(models.TextChoices):
        TECHNICAL = "technical"
        NEWS = "news"
        FLOW = "flow"

    class Status(models.TextChoices):
        OPEN = "open"
        CLOSED = "closed"

    class Outcome(models.TextChoices):
        OPEN = "open"
        TP1 = "tp1"
        TP2 = "tp2"
        SL = "sl"
        BREAKEVEN = "breakeven"
        EXPIRED = "expired"

    class RiskLevel(models.TextChoices):
        LOW = "low"
        MEDIUM = "medium"
        HIGH = "high"

    symbol = models.ForeignKey(Symbol, on_delete=models.PROTECT, related_name="signals")
    side = models.CharField(max_length=5, choices=Side.choices)
    timeframe = models.CharField(max_length=8, default="15m")
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.TECHNICAL)
    entry = PriceField()
    stop = PriceField()
    tp1 = PriceField()
    tp2 = PriceField()
    atr = PriceField(null=True, blank=True)
    risk_level = models.CharField(max_length=8, choices=RiskLevel.choices, default=RiskLevel.MEDIUM)
    confirmations = models.JSONField(default=list, blank=True, help_text="Names of the 1h checks that passed")
    indicators = models.JSONField(default=dict, blank=True)
    candle_ts = models.BigIntegerField(help_text="Open time (ms) of the candle the signal was computed on")
    dedupe_key = models.CharField(
        max_length=200, unique=True, help_text="source:symbol:side:candle — retries insert once"
    )
    headline = models.CharField(max_length=500, blank=True)
    url = models.URLField(max_length=1000, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.OPEN)
    outcome_pnl_pct = PercentField(null=True, blank=True)
    tp1_hit_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    published_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When signal.created was last dispatched (first announcement or a re-announcement)",
    )
    fanned_out_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When every consumer in SIGNAL_FANOUT_CONSUMERS had stored its per-user rows (see SignalFanout)",
    )
    created_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["symbol", "side", "source"], condition=Q(status="open"), name="one_open_signal_per_symbol_side"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="signal_status_created_idx"),
            models.Index(fields=["created_at"], name="signal_created_idx"),
            models.Index(fields=["published_at"], name="signal_published_idx"),
            models.Index(
                fields=["created_at"], condition=Q(fanned_out_at__isnull=True), name="signal_not_fanned_out_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.side.upper()} {self.symbol} @ {decimal_plain(self.entry)} ({self.source})"


class SignalFanout(models.Model):
    """A consumer of ``signal.created`` stored its per-user rows for a signal (the Telegram broadcast: one delivery row
    per recipient; trading: one execution intent per user), in the same transaction as those rows.

    The queue only rings the doorbell: a consumer's task may be lost (Redis crash, a worker killed, PostgreSQL down
    when it ran); until its row exists here, ``signals.services.signal_publish_pending`` announces the signal to it
    again. Unique per (signal, consumer)."""

    signal = models.ForeignKey(Signal, on_delete=models.CASCADE, related_name="fanouts")
    consumer = models.CharField(
        max_length=100, help_text="Task name of the consumer (settings.SIGNAL_FANOUT_CONSUMERS)"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["signal", "consumer"], name="one_fanout_per_signal_consumer")]

    def __str__(self) -> str:
        return f"signal {self.signal_id} fanned out by {self.consumer}"


class FundingSnapshot(models.Model):
    symbol = models.ForeignKey(Symbol, on_delete=models.CASCADE, related_name="funding_snapshots")
    exchange = models.CharField(max_length=16)
    rate = models.DecimalField(max_digits=16, decimal_places=10, help_text="Per funding interval, 0.0001 = 0.01%")
    interval_hours = models.PositiveSmallIntegerField(default=8)
    funding_time = models.DateTimeField()
    mark_price = PriceField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["symbol", "exchange", "funding_time"], name="unique_funding_snapshot")
        ]
        indexes = [models.Index(fields=["symbol", "-funding_time"], name="funding_symbol_time_idx")]

    def __str__(self) -> str:
        return f"{self.symbol} {self.exchange} {self.rate} @ {self.funding_time:%Y-%m-%d %H:%M}"


class ScanRun(models.Model):
    """One market scan (the beat's ``scan_markets`` or a replay step): what was scanned, found and skipped.

    Batches update the counters as they finish; ``finished_at`` is set by the last one. The admin health page reads
    the latest rows through ``signals.selectors.scan_run_latest``.
    """

    source = models.CharField(max_length=32, help_text="Market-data source: replay or the exchange id")
    scan_time = models.DateTimeField(help_text="The moment candles were judged closed against (candle close)")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    batches_total = models.PositiveIntegerField(default=0)
    batches_done = models.PositiveIntegerField(default=0)
    symbols_total = models.PositiveIntegerField(default=0)
    symbols_scanned = models.PositiveIntegerField(default=0)
    symbols_skipped = models.PositiveIntegerField(default=0)
    candidates = models.PositiveIntegerField(default=0, help_text="Signals the strategy proposed")
    signals_created = models.PositiveIntegerField(default=0)
    signals_refused = models.PositiveIntegerField(default=0, help_text="Duplicates, muted or inactive symbols")
    skipped = models.JSONField(default=dict, blank=True, help_text="symbol -> reason it was skipped")
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["-started_at"], name="scanrun_started_idx")]

    def __str__(self) -> str:
        return f"scan {self.scan_time:%Y-%m-%d %H:%M} ({self.source}): {self.signals_created} signal(s)"
