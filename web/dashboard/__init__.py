"""The users' web dashboard (server-rendered): login by Telegram, PnL, positions, signal history, settings."""
