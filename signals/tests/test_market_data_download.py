"""`download_data`: ccxt pages into the replay-format cache, resume from the cache, gaps/duplicates reported, errors
contained per symbol; the downloaded folder then feeds a backtest. The exchange is a stand-in serving the bundled
real XRP/USDT:USDT candles with ccxt's ``fetch_ohlcv`` / ``fetch_funding_rate_history`` signatures (no network)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import ccxt
import pandas as pd
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from engine.candles import Candles
from signals.management.commands import download_data
from signals.market_data.download import TIMEFRAME_MS, market_data_download
from signals.market_data.replay import ReplayDataset

XRP = "XRP/USDT:USDT"
DAY_MS = 86_400_000


def bundled_xrp() -> Candles:
    return Candles.from_frame(
        pd.read_feather(Path(settings.BASE_DIR) / "data/ohlcv/futures/XRP_USDT_USDT-5m-futures.feather")
    )


class RecordedExchange:
    """ccxt-shaped: pages of at most ``page`` rows from ``since``; repeats the last row of a page at the start of the
    next (as some exchanges do), can drop candles (a hole) and fail with a network error first."""

    id = "recordedex"
    has = {"fetchFundingRateHistory": True}
    precisionMode = ccxt.TICK_SIZE

    def __init__(self, *, page: int = 100, hole: tuple[int, int] | None = None, network_errors: int = 0):
        c = bundled_xrp()
        self.rows = [
            [int(t), o, h, lo, cl, v]
            for t, o, h, lo, cl, v in zip(c.ts, c.open, c.high, c.low, c.close, c.volume, strict=True)
        ]
        if hole:
            self.rows = [r for r in self.rows if not hole[0] <= r[0] < hole[1]]
        self.page = page
        self.network_errors = network_errors
        self.calls: list[int] = []
        self.closed = False

    def load_markets(self):
        return {
            XRP: {
                "symbol": XRP,
                "base": "XRP",
                "quote": "USDT",
                "settle": "USDT",
                "swap": True,
                "contractSize": 1,
                "precision": {"price": 0.0001, "amount": 1},
                "limits": {"amount": {"min": 1}, "cost": {"min": 5}, "leverage": {"max": 50}},
            }
        }

    def fetch_ohlcv(self, symbol, timeframe, since=None, limit=None):
        assert timeframe == "5m" and limit
        if symbol != XRP:
            raise ccxt.BadSymbol(f"recordedex does not have market symbol {symbol}")
        if self.network_errors:
            self.network_errors -= 1
            raise ccxt.RequestTimeout("recordedex GET /candles timed out")
        self.calls.append(since)
        start = next((i for i, r in enumerate(self.rows) if r[0] >= since), len(self.rows))
        start = max(0, start - 1) if start and self.calls[:-1] else start  # overlap: repeat the previous candle
        return [list(r) for r in self.rows[start : start + min(limit, self.page)]]

    def fetch_funding_rate_history(self, symbol, since=None, limit=None):
        first = self.rows[0][0] - self.rows[0][0] % (8 * 3_600_000)
        settlements = [first + k * 8 * 3_600_000 + 7 for k in range(30)]  # ms jitter like the bundled file
        return [
            {"symbol": symbol, "timestamp": t, "fundingRate": 0.0001 * (k % 3)}
            for k, t in enumerate(settlements)
            if t >= since
        ][: limit or 100]

    def close(self):
        self.closed = True


def end_of_data() -> int:
    return int(bundled_xrp().ts[-1]) + TIMEFRAME_MS


def test_download_writes_the_replay_format_and_a_backtest_runs_on_it(tmp_path):
    exchange = RecordedExchange()
    [report] = market_data_download(
        exchange=exchange, symbols=[XRP], days=5, directory=tmp_path, now_ms=end_of_data(), sleep=lambda s: None
    )
    assert report.error == "" and report.rows == 5 * 288 and report.cached == 0
    assert report.duplicates > 0 and "duplicate candle(s) received and dropped" in report.problems[-1]
    assert report.gaps == 0 and report.funding_rows > 0
    dataset = ReplayDataset.load(tmp_path)
    candles = dataset.candles(XRP, "5m")
    original = bundled_xrp()
    tail = original.ts >= candles.ts[0]
    assert (candles.ts == original.ts[tail]).all() and (candles.close == original.close[tail]).all()
    market = json.loads((tmp_path / "manifest.json").read_text())["markets"][0]
    assert market["tick_size"] == "0.0001" and market["min_notional"] == "5" and market["funding_8h"]
    assert dataset.markets[XRP].funding_ts.size == report.funding_rows

    from engine.backtest import run_backtest

    result = run_backtest({XRP: (dataset.candles(XRP, "15m"), None)})
    assert result.metrics()["trades"] >= 0 and len(result.equity) == len(dataset.candles(XRP, "15m"))


def test_a_second_download_only_fetches_what_the_cache_lacks(tmp_path):
    market_data_download(
        exchange=RecordedExchange(),
        symbols=[XRP],
        days=3,
        directory=tmp_path,
        now_ms=end_of_data() - 2 * DAY_MS,
        sleep=lambda s: None,
    )
    later = RecordedExchange()
    [report] = market_data_download(
        exchange=later, symbols=[XRP], days=3, directory=tmp_path, now_ms=end_of_data(), sleep=lambda s: None
    )
    assert report.cached == 3 * 288 and report.rows == 5 * 288  # the cache is kept and extended
    assert report.fetched <= 2 * 288 + 10  # only the two new days (plus the repeated edge candles)
    assert min(later.calls) >= end_of_data() - 2 * DAY_MS


def test_holes_are_reported_and_network_errors_retried(tmp_path):
    hole_start = end_of_data() - DAY_MS
    exchange = RecordedExchange(hole=(hole_start, hole_start + 6 * TIMEFRAME_MS), network_errors=2)
    pauses = []
    [report] = market_data_download(
        exchange=exchange, symbols=[XRP], days=2, directory=tmp_path, now_ms=end_of_data(), sleep=pauses.append
    )
    assert report.error == "" and pauses == [1.0, 2.0]
    assert report.gaps == 1 and report.missing_candles == 6
    assert any("1 gap(s), 6 missing candle(s)" in p for p in report.problems)


def test_a_bad_symbol_or_a_dead_exchange_fails_that_symbol_only(tmp_path):
    exchange = RecordedExchange(network_errors=99)
    reports = market_data_download(
        exchange=exchange,
        symbols=["NOPE/USDT:USDT", XRP],
        days=1,
        directory=tmp_path,
        now_ms=end_of_data(),
        retries=1,
        sleep=lambda s: None,
    )
    assert reports[0].error.startswith("unknown symbol on recordedex")
    assert reports[1].error == "RequestTimeout after 2 attempts"
    assert json.loads((tmp_path / "manifest.json").read_text())["markets"] == []


def test_command_with_progress_bar_reports_and_fails_clearly(tmp_path, monkeypatch):
    exchange = RecordedExchange()
    monkeypatch.setattr(download_data.Command, "exchange", lambda self, exchange_id: exchange)
    monkeypatch.setattr("signals.market_data.download.time.time", lambda: end_of_data() / 1000)
    out, err = io.StringIO(), io.StringIO()
    call_command("download_data", "--symbols", XRP, "--days", "2", "--out", str(tmp_path), stdout=out, stderr=err)
    assert f"{XRP}: 576 candles" in out.getvalue() and f"REPLAY_DATA_DIR={tmp_path}" in out.getvalue()
    assert f"download {settings.MARKET_DATA_EXCHANGE}" in err.getvalue() and "candle/s" in err.getvalue()  # tqdm
    assert exchange.closed
    with pytest.raises(CommandError, match="1 symbol\\(s\\) failed: DOGE/USDT:USDT"):
        call_command(
            "download_data",
            "--symbols",
            f"DOGE/USDT:USDT,{XRP}",
            "--days",
            "1",
            "--out",
            str(tmp_path),
            "--no-progress",
            stdout=io.StringIO(),
            stderr=io.StringIO(),
        )
    with pytest.raises(CommandError, match="between 1 and"):
        call_command("download_data", "--symbols", XRP, "--days", "0", "--out", str(tmp_path))
