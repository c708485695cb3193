"""The market scan as services: ``scan_start`` (sync markets, record the scan, cut batches) and ``scan_batch_run``
(fetch candles, run ``engine.scan.scan_many``, store signals). The Celery tasks and the replay driver call exactly
these, so a replay step is the beat's scan.

Bad input never stops a scan: a symbol whose candles are missing/broken (NaN, zero volume, gaps — judged by
``engine.candles.check_candles`` inside ``scan_many``), that was delisted mid-scan, or whose exchange call timed out
is skipped with a logged reason recorded on the ``ScanRun``; the others complete.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from engine.candles import Candles
from engine.scan import scan_many
from engine.strategy import SIGNAL_TIMEFRAME_MS, StrategyParams, bars_recommended
from signals import selectors
from signals.market_data import (
    MarketData,
    MarketDataError,
    RetryableMarketDataError,
    SymbolUnavailable,
    get_market_data,
)
from signals.market_data.base import ms_to_datetime
from signals.models import ScanRun, Signal
from signals.services import signal_create, symbol_sync_markets

logger = logging.getLogger(__name__)


def strategy_params() -> StrategyParams:
    """The strategy parameters in force (``settings.SIGNAL_STRATEGY_PARAMS`` overrides the engine defaults)."""
    return StrategyParams.from_mapping(settings.SIGNAL_STRATEGY_PARAMS)


def candles_15m_limit(params: StrategyParams) -> int:
    return settings.SIGNAL_SCAN_CANDLES_15M or 2 * bars_recommended(params)


def candles_1h_limit(params: StrategyParams) -> int:
    return settings.SIGNAL_SCAN_CANDLES_1H or bars_recommended(params)


@dataclass(frozen=True)
class ScanPlan:
    scan_run_id: int
    now_ms: int
    batches: list[list[str]]


@dataclass
class BatchResult:
    scanned: int = 0
    candidates: int = 0
    created: list[Signal] = field(default_factory=list)
    refused: int = 0
    skipped: dict[str, str] = field(default_factory=dict)


def scan_start(*, market_data: MarketData | None = None, now_ms: int | None = None) -> ScanPlan:
    """Sync the listed markets into ``Symbol`` rows, record a ``ScanRun`` and cut the scannable symbols into
    batches. ``now_ms`` (default: the market-data clock, floored to the 15m grid = the candle close just passed)
    is pinned for every batch of this scan so they all judge the same candles closed."""
    market_data = market_data or get_market_data()
    if now_ms is None:
        now_ms = market_data.now_ms() // SIGNAL_TIMEFRAME_MS * SIGNAL_TIMEFRAME_MS
    symbol_sync_markets(markets=market_data.markets())
    symbols = selectors.symbol_list_scannable()
    muted = selectors.symbol_list_muted()
    size = max(int(settings.SIGNAL_SCAN_BATCH_SIZE), 1)
    batches = [symbols[i : i + size] for i in range(0, len(symbols), size)]
    scan_run = ScanRun.objects.create(
        source=market_data.name,
        scan_time=ms_to_datetime(now_ms),
        batches_total=len(batches),
        symbols_total=len(symbols) + len(muted),
        symbols_skipped=len(muted),
        skipped=dict.fromkeys(muted, "muted globally by an operator"),
        finished_at=None if batches else timezone.now(),
        duration_ms=None if batches else 0,
    )
    logger.info(
        "scan %s at %s: %d symbol(s) in %d batch(es), %d muted",
        scan_run.pk,
        scan_run.scan_time,
        len(symbols),
        len(batches),
        len(muted),
    )
    return ScanPlan(scan_run_id=scan_run.pk, now_ms=now_ms, batches=batches)


def _fetch_series(
    market_data: MarketData, symbols: list[str], params: StrategyParams, skipped: dict[str, str]
) -> tuple[dict[str, tuple[Candles, Candles]], dict[str, float]]:
    series: dict[str, tuple[Candles, Candles]] = {}
    funding: dict[str, float] = {}
    limit15, limit1h = candles_15m_limit(params), candles_1h_limit(params)
    for symbol in symbols:
        try:
            c15 = market_data.ohlcv(symbol, "15m", limit15)
            c1h = market_data.ohlcv(symbol, "1h", limit1h)
        except SymbolUnavailable as error:
            skipped[symbol] = f"unavailable (delisted?): {error}"
            continue
        except RetryableMarketDataError as error:
            skipped[symbol] = f"exchange error, retry next scan: {error}"
            continue
        except MarketDataError as error:
            skipped[symbol] = f"market data error: {error}"
            continue
        except Exception as error:  # one broken symbol must not stop the scan
            logger.exception("scan: fetching %s failed unexpectedly", symbol)
            skipped[symbol] = f"internal error: {type(error).__name__}: {error}"
            continue
        if len(c15) == 0:
            skipped[symbol] = "no closed 15m candles"
            continue
        series[symbol] = (c15, c1h)
        try:  # funding only raises the risk level; without it the symbol is still scanned
            rate = market_data.funding_rate(symbol)
        except MarketDataError as error:
            logger.warning("scan: no funding rate for %s: %s", symbol, error)
            rate = None
        if rate is not None:
            funding[symbol] = float(rate)
    return series, funding


def scan_batch_run(
    *,
    scan_run_id: int | None,
    symbols: list[str],
    now_ms: int,
    market_data: MarketData | None = None,
    params: StrategyParams | None = None,
) -> BatchResult:
    """Scan ``symbols`` at ``now_ms``: candles → ``engine.scan.scan_many`` → ``signal_create`` per candidate."""
    started = time.perf_counter()
    market_data = market_data or get_market_data()
    params = params or strategy_params()
    result = BatchResult()
    series, funding = _fetch_series(market_data, symbols, params, result.skipped)
    scan = scan_many(series, params, funding=funding, now_ms=now_ms)
    result.skipped.update(scan.skipped)
    result.scanned = len(series) - len(scan.skipped)
    result.candidates = len(scan.candidates)
    created_at = market_data.now()
    for candidate in scan.candidates:
        signal = signal_create(candidate=candidate, created_at=created_at)
        if signal is None:
            result.refused += 1
        else:
            result.created.append(signal)
    for symbol, reason in result.skipped.items():
        logger.info("scan: %s skipped: %s", symbol, reason)
    if scan_run_id is not None:
        _scan_run_record(scan_run_id=scan_run_id, result=result, elapsed=time.perf_counter() - started)
    return result


def _scan_run_record(*, scan_run_id: int, result: BatchResult, elapsed: float) -> None:
    """Add one batch's counts to its ``ScanRun`` (row locked: batches of one scan may finish at once); the last
    batch stamps ``finished_at``."""
    with transaction.atomic():
        run = ScanRun.objects.select_for_update().filter(pk=scan_run_id).first()
        if run is None:
            logger.warning("scan run %s vanished before its batch reported", scan_run_id)
            return
        run.batches_done += 1
        run.symbols_scanned += result.scanned
        run.symbols_skipped += len(result.skipped)
        run.candidates += result.candidates
        run.signals_created += len(result.created)
        run.signals_refused += result.refused
        if result.skipped:
            run.skipped = {**run.skipped, **{symbol: reason[:500] for symbol, reason in result.skipped.items()}}
        fields = [
            "batches_done",
            "symbols_scanned",
            "symbols_skipped",
            "candidates",
            "signals_created",
            "signals_refused",
            "skipped",
        ]
        if run.batches_done >= run.batches_total and run.finished_at is None:
            run.finished_at = timezone.now()
            run.duration_ms = int((run.finished_at - run.started_at).total_seconds() * 1000)
            fields += ["finished_at", "duration_ms"]
        run.save(update_fields=fields)


def scan_run_now(*, market_data: MarketData | None = None, now_ms: int | None = None) -> tuple[ScanRun, list[Signal]]:
    """A whole scan in this process (replay steps, management commands): start, then every batch inline."""
    market_data = market_data or get_market_data()
    plan = scan_start(market_data=market_data, now_ms=now_ms)
    params = strategy_params()
    created: list[Signal] = []
    for batch in plan.batches:
        created += scan_batch_run(
            scan_run_id=plan.scan_run_id, symbols=batch, now_ms=plan.now_ms, market_data=market_data, params=params
        ).created
    return ScanRun.objects.get(pk=plan.scan_run_id), created
