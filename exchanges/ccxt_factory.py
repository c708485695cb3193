"""The one place a ccxt client is built: trading, live market data, order flow, funding rates and candle downloads.

``ccxt_client_create(exchange_id, market_type=..., asynchronous=..., api_key=...)`` returns a configured instance
(rate limiting on, a timeout, the default market type) and makes no network call. ``install_ccxt_transport`` lets
tests and the demo route every client this factory builds to an in-process stand-in (a function that receives the
new instance and replaces its HTTP layer); production never installs one.
"""

from __future__ import annotations

import decimal
import functools
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Literal

from exchanges.errors import FinalExchangeError

MarketType = Literal["swap", "spot"]

DEFAULT_TIMEOUT_MS = 15_000

_transport_hook: Callable[[Any], None] | None = None


def install_ccxt_transport(hook: Callable[[Any], None] | None) -> None:
    """Call ``hook(instance)`` on every ccxt client built from now on (``None`` removes it). Tests and the demo only."""
    global _transport_hook
    _transport_hook = hook


def ccxt_client_create(
    exchange_id: str,
    *,
    market_type: MarketType = "swap",
    asynchronous: bool = True,
    api_key: str = "",
    secret: str = "",
    passphrase: str = "",
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    rate_limit: bool = True,
) -> Any:
    """A ccxt (``ccxt.async_support`` when ``asynchronous``) instance for ``exchange_id``; no network until called.

    Unknown ids raise ``FinalExchangeError``."""
    import ccxt  # on first use: a process that never talks to an exchange never loads ccxt
    import ccxt.async_support as ccxt_async

    module = ccxt_async if asynchronous else ccxt
    if exchange_id not in ccxt.exchanges:
        raise FinalExchangeError(f"ccxt does not support the exchange {exchange_id!r}", exchange=exchange_id)
    config: dict[str, Any] = {
        "enableRateLimit": rate_limit,
        "timeout": int(timeout_ms),
        "options": {"defaultType": market_type},
    }
    if api_key:
        config["apiKey"] = api_key
    if secret:
        config["secret"] = secret
    if passphrase:
        config["password"] = passphrase
    instance = getattr(module, exchange_id)(config)
    instance.decimal_to_precision = _in_own_decimal_context(instance.decimal_to_precision)
    if _transport_hook is not None:
        _transport_hook(instance)
    return instance


def _in_own_decimal_context(function: Callable[..., str]) -> Callable[..., str]:
    """ccxt's ``decimal_to_precision`` (behind every ``amount_to_precision``/``price_to_precision``, also inside its
    ``create_order``) sets the calling thread's decimal context to round half-up and to trap underflow, and leaves it
    so: our own Decimal arithmetic in that thread would then round and raise differently. Each call gets a local
    context instead; ccxt's results are unchanged."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> str:
        with decimal.localcontext():
            return function(*args, **kwargs)

    return call


TICK_SIZE = 4  # ccxt.TICK_SIZE: the market's precision is the increment itself
DECIMAL_PLACES = 2  # ccxt.DECIMAL_PLACES: the precision is a number of digits


def precision_increment(value: Any, precision_mode: int = TICK_SIZE) -> Decimal | None:
    """A ccxt market precision as an increment: TICK_SIZE mode stores the increment, DECIMAL_PLACES a digit count."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    number = Decimal(str(value))
    if precision_mode == DECIMAL_PLACES:
        return Decimal(1).scaleb(-int(number))
    return number
