"""Where funding rates come from: the `FundingRateSource` port and its implementations.

* ``CcxtFundingRateSource`` — any ccxt exchange with ``fetchFundingRates`` (one call for all symbols) or
  ``fetchFundingRate`` (one call per symbol): okx, kucoinfutures, mexc; the client comes from
  ``exchanges.ccxt_factory`` and its errors go through the one ccxt error map (``exchanges.errors``).
* ``BitunixFundingRateSource`` — Bitunix is not in ccxt 4.5.90; the project's one Bitunix client
  (``exchanges.bitunix.BitunixClient.fetch_funding_rate``, the documented public endpoint
  ``GET https://fapi.bitunix.com/api/v1/futures/market/funding_rate?symbol=BTCUSDT``).
* ``MarketDataFundingRateSource`` — the replay: ``signals.market_data`` (``funding_rate(symbol)`` at the replay
  clock, from ``data/ohlcv/futures/*-8h-funding_rate.feather``), so the demo needs no network.
* ``RecordedFundingRateSource`` — the replay's other venues: an exchange's funding-rate history answer bundled under
  ``data/funding/`` (listed in ``data/manifest.json`` → ``funding_recorded``; OKX's
  ``GET /api/v5/public/funding-rate-history`` shape), the settlement at or before the replay clock.

Each returns ``signals.funding.FundingRate`` values; a rate that is missing, not finite or absurd (|rate| ≥ 5 %) is
logged and skipped; an exchange that cannot be reached raises ``FundingSourceError`` (the poller logs it and goes on
with the other exchanges).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import httpx

from exchanges.bitunix import BitunixClient
from exchanges.ccxt_factory import ccxt_client_create
from exchanges.errors import ExchangeError, FinalExchangeError, RetryableExchangeError, library_errors, map_ccxt_error
from news.sources.base import decimal_or_none
from signals.funding import FundingRate
from signals.market_data import get_market_data

logger = logging.getLogger(__name__)

MAX_SANE_RATE = Decimal("0.05")  # 5 % per interval: anything above is a parsing error, not a market


class FundingSourceError(Exception):
    pass


class FundingRateSource(Protocol):
    name: str

    def fetch_funding_rates(self, symbols: Sequence[str]) -> list[FundingRate]: ...


def _interval_hours(value: object, default: int = 8) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return int(value)
    if isinstance(value, str) and value.endswith("h") and value[:-1].isdigit() and int(value[:-1]) > 0:
        return int(value[:-1])
    return default


def _utc_from_ms(value: object) -> datetime | None:
    number = decimal_or_none(value)
    if number is None or number <= 0:
        return None
    return datetime.fromtimestamp(float(number) / 1000, tz=UTC)


def period_start(moment: datetime, interval_hours: int) -> datetime:
    """Floor ``moment`` to the funding grid (UTC epoch multiples of the interval); absorbs millisecond jitter."""
    step = interval_hours * 3600
    seconds = int(moment.timestamp()) // step * step
    return datetime.fromtimestamp(seconds, tz=UTC)


def _valid_rate(exchange: str, symbol: str, rate: Decimal | None) -> bool:
    if rate is None:
        logger.warning("funding %s %s: no usable rate; skipped", exchange, symbol)
        return False
    if abs(rate) >= MAX_SANE_RATE:
        logger.warning("funding %s %s: implausible rate %s; skipped", exchange, symbol, rate)
        return False
    return True


def parse_ccxt_funding_rate(exchange: str, entry: object, *, now: datetime | None = None) -> FundingRate | None:
    """A ccxt unified funding-rate structure → ``FundingRate`` (None, logged, when unusable)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("symbol"), str):
        logger.warning("funding %s: skipped an entry without a symbol", exchange)
        return None
    symbol = entry["symbol"]
    rate = decimal_or_none(entry.get("fundingRate"))
    if not _valid_rate(exchange, symbol, rate):
        return None
    interval = _interval_hours(entry.get("interval"))
    funding_time = (
        _utc_from_ms(entry.get("fundingTimestamp"))
        or _utc_from_ms(entry.get("nextFundingTimestamp"))
        # ccxt 4.5.90 reports KuCoin's current-rate ``timePoint`` here (newer ccxt: fundingTimestamp)
        or _utc_from_ms(entry.get("previousFundingTimestamp"))
        or _utc_from_ms(entry.get("timestamp"))
    )
    if funding_time is None:
        if now is None:
            logger.warning("funding %s %s: no funding time; skipped", exchange, symbol)
            return None
        funding_time = period_start(now, interval) + timedelta(hours=interval)  # the next settlement
    mark = decimal_or_none(entry.get("markPrice"))
    return FundingRate(exchange, symbol, rate, funding_time, interval, mark if mark and mark > 0 else None)


class CcxtFundingRateSource:
    """Funding rates of one ccxt exchange (sync class). ``exchange`` may be a prepared instance (tests)."""

    def __init__(
        self,
        exchange_id: str,
        *,
        exchange: Any = None,
        clock: Callable[[], datetime] | None = None,
        bulk: bool = True,
    ) -> None:
        self.name = exchange_id
        self._exchange = exchange
        self._bulk = bulk  # one fetch_funding_rates call when the exchange has it; else one call per symbol
        self._clock = clock or (lambda: datetime.now(UTC))

    def _instance(self) -> Any:
        if self._exchange is None:
            try:
                self._exchange = ccxt_client_create(
                    self.name, market_type="swap", asynchronous=False, timeout_ms=10_000
                )
            except FinalExchangeError as exc:
                raise FundingSourceError(str(exc)) from None
        return self._exchange

    def _call(self, method: str, *args) -> Any:
        try:
            return getattr(self._instance(), method)(*args)
        except library_errors() as exc:
            raise map_ccxt_error(exc, exchange=self.name) from exc

    def fetch_funding_rates(self, symbols: Sequence[str]) -> list[FundingRate]:
        exchange = self._instance()
        try:
            if not exchange.markets:
                self._call("load_markets")
            wanted = [s for s in symbols if s in exchange.markets]
            if self._bulk and exchange.has.get("fetchFundingRates"):
                answer = self._call("fetch_funding_rates", wanted)
                entries = list(answer.values()) if isinstance(answer, dict) else list(answer or [])
            else:
                entries = []
                for symbol in wanted:
                    try:
                        entries.append(self._call("fetch_funding_rate", symbol))
                    except FinalExchangeError as exc:  # this symbol only (delisted, not supported)
                        logger.warning(
                            "funding %s %s: %s; skipped", self.name, symbol, exc.source or type(exc).__name__
                        )
                    except RetryableExchangeError as exc:
                        if exc.source not in ("BadResponse", "NullResponse"):
                            raise
                        logger.warning("funding %s %s: %s; skipped", self.name, symbol, exc.source)
        except ExchangeError as exc:
            raise FundingSourceError(f"{self.name}: {exc.source or type(exc).__name__}") from exc
        now = self._clock()
        rates = [parse_ccxt_funding_rate(self.name, entry, now=now) for entry in entries]
        return [r for r in rates if r is not None]


class BitunixFundingRateSource:
    """Bitunix funding rates (one public call per symbol) through the project's Bitunix client. ``transport`` (an
    httpx transport) lets tests serve recorded bodies."""

    name = "bitunix"

    def __init__(
        self, *, transport: httpx.AsyncBaseTransport | None = None, timeout_seconds: float = 10.0, base_url: str = ""
    ) -> None:
        self._transport = transport
        self._timeout = timeout_seconds
        self._base_url = base_url

    def fetch_funding_rates(self, symbols: Sequence[str]) -> list[FundingRate]:
        return asyncio.run(self._fetch(symbols))

    async def _fetch(self, symbols: Sequence[str]) -> list[FundingRate]:
        options = {"base_url": self._base_url} if self._base_url else {}
        client = BitunixClient(api_key="", secret="", timeout=self._timeout, transport=self._transport, **options)
        rates: list[FundingRate] = []
        try:
            for symbol in symbols:
                try:
                    data = await client.fetch_funding_rate(symbol)
                except RetryableExchangeError as exc:  # rate limit, 5xx, timeout, network: the exchange is down
                    if exc.source == "BadResponse":
                        logger.warning("funding bitunix %s: answer is not JSON; skipped", symbol)
                        continue
                    raise FundingSourceError(f"bitunix: {exc}") from exc
                except ExchangeError as exc:  # an error answer about this symbol
                    logger.warning("funding bitunix %s: unexpected answer (%s); skipped", symbol, exc)
                    continue
                rate = self._parse(symbol, data)
                if rate is not None:
                    rates.append(rate)
        finally:
            await client.close()
        return rates

    def _parse(self, symbol: str, data: dict) -> FundingRate | None:
        rate = decimal_or_none(data.get("fundingRate"))
        if not _valid_rate(self.name, symbol, rate):
            return None
        funding_time = _utc_from_ms(data.get("nextFundingTime"))
        if funding_time is None:
            logger.warning("funding bitunix %s: no nextFundingTime; skipped", symbol)
            return None
        mark = decimal_or_none(data.get("markPrice"))
        interval = _interval_hours(data.get("fundingInterval"))
        return FundingRate(self.name, symbol, rate, funding_time, interval, mark if mark and mark > 0 else None)


class MarketDataFundingRateSource:
    """The replay: rates from ``signals.market_data`` at its clock, stamped with the current 8 h period."""

    name = "replay"

    def __init__(self, market_data: Any, *, interval_hours: int = 8) -> None:
        self._market_data = market_data
        self._interval = interval_hours

    def fetch_funding_rates(self, symbols: Sequence[str]) -> list[FundingRate]:
        now = self._market_data.now()
        rates = []
        for symbol in symbols:
            try:
                rate = self._market_data.funding_rate(symbol)
            except Exception as exc:  # a replay without this market must not stop the others
                logger.warning("funding replay %s: %s; skipped", symbol, type(exc).__name__)
                continue
            if rate is None:
                continue
            rate = decimal_or_none(rate)
            if _valid_rate(self.name, symbol, rate):
                rates.append(FundingRate(self.name, symbol, rate, period_start(now, self._interval), self._interval))
        return rates


def okx_funding_history_parse(body: object, *, symbol: str) -> list[tuple[datetime, Decimal]]:
    """OKX ``/api/v5/public/funding-rate-history`` answer → [(settlement time, rate)] in time order (bad rows skipped)."""
    data = body.get("data") if isinstance(body, dict) and body.get("code") == "0" else None
    if not isinstance(data, list):
        raise FundingSourceError("okx: not a funding-rate-history answer")
    rows = []
    for entry in data:
        if not isinstance(entry, dict):
            continue
        moment = _utc_from_ms(entry.get("fundingTime"))
        rate = decimal_or_none(entry.get("realizedRate") or entry.get("fundingRate"))
        if moment is not None and _valid_rate("okx", symbol, rate):
            rows.append((moment, rate))
    return sorted(rows)


RECORDED_FORMATS = {"okx-funding-rate-history": okx_funding_history_parse}


class RecordedFundingRateSource:
    """One venue's recorded funding history (a file in the exchange's answer shape), served at the replay clock."""

    def __init__(
        self,
        *,
        exchange: str,
        histories: dict[str, list[tuple[datetime, Decimal]]],
        clock: Callable[[], datetime],
        interval_hours: int = 8,
    ) -> None:
        self.name = exchange
        self._histories = histories  # unified symbol -> [(settlement, rate)]
        self._clock = clock
        self._interval = interval_hours

    @classmethod
    def from_manifest(cls, directory: Path, *, clock: Callable[[], datetime]) -> list[RecordedFundingRateSource]:
        return [
            cls(exchange=name, histories=histories, clock=clock)
            for name, histories in _recorded_histories(Path(directory)).items()
        ]

    def fetch_funding_rates(self, symbols: Sequence[str]) -> list[FundingRate]:
        now = self._clock()
        rates = []
        for symbol in symbols:
            settled = [row for row in self._histories.get(symbol, []) if row[0] <= now]
            if settled and now - settled[-1][0] < timedelta(hours=self._interval):
                moment, rate = settled[-1]
                rates.append(FundingRate(self.name, symbol, rate, moment, self._interval))
        return rates


@functools.lru_cache(maxsize=8)
def _recorded_histories(directory: Path) -> dict[str, dict[str, list[tuple[datetime, Decimal]]]]:
    """The recorded venues' histories under ``directory`` (exchange -> symbol -> [(settlement, rate)]), read once per
    process: the funding poll runs every market minute, every second on a fast replay clock."""
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise FundingSourceError(f"replay manifest unreadable: {exc}") from exc
    by_exchange: dict[str, dict[str, list[tuple[datetime, Decimal]]]] = {}
    for entry in manifest.get("funding_recorded", []):
        parse = RECORDED_FORMATS.get(entry.get("format"))
        if parse is None:
            logger.warning("funding: unknown recorded format %r; skipped", entry.get("format"))
            continue
        body = json.loads((directory / entry["file"]).read_text())
        by_exchange.setdefault(entry["exchange"], {})[entry["symbol"]] = parse(body, symbol=entry["symbol"])
    return by_exchange


def funding_sources_from_settings(*, market_data: Any = None) -> list[FundingRateSource]:
    """The one place that picks the sources: in replay mode the replay's own rates plus the venues recorded under
    ``REPLAY_DATA_DIR`` (``funding_recorded``), else the configured live exchanges."""
    from django.conf import settings

    if settings.MARKET_DATA_SOURCE == "replay":
        if market_data is None:
            market_data = get_market_data()
        recorded = RecordedFundingRateSource.from_manifest(Path(settings.REPLAY_DATA_DIR), clock=market_data.now)
        return [MarketDataFundingRateSource(market_data), *recorded]
    sources: list[FundingRateSource] = []
    for exchange_id in settings.FUNDING_EXCHANGES:
        if exchange_id == "bitunix":
            sources.append(BitunixFundingRateSource(base_url=settings.BITUNIX_BASE_URL))
        else:
            sources.append(CcxtFundingRateSource(exchange_id))
    return sources
