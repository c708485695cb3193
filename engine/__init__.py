"""Pure trading core: candles, indicators, strategy, confirmation, risk, exits, sizing, pnl, backtest.

No Django imports and no I/O here: the same functions run in the live scanner, in replays and in backtests.
The modules and their public API are listed in engine/README.md.
"""
