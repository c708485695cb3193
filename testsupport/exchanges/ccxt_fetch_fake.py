"""What the fakes behind ccxt's own HTTP hook (``Exchange.fetch``) share: KuCoin Futures, OKX and MEXC.

Each fake is installed as a REAL ccxt instance's ``fetch``, so ccxt builds and signs every request and parses every
answer; the fake checks the signature, keeps state in a ``FakeExchangeAccount`` and answers like the exchange. This
module holds the common parts: the linear USDT swap market ccxt expects, the request log, and the per-path fault
queue (``fake.inject(path_suffix, "timeout" | "rate_limit" | "server_error" | "lost_response")``).
"""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import SplitResult, parse_qsl

from testsupport.exchanges.fake import FakeExchangeAccount

FAULTS = ("timeout", "rate_limit", "server_error", "lost_response")


class NotFoundOnFake(Exception):
    """The fake has no such order (each fake answers it with its exchange's own error code)."""


def plain_number(value: Decimal | None) -> str:
    """A Decimal as the exchanges write numbers in JSON strings: no exponent, no trailing zeros."""
    return "" if value is None else format(value.normalize(), "f")


def swap_market(*, symbol: str, market_id: str, contract_size: str, lot: str, tick: str, info: dict) -> dict:
    """A linear USDT perpetual as ccxt's ``set_markets`` takes it (sizes in contracts of ``contract_size``)."""
    base = symbol.split("/")[0]
    return {
        "id": market_id,
        "symbol": symbol,
        "base": base,
        "quote": "USDT",
        "settle": "USDT",
        "baseId": base,
        "quoteId": "USDT",
        "settleId": "USDT",
        "type": "swap",
        "spot": False,
        "margin": False,
        "swap": True,
        "future": False,
        "option": False,
        "contract": True,
        "linear": True,
        "inverse": False,
        "active": True,
        "contractSize": float(contract_size),
        "expiry": None,
        "precision": {"amount": float(lot), "price": float(tick)},
        "limits": {
            "amount": {"min": float(lot), "max": None},
            "price": {"min": None, "max": None},
            "cost": {"min": None, "max": None},
            "leverage": {"min": 1, "max": 100},
        },
        "info": info,
    }


class CcxtFetchFake:
    """Base of the fetch-hook fakes: install, fault injection and the request log."""

    known_faults: tuple[str, ...] = FAULTS

    def __init__(self, *, account: FakeExchangeAccount | None, account_name: str):
        self.account = account or FakeExchangeAccount(name=account_name)
        self.exchange = None  # the ccxt instance, set by install()
        self.faults: dict[str, list[str]] = {}
        self.requests: list[tuple[str, str, object]] = []

    def markets(self) -> list[dict]:
        raise NotImplementedError

    def install(self, exchange) -> None:
        exchange.set_markets(self.markets())
        exchange.fetch = self
        exchange.timeout_on_exit = 0  # no real connection to drain: ccxt's close() need not wait its 250 ms
        self.exchange = exchange

    def inject(self, path_suffix: str, *faults: str) -> None:
        for fault in faults:
            if fault not in self.known_faults:
                raise ValueError(f"unknown fault {fault!r}")
        self.faults.setdefault(path_suffix, []).extend(faults)

    def requests_to(self, path_suffix: str) -> list:
        return [payload for _method, path, payload in self.requests if path.endswith(path_suffix)]

    def _record(self, method: str, parts: SplitResult, payload) -> None:
        self.requests.append((method, parts.path, payload if method == "POST" else dict(parse_qsl(parts.query))))

    def _take_fault(self, path: str, *, reads_too: bool = True, method: str = "GET") -> str | None:
        """The next injected fault for ``path`` (consumed), if any; ``reads_too=False`` leaves GETs alone."""
        if not reads_too and method == "GET":
            return None
        return next((queue.pop(0) for suffix, queue in self.faults.items() if path.endswith(suffix) and queue), None)
