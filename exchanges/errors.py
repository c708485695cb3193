"""Errors of every exchange adapter: one hierarchy, one map from ccxt's exceptions, one retry helper.

The model is Freqtrade's ``exceptions.py`` + ``common.retrier``: a handful of our own types that say what the
caller can do, never the library's own exception zoo.

- ``RetryableExchangeError``: the request may or may not have reached the exchange (timeouts, 5xx, 429/DDoS
  protection, network errors, an answer that is not JSON). Retry with backoff; before re-sending an order, look it
  up by client order id.
- ``DuplicateClientOrderId`` (retryable): the exchange already holds an order with our client id — an earlier
  attempt arrived. Look it up and adopt it.
- ``FinalExchangeError``: the exchange refused the request (invalid order, not supported). Retrying cannot help.
  Its subclasses say why: ``AuthenticationFailed``, ``InsufficientBalance``, ``OrderNotFoundOnExchange``,
  ``SymbolUnavailable`` (unknown or delisted market), ``OrderTooSmall`` (below one contract / the minimum amount:
  nothing was sent), ``OrderApiRestricted`` (the exchange does not let these keys trade futures through its API).
- ``ExchangeConnectError``: what the user sees when connecting keys fails; its text is polite and never holds a key.

``map_ccxt_error`` turns a ccxt exception (or an asyncio/OS timeout) into one of these; ``map_http_status`` does
the same for the hand-written Bitunix adapter. ``retry_call`` retries the retryable ones with exponential backoff and
full jitter (or the caller's own pauses).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from exchanges.capabilities import CAPABILITIES

logger = logging.getLogger(__name__)

T = TypeVar("T")


@functools.cache
def library_errors() -> tuple[type[BaseException], ...]:
    """What a ccxt call can raise besides our own errors: catch these around library calls and pass them to
    ``map_ccxt_error``. (ccxt is imported on first use: a process that never talks to an exchange never loads it.)"""
    import ccxt

    return (ccxt.BaseError, asyncio.TimeoutError, TimeoutError, concurrent.futures.TimeoutError, ConnectionError)


MAX_MESSAGE_LENGTH = 300


class ExchangeError(Exception):
    """Base of every exchange failure. ``str()`` is safe to log and store: secrets are redacted by the adapter."""

    retryable = False

    def __init__(self, message: str = "", *, exchange: str = "", retry_after: float | None = None, source: str = ""):
        super().__init__(message[:MAX_MESSAGE_LENGTH])
        self.exchange = exchange
        self.retry_after = retry_after
        self.source = source  # the library's exception class name ("RequestTimeout"), when mapped from one


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


class SymbolUnavailable(FinalExchangeError):
    """The market does not exist (any more) on the exchange: unknown, delisted or suspended."""


class OrderTooSmall(FinalExchangeError):
    """The amount is below one contract (or the exchange's minimum): the order was NOT sent."""


class OrderApiRestricted(FinalExchangeError):
    """The exchange does not accept futures orders from these API keys (MEXC keeps its futures order API closed
    to most accounts)."""


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


DUPLICATE_MARKERS = (
    "51016",  # OKX "Duplicated clOrdId"
    "duplicated clordid",
    "duplicate client",
    "duplicated client",
    "clientoid is duplicate",  # KuCoin
    "client order id already exists",
    "duplicate clientid",
    "duplicate externaloid",
    "externaloid already exists",
)
TOO_SMALL_MARKERS = ("minimum amount precision", "must be greater than minimum amount", "amount must be greater")
API_RESTRICTED_MARKERS = ('"code":1002', "contract not allow place order", "order placing not supported")


def is_duplicate_client_id(message: str) -> bool:
    """OKX 51016 "Duplicated clOrdId", KuCoin "clientOid is duplicate", and the like."""
    lowered = message.lower()
    return any(marker in lowered for marker in DUPLICATE_MARKERS)


def _orders_restricted(exchange: str) -> bool:
    """Whether the exchange keeps its futures order API closed to most accounts (the capability table says)."""
    table = CAPABILITIES.get(exchange)
    return table is not None and table.futures_order_api_restricted


def map_ccxt_error(
    exc: BaseException, *, exchange: str = "", secrets: Iterable[str] = (), context: str = ""
) -> ExchangeError:
    """Map a ccxt exception (or an asyncio/OS timeout) to our hierarchy, with secrets redacted from the message
    (prefixed by ``context``, e.g. the call that failed). The original exception's class name is kept in ``source``."""
    if isinstance(exc, ExchangeError):
        return exc
    prefix = f"{context}: " if context else ""
    mapped = _mapped(exc, redact(f"{prefix}{type(exc).__name__}: {exc}", list(secrets)), exchange)
    mapped.source = type(exc).__name__
    return mapped


def _mapped(exc: BaseException, message: str, exchange: str) -> ExchangeError:
    import ccxt

    # Order matters: subclasses first.
    if isinstance(exc, ccxt.AuthenticationError):  # includes PermissionDenied, AccountSuspended, AccountNotEnabled
        return AuthenticationFailed(message, exchange=exchange)
    if isinstance(exc, ccxt.InsufficientFunds):
        return InsufficientBalance(message, exchange=exchange)
    if isinstance(exc, ccxt.OrderNotFound):
        return OrderNotFoundOnExchange(message, exchange=exchange)
    if isinstance(exc, ccxt.DuplicateOrderId) or is_duplicate_client_id(message):
        return DuplicateClientOrderId(message, exchange=exchange, retry_after=0.5)
    if isinstance(exc, ccxt.BadSymbol):
        return SymbolUnavailable(message, exchange=exchange)
    if isinstance(exc, ccxt.InvalidNonce):  # clock skew / nonce reuse: a fresh request succeeds
        return RetryableExchangeError(message, exchange=exchange)
    if isinstance(exc, ccxt.NetworkError):  # RequestTimeout, DDoSProtection, RateLimitExceeded, ExchangeNotAvailable
        return RetryableExchangeError(message, exchange=exchange)
    if isinstance(exc, ccxt.InvalidOrder) and any(marker in message.lower() for marker in TOO_SMALL_MARKERS):
        return OrderTooSmall(message, exchange=exchange)
    if (
        _orders_restricted(exchange)
        and isinstance(exc, ccxt.ExchangeError)
        and any(m in message.lower() for m in API_RESTRICTED_MARKERS)
    ):
        return OrderApiRestricted(message, exchange=exchange)
    if isinstance(exc, (ccxt.InvalidOrder, ccxt.BadRequest, ccxt.NotSupported, ccxt.ArgumentsRequired)):
        return FinalExchangeError(message, exchange=exchange)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, concurrent.futures.TimeoutError, ConnectionError)):
        return RetryableExchangeError(message, exchange=exchange)
    if isinstance(exc, ccxt.ExchangeError):
        # An unclassified exchange answer: we do not know whether it is transient; final, so a human looks at it
        # instead of hammering the exchange. (An order call that ends here is looked up by client id before the
        # executor concludes anything: see trading.executors.live.)
        return FinalExchangeError(message, exchange=exchange)
    return RetryableExchangeError(message, exchange=exchange)  # BadResponse, NullResponse, OperationFailed, ...


def map_http_status(
    status: int, message: str, *, exchange: str = "", retry_after: float | None = None
) -> ExchangeError:
    """Map an HTTP status of a hand-written adapter: 429/418 and 5xx retryable, 401/403 auth, other 4xx final."""
    if status in (429, 418) or status >= 500:
        return RetryableExchangeError(message, exchange=exchange, retry_after=retry_after)
    if status in (401, 403):
        return AuthenticationFailed(message, exchange=exchange)
    return FinalExchangeError(message, exchange=exchange)


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 8.0, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return (rng or random).uniform(0, min(cap, base * (2**attempt)))


def _delay_of(
    exc: RetryableExchangeError, attempt: int, base: float, cap: float, pause: Callable[[int], float] | None
) -> float:
    planned = pause(attempt) if pause is not None else backoff_delay(attempt, base=base, cap=cap)
    return max(exc.retry_after or 0, planned)


def retry_call(
    call: Callable[[], T],
    *,
    attempts: int = 4,
    base: float = 0.5,
    cap: float = 8.0,
    pause: Callable[[int], float] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    description: str = "exchange call",
) -> T:
    """Run ``call`` and retry it on ``RetryableExchangeError`` (full-jitter backoff, or ``pause(attempt)`` seconds;
    ``retry_after`` is honoured). Only wrap idempotent calls (reads, cancels, creates carrying a client order id)."""
    for attempt in range(attempts):
        try:
            return call()
        except RetryableExchangeError as exc:
            if attempt == attempts - 1:
                raise
            delay = _delay_of(exc, attempt, base, cap, pause)
            logger.warning("%s failed (%s), retry %d/%d in %.2fs", description, exc, attempt + 1, attempts - 1, delay)
            sleep(delay)
    raise AssertionError("unreachable")
