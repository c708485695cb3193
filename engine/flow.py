"""Spot order-flow pressure across exchanges (pure, vectorised).

Per (exchange, symbol) the pressure in a window combines

* taker flow: ``(buy volume − sell volume) / (buy + sell)`` of the trades in the window (quote notional), in [−1, 1];
* book imbalance: ``(bid notional − ask notional) / (bid + ask)`` of the levels within ``depth_pct`` of the mid, in
  [−1, 1];

as ``taker_weight · taker + (1 − taker_weight) · book``. A symbol's score is the average of its exchanges' pressures
weighted by each exchange's traded notional in the window, so a thin venue cannot outvote a deep one.

A high-conviction alert needs (1) |score| ≥ ``threshold``, (2) at least ``min_agreeing`` of the exchanges pushing the
same way, (3) both held for ``stable_windows`` consecutive windows (no flip-flopping on one print), and (4) no alert
for that symbol within ``cooldown_ms``. ``StabilityFilter`` keeps that state as plain data so a caller can persist it.

Replay/demo proxy (no trade tape in the bundled data): ``candle_pressure`` estimates taker pressure from a candle as
the close location value ``((close − low) − (high − close)) / (high − low)`` (−1 … 1), the classic
accumulation/distribution proxy, documented as such wherever it is used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from engine.errors import InvalidParameters


@dataclass(frozen=True)
class Trades:
    """Recent public trades of one (exchange, symbol): times (ms), prices, amounts (base), sides (+1 buy, −1 sell)."""

    ts: np.ndarray
    price: np.ndarray
    amount: np.ndarray
    side: np.ndarray

    @classmethod
    def from_ccxt(cls, trades: Sequence[Mapping]) -> Trades:
        """From ccxt ``fetch_trades`` dicts (timestamp, price, amount, side 'buy'/'sell'); unknown sides are dropped."""
        rows = [t for t in trades if t.get("side") in ("buy", "sell") and t.get("price") and t.get("amount")]
        return cls(
            ts=np.fromiter((t["timestamp"] for t in rows), dtype=np.int64, count=len(rows)),
            price=np.fromiter((t["price"] for t in rows), dtype=np.float64, count=len(rows)),
            amount=np.fromiter((t["amount"] for t in rows), dtype=np.float64, count=len(rows)),
            side=np.fromiter((1 if t["side"] == "buy" else -1 for t in rows), dtype=np.int8, count=len(rows)),
        )


@dataclass(frozen=True)
class OrderBook:
    bids: np.ndarray  # shape (n, 2): price, amount; best first
    asks: np.ndarray

    @classmethod
    def from_ccxt(cls, book: Mapping) -> OrderBook:
        def levels(rows):
            array = np.asarray([row[:2] for row in rows], dtype=np.float64)
            return array.reshape(-1, 2)

        return cls(bids=levels(book.get("bids") or []), asks=levels(book.get("asks") or []))


@dataclass(frozen=True)
class FlowParams:
    window_ms: int = 60_000
    depth_pct: float = 0.5
    taker_weight: float = 0.7
    threshold: float = 0.35
    min_agreeing: float = 0.6
    stable_windows: int = 3
    cooldown_ms: int = 30 * 60_000

    def validate(self) -> None:
        if self.window_ms <= 0:
            raise InvalidParameters("window_ms must be positive")
        if not 0 < self.depth_pct <= 10:
            raise InvalidParameters("depth_pct must be in (0, 10] percent")
        if not 0 <= self.taker_weight <= 1:
            raise InvalidParameters("taker_weight must be between 0 and 1")
        if not 0 < self.threshold <= 1:
            raise InvalidParameters("threshold must be in (0, 1]")
        if not 0 < self.min_agreeing <= 1:
            raise InvalidParameters("min_agreeing must be in (0, 1]")
        if self.stable_windows < 1:
            raise InvalidParameters("stable_windows must be at least 1")


def book_imbalance(book: OrderBook, *, depth_pct: float) -> float:
    """Bid vs ask notional within ``depth_pct`` % of the mid, in [−1, 1]; 0 for an empty or one-sided book."""
    if len(book.bids) == 0 or len(book.asks) == 0:
        return 0.0
    mid = (book.bids[0, 0] + book.asks[0, 0]) / 2
    band = mid * depth_pct / 100
    bids = book.bids[book.bids[:, 0] >= mid - band]
    asks = book.asks[book.asks[:, 0] <= mid + band]
    bid_notional = float((bids[:, 0] * bids[:, 1]).sum())
    ask_notional = float((asks[:, 0] * asks[:, 1]).sum())
    total = bid_notional + ask_notional
    return 0.0 if total <= 0 else (bid_notional - ask_notional) / total


@dataclass(frozen=True)
class SymbolPressure:
    symbol: str
    score: float  # volume-weighted across exchanges, in [−1, 1]
    agreeing: float  # share of exchanges (with data) whose pressure has the score's sign
    exchanges: dict[str, float]  # per-exchange pressure
    notional: float


def aggregate_pressure(
    snapshots: Mapping[tuple[str, str], tuple[Trades, OrderBook | None]],
    *,
    end_ms: int,
    params: FlowParams = FlowParams(),
) -> dict[str, SymbolPressure]:
    """Pressure per symbol over the window ending at ``end_ms`` from {(exchange, symbol): (trades, book)}.

    Vectorised: all trades of all pairs are concatenated and reduced with ``np.bincount``; the per-pair Python work
    is only the order book band (a few dozen levels).
    """
    params.validate()
    keys = list(snapshots)
    if not keys:
        return {}
    start_ms = end_ms - params.window_ms
    sizes = np.fromiter((len(snapshots[k][0].ts) for k in keys), dtype=np.int64, count=len(keys))
    group = np.repeat(np.arange(len(keys)), sizes)
    ts = np.concatenate([snapshots[k][0].ts for k in keys]) if sizes.sum() else np.empty(0, np.int64)
    notional = (
        np.concatenate([snapshots[k][0].price * snapshots[k][0].amount for k in keys]) if sizes.sum() else np.empty(0)
    )
    side = np.concatenate([snapshots[k][0].side for k in keys]).astype(np.float64) if sizes.sum() else np.empty(0)
    in_window = (ts >= start_ms) & (ts < end_ms)
    # astype: np.bincount of an empty selection returns int64 even with float weights
    total = np.bincount(group[in_window], weights=notional[in_window], minlength=len(keys)).astype(np.float64)
    signed = np.bincount(group[in_window], weights=(notional * side)[in_window], minlength=len(keys)).astype(np.float64)
    taker = np.divide(signed, total, out=np.zeros_like(total), where=total > 0)
    book = np.fromiter(
        (
            book_imbalance(snapshots[k][1], depth_pct=params.depth_pct) if snapshots[k][1] is not None else 0.0
            for k in keys
        ),
        dtype=np.float64,
        count=len(keys),
    )
    has_book = np.fromiter((snapshots[k][1] is not None for k in keys), dtype=bool, count=len(keys))
    weight = np.where(has_book, params.taker_weight, 1.0)
    pressure = weight * taker + (1 - weight) * book

    by_symbol: dict[str, list[int]] = {}
    for index, (_, symbol) in enumerate(keys):
        by_symbol.setdefault(symbol, []).append(index)
    result = {}
    for symbol, indexes in by_symbol.items():
        idx = np.asarray(indexes)
        volume = total[idx]
        active = volume > 0
        score = float((pressure[idx] * volume).sum() / volume.sum()) if volume.sum() > 0 else 0.0
        signs = np.sign(pressure[idx][active])
        agreeing = float((signs == np.sign(score)).mean()) if active.any() and score != 0 else 0.0
        result[symbol] = SymbolPressure(
            symbol=symbol,
            score=score,
            agreeing=agreeing,
            exchanges={keys[i][0]: float(pressure[i]) for i in indexes},
            notional=float(volume.sum()),
        )
    return result


def candle_pressure(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Replay proxy for taker pressure: the close location value in [−1, 1] (0 where high == low)."""
    spread = high - low
    clv = np.divide(
        (close - low) - (high - close), spread, out=np.zeros_like(spread, dtype=np.float64), where=spread > 0
    )
    return np.clip(clv, -1.0, 1.0)


@dataclass(frozen=True)
class FlowAlert:
    symbol: str
    side: str  # "long" when buyers dominate, "short" when sellers do
    score: float
    agreeing: float
    window_end_ms: int


@dataclass
class SymbolFlowState:
    direction: int = 0  # sign of the current extreme streak
    streak: int = 0
    last_window_ms: int | None = None
    last_alert_ms: int | None = None


@dataclass
class StabilityFilter:
    """Turns a stream of per-window pressures into rare, stable alerts (state is plain data, persistable)."""

    params: FlowParams = field(default_factory=FlowParams)
    states: dict[str, SymbolFlowState] = field(default_factory=dict)

    def update(self, pressure: SymbolPressure, *, window_end_ms: int) -> FlowAlert | None:
        p = self.params
        state = self.states.setdefault(pressure.symbol, SymbolFlowState())
        if state.last_window_ms is not None and window_end_ms <= state.last_window_ms:
            return None  # the same or an older window again: ignore, never double-count
        contiguous = state.last_window_ms is not None and window_end_ms - state.last_window_ms <= p.window_ms
        state.last_window_ms = window_end_ms
        extreme = abs(pressure.score) >= p.threshold and pressure.agreeing >= p.min_agreeing
        direction = int(np.sign(pressure.score)) if extreme else 0
        if direction and direction == state.direction and contiguous:
            state.streak += 1
        else:
            state.direction, state.streak = direction, (1 if direction else 0)
        if state.streak < p.stable_windows:
            return None
        if state.last_alert_ms is not None and window_end_ms - state.last_alert_ms < p.cooldown_ms:
            return None
        state.last_alert_ms = window_end_ms
        return FlowAlert(
            symbol=pressure.symbol,
            side="long" if state.direction > 0 else "short",
            score=pressure.score,
            agreeing=pressure.agreeing,
            window_end_ms=window_end_ms,
        )
