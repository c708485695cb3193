"""Backtests from Django: the request cleaning, a run on the bundled replay candles (the same engine as the live
scanner), bad input ending in ``failed`` (never ``running``), the management command, admin-only access to the control
pages, and the Telegram report to the admin who asked."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.urls import reverse

from analytics import services
from analytics.backtesting import (
    BacktestRequestError,
    backtest_params_clean,
    backtest_report_caption,
    candles_quality_report,
)
from analytics.models import BacktestRun
from analytics.tests.factories import BacktestRunFactory
from engine.candles import Candles
from telegram_bridge.backtest_reports import backtest_report_send

pytestmark = pytest.mark.django_db

XRP = "XRP/USDT:USDT"
PNG_MAGIC = b"\x89PNG"


@pytest.fixture(autouse=True)
def _replay_clock_at_the_end(settings):
    settings.MARKET_DATA_SOURCE = "replay"
    settings.ADMIN_TELEGRAM_IDS = []  # no report leaves unless a test points the bot at the local server
    cache.clear()  # the replay clock lives in the cache: unset = the end of the bundled data
    yield
    cache.clear()


def run_for(params: dict, **fields) -> BacktestRun:
    return BacktestRunFactory(params=backtest_params_clean(params), **fields)


# ---- cleaning ----------------------------------------------------------------------------------------------------


def test_params_are_normalised():
    cleaned = backtest_params_clean({"symbols": " XRP/USDT:USDT, ETH/USDT:USDT,XRP/USDT:USDT", "days": "90"})
    assert cleaned == {"symbols": [XRP, "ETH/USDT:USDT"], "days": 90, "strategy": {}, "config": {}}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"symbols": "", "days": 30}, "one or more symbols"),
        ({"symbols": XRP, "days": 0}, "between 1 and"),
        ({"symbols": XRP, "days": "lots"}, "whole number"),
        ({"symbols": XRP, "days": 5, "strategy": {"stop_atr_mult": -1.5}}, "stop_atr_mult"),
        ({"symbols": XRP, "days": 5, "strategy": {"ema_fast": 30, "ema_slow": 21}}, "ema_fast"),
        ({"symbols": XRP, "days": 5, "strategy": {"warp_speed": 9}}, "Unknown strategy parameter"),
        ({"symbols": XRP, "days": 5, "config": {"leverage": -2}}, "leverage"),
        ({"symbols": XRP, "days": 5, "config": {"fee_taker": 0.5}}, "fee_taker"),
    ],
)
def test_absurd_requests_are_refused_before_any_run_exists(params, message):
    with pytest.raises(BacktestRequestError, match=message):
        services.backtest_run_start(params=params)
    assert not BacktestRun.objects.exists()


# ---- a run on the replay candles ---------------------------------------------------------------------------------


def test_run_on_replay_candles_stores_metrics_tables_and_the_equity_png():
    run = run_for({"symbols": XRP, "days": 5})
    stages = []
    run = services.backtest_run_execute(run_id=run.pk, progress=lambda stage, done, total: stages.append(stage))
    assert run.status == BacktestRun.Status.SUCCEEDED, run.error
    m = run.metrics
    for key in (
        "trades",
        "win_rate",
        "profit_factor",
        "expectancy",
        "avg_r",
        "net_pnl",
        "gross_pnl",
        "fees",
        "funding",
        "max_drawdown",
        "max_drawdown_pct",
        "sharpe",
        "sortino",
        "calmar",
        "exposure_pct",
        "avg_holding_hours",
        "best_trade",
        "worst_trade",
        "per_symbol",
        "per_month",
    ):
        assert key in m, key
    assert m["symbols"] == [XRP] and m["days"] == 5
    assert m["range_start"] < m["range_end"]
    assert m["data_quality"][XRP]["duplicates"] == 0 and m["data_problems"] == "none"
    assert m["counters"]["signals"] >= m["trades"]
    if m["trades"]:
        assert [row["key"] for row in m["per_symbol"]] == [XRP]
        assert sum(row["trades"] for row in m["per_month"]) == m["trades"]
        assert m["fees"] > 0
    with run.equity_curve.open("rb") as handle:
        assert handle.read(4) == PNG_MAGIC
    assert stages[0] == "load" and "simulate" in stages and stages[-1] == "plot"
    assert run.started_at <= run.finished_at


def test_the_run_uses_the_engine_on_the_same_candles_as_the_live_scanner():
    """The Django side adds nothing to the simulation: the stored metrics equal a direct engine run."""
    from engine.backtest import run_backtest
    from signals.market_data import get_market_data

    run = services.backtest_run_execute(run_id=run_for({"symbols": XRP, "days": 5}).pk)
    market_data = get_market_data()
    candles = market_data.ohlcv(XRP, "15m", 10_000)
    start_ms = int(candles.ts[-1]) + 900_000 - 5 * 86_400_000
    market = market_data.dataset.markets[XRP]
    funding = {XRP: (market.funding_ts, market.funding_rate)}
    direct = run_backtest({XRP: (candles, None)}, start_ms=start_ms, funding=funding).metrics()
    assert run.metrics["trades"] == direct["trades"]
    assert run.metrics["net_pnl"] == pytest.approx(direct["net_pnl"], rel=1e-12, abs=1e-9)
    assert run.metrics["funding"] == pytest.approx(direct["funding"], rel=1e-12, abs=1e-12)
    assert run.metrics["funding_sources"][XRP].startswith("replay history (91 settlements)")


def test_funding_history_comes_from_stored_snapshots_outside_the_replay():
    from datetime import UTC, datetime
    from decimal import Decimal

    from analytics.backtesting import backtest_funding_load
    from signals.tests.factories import FundingSnapshotFactory, SymbolFactory

    btc = SymbolFactory(symbol="BTC/USDT:USDT", base="BTC")
    for hour, rate in ((0, "0.0003"), (8, "-0.0002")):
        FundingSnapshotFactory(symbol=btc, rate=Decimal(rate), funding_time=datetime(2026, 11, 1, hour, tzinfo=UTC))
    FundingSnapshotFactory(symbol=btc, exchange="mexc", funding_time=datetime(2026, 11, 1, 16, tzinfo=UTC))

    class LiveLike:  # no replay dataset
        pass

    series, sources = backtest_funding_load(symbols=["BTC/USDT:USDT", "ETH/USDT:USDT"], market_data=LiveLike())
    ts, rates = series["BTC/USDT:USDT"]
    first = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)
    assert list(ts) == [first, first + 8 * 3_600_000] and list(rates) == [0.0003, -0.0002]
    assert sources["BTC/USDT:USDT"].startswith("stored snapshots (2 settlements)")
    assert "ETH/USDT:USDT" not in series and sources["ETH/USDT:USDT"] == "flat rate (no funding history)"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"symbols": "DOGE/USDT:USDT", "days": 5}, "Unknown symbol DOGE/USDT:USDT"),
        ({"symbols": XRP, "days": 5, "strategy": {"ema_slow": 1500}}, "the strategy needs at least"),
    ],
)
def test_bad_runs_end_failed_with_a_clear_message_never_running(params, message):
    run = services.backtest_run_execute(run_id=run_for(params).pk)
    assert run.status == BacktestRun.Status.FAILED
    assert message in run.error
    assert not run.equity_curve and run.finished_at is not None
    assert not BacktestRun.objects.filter(status=BacktestRun.Status.RUNNING).exists()


def test_an_unexpected_crash_also_ends_failed(monkeypatch):
    import analytics.backtesting

    def explode(**kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(analytics.backtesting, "backtest_perform", explode)
    run = services.backtest_run_execute(run_id=run_for({"symbols": XRP, "days": 5}).pk)
    assert run.status == BacktestRun.Status.FAILED and run.error == "RuntimeError: disk on fire"


def test_a_run_is_executed_once():
    run = run_for({"symbols": XRP, "days": 2})
    services.backtest_run_execute(run_id=run.pk)
    finished = BacktestRun.objects.get(pk=run.pk).finished_at
    again = services.backtest_run_execute(run_id=run.pk)  # a re-delivered task
    assert again.status == BacktestRun.Status.SUCCEEDED and again.finished_at == finished


def test_gaps_and_duplicates_are_reported():
    ts = 900_000 * np.array([0, 1, 2, 2, 5, 6], dtype=np.int64)
    ones = np.ones(6)
    report = candles_quality_report({"X/USDT:USDT": (Candles(ts, ones, ones, ones, ones, ones), None)})
    found = report["X/USDT:USDT"]
    assert found["duplicates"] == 1 and found["gaps"] == 1 and found["missing_candles"] == 2
    assert any("duplicate" in p for p in found["problems"])


# ---- management command ------------------------------------------------------------------------------------------


def test_command_runs_with_a_progress_bar_and_prints_metrics():
    out, err = io.StringIO(), io.StringIO()
    call_command("backtest", "--symbols", XRP, "--days", "3", stdout=out, stderr=err)
    run = BacktestRun.objects.get()
    assert run.status == BacktestRun.Status.SUCCEEDED
    assert "trades" in out.getvalue() and f"backtest #{run.pk} done" in out.getvalue()
    assert f"backtest #{run.pk}" in err.getvalue() and "3/3" in err.getvalue()  # tqdm: load, simulate, plot


def test_command_bad_input_is_a_command_error_without_a_running_row():
    with pytest.raises(CommandError, match="between 1 and"):
        call_command("backtest", "--symbols", XRP, "--days", "0", "--no-progress")
    assert not BacktestRun.objects.exists()
    with pytest.raises(CommandError, match="Unknown symbol"):
        call_command("backtest", "--symbols", "NOPE/USDT:USDT", "--days", "3", "--no-progress")
    assert BacktestRun.objects.get().status == BacktestRun.Status.FAILED


# ---- admin-only access -------------------------------------------------------------------------------------------


@pytest.fixture
def finished_run():
    return services.backtest_run_execute(run_id=run_for({"symbols": XRP, "days": 2}).pk)


@pytest.mark.parametrize("who", ["anonymous", "non_staff"])
def test_non_admins_cannot_launch_or_see_backtests(client, django_user_model, finished_run, who):
    if who == "non_staff":
        client.force_login(django_user_model.objects.create_user("visitor", password="a-long-password-1"))
    login = reverse("admin:login")
    response = client.post(reverse("control:backtest-launch"), {"symbols": XRP, "days": 3})
    assert response.status_code == 302 and response["Location"].startswith(login)
    assert BacktestRun.objects.count() == 1  # nothing was launched
    for name in ("control:backtest-detail", "control:backtest-png"):
        response = client.get(reverse(name, args=[finished_run.pk]))
        assert response.status_code == 302 and response["Location"].startswith(login)
    response = client.get(reverse("admin:analytics_backtestrun_change", args=[finished_run.pk]))
    assert response.status_code == 302


def test_admin_launches_a_backtest_on_celery_and_sees_the_result(staff_client, django_capture_on_commit_callbacks):
    from analytics.tasks import backtest_run

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff_client.post(reverse("control:backtest-launch"), {"symbols": XRP, "days": 3})
    run = BacktestRun.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("control:backtest-detail", args=[run.pk])
    assert run.status == BacktestRun.Status.PENDING and len(callbacks) == 1  # queued after commit
    assert backtest_run(run_id=run.pk) == BacktestRun.Status.SUCCEEDED  # what the worker runs
    page = staff_client.get(reverse("control:backtest-detail", args=[run.pk]))
    assert page.status_code == 200 and b"Profit factor" in page.content
    png = staff_client.get(reverse("control:backtest-png", args=[run.pk]))
    assert png.status_code == 200 and b"".join(png.streaming_content)[:4] == PNG_MAGIC


def test_admin_launch_with_absurd_parameters_is_refused_politely(staff_client):
    response = staff_client.post(reverse("control:backtest-launch"), {"symbols": XRP, "days": 0}, follow=True)
    assert response.status_code == 200 and b"Backtest not started" in response.content
    assert not BacktestRun.objects.exists()


# ---- Telegram report -----------------------------------------------------------------------------------------------


@pytest.fixture
def bot_api(settings):
    from telegram_bridge.transport import transport_reset
    from testsupport.telegram_bot_api import DEFAULT_TOKEN, LocalBotAPIServer

    server = LocalBotAPIServer()
    server.start_in_thread()
    settings.TELEGRAM_API_BASE = server.base_url
    settings.TELEGRAM_BOT_TOKEN = DEFAULT_TOKEN
    transport_reset()
    yield server
    transport_reset()
    server.stop()


def test_the_admin_who_asked_in_telegram_gets_the_chart_once(bot_api, django_capture_on_commit_callbacks):
    from analytics.tasks import backtest_run

    run = run_for({"symbols": XRP, "days": 3}, requested_by_telegram_id=4242)
    with django_capture_on_commit_callbacks(execute=True) as finished:  # backtest.finished → the Telegram report
        assert backtest_run(run_id=run.pk) == BacktestRun.Status.SUCCEEDED
        assert backtest_run(run_id=run.pk) == BacktestRun.Status.SUCCEEDED  # re-delivered: no second run or report
    assert len(finished) == 1
    run.refresh_from_db()
    assert backtest_report_send(run=run) is False
    sent = bot_api.sent_messages(4242)
    assert len(sent) == 1 and sent[0]["method"] == "sendPhoto" and sent[0]["photo"]
    assert f"Backtest #{run.pk}" in sent[0]["text"] and "Profit factor" in sent[0]["text"]


def test_a_failed_run_reports_its_reason_escaped(bot_api):
    run = run_for({"symbols": XRP, "days": 3}, requested_by_telegram_id=4243)
    BacktestRun.objects.filter(pk=run.pk).update(status=BacktestRun.Status.FAILED, error="bad <symbol> & co")
    run.refresh_from_db()
    assert "bad &lt;symbol&gt; &amp; co" in backtest_report_caption(run)
    assert backtest_report_send(run=run) is True
    sent = bot_api.sent_messages(4243)
    assert len(sent) == 1 and sent[0]["method"] == "sendMessage" and "failed" in sent[0]["text"]


def test_web_launched_runs_go_to_the_telegram_admins(bot_api, settings):
    settings.ADMIN_TELEGRAM_IDS = []
    run = services.backtest_run_execute(run_id=run_for({"symbols": XRP, "days": 2}).pk)
    assert backtest_report_send(run=run) is False  # no Telegram admin configured: shown in the web admin only
    settings.ADMIN_TELEGRAM_IDS = [31, 32]
    assert backtest_report_send(run=run) is True
    assert backtest_report_send(run=run) is False
    for chat in (31, 32):
        [sent] = bot_api.sent_messages(chat)
        assert sent["method"] == "sendPhoto" and f"Backtest #{run.pk}" in sent["text"]


def test_unfinished_runs_send_nothing(bot_api):
    assert backtest_report_send(run=run_for({"symbols": XRP, "days": 3}, requested_by_telegram_id=7)) is False
    assert bot_api.sent_messages() == []


def test_telegram_being_down_does_not_break_the_run(settings):
    settings.TELEGRAM_API_BASE = "http://127.0.0.1:9"  # nothing listens there
    settings.TELEGRAM_BOT_TOKEN = "123456789:LOCAL-bot-api-test-token"
    from telegram_bridge.transport import transport_reset

    transport_reset()
    run = services.backtest_run_execute(run_id=run_for({"symbols": XRP, "days": 2}, requested_by_telegram_id=9).pk)
    try:
        assert backtest_report_send(run=run) is False
    finally:
        transport_reset()
    assert BacktestRun.objects.get(pk=run.pk).status == BacktestRun.Status.SUCCEEDED


# ---- parameter sweep -----------------------------------------------------------------------------------------------


def test_sweep_grid_parsing():
    from analytics.backtesting import sweep_grid_parse

    assert sweep_grid_parse("stop_atr_mult=1,1.5; exit.trailing_mode=none,atr ;targets_as_maker=false") == {
        "stop_atr_mult": [1, 1.5],
        "exit.trailing_mode": [None, "atr"],
        "targets_as_maker": [False],
    }
    for bad in (
        "",
        "stop_atr_mult",
        "=1,2",
        "a=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15;b=" + ",".join(map(str, range(20))),
    ):
        with pytest.raises(BacktestRequestError):
            sweep_grid_parse(bad)


def test_command_sweep_ranks_combinations_in_processes():
    out = io.StringIO()
    call_command(
        "backtest",
        "--symbols",
        XRP,
        "--days",
        "5",
        "--sweep",
        "stop_atr_mult=1,2;ema_fast=9,30",
        "--rank",
        "net_pnl",
        "--processes",
        "2",
        stdout=out,
    )
    lines = out.getvalue().splitlines()
    assert "net_pnl" in lines[0] and len(lines) == 5
    ranked = [float(line.split()[1]) for line in lines[1:3]]
    assert ranked == sorted(ranked, reverse=True)
    assert all("invalid" in line and "ema_fast (30) must be smaller" in line for line in lines[3:])
    assert not BacktestRun.objects.exists()  # a sweep is printed, not stored
    with pytest.raises(CommandError, match="unknown metric"):
        call_command("backtest", "--symbols", XRP, "--days", "5", "--sweep", "stop_atr_mult=1", "--rank", "luck")
    with pytest.raises(CommandError, match="unknown sweep parameter"):
        call_command("backtest", "--symbols", XRP, "--days", "5", "--sweep", "colour=1,2")
