"""Replay: one user, known 5m candles, known signals, driven exactly like the demo drives the platform — every 5
minutes the replay clock moves, the signals of that moment go through the ``signal.created`` consumer
(``trading.tasks.execute_signal``) and the monitor pass runs (``trading.monitor.positions_monitor_step``: candles,
then funding). Every position, exit, fee, funding payment and PnL figure below is computed by hand.

Settings (``paper_settings``): taker 0.05 %, maker 0.02 %, slippage 0.1 %, replay funding 0.01 % per 8h, trailing
stop 1 x ATR once 1 R in profit, TP1 closes half and moves the stop to break-even.
User: 10 % of the balance x 2 leverage per position, at most 2 positions, correlation filter on.

Timeline (UTC, Monday 2026-01-05)
- 12:00 BTC long 100/98/102/104 (ATR 1) → opens at 100 x 1.001 = 100.1, 10 000 x 10 % x 2 / 100 = 20 BTC.
- 12:00 ETH long → refused: same sector as BTC ("major").
- 12:05 SOL short 50/51/49/48 → opens at 50 x 0.999 = 49.95, (10 000 − 1.001) x 0.2 / 50 = 39.9959… → 39.995.
- 12:05 candle: BTC TP1 (10 @ 102, maker), stop → break-even; best 102.4 ≥ 1 R → trailing 101.4.
- 12:10 PEPE long → refused: 2 positions open. 12:10 candle: best 102.6 → trailing 101.6.
- 12:15 candle: BTC trailing stop 101.6 → sold at 101.6 x 0.999 = 101.4984 → 101.49 (0.01 tick, down).
- 12:30 DOGE long (expires 13:30) → opens at 0.2 x 1.001 = 0.2002 for floor(balance x 0.2 / 0.2) units.
- 13:30 candle: DOGE expiry at the open 0.201 → 0.201 x 0.999 = 0.200799 → 0.20079 (0.00001 tick, down).
- 16:00 funding: the SOL short receives 0.01 % of 39.995 x 50.1 (last close).
- 16:30 candle: SOL stop 51 → bought back at 51 x 1.001 = 51.051 → 51.06 (tick, up).
"""

from datetime import timedelta
from decimal import ROUND_HALF_EVEN
from decimal import Decimal as D

import pytest

from accounts.tests.factories import TelegramUserFactory
from signals.tests.factories import SignalFactory, SymbolFactory
from trading import selectors, tasks
from trading.models import FundingCharge, PaperAccount, Position, TradeRefusal
from trading.monitor import positions_monitor_step
from trading.tests.paper_fixtures import T0, ScriptedMarket

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("paper_settings")]

TAKER, MAKER, FUNDING = D("0.0005"), D("0.0002"), D("0.0001")
M5 = timedelta(minutes=5)


def money(x: D) -> D:
    return x.quantize(D("1e-8"), rounding=ROUND_HALF_EVEN)


class CandleMarket(ScriptedMarket):
    """Like the replay market data: the last price is the close of the last CLOSED 5m candle."""

    def last_price(self, symbol: str) -> D:
        closed = [r for r in self.candles[symbol] if r[0] + 300_000 <= self.now_ms()]
        return D(repr(closed[-1][4]))


def _series(market, symbol, start, rows):
    for i, row in enumerate(rows):
        market.add_candle(symbol, start + i * M5, *row)


@pytest.fixture
def replay_market(monkeypatch):
    market = CandleMarket()
    monkeypatch.setattr("trading.market.market_data", lambda: market)
    flat_btc = (102.0, 102.1, 101.9, 102.0)
    _series(
        market,
        "BTC/USDT:USDT",
        T0 - M5,
        [
            (99.8, 100.2, 99.7, 100.0),  # 11:55, closes at the BTC entry reference 100
            (100.1, 101.0, 100.0, 100.8),  # 12:00 quiet (best 101 < 1 R)
            (100.8, 102.4, 100.6, 102.2),  # 12:05 TP1, break-even, trailing 101.4
            (102.2, 102.6, 101.8, 102.0),  # 12:10 trailing 101.6
            (101.9, 102.0, 101.2, 101.3),  # 12:15 trailing stop
        ]
        + [flat_btc] * 60,
    )
    _series(market, "ETH/USDT:USDT", T0 - M5, [(2000.0, 2001.0, 1999.0, 2000.0)] * 3)
    sol_flat = (50.0, 50.3, 49.9, 50.1)
    _series(
        market,
        "SOL/USDT:USDT",
        T0,
        [
            (50.1, 50.2, 49.9, 50.0),  # 12:00, closes at the SOL entry reference 50
            (50.0, 50.3, 49.8, 50.2),  # 12:05 quiet
        ]
        + [sol_flat] * 52
        + [  # 12:10 … 16:25
            (50.5, 51.2, 50.4, 51.1),  # 16:30 stop 51
        ]
        + [sol_flat] * 3,
    )
    doge_flat = (0.2, 0.2005, 0.1995, 0.2)
    _series(market, "DOGE/USDT:USDT", T0, [doge_flat] * 18 + [(0.201, 0.2015, 0.2005, 0.201)] + [doge_flat] * 3)
    return market


def _symbols():
    return {
        "BTC": SymbolFactory(symbol="BTC/USDT:USDT", base="BTC", tick_size=D("0.01"), step_size=D("0.001")),
        "ETH": SymbolFactory(symbol="ETH/USDT:USDT", base="ETH", tick_size=D("0.01"), step_size=D("0.001")),
        "SOL": SymbolFactory(symbol="SOL/USDT:USDT", base="SOL", tick_size=D("0.01"), step_size=D("0.001")),
        "DOGE": SymbolFactory(symbol="DOGE/USDT:USDT", base="DOGE", tick_size=D("0.00001"), step_size=D("1")),
        "PEPE": SymbolFactory(symbol="PEPE/USDT:USDT", base="PEPE", tick_size=D("1e-9"), step_size=D("1")),
    }


def test_replay_one_user_known_candles_known_signals(replay_market, published):
    market = replay_market
    user = TelegramUserFactory(auto_trading_enabled=True, username="replayer")
    prefs = user.preferences
    prefs.position_size_pct, prefs.leverage, prefs.max_open_positions = D("10"), 2, 2
    prefs.correlation_filter, prefs.trailing_stop = True, True
    prefs.save()
    sym = _symbols()

    def spec(symbol, side, entry, stop, tp1, tp2, atr, **extra):
        levels = {"entry": entry, "stop": stop, "tp1": tp1, "tp2": tp2, "atr": atr}
        return {"symbol": sym[symbol], "side": side, **{k: D(v) for k, v in levels.items()}, **extra}

    at = {  # clock time -> signals announced at that moment
        T0: [
            spec("BTC", "long", "100", "98", "102", "104", "1"),
            spec("ETH", "long", "2000", "1960", "2040", "2080", "20"),
        ],
        T0 + M5: [spec("SOL", "short", "50", "51", "49", "48", "0.5")],
        T0 + 2 * M5: [spec("PEPE", "long", "0.00001", "0.0000095", "0.0000105", "0.000011", "0.0000002")],
        T0 + 6 * M5: [
            spec("DOGE", "long", "0.2", "0.19", "0.21", "0.22", "0.005", expires_at=T0 + timedelta(minutes=90))
        ],
    }
    signals = []
    results = []
    market.clock = T0
    while market.clock <= T0 + timedelta(hours=4, minutes=40):
        for kwargs in at.get(market.clock, []):
            signal = SignalFactory(created_at=market.clock, **kwargs)
            signals.append(signal)
            results.append(tasks.execute_signal.run(signal.pk))
        positions_monitor_step(market_data=market)
        market.clock += M5
    btc_sig, eth_sig, sol_sig, pepe_sig, doge_sig = signals
    assert [r["opened"] for r in results] == [1, 0, 1, 0, 1]
    assert [r["refused"] for r in results] == [0, 1, 0, 1, 0]

    # --- refusals: recorded with their reason, told once ----------------------------------------------------------
    refusals = {r.signal_id: r for r in TradeRefusal.objects.filter(user=user)}
    assert refusals[eth_sig.pk].reason == "correlated" and refusals[pepe_sig.pk].reason == "max_positions"
    assert sum(1 for e, _ in published if e == "user.notify") == 2

    # --- BTC: TP1 (maker) then trailing stop ---------------------------------------------------------------------
    btc = Position.objects.get(signal=btc_sig)
    assert (btc.entry_price, btc.quantity, btc.leverage) == (D("100.1"), D("20"), 2)
    assert btc.opened_at == T0 and btc.close_reason == "trailing" and btc.closed_at == T0 + 4 * M5
    fills = [(f.order.leg, f.price, f.quantity, f.liquidity) for f in btc.fills.order_by("filled_at", "pk")]
    assert fills == [
        ("entry", D("100.1"), D("20"), "taker"),
        ("tp1", D("102"), D("10"), "maker"),
        ("sl", D("101.49"), D("10"), "taker"),
    ]
    btc_realised = (D("102") - D("100.1")) * 10 + (D("101.49") - D("100.1")) * 10  # 19 + 13.9
    btc_fees = D("100.1") * 20 * TAKER + D("102") * 10 * MAKER + D("101.49") * 10 * TAKER  # 1.001 + 0.204 + 0.50745
    assert btc.realised_pnl == btc_realised == D("32.9")
    assert btc.fees == btc_fees == D("1.71245") and btc.funding == 0
    assert btc.net_pnl == D("31.18755")
    assert btc.initial_stop_price == D("98") and btc.stop_price == D("101.6") and btc.trailing_active

    # --- SOL short: funding received at 16:00, then the stop --------------------------------------------------------
    sol = Position.objects.get(signal=sol_sig)
    sol_qty = D("39.995")  # (10 000 − 1.001) x 10 % x 2 / 50 = 39.99599…, floored to 0.001
    assert (sol.entry_price, sol.quantity, sol.opened_at) == (D("49.95"), sol_qty, T0 + M5)
    assert sol.close_reason == "sl" and sol.closed_at == T0 + timedelta(hours=4, minutes=35)
    assert sol.fills.get(order__leg="sl").price == D("51.06")
    charge = FundingCharge.objects.get(position=sol)
    assert charge.funding_time == T0.replace(hour=16) and charge.mark_price == D("50.1")
    assert charge.amount == -(D("50.1") * sol_qty * FUNDING) == D("-0.20037495")  # a short receives a positive rate
    sol_realised = (D("49.95") - D("51.06")) * sol_qty
    sol_fees = money(D("49.95") * sol_qty * TAKER) + money(D("51.06") * sol_qty * TAKER)
    assert sol.realised_pnl == sol_realised == D("-44.39445")
    assert sol.fees == sol_fees == D("0.99887512") + D("1.02107235")
    assert sol.funding == D("-0.20037495")

    # --- DOGE: opened once BTC had closed, expired after one hour at the open ---------------------------------------
    doge = Position.objects.get(signal=doge_sig)
    balance_at_1230 = D("10000") + btc.net_pnl - money(D("49.95") * sol_qty * TAKER)  # 10 030.18867488
    doge_qty = D("10030")  # floor(10 030.18867488 x 0.2 / 0.2) with a step of 1
    assert balance_at_1230 == D("10030.18867488")
    assert (doge.entry_price, doge.quantity, doge.opened_at) == (D("0.2002"), doge_qty, T0 + 6 * M5)
    assert doge.close_reason == "expiry" and doge.closed_at == T0 + timedelta(hours=1, minutes=35)
    assert doge.fills.get(order__leg="close").price == D("0.20079")
    doge_realised = (D("0.20079") - D("0.2002")) * doge_qty  # 5.9177
    doge_fees = money(D("0.2002") * doge_qty * TAKER) + money(D("0.20079") * doge_qty * TAKER)
    assert doge.realised_pnl == doge_realised == D("5.9177")
    assert doge.fees == doge_fees == D("1.004003") + D("1.00696185")

    # --- the account and the PnL selectors (what /pnl and the dashboard show) ---------------------------------------
    realised = btc_realised + sol_realised + doge_realised
    fees = btc_fees + sol_fees + doge_fees
    funding = D("-0.20037495")
    net = realised - fees - funding
    assert PaperAccount.objects.get(user=user).balance == D("10000") + net
    summary = selectors.pnl_summary(user=user, period="today", now=market.clock)
    assert (summary.trades, summary.wins, summary.losses) == (3, 2, 1)
    assert summary.win_rate == D(2) / D(3)
    assert (summary.realised, summary.fees, summary.funding, summary.net) == (realised, fees, funding, net)
    assert summary.unrealised == 0
    assert summary.best == btc.net_pnl and summary.worst == sol.realised_pnl - sol.fees - sol.funding
    assert selectors.equity_curve(user=user)[-1].equity == D("10000") + net

    # --- the events the dashboard and Telegram consume ---------------------------------------------------------------
    position_events = [(e, p["position_id"]) for e, p in published if e.startswith("position.")]
    assert [e for e, pk in position_events if pk == btc.pk] == [
        "position.opened",
        "position.updated",
        "position.updated",
        "position.closed",  # TP1, trailing on, trailing exit
    ]
    assert [e for e, pk in position_events if pk == sol.pk] == ["position.opened", "position.closed"]
    assert [e for e, pk in position_events if pk == doge.pk] == ["position.opened", "position.closed"]
