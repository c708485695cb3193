"""Errors of live trading: one hierarchy for every exchange adapter (ccxt, Bitunix, the fake exchange).

- ``RetryableExchangeError``: the request may or may not have reached the exchange (timeouts, 5xx, 429/DDoS
  protection, network errors). Retry with backoff; before re-sending an order, look it up by client order id.
- ``FinalExchangeError``: the exchange refused the request (invalid order, bad symbol). Retrying cannot help.
  ``AuthenticationFailed`` and ``InsufficientBalance`` are final too; a final error disables the user's auto-trading.
- ``ExchangeConnectError``: what the user sees when connecting keys fails; its text is polite and never holds a key.

``map_ccxt_error`` turns a ccxt exception into one of these; ``retry_call`` retries the retryable ones
with exponential backoff and full jitter.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_MESSAGE_LENGTH = 300


class ExchangeError(Exception):
    """Base of every exchange failure. ``str()`` is safe to log and store: secrets are redacted by the adapter."""

    retryable = False

    def __init__(self, message: str = "", *, exchange: str = "", retry_after: float | None = None):
        super().__init__(message[:MAX_MESSAGE_LENGTH])
        self.exchange = exchange
        self.retry_after = retry_after


class RetryableExchangeError(ExchangeError):
    """Timeout, 5xx, rate limit, network error: the outcome of the request is unknown; safe to retry idempotently."""

    retryable = True


class FinalExchangeError(ExchangeError):
    """The exchange refused the request (invalid order, bad symbol, not supported)."""


class DuplicateClientOrderId(RetryableExchangeError):
    """The exchange already has an order with this client order id: an earlier attempt DID arrive (its answer was
    lost, or it was not yet visible to the look-up). Retryable on purpose: the retry looks the order up by client
    order id and adopts it instead of sending again."""


class OrderNotFoundOnExchange(FinalExchangeError):
    """The exchange does not know the order (never arrived, or too old)."""


class AuthenticationFailed(FinalExchangeError):
    """Keys are wrong, expired, lack permissions or the IP is not whitelisted."""


class InsufficientBalance(FinalExchangeError):
    """Not enough margin for the order."""


class ExchangeConnectError(Exception):
    """Connecting an exchange failed. ``str()`` is a polite message for the user that never contains a key."""

    def __init__(self, user_message: str, *, reason: str = ""):
        super().__init__(user_message)
        self.user_message = user_message
        self.reason = reason  # short machine-readable reason: "auth", "network", "unsupported", ...


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of a secret (of 4+ characters) in ``text`` by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def map_ccxt_error(exc: BaseException, *, exchange: str = "", secrets: Iterable[str] = ()) -> ExchangeError:
    """Map a ccxt exception (or an asyncio/OS timeout) to our hierarchy, with secrets redacted from the message."""
    import ccxt

    message = redact(f"{type(exc).__name__}: {exc}", list(secrets))
    if isinstance(exc, ExchangeError):
        return exc
    # Order matters: subclasses first.
    if isinstance(exc, ccxt.AuthenticationError):  # includes PermissionDenied, AccountSuspended
        return AuthenticationFailed(message, exchange=exchange)
    if isinstance(exc, ccxt.InsufficientFunds):
        return InsufficientBalance(message, exchange=exchange)
    if isinstance(exc, ccxt.OrderNotFound):
        return OrderNotFoundOnExchange(message, exchange=exchange)
    if _is_duplicate_client_id(message):
        return DuplicateClientOrderId(message, exchange=exchange, retry_after=0.5)
    if isinstance(exc, ccxt.InvalidNonce):  # clock skew / nonce reuse: a fresh request succeeds
        return RetryableExchangeError(message, exchange=exchange)
    if isinstance(exc, ccxt.NetworkError):  # RequestTimeout, DDoSProtection, RateLimitExceeded, ExchangeNotAvailable
        return RetryableExchangeError(message, exchange=exchange)
    if isinstance(exc, (ccxt.InvalidOrder, ccxt.BadRequest, ccxt.NotSupported, ccxt.ArgumentsRequired)):
        return FinalExchangeError(message, exchange=exchange)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, ConnectionError)):
        return RetryableExchangeError(message, exchange=exchange)
    if isinstance(exc, ccxt.ExchangeError):
        # An unclassified exchange answer: we do not know whether it is transient; treat it as final so a human
        # looks at it instead of hammering the exchange.
        return FinalExchangeError(message, exchange=exchange)
    return RetryableExchangeError(message, exchange=exchange)


DUPLICATE_MARKERS = ("51016", "duplicated clordid", "duplicate client", "duplicated client", "clientoid is duplicate", "client order id already exists", "duplicate clientid")


def _is_duplicate_client_id(message: str) -> bool:
    """OKX 51016 "Duplicated clOrdId", KuCoin "clientOid is duplicate", and the like."""
    lowered = message.lower()
    return any(marker in lowered for marker in DUPLICATE_MARKERS)


def map_http_status(status: int, message: str, *, exchange: str = "", retry_after: float | None = None) -> ExchangeError:
    """Map an HTTP status of a hand-written adapter: 429/418 and 5xx retryable, 401/403 auth, other 4xx final."""
    if status in (429, 418) or status >= 500:
        return RetryableExchangeError(message, exchange=exchange, retry_after=retry_after)
    if status in (401, 403):
        return AuthenticationFailed(message, exchange=exchange)
    return FinalExchangeError(message, exchange=exchange)


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 8.0, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return (rng or random).uniform(0, min(cap, base * (2**attempt)))


def retry_call(
    call: Callable[[], T],
    *,
    attempts: int = 4,
    base: float = 0.5,
    cap: float = 8.0,
    sleep: Callable[[float], None] = time.sleep,
    description: str = "exchange call",
) -> T:
    """Run ``call`` and retry it on ``RetryableExchangeError`` (backoff with jitter; honours ``retry_after``).

    Only wrap idempotent calls (reads, cancels, or creates that carry a client order id the exchange dedupes on).
    """
    for attempt in range(attempts):
        try:
            return call()
        except RetryableExchangeError as exc:
            if attempt == attempts - 1:
                raise
            delay = max(exc.retry_after or 0, backoff_delay(attempt, base=base, cap=cap))
            logger.warning("%s failed (%s), retry %d/%d in %.2fs", description, exc, attempt + 1, attempts - 1, delay)
            sleep(delay)
    raise AssertionError("unreachable")
