"""The `NewsSource` port and the article shape every source produces."""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[^0-9a-z]+")
_SPACE_BEFORE_PUNCTUATION = re.compile(r" ([,.:;!?])")


class NewsSourceError(Exception):
    """A source could not deliver (network, rate limit exhausted, malformed body). Logged by the poller."""


class NewsRateLimited(NewsSourceError):
    """The source kept answering 429 after the allowed retries."""


def plain_text(value: object, *, max_length: int | None = None) -> str:
    """Text without HTML tags or entities and with collapsed whitespace (escape again when rendering HTML)."""
    if not isinstance(value, str):
        return ""
    text = _SPACE.sub(" ", html.unescape(_TAG.sub(" ", value))).strip()
    text = _SPACE_BEFORE_PUNCTUATION.sub(r"\1", text)
    if max_length is not None and len(text) > max_length:
        text = text[: max_length - 1].rstrip() + "…"
    return text


def normalised_title_hash(title: str) -> str:
    """Same hash for the same headline re-posted with other case, punctuation, markup or spacing."""
    words = _NOT_WORD.sub(" ", plain_text(title).lower()).split()
    return hashlib.sha256(" ".join(words).encode()).hexdigest()


def normalised_url(url: str) -> str:
    """Scheme and host lower-cased, no query/fragment, no trailing slash, no ``www.``."""
    parts = urlsplit(url.strip())
    host = parts.netloc.lower().removeprefix("www.")
    path = parts.path.rstrip("/")
    return urlunsplit(("https", host, path, "", ""))


def url_hash(url: str) -> str:
    return hashlib.sha256(normalised_url(url).encode()).hexdigest()


@dataclass(frozen=True)
class NewsItem:
    """One article as a source delivered it, already cleaned (plain-text title/text, aware UTC date)."""

    source: str  # the NewsSource that delivered it, e.g. "cryptonews"
    url: str
    title: str
    text: str
    source_name: str  # the publisher, e.g. "CoinDesk"
    published_at: datetime
    tickers: tuple[str, ...]
    topics: tuple[str, ...] = ()
    provider_sentiment: str = ""  # "Positive" | "Negative" | "Neutral" | ""
    provider_score: Decimal | None = None  # CryptoNews sentiment score, -1.5 … +1.5
    rank_score: Decimal | None = None  # CryptoNews rank score (extra-fields=rankscore), when delivered
    rank_position: int | None = None  # 0-based position in a rank-sorted answer
    image_url: str = ""
    kind: str = ""  # "Article" | "Video"
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def external_id(self) -> str:
        return url_hash(self.url)

    @property
    def title_hash(self) -> str:
        return normalised_title_hash(self.title)


class NewsSource(Protocol):
    """Fetch recent ticker news. Implementations raise ``NewsSourceError`` when they cannot deliver at all."""

    name: str

    def recent_news(self, *, tickers: Sequence[str], window: str = "last60min") -> list[NewsItem]: ...


def decimal_or_none(value: object) -> Decimal | None:
    """A finite Decimal from a feed's number or numeric string (via ``str`` so 0.1 stays 0.1); None otherwise."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None
