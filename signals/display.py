"""Plain-text rendering of signals as a user sees them (used by ``manage.py replay`` and the replay report)."""

from __future__ import annotations

from signals.models import Signal

_CHECK_LABELS = {"trend": "1h trend", "volume": "1h volume", "momentum": "1h momentum", "structure": "1h structure"}


def _pct(level, entry) -> str:
    return f"{100 * (level - entry) / entry:+.2f}%"


def signal_card(signal: Signal) -> str:
    """Multi-line card: symbol, side, entry, stop, targets, risk, checks passed."""
    checks = ", ".join(_CHECK_LABELS.get(name, name) for name in signal.confirmations) or "none"
    entry = signal.entry.normalize()
    return "\n".join(
        [
            f"{'🟢 LONG' if signal.side == 'long' else '🔴 SHORT'} {signal.symbol.symbol}  ({signal.timeframe}, "
            f"{signal.source}, {signal.created_at:%Y-%m-%d %H:%M} UTC)",
            f"  entry {entry}",
            f"  stop  {signal.stop.normalize()}  ({_pct(signal.stop, signal.entry)})",
            f"  TP1   {signal.tp1.normalize()}  ({_pct(signal.tp1, signal.entry)})",
            f"  TP2   {signal.tp2.normalize()}  ({_pct(signal.tp2, signal.entry)})",
            f"  risk  {signal.risk_level}   checks passed ({len(signal.confirmations)}/4): {checks}",
        ]
    )


def signal_outcome_line(signal: Signal) -> str:
    if signal.status == Signal.Status.OPEN:
        state = "open" + (" (TP1 hit)" if signal.tp1_hit_at else "")
        return f"{signal.symbol.symbol:<16} {signal.side:<5} {signal.created_at:%Y-%m-%d %H:%M}  {state}"
    return (
        f"{signal.symbol.symbol:<16} {signal.side:<5} {signal.created_at:%Y-%m-%d %H:%M}  "
        f"{signal.outcome:<8} {signal.outcome_pnl_pct:+.2f}%  closed {signal.closed_at:%Y-%m-%d %H:%M}"
    )
