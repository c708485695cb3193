"""Derive the bundled order-flow tapes (``data/flow/*-trades.json``) from the real XRP/USDT:USDT 5m candles.

SYNTHETIC: no public multi-exchange trade tape covers the bundled window, so these tapes are built from the real
candles: every 5m candle of 2021-11-17 15:50-16:50 UTC is split over three venues (okx 40 %, bybit 35 %, mexc 25 % of
its real volume, one tape each) into six prints a minute along the candle's own price path (open, low/high, close).
The taker-buy share of a candle's notional is 0.5 x (1 + close location value) with a small fixed per-venue offset:
the venues push the same way the real candle moved. The file format is what ccxt's ``fetch_trades`` returns
(timestamp, datetime, symbol, id, side, price, amount, cost), so ``signals.flow_sources.RecordedFlowSource`` serves
them to the monitor exactly as the live ccxt source would. Re-run to rebuild (deterministic):

    python data/flow/derive_tapes.py
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
CANDLES = HERE.parent / "ohlcv" / "futures" / "XRP_USDT_USDT-5m-futures.feather"
START, END = "2021-11-17 15:50", "2021-11-17 16:50"
VENUES = {"okx": (0.40, 0.03), "bybit": (0.35, -0.02), "mexc": (0.25, 0.0)}  # volume share, taker-share offset
PRINTS_PER_MINUTE = 6


def candle_path(row) -> list[float]:
    """Open, the extreme against the move, the extreme with it, close (the order a candle most likely took)."""
    up = row.close >= row.open
    return [row.open, row.low if up else row.high, row.high if up else row.low, row.close]


def venue_tape(frame: pd.DataFrame, venue: str, share: float, offset: float, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    trades: list[dict] = []
    for row in frame.itertuples():
        spread = row.high - row.low
        clv = 0.0 if spread <= 0 else ((row.close - row.low) - (row.high - row.close)) / spread
        buy_share = float(np.clip(0.5 * (1 + clv) + offset, 0.05, 0.95))
        path = candle_path(row)
        points = np.interp(np.linspace(0, 3, 5 * PRINTS_PER_MINUTE), [0, 1, 2, 3], path)
        amounts = rng.lognormal(0.0, 0.6, size=len(points))
        sides = np.array(["buy" if i % 2 == 0 else "sell" for i in range(len(points))])
        buys, sells = sides == "buy", sides == "sell"
        notional = float(row.volume) * share
        amounts[buys] *= notional * buy_share / float(amounts[buys].sum())
        amounts[sells] *= notional * (1 - buy_share) / float(amounts[sells].sum())
        start_ms = int(row.date.timestamp() * 1000)
        for i, (price, amount, side) in enumerate(zip(points, amounts, sides, strict=True)):
            ts = start_ms + i * (60_000 // PRINTS_PER_MINUTE) + int(rng.integers(0, 9_000))
            price = round(float(price), 4)
            amount = round(float(amount), 1)
            trades.append(
                {
                    "id": f"{venue}-{ts}-{i}",
                    "timestamp": ts,
                    "datetime": datetime.fromtimestamp(ts / 1000, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
                    "symbol": "XRP/USDT",
                    "side": side,
                    "takerOrMaker": "taker",
                    "price": price,
                    "amount": amount,
                    "cost": round(price * amount, 4),
                }
            )
    return sorted(trades, key=lambda t: t["timestamp"])


def main() -> None:
    frame = pd.read_feather(CANDLES)
    frame = frame[(frame.date >= pd.Timestamp(START, tz="UTC")) & (frame.date < pd.Timestamp(END, tz="UTC"))]
    for seed, (venue, (share, offset)) in enumerate(VENUES.items(), start=1):
        tape = venue_tape(frame, venue, share, offset, seed)
        path = HERE / f"{venue}-XRP_USDT-trades.json"
        path.write_text(json.dumps(tape, separators=(",", ":")) + "\n")
        print(f"{path.name}: {len(tape)} trades")


if __name__ == "__main__":
    main()
