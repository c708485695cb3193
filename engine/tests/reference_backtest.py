"""The slow, obvious, bar-by-bar reference simulator the fast backtester is checked against.

One loop over every timestamp of the union grid; for each symbol with a candle there: enter at the open if the
previous candle signalled (and was confirmed by the scalar ``quorum``), charge funding settlements that fell since
the previous candle, then call ``engine.exits.step`` on the candle. Cash flows of a candle reach the balance only
after every symbol has been processed for that timestamp (so entries are sized on the balance before the candle).
Nothing is vectorised except the indicator computation of the strategy itself.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from engine.backtest import FUNDING_PERIOD_MS, TAKER_REASONS, BacktestConfig
from engine.candles import resample
from engine.confirmation import quorum
from engine.exits import PositionState, step
from engine.pnl import fee, funding_payment, price_pnl, slipped_price, unrealised_pnl
from engine.sizing import position_quantity
from engine.strategy import SIGNAL_TIMEFRAME_MS, entry_signals


def _rate_at(t, series, default):
    if series is None:
        return default
    for ts_, rate in zip(series[0], series[1], strict=True):
        if int(ts_) - int(ts_) % FUNDING_PERIOD_MS == t:
            return float(rate)
    return default


def reference_backtest(data, params, config: BacktestConfig, *, start_ms=None, end_ms=None, funding=None):
    funding = funding or {}
    symbols = list(data)
    series = {}
    for s in symbols:
        c15, c1h = data[s]
        if end_ms is not None:
            keep = c15.ts < end_ms
            c15 = c15._take(keep)
            if c1h is not None:
                c1h = c1h._take(c1h.ts + 3_600_000 <= end_ms)
        if c1h is None:
            c1h = resample(c15, 60, source_timeframe_ms=SIGNAL_TIMEFRAME_MS)
        sig = entry_signals(c15, params)
        confirmed = [
            sig.side[i] != 0 and quorum(c1h, int(sig.side[i]), int(c15.ts[i]) + SIGNAL_TIMEFRAME_MS, params).ok
            for i in range(len(c15))
        ]
        series[s] = (c15, sig, confirmed, {int(t): i for i, t in enumerate(c15.ts)})

    grid = sorted({int(t) for s in symbols for t in series[s][0].ts})
    balance = config.initial_balance
    open_pos: dict[str, dict] = {}
    trades = []
    equity = []
    last_close = {}

    def close_trade(s, pos):
        rec = pos["rec"]
        if not pos["ghost"]:
            rec["net"] = rec["gross"] - rec["fees"] - rec["funding"]
            trades.append(rec)
        del open_pos[s]

    for t in grid:
        flows = 0.0
        for s in symbols:
            c15, sig, confirmed, where = series[s]
            i = where.get(t)
            if i is None:
                continue
            last_close[s] = float(c15.close[i])
            pos = open_pos.get(s)
            # 1. entry at the open after a confirmed signal candle
            if pos is None and i >= 1 and confirmed[i - 1] and (start_ms is None or c15.ts[i - 1] >= start_ms):
                side = "long" if sig.side[i - 1] == 1 else "short"
                fill = slipped_price(price=float(c15.open[i]), side=side, slippage=config.slippage, opening=True)
                stop, tp1, tp2 = float(sig.stop[i - 1]), float(sig.tp1[i - 1]), float(sig.tp2[i - 1])
                sgn = 1 if side == "long" else -1
                if (fill - stop) * sgn > 0 and (tp1 - fill) * sgn > 0 and (tp2 - fill) * sgn > 0:
                    market = (config.markets or {}).get(s)
                    qty = (
                        float(
                            position_quantity(
                                balance=Decimal(balance),
                                entry=Decimal(fill),
                                stop=Decimal(stop),
                                mode=config.sizing_mode,
                                pct=Decimal(config.sizing_pct),
                                leverage=Decimal(config.leverage),
                                max_leverage=Decimal(config.max_leverage),
                                market=market,
                                on_below_minimum="zero",
                            )
                        )
                        if balance > 0
                        else 0.0
                    )
                    ghost = qty <= 0
                    state = PositionState.open(
                        side=side,
                        entry=fill,
                        stop=stop,
                        tp1=tp1,
                        tp2=tp2,
                        quantity=1.0 if ghost else qty,
                        opened_ts=t,
                        atr=float(sig.atr[i - 1]),
                    )
                    entry_fee = 0.0 if ghost else fee(price=fill, quantity=qty, rate=config.fee_taker)
                    flows -= entry_fee
                    rec = {
                        "symbol": s,
                        "side": side,
                        "entry_ts": t,
                        "entry_price": fill,
                        "quantity": qty,
                        "fills": [],
                        "gross": 0.0,
                        "fees": entry_fee,
                        "funding": 0.0,
                    }
                    pos = open_pos[s] = {"state": state, "rec": rec, "ghost": ghost}
            if pos is None:
                continue
            state, rec = pos["state"], pos["rec"]
            # 2. funding settlements since the previous candle of this symbol
            prev_t = int(c15.ts[i - 1]) if i >= 1 else t - 1
            for T in range(prev_t - prev_t % FUNDING_PERIOD_MS + FUNDING_PERIOD_MS, t + 1, FUNDING_PERIOD_MS):
                if rec["entry_ts"] < T and not pos["ghost"]:
                    rate = _rate_at(T, funding.get(s), config.funding_rate_8h)
                    paid = funding_payment(
                        side=state.side, mark=float(c15.open[i]), quantity=state.remaining, rate=rate
                    )
                    rec["funding"] += paid
                    flows -= paid
            # 3. the exit rules on this candle
            state, events = step(
                state,
                ts=t,
                open=float(c15.open[i]),
                high=float(c15.high[i]),
                low=float(c15.low[i]),
                close=float(c15.close[i]),
                rules=config.exit_rules,
            )
            pos["state"] = state
            for ev in events:
                px = ev.price
                if ev.reason in TAKER_REASONS:
                    px = slipped_price(price=px, side=state.side, slippage=config.slippage, opening=False)
                if pos["ghost"]:
                    continue
                rate = config.fee_maker if ev.reason in ("tp1", "tp2") and config.targets_as_maker else config.fee_taker
                g = price_pnl(side=state.side, entry=state.entry, exit=px, quantity=ev.quantity)
                f = fee(price=px, quantity=ev.quantity, rate=rate)
                rec["gross"] += g
                rec["fees"] += f
                rec["fills"].append((t, ev.reason, px, ev.quantity))
                flows += g - f
            if not state.is_open:
                rec["exit_ts"] = t
                close_trade(s, pos)
        balance += flows
        unreal = 0.0
        for s, pos in open_pos.items():
            if not pos["ghost"]:
                st = pos["state"]
                unreal += unrealised_pnl(side=st.side, entry=st.entry, mark=last_close[s], quantity=st.remaining)
        equity.append(balance + unreal)

    # positions still open at the end: close at the symbol's last close
    for s in list(open_pos):
        pos = open_pos[s]
        st, rec = pos["state"], pos["rec"]
        c15 = series[s][0]
        t = int(c15.ts[-1])
        if not pos["ghost"]:
            px = slipped_price(price=float(c15.close[-1]), side=st.side, slippage=config.slippage, opening=False)
            g = price_pnl(side=st.side, entry=st.entry, exit=px, quantity=st.remaining)
            f = fee(price=px, quantity=st.remaining, rate=config.fee_taker)
            rec["gross"] += g
            rec["fees"] += f
            rec["fills"].append((t, "end", px, st.remaining))
            # the end close is booked at the symbol's last candle: replace its unrealised PnL by the realised one
            k = grid.index(t)
            for j in range(k, len(grid)):
                equity[j] += -f + (
                    g - unrealised_pnl(side=st.side, entry=st.entry, mark=float(c15.close[-1]), quantity=st.remaining)
                )
        rec["exit_ts"] = t
        close_trade(s, pos)
    trades.sort(key=lambda r: (r["entry_ts"], symbols.index(r["symbol"])))
    return trades, np.array(grid, dtype=np.int64), np.array(equity)
