"""The position monitor on paper positions: every exit rule, candle by candle and on price ticks, values by hand.

Common setup (``paper_settings``): 10 000 USDT, 5 % x 5 leverage, taker 0.05 %, maker 0.02 %, slippage 0.1 %,
5m monitor candles. A long signal 100 / stop 98 / tp1 102 / tp2 104 opened at a last price of 100 fills at
100.1 (slippage) for 25 units; R = 100.1 - 98 = 2.1.
"""

from datetime import timedelta
from decimal import ROUND_HALF_EVEN
from decimal import Decimal as D

import pytest

from accounts.tests.factories import TelegramUserFactory
from signals.tests.factories import SignalFactory
from trading import services, tasks
from trading.models import FundingCharge, PaperAccount, Position
from trading.monitor import positions_monitor, positions_monitor_market_prices, positions_monitor_prices
from trading.tests.paper_fixtures import T0

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("paper_settings")]

TAKER, MAKER = D("0.0005"), D("0.0002")
M5 = timedelta(minutes=5)


def money(x: D) -> D:
    return x.quantize(D("1e-8"), rounding=ROUND_HALF_EVEN)


def _open(market, *, trailing=False, **signal_kwargs):
    user = TelegramUserFactory(auto_trading_enabled=True)
    user.preferences.trailing_stop = trailing
    user.preferences.save()
    signal = SignalFactory(**signal_kwargs)
    market.prices[signal.symbol.symbol] = D("100")
    market.clock = T0
    position = services.signal_execute_for_user(user=user, signal=signal)
    assert position.status == "open"
    return user, position


def _candles(market, position, *rows):
    """Add 5m candles from T0 on and move the clock past the last one's close."""
    symbol = position.symbol.symbol
    for i, (o, h, low, c) in enumerate(rows):
        market.add_candle(symbol, T0 + i * M5, o, h, low, c)
    market.clock = T0 + len(rows) * M5


def _balance(user) -> D:
    return PaperAccount.objects.get(user=user).balance


def test_stop_loss_fills_at_the_stop_with_slippage_and_fees(market, published):
    user, position = _open(market)
    assert position.entry_price == D("100.1") and position.quantity == 25
    _candles(market, position, (100.2, 100.5, 97.5, 98))
    report = positions_monitor(market_data=market)
    assert (report.positions, report.candles, report.closed) == (1, 1, 1)
    position.refresh_from_db()
    assert position.status == "closed" and position.close_reason == "sl"
    exit_fill = position.fills.get(order__leg="sl")
    assert exit_fill.price == D("97.902")  # 98 sold 0.1 % lower
    assert position.realised_pnl == (D("97.902") - D("100.1")) * 25 == D("-54.95")
    entry_fee, exit_fee = D("100.1") * 25 * TAKER, D("97.902") * 25 * TAKER
    assert position.fees == money(entry_fee) + money(exit_fee) == D("2.475025")
    assert _balance(user) == D("10000") - D("54.95") - D("2.475025")
    assert [e for e, _ in published] == ["position.opened", "position.closed"]
    assert published[-1][1] == {"position_id": position.pk}


def test_gap_through_the_stop_fills_at_the_open(market):
    _, position = _open(market)
    _candles(market, position, (97, 97.5, 96, 96.5))
    positions_monitor(market_data=market)
    position.refresh_from_db()
    assert position.close_reason == "sl" and position.fills.get(order__leg="sl").price == D("96.903")


def test_tp1_partial_then_breakeven_stop(market, published):
    user, position = _open(market)
    _candles(market, position, (100.2, 102.5, 100, 102))
    positions_monitor(market_data=market)
    position.refresh_from_db()
    # TP1: half of 25 at exactly 102, maker fee, stop moved to the entry
    assert position.status == "open" and position.tp1_done
    assert position.remaining_quantity == D("12.5") and position.stop_price == D("100.1")
    tp1 = position.fills.get(order__leg="tp1")
    assert (tp1.price, tp1.quantity, tp1.liquidity) == (D("102"), D("12.5"), "maker")
    assert tp1.fee == D("102") * D("12.5") * MAKER == D("0.255")
    assert tp1.realised_pnl == (D("102") - D("100.1")) * D("12.5") == D("23.75")
    # next candle comes back to the entry: the break-even stop fills (taker, slipped)
    market.add_candle(position.symbol.symbol, T0 + M5, 101, 101.5, 100, 100.2)
    market.clock = T0 + 2 * M5
    positions_monitor(market_data=market)
    position.refresh_from_db()
    assert position.status == "closed" and position.close_reason == "breakeven"
    be = position.fills.get(order__leg="sl")
    assert be.price == D("99.9999")  # 100.1 * 0.999 = 99.9999
    assert be.realised_pnl == (D("99.9999") - D("100.1")) * D("12.5")
    fees = money(D("100.1") * 25 * TAKER) + D("0.255") + money(D("99.9999") * D("12.5") * TAKER)
    assert position.fees == fees
    assert _balance(user) == D("10000") + D("23.75") + be.realised_pnl - fees
    assert [e for e, _ in published] == ["position.opened", "position.updated", "position.updated", "position.closed"]


def test_tp2_closes_the_rest(market):
    user, position = _open(market)
    _candles(market, position, (100.2, 102.5, 100, 102), (102, 104.5, 101, 104))
    report = positions_monitor(market_data=market)
    assert report.candles == 2 and report.closed == 1
    position.refresh_from_db()
    assert position.close_reason == "tp2" and position.remaining_quantity == 0
    tp2 = position.fills.get(order__leg="tp2")
    assert (tp2.price, tp2.quantity, tp2.fee) == (D("104"), D("12.5"), D("0.26"))
    assert position.realised_pnl == D("23.75") + D("48.75")  # (102-100.1)*12.5 + (104-100.1)*12.5
    assert position.fees == money(D("100.1") * 25 * TAKER) + D("0.255") + D("0.26")
    assert _balance(user) == D("10000") + position.realised_pnl - position.fees


def test_trailing_stop_activates_after_one_r_and_exits(market, published):
    _, position = _open(market, trailing=True, tp1=D("105"), tp2=D("110"))
    # best 103: profit 2.9 >= 1 R (2.1) -> trailing at 103 - 1 x ATR 1.3333 = 101.6667
    _candles(market, position, (100.2, 103, 100, 102.8))
    positions_monitor(market_data=market)
    position.refresh_from_db()
    assert position.trailing_active and position.stop_price == D("101.6667") and position.best_price == D("103")
    assert [e for e, _ in published][-1] == "position.updated"
    market.add_candle(position.symbol.symbol, T0 + M5, 102.5, 102.8, 101.5, 101.6)
    market.clock = T0 + 2 * M5
    positions_monitor(market_data=market)
    position.refresh_from_db()
    assert position.close_reason == "trailing"
    fill = position.fills.get(order__leg="sl")
    assert fill.price == D("101.5650")  # 101.6667 * 0.999 = 101.56503… floored to the 0.0001 tick
    assert position.realised_pnl == (D("101.565") - D("100.1")) * 25 == D("36.625")


def test_trailing_off_keeps_the_initial_stop(market):
    _, position = _open(market, trailing=False, tp1=D("105"), tp2=D("110"))
    _candles(market, position, (100.2, 103, 100, 102.8))
    positions_monitor(market_data=market)
    position.refresh_from_db()
    assert not position.trailing_active and position.stop_price == D("98") and position.best_price == D("103")


def test_expiry_closes_at_the_open_of_the_first_candle_after_it(market):
    _, position = _open(market, expires_at=T0 + timedelta(hours=1))
    rows = [(100.2, 100.5, 99.5, 100.3)] * 12 + [(100.4, 100.6, 100.1, 100.5)]
    _candles(market, position, *rows)
    report = positions_monitor(market_data=market)
    assert report.candles == 13
    position.refresh_from_db()
    assert position.close_reason == "expiry"
    assert position.fills.get(order__leg="close").price == D("100.2996")  # 100.4 * 0.999


def test_short_stop_is_the_mirror_image(market):
    _, position = _open(market, side="short", entry=D("100"), stop=D("102"), tp1=D("98"), tp2=D("96"))
    assert position.entry_price == D("99.9")
    _candles(market, position, (99.8, 102.5, 99.5, 102.2))
    positions_monitor(market_data=market)
    position.refresh_from_db()
    assert position.close_reason == "sl" and position.fills.get(order__leg="sl").price == D("102.102")
    assert position.realised_pnl == (D("99.9") - D("102.102")) * 25 == D("-55.05")


def test_monitor_is_idempotent_and_ignores_candles_before_the_entry(market):
    user, position = _open(market)
    market.add_candle(position.symbol.symbol, T0 - M5, 100, 100, 90, 95)  # before the entry: a stop, ignored
    _candles(market, position, (100.2, 102.5, 100, 102), (102, 102.2, 100.5, 101))
    first = positions_monitor(market_data=market)
    balance = _balance(user)
    second = positions_monitor(market_data=market)
    assert first.candles == 2 and second.candles == 0
    position.refresh_from_db()
    assert position.status == "open" and position.fills.count() == 2  # entry + TP1 only
    assert position.monitored_until_ts == int((T0 + M5).timestamp() * 1000)
    assert _balance(user) == balance


def test_price_tick_exits_between_candles_without_moving_the_bookmark(market, published):
    _, position = _open(market)
    assert positions_monitor_prices(prices={position.symbol.symbol: D("101")}, at=T0 + timedelta(minutes=2)) == 0
    position.refresh_from_db()
    assert position.monitored_until_ts is None and position.best_price == D("101")
    # the candle the tick fell in is still applied by the candle pass: its low takes the stop
    _candles(market, position, (100.2, 101, 97.5, 98))
    positions_monitor(market_data=market)
    position.refresh_from_db()
    assert position.close_reason == "sl" and position.fills.get(order__leg="sl").price == D("97.902")


def test_price_tick_through_the_stop_fills_at_the_tick(market):
    _, position = _open(market)
    market.prices[position.symbol.symbol] = D("97.9")
    market.clock = T0 + timedelta(minutes=3)
    assert positions_monitor_market_prices(market_data=market) == 1
    position.refresh_from_db()
    assert position.close_reason == "sl" and position.fills.get(order__leg="sl").price == D("97.8021")


def test_beat_task_applies_candles_and_charges_funding(market):
    _, position = _open(market)
    rows = [(100.2, 100.5, 99.5, 100.3)] * 60  # five quiet hours: 12:00 -> 17:00, across the 16:00 funding
    _candles(market, position, *rows)
    market.prices[position.symbol.symbol] = D("100.3")
    assert market.clock == T0 + timedelta(hours=5)
    result = tasks.monitor_positions.run()
    assert result == {"positions": 1, "candles": 60, "closed": 0, "funding": 1, "resumed": 0, "errors": 0}
    charge = FundingCharge.objects.get(position=position)
    # replay funding rate 0.01 % on 25 units at the last price 100.3, paid by the long
    assert charge.amount == D("100.3") * 25 * D("0.0001") == D("0.250750")
    assert charge.funding_time == T0.replace(hour=16)
    assert tasks.monitor_positions.run()["funding"] == 0


def test_funding_still_charged_when_the_exit_came_first(market):
    """The monitor closed the position at 16:30, after the 16:00 funding time, before the funding pass ran: the
    close settled it first (once, on the quantity held at 16:00), so the funding pass has nothing left."""
    user, position = _open(market)
    rows = [(100.2, 100.5, 99.5, 100.3)] * 54 + [(100.2, 100.5, 97, 97.5)]  # 12:00 … 16:30 takes the stop
    _candles(market, position, *rows)
    market.prices[position.symbol.symbol] = D("100")
    report = tasks.monitor_positions.run()
    assert report["closed"] == 1 and report["funding"] == 0
    assert FundingCharge.objects.filter(position=position).count() == 1
    position.refresh_from_db()
    assert position.status == "closed" and position.funding == D("100") * 25 * D("0.0001")
    net = position.realised_pnl - position.fees - position.funding
    assert _balance(user) == D("10000") + net


def test_batched_quiet_candles_equal_candle_by_candle_application(market):
    """``positions_monitor`` steps quiet candles in memory and writes once; applying every candle through
    ``position_apply_bar`` must give exactly the same fills, stops and balances — with far fewer queries."""
    import random
    import time

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from trading.executors.paper import PaperExecutor
    from trading.monitor import position_apply_bar

    rng = random.Random(7)
    price, rows = 100.0, []
    for _ in range(150):  # a slow random walk upwards: TP1, break-even, trailing moves, then an exit
        o = price
        c = round(o * (1 + rng.uniform(-0.002, 0.0035)), 4)
        rows.append(
            (o, round(max(o, c) * (1 + rng.uniform(0, 0.002)), 4), round(min(o, c) * (1 - rng.uniform(0, 0.002)), 4), c)
        )
        price = c
    kw = {"trailing": True, "tp1": D("102"), "tp2": D("130"), "atr": D("0.8")}
    user_a, a = _open(market, **kw)
    user_b, b = _open(market, **kw)
    for i, row in enumerate(rows):
        for p in (a, b):
            market.add_candle(p.symbol.symbol, T0 + i * M5, *row)
    market.clock = T0 + len(rows) * M5
    market.prices.update({a.symbol.symbol: D(str(price)), b.symbol.symbol: D(str(price))})

    executor = PaperExecutor(user=user_a)
    began = time.perf_counter()
    with CaptureQueriesContext(connection) as one_by_one:
        for i, (o, h, low, c) in enumerate(rows):
            a = position_apply_bar(
                position=a,
                ts=int((T0 + i * M5).timestamp() * 1000),
                open=o,
                high=h,
                low=low,
                close=c,
                executor=executor,
            )
    one_by_one_seconds = time.perf_counter() - began
    began = time.perf_counter()
    with CaptureQueriesContext(connection) as batched:  # a has seen every candle already: only b moves
        positions_monitor(market_data=market)
    batched_seconds = time.perf_counter() - began
    a.refresh_from_db()
    b.refresh_from_db()

    def fills(p):
        return [(f.order.leg, f.price, f.quantity, f.fee, f.realised_pnl) for f in p.fills.order_by("filled_at", "pk")]

    assert len(fills(b)) >= 3  # entry, TP1 and at least one more exit happened on the way
    assert fills(a) == fills(b)
    assert (a.close_reason, a.remaining_quantity, a.realised_pnl, a.fees) == (
        b.close_reason,
        b.remaining_quantity,
        b.realised_pnl,
        b.fees,
    )
    assert _balance(user_a) == _balance(user_b)
    assert len(batched) * 2 < len(one_by_one)  # trailing moves on most new highs: those candles take the DB path
    print(
        f"monitor: {len(one_by_one)} queries / {one_by_one_seconds:.3f}s candle by candle vs "
        f"{len(batched)} / {batched_seconds:.3f}s batched ({one_by_one_seconds / batched_seconds:.1f}x)"
    )


def test_beat_runs_the_monitor_tasks_on_the_trade_queue():
    from django.conf import settings

    from config.celery import app

    entries = {e["task"]: e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"].startswith("trading.tasks.")}
    assert set(entries) >= {"trading.tasks.monitor_positions", "trading.tasks.monitor_position_prices"}
    for name, entry in entries.items():
        assert name in app.tasks and entry["options"]["queue"] == "trade"


def test_monitor_pass_fills_entries_a_dead_worker_left_pending(market):
    """A worker died after the decision committed; the monitor pass (every minute) fills the entry instead of
    waiting for the broker's redelivery, and gives up on a signal that is no longer open."""
    from trading.executors.paper import PaperExecutor

    class Dies(PaperExecutor):
        def open_position(self, *, position):
            raise SystemExit("worker killed")

    user = TelegramUserFactory(auto_trading_enabled=True)
    user.preferences.correlation_filter = False
    user.preferences.save()
    live_signal, closed_signal = SignalFactory(), SignalFactory()
    market.clock = T0
    for signal in (live_signal, closed_signal):
        market.prices[signal.symbol.symbol] = D("100")
        with pytest.raises(SystemExit):
            services.signal_execute_for_user(user=user, signal=signal, executor=Dies(user=user))
    closed_signal.status = "closed"
    closed_signal.save()
    assert set(Position.objects.values_list("status", flat=True)) == {"pending"}

    market.clock = T0 + timedelta(seconds=10)  # too early: the first worker may still be on it
    assert tasks.monitor_positions.run()["resumed"] == 0
    market.clock = T0 + timedelta(minutes=1)
    assert tasks.monitor_positions.run()["resumed"] == 1
    assert tasks.monitor_positions.run()["resumed"] == 0
    opened = Position.objects.get(signal=live_signal)
    assert opened.status == "open" and opened.fills.count() == 1 and opened.opened_at == T0 + timedelta(minutes=1)
    failed = Position.objects.get(signal=closed_signal)
    assert failed.status == "failed" and list(failed.orders.values_list("state", flat=True)) == ["cancelled"]
    assert not failed.fills.exists()
    # the redelivered task, an hour later, changes nothing
    tasks.execute_signal.run(live_signal.pk)
    assert Position.objects.get(signal=live_signal).fills.count() == 1


def test_price_tick_waits_for_a_lagging_candle_pass(market):
    """Three closed candles not applied yet: a tick from now must not move the stop before they are judged."""
    _, position = _open(market, trailing=True, tp1=D("105"), tp2=D("110"))
    symbol = position.symbol.symbol
    at = T0 + timedelta(minutes=16)  # candles 12:00, 12:05, 12:10 closed, none applied
    assert positions_monitor_prices(prices={symbol: D("104")}, at=at) == 0
    position.refresh_from_db()
    assert position.best_price == D("100.1") and position.stop_price == D("98") and not position.trailing_active
    # one candle behind is fine
    _candles(market, position, (100.2, 100.5, 99.8, 100.3), (100.3, 100.5, 99.9, 100.2), (100.2, 100.4, 99.9, 100.1))
    positions_monitor(market_data=market)
    assert positions_monitor_prices(prices={symbol: D("104")}, at=at) == 0
    position.refresh_from_db()
    assert position.best_price == D("104") and position.trailing_active


def test_replay_funding_uses_the_published_rate_when_there_is_one(market, monkeypatch):
    _, position = _open(market)
    _candles(market, position, *[(100.2, 100.5, 99.5, 100.3)] * 60)  # 12:00 -> 17:00
    market.prices[position.symbol.symbol] = D("100.3")
    monkeypatch.setattr(market, "funding_rate", lambda symbol: D("-0.0004"))  # the replay's bundled history
    assert tasks.monitor_positions.run()["funding"] == 1
    charge = FundingCharge.objects.get(position=position)
    assert charge.rate == D("-0.0004") and charge.amount == -(D("100.3") * 25 * D("0.0004"))  # the long receives
