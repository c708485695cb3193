"""The REST API (DRF): the user's signals, positions, PnL and preferences, and the payment webhooks."""
