"""Fixtures of the accounts tests: domain events recorded instead of dispatched, payment settings."""

from __future__ import annotations

import pytest

from testsupport.helius_recorded import address_for

MERCHANT = address_for("merchant-wallet")
HELIUS_TOKEN = "helius-test-token-1"


@pytest.fixture
def published(monkeypatch) -> list[tuple[str, dict]]:
    """Every domain event published (after commit), as (event, payload), instead of reaching its consumers; the
    doorbell of a stored payment delivery still rings (processing it is what these tests look at)."""
    from config import events as bus

    events: list[tuple[str, dict]] = []
    dispatch = bus.dispatch_now

    def record(event, payload):
        if event == "payment.received":
            return dispatch(event, payload)
        events.append((event, payload))
        return []

    monkeypatch.setattr("config.events.dispatch_now", record)
    return events


@pytest.fixture
def payment_settings(settings):
    settings.SOLANA_MERCHANT_WALLET = MERCHANT
    settings.HELIUS_AUTH_TOKEN = HELIUS_TOKEN
    settings.SOLANA_PAYMENT_TTL_MINUTES = 30
    return settings
