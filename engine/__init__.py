"""Pure trading core: candles, indicators, strategy, confirmation, risk, exits, sizing, pnl, backtest.

No Django imports and no I/O here: the same functions run in the live scanner, in replays and in backtests.
See docs/ENGINE_API.md for the agreed public API.
"""
