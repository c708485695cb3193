"""Download candles (and funding history) through ccxt into an on-disk cache in the replay data format.

``python manage.py download_data --symbols BTC/USDT:USDT,ETH/USDT:USDT --days 90`` writes, under ``--out``
(default ``var/market_data``), one 5m feather file per symbol (``ohlcv/futures/BTC_USDT_USDT-5m-futures.feather``,
columns ``date, open, high, low, close, volume`` like the bundled ``data/``), the 8h funding history when the exchange
has one, and a ``manifest.json`` with each market's precision and minimums. Point ``REPLAY_DATA_DIR`` at that folder
and the replay, the demo and the backtests (``manage.py backtest``, the admin page, ``/backtest``) use it.

Cache: a symbol already on disk is extended, not downloaded again — only candles after the newest cached one (and
before the oldest, when more days are asked) are fetched. Pages overlap at their edges, so rows are merged by open time;
duplicates (the exchange repeating a candle) and gaps (candles the exchange does not have) are counted and reported
per symbol (``engine.candles.check_candles``), never silently hidden.

Network: the ccxt client comes from ``exchanges.ccxt_factory`` (``enableRateLimit`` on); its errors go through the one
ccxt error map (``exchanges.errors``): a retryable one (network error, timeout, rate limit) is retried ``retries``
times with a growing pause (``retry_call``), then reported for that symbol, and the other symbols still download.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.candles import Candles, check_candles
from exchanges.ccxt_factory import ccxt_client_create
from exchanges.errors import FinalExchangeError, RetryableExchangeError, library_errors, map_ccxt_error, retry_call

logger = logging.getLogger(__name__)

TIMEFRAME = "5m"  # the replay's source timeframe (15m and 1h are resampled from it)
TIMEFRAME_MS = 300_000
FUNDING_MS = 8 * 3_600_000
DAY_MS = 86_400_000
PAGE_LIMIT = 300

Progress = Callable[[str, int], None]  # (symbol, candles fetched so far for it)


class DownloadError(Exception):
    """A symbol that could not be downloaded; the message is shown to the operator as it is."""


@dataclass
class SymbolDownload:
    symbol: str
    cached: int = 0  # candles already on disk before this run
    fetched: int = 0  # candles received from the exchange in this run (before merging)
    rows: int = 0  # candles on disk after this run
    duplicates: int = 0  # repeated open times received (dropped, first kept)
    gaps: int = 0
    missing_candles: int = 0
    funding_rows: int = 0
    problems: list[str] = field(default_factory=list)
    error: str = ""

    def line(self) -> str:
        if self.error:
            return f"{self.symbol}: FAILED — {self.error}"
        quality = "; ".join(self.problems) or "no gaps or duplicates"
        return (
            f"{self.symbol}: {self.rows} candles ({self.cached} cached, {self.fetched} fetched, "
            f"{self.duplicates} duplicate(s) dropped), {self.funding_rows} funding rates; {quality}"
        )


def exchange_create(exchange_id: str) -> Any:
    """A synchronous ccxt client of ``exchange_id`` for its swap markets (public data, no keys)."""
    try:
        return ccxt_client_create(exchange_id, market_type="swap", asynchronous=False)
    except FinalExchangeError as error:
        raise DownloadError(str(error)) from None


def _retrying(call: Callable[[], Any], *, retries: int, pause: float, sleep: Callable[[float], None]) -> Any:
    def mapped() -> Any:
        try:
            return call()
        except library_errors() as error:
            raise map_ccxt_error(error) from error

    try:
        return retry_call(
            mapped,
            attempts=retries + 1,
            pause=lambda attempt: pause * (attempt + 1),
            sleep=sleep,
            description="download",
        )
    except RetryableExchangeError as error:
        raise DownloadError(f"{error.source or type(error).__name__} after {retries + 1} attempts") from None


def fetch_candles(
    exchange: Any,
    symbol: str,
    *,
    since_ms: int,
    until_ms: int,
    progress: Progress | None = None,
    retries: int = 3,
    pause: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[list[float]], int]:
    """Raw ccxt rows with open time in [since_ms, until_ms), page by page; returns (rows, pages)."""
    rows: list[list[float]] = []
    cursor = since_ms
    pages = 0
    while cursor < until_ms:
        page = _retrying(
            lambda cursor=cursor: exchange.fetch_ohlcv(symbol, TIMEFRAME, since=cursor, limit=PAGE_LIMIT),
            retries=retries,
            pause=pause,
            sleep=sleep,
        )
        pages += 1
        if not isinstance(page, list):
            raise DownloadError(f"the exchange answered {type(page).__name__}, not a list of candles")
        usable = [r for r in page if isinstance(r, list | tuple) and len(r) >= 6 and r[0] is not None]
        usable = [r for r in usable if since_ms <= int(r[0]) < until_ms]
        if not usable:
            break  # nothing more in the range (listing started later, or the exchange has no older data)
        rows.extend([float(v) if v is not None else np.nan for v in r[:6]] for r in usable)
        newest = max(int(r[0]) for r in usable)
        if newest + TIMEFRAME_MS <= cursor:  # the exchange is not moving forward: stop instead of looping
            break
        cursor = newest + TIMEFRAME_MS
        if progress is not None:
            progress(symbol, len(rows))
    return rows, pages


def fetch_funding(
    exchange: Any,
    symbol: str,
    *,
    since_ms: int,
    until_ms: int,
    retries: int = 3,
    pause: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> list[tuple[int, float]]:
    """8h funding history as (settlement ms floored to the 8h grid, rate); empty when the exchange has none."""
    if not (getattr(exchange, "has", {}) or {}).get("fetchFundingRateHistory"):
        return []
    found: dict[int, float] = {}
    cursor = since_ms
    while cursor < until_ms:
        page = _retrying(
            lambda cursor=cursor: exchange.fetch_funding_rate_history(symbol, since=cursor, limit=100),
            retries=retries,
            pause=pause,
            sleep=sleep,
        )
        stamps = []
        for entry in page or []:
            ts, rate = (entry or {}).get("timestamp"), (entry or {}).get("fundingRate")
            if isinstance(ts, int | float) and isinstance(rate, int | float) and since_ms <= ts < until_ms:
                found[int(ts) - int(ts) % FUNDING_MS] = float(rate)
                stamps.append(int(ts))
        if not stamps or max(stamps) < cursor:
            break
        cursor = max(stamps) + 1
    return sorted(found.items())


def file_stem(symbol: str) -> str:
    return symbol.replace("/", "_").replace(":", "_")


def _merge(old: Candles | None, rows: list[list[float]]) -> tuple[Candles, int]:
    """Old and new rows by open time (new rows win where both exist); returns (candles, duplicates received)."""
    new = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
    new_ts = new[:, 0].astype(np.int64)
    duplicates = int(new_ts.size - np.unique(new_ts).size)
    frames = []
    if old is not None and len(old):
        frames.append(
            pd.DataFrame(
                {
                    "ts": old.ts,
                    "open": old.open,
                    "high": old.high,
                    "low": old.low,
                    "close": old.close,
                    "volume": old.volume,
                }
            )
        )
    frames.append(
        pd.DataFrame(
            {
                "ts": new_ts,
                "open": new[:, 1],
                "high": new[:, 2],
                "low": new[:, 3],
                "close": new[:, 4],
                "volume": new[:, 5],
            }
        )
    )
    merged = pd.concat(frames, ignore_index=True).drop_duplicates("ts", keep="last").sort_values("ts")
    candles = Candles(
        merged["ts"].to_numpy(np.int64),
        *(merged[c].to_numpy(np.float64) for c in ("open", "high", "low", "close", "volume")),
    )
    return candles, duplicates


def _read_candles(path: Path) -> Candles | None:
    if not path.exists():
        return None
    return Candles.from_frame(pd.read_feather(path))


def _manifest_entry(
    symbol: str, market: dict[str, Any] | None, precision_mode: int | None, candles_path: str, funding_path: str | None
) -> dict[str, Any]:
    from signals.market_data.live import market_info_from_ccxt

    base, _, rest = symbol.partition("/")
    quote, _, settle = rest.partition(":")
    entry: dict[str, Any] = {"symbol": symbol, "kind": "swap" if settle else "spot", "base": base, "quote": quote}
    if settle:
        entry["settle"] = settle
    if market:
        kwargs = {} if precision_mode is None else {"precision_mode": precision_mode}
        info = market_info_from_ccxt(market, **kwargs)
        entry.update(
            {
                "kind": info.kind,
                "base": info.base,
                "quote": info.quote,
                "settle": info.settle,
                "tick_size": str(info.tick_size or ""),
                "step_size": str(info.step_size or ""),
                "min_quantity": str(info.min_quantity or ""),
                "min_notional": str(info.min_notional or ""),
                "contract_size": str(info.contract_size),
                "max_leverage": info.max_leverage,
            }
        )
    entry["candles_5m"] = candles_path
    if funding_path:
        entry["funding_8h"] = funding_path
    return entry


def market_data_download(
    *,
    exchange: Any,
    symbols: Sequence[str],
    days: int,
    directory: Path,
    now_ms: int | None = None,
    progress: Progress | None = None,
    retries: int = 3,
    sleep: Callable[[float], None] = time.sleep,
) -> list[SymbolDownload]:
    """Bring the on-disk cache of every symbol up to ``days`` of 5m candles ending at ``now_ms`` (see module doc)."""
    if days < 1:
        raise DownloadError("days must be at least 1")
    now_ms = int(time.time() * 1000) if now_ms is None else int(now_ms)
    until_ms = now_ms - now_ms % TIMEFRAME_MS  # the candle still forming is not downloaded
    since_ms = until_ms - days * DAY_MS
    directory = Path(directory)
    (directory / "ohlcv" / "futures").mkdir(parents=True, exist_ok=True)
    manifest_path = directory / "manifest.json"
    manifest = (
        json.loads(manifest_path.read_text())
        if manifest_path.exists()
        else {
            "about": "Candles downloaded with `manage.py download_data` (ccxt); the replay data format (see data/README.md).",
            "markets": [],
        }
    )
    manifest["exchange"] = getattr(exchange, "id", "")
    entries = {m["symbol"]: m for m in manifest.get("markets", [])}
    try:
        markets = exchange.load_markets()
    except Exception as error:  # the candles may still come; metadata is then left out of the manifest
        logger.warning("download_data: load_markets failed: %s", error)
        markets = {}
    reports = []
    for symbol in symbols:
        report = SymbolDownload(symbol)
        reports.append(report)
        if markets and symbol not in markets:
            report.error = f"unknown symbol on {getattr(exchange, 'id', 'the exchange')}"
            continue
        candles_rel = f"ohlcv/futures/{file_stem(symbol)}-5m-futures.feather"
        funding_rel = f"ohlcv/futures/{file_stem(symbol)}-8h-funding_rate.feather"
        old = _read_candles(directory / candles_rel)
        report.cached = 0 if old is None else len(old)
        ranges = [(since_ms, until_ms)]
        if old is not None and len(old):
            ranges = [(since_ms, min(int(old.ts[0]), until_ms)), (int(old.ts[-1]) + TIMEFRAME_MS, until_ms)]
        rows: list[list[float]] = []
        try:
            for start, end in ranges:
                if start < end:
                    fetched, _ = fetch_candles(
                        exchange, symbol, since_ms=start, until_ms=end, progress=progress, retries=retries, sleep=sleep
                    )
                    rows.extend(fetched)
            funding = fetch_funding(
                exchange, symbol, since_ms=since_ms, until_ms=until_ms, retries=retries, sleep=sleep
            )
        except DownloadError as error:
            report.error = str(error)
            continue
        except Exception as error:  # a bad symbol, an exchange error: report it, download the others
            report.error = f"{type(error).__name__}: {str(error)[:200]}"
            continue
        report.fetched = len(rows)
        if not rows and old is None:
            report.error = "the exchange returned no candles for this range"
            continue
        candles, report.duplicates = _merge(old, rows) if rows else (old, 0)
        candles.to_frame().to_feather(directory / candles_rel)
        found = check_candles(candles, TIMEFRAME_MS)
        report.rows, report.gaps, report.missing_candles = len(candles), found.gaps, found.missing_candles
        report.problems = list(found.problems) + list(found.warnings)
        if report.duplicates:
            report.problems.append(f"{report.duplicates} duplicate candle(s) received and dropped")
        funding_file = None
        if funding:
            funding_frame = pd.DataFrame(
                {
                    "date": pd.to_datetime([ts for ts, _ in funding], unit="ms", utc=True),
                    "open": [rate for _, rate in funding],
                    "high": 0.0,
                    "low": 0.0,
                    "close": 0.0,
                    "volume": 0.0,
                }
            )
            existing = directory / funding_rel
            if existing.exists():
                funding_frame = pd.concat([pd.read_feather(existing), funding_frame], ignore_index=True)
                funding_frame = funding_frame.drop_duplicates("date", keep="last").sort_values("date")
            funding_frame.reset_index(drop=True).to_feather(existing)
            report.funding_rows = len(funding_frame)
            funding_file = funding_rel
        elif (directory / funding_rel).exists():
            funding_file = funding_rel
        entries[symbol] = _manifest_entry(
            symbol, markets.get(symbol), getattr(exchange, "precisionMode", None), candles_rel, funding_file
        )
    manifest["markets"] = list(entries.values())
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return reports
