"""Writes of the signals app: signal_create refusals and dedupe, announce once (and again after a crash), close."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from engine.strategy import SignalCandidate
from signals.market_data import MarketInfo
from signals.models import Signal, Symbol
from signals.services import (
    market_time_now,
    price_quantize,
    signal_close,
    signal_create,
    signal_publish_pending,
    symbol_sync_markets,
)
from signals.tests.factories import SignalFactory, SymbolFactory

pytestmark = [pytest.mark.usefixtures("isolated_signals_env"), pytest.mark.django_db]

NOW = datetime(2021, 11, 18, 12, 0, tzinfo=UTC)


def _candidate(symbol="XRP/USDT:USDT", side="long", candle_ts=1_637_236_800_000, **changes) -> SignalCandidate:
    values = {
        "symbol": symbol,
        "side": side,
        "candle_ts": candle_ts,
        "entry": 1.08234,
        "stop": 1.06671 if side == "long" else 1.09797,
        "tp1": 1.09797 if side == "long" else 1.06671,
        "tp2": 1.1136 if side == "long" else 1.05108,
        "atr": 0.0104201,
        "risk_level": "medium",
        "confirmations": ("trend", "momentum"),
        "indicators": {"rsi": 61.2, "adx": 27.0, "volume_ratio": 1.4, "sr_distance_atr": 2.5},
        "funding_rate": 0.0001,
    }
    values.update(changes)
    return SignalCandidate(**values)


@pytest.fixture
def xrp():
    return SymbolFactory(symbol="XRP/USDT:USDT", tick_size=Decimal("0.0001"))


def _created(dispatched):
    return [payload["signal_id"] for event, payload in dispatched if event == "signal.created"]


def test_signal_create_stores_levels_on_the_tick_grid_and_announces_once(
    xrp, dispatched, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        signal = signal_create(candidate=_candidate(), created_at=NOW)
    assert (signal.entry, signal.stop, signal.tp1, signal.tp2) == tuple(
        Decimal(v) for v in ("1.0823", "1.0667", "1.0980", "1.1136")
    )
    assert signal.risk_level == "medium" and signal.confirmations == ["trend", "momentum"]
    assert signal.indicators["funding_rate"] == 0.0001
    assert signal.dedupe_key == "technical:XRP/USDT:USDT:long:1637236800000"
    assert signal.expires_at == NOW + timedelta(hours=24)
    assert _created(dispatched) == [signal.pk]
    signal.refresh_from_db()
    assert signal.published_at is not None


def test_nothing_is_announced_when_the_transaction_rolls_back(xrp, dispatched, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        signal_create(candidate=_candidate(), created_at=NOW)
    assert dispatched == [] and len(callbacks) == 1  # dispatched only on commit


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda: None, "unknown symbol"),
        (lambda: SymbolFactory(symbol="XRP/USDT:USDT", is_active=False), "inactive"),
        (lambda: SymbolFactory(symbol="XRP/USDT:USDT", is_muted=True), "muted"),
        (lambda: SymbolFactory(symbol="XRP/USDT:USDT", tick_size=Decimal("0.1")), "stop within one tick"),
    ],
)
def test_signal_create_refuses(setup, reason, dispatched, django_capture_on_commit_callbacks):
    setup()
    with django_capture_on_commit_callbacks(execute=True):
        assert signal_create(candidate=_candidate(), created_at=NOW) is None, reason
    assert Signal.objects.count() == 0 and dispatched == []


def test_duplicates_are_refused_open_per_symbol_side_and_source(xrp, dispatched, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = signal_create(candidate=_candidate(), created_at=NOW)
        assert signal_create(candidate=_candidate(), created_at=NOW) is None  # same candle: dedupe key
        assert signal_create(candidate=_candidate(candle_ts=1_637_237_700_000), created_at=NOW) is None  # still open
        short = signal_create(candidate=_candidate(side="short"), created_at=NOW)
        news = signal_create(candidate=_candidate(candle_ts=1_637_237_700_000), source="news", created_at=NOW)
    assert None not in (first, short, news)
    assert _created(dispatched) == [first.pk, short.pk, news.pk]
    signal_close(signal=first, outcome="sl", pnl_pct=Decimal("-1.44"))
    assert signal_create(candidate=_candidate(candle_ts=1_637_237_700_000), created_at=NOW) is not None


def test_sweeper_re_announces_signals_never_published(xrp, dispatched):
    stale = SignalFactory(symbol=xrp, created_at=timezone.now() - timedelta(minutes=5))
    fresh = SignalFactory(symbol=xrp, side="short")  # may still be in its own on-commit dispatch
    done = SignalFactory(
        symbol=SymbolFactory(), created_at=timezone.now() - timedelta(minutes=5), published_at=timezone.now()
    )
    assert signal_publish_pending() == 1
    assert _created(dispatched) == [stale.pk]
    stale.refresh_from_db()
    assert stale.published_at is not None
    assert signal_publish_pending() == 0  # published now: not again
    assert fresh.pk and done.pk


def test_a_signal_is_done_only_when_every_consumer_recorded_its_fan_out_and_the_rest_hear_it_again(
    xrp, dispatched, monkeypatch
):
    """The consumer's task was queued (``published_at``) but lost with Redis: the database, not the queue, says so."""
    from signals.models import SignalFanout
    from signals.services import signal_fanout_record

    broadcast, trading = "telegram_bridge.tasks.broadcast_signal", "trading.tasks.execute_signal"
    again: list[tuple[int, list[str]]] = []
    monkeypatch.setattr(
        "signals.services.dispatch_to",
        lambda event, payload, *, consumers: again.append((payload["signal_id"], consumers)),
    )
    # created on the market clock (the replay's, in the past), announced on the real one
    long_ago, created = timezone.now() - timedelta(minutes=2), market_time_now() - timedelta(minutes=2)
    assert abs(created - long_ago) > timedelta(days=2)  # the two clocks differ: the window is on the market's
    signal = SignalFactory(symbol=xrp, created_at=created, published_at=long_ago)
    signal_fanout_record(signal_id=signal.pk, consumer=trading)  # trading stored its intents; the broadcast never ran
    signal.refresh_from_db()
    assert signal.fanned_out_at is None

    assert signal_publish_pending() == 1
    assert again == [(signal.pk, [broadcast])]  # only the consumer that missed it
    assert signal_publish_pending() == 0  # announced again just now: it gets time to run
    Signal.objects.filter(pk=signal.pk).update(published_at=long_ago)
    signal_fanout_record(signal_id=signal.pk, consumer=broadcast)
    signal_fanout_record(signal_id=signal.pk, consumer=broadcast)  # a repeated fan-out records nothing new
    signal.refresh_from_db()
    assert signal.fanned_out_at is not None and SignalFanout.objects.filter(signal=signal).count() == 2
    assert signal_publish_pending() == 0 and len(again) == 1

    closed = SignalFactory(symbol=SymbolFactory(), created_at=created, published_at=long_ago, status="closed")
    old = SignalFactory(symbol=SymbolFactory(), created_at=created - timedelta(days=2), published_at=long_ago)
    assert signal_publish_pending() == 0 and closed.pk and old.pk  # closed or past the window: not announced again


def test_failing_dispatch_leaves_the_signal_for_the_sweeper(xrp, monkeypatch, django_capture_on_commit_callbacks):
    def broken(event, payload):
        raise ConnectionError("broker down")

    monkeypatch.setattr("signals.services.dispatch_now", broken)
    with django_capture_on_commit_callbacks(execute=True):
        signal = signal_create(candidate=_candidate(), created_at=NOW)
    signal.refresh_from_db()
    assert signal.pk and signal.published_at is None


def test_signal_close_is_idempotent_and_announces_once(xrp, dispatched, django_capture_on_commit_callbacks):
    signal = SignalFactory(symbol=xrp)
    with django_capture_on_commit_callbacks(execute=True):
        signal_close(signal=signal, outcome="tp2", pnl_pct=Decimal("3.00004"))
        signal_close(signal=signal, outcome="sl", pnl_pct=Decimal("-2"))
    signal.refresh_from_db()
    assert (signal.status, signal.outcome, signal.outcome_pnl_pct) == ("closed", "tp2", Decimal("3.0000"))
    assert [e for e, _ in dispatched] == ["signal.closed"]
    with pytest.raises(ValueError):
        signal_close(signal=SignalFactory(symbol=xrp, side="short"), outcome="open", pnl_pct=Decimal(0))


def _market(symbol: str, **changes) -> MarketInfo:
    values = {
        "symbol": symbol,
        "base": symbol.split("/")[0],
        "quote": "USDT",
        "settle": "USDT",
        "kind": "swap",
        "tick_size": Decimal("0.01"),
        "step_size": Decimal("0.001"),
        "min_quantity": Decimal("0.001"),
        "min_notional": Decimal("5"),
        "contract_size": Decimal("1"),
        "max_leverage": 50,
    }
    values.update(changes)
    return MarketInfo(**values)


def test_symbol_sync_creates_updates_and_deactivates_but_never_unmutes():
    SymbolFactory(symbol="DOGE/USDT:USDT", is_muted=True)
    SymbolFactory(symbol="LUNA/USDT:USDT")
    result = symbol_sync_markets(
        markets=[_market("BTC/USDT:USDT"), _market("DOGE/USDT:USDT", tick_size=Decimal("0.00001"))]
    )
    assert (result.created, result.updated, result.deactivated) == (1, 1, 1)
    btc = Symbol.objects.get(symbol="BTC/USDT:USDT")
    assert (btc.sector, btc.tick_size, btc.max_leverage) == ("l1", Decimal("0.01"), 50)
    doge = Symbol.objects.get(symbol="DOGE/USDT:USDT")
    assert doge.is_muted  # an operator decision: never touched by a sync
    assert doge.tick_size == Decimal("0.00001")
    assert Symbol.objects.get(symbol="LUNA/USDT:USDT").is_active is False
    # the same listing again writes nothing
    again = symbol_sync_markets(
        markets=[_market("BTC/USDT:USDT"), _market("DOGE/USDT:USDT", tick_size=Decimal("0.00001"))]
    )
    assert (again.created, again.updated, again.deactivated) == (0, 0, 0)


@pytest.mark.parametrize(
    ("value", "tick", "expected"),
    [(1.08234, Decimal("0.0001"), "1.0823"), (1.08235, Decimal("0.0005"), "1.0825"), (0.1, None, "0.1")],
)
def test_price_quantize(value, tick, expected):
    assert price_quantize(value=value, tick_size=tick) == Decimal(expected)
