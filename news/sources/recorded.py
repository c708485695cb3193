"""`NewsSource` over a file of articles in the CryptoNews answer format, for the offline demo and replays.

Only articles already published at the clock's "now" and inside the requested window are returned, so a replay
clock (``signals.market_data`` in replay mode) releases them as it advances, like the live API would.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from news.sources.base import NewsItem, NewsSourceError
from news.sources.cryptonews import parse_article

logger = logging.getLogger(__name__)

WINDOW_MINUTES = {
    "last5min": 5,
    "last10min": 10,
    "last15min": 15,
    "last30min": 30,
    "last45min": 45,
    "last60min": 60,
    "today": 24 * 60,
    "yesterday": 48 * 60,
    "last7days": 7 * 24 * 60,
    "last30days": 30 * 24 * 60,
}


class RecordedNewsSource:
    name = "recorded"

    def __init__(self, path: Path, *, clock: Callable[[], datetime]) -> None:
        self._path = Path(path)
        self._clock = clock

    def _load(self) -> list[NewsItem]:
        try:
            body = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise NewsSourceError(f"recorded news file {self._path.name} unreadable: {exc}") from exc
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise NewsSourceError(f"recorded news file {self._path.name} has no 'data' list")
        items = []
        for position, raw in enumerate(data):
            item = parse_article(raw, rank_position=position, source=self.name)
            if item is not None:
                items.append(item)
        return items

    def recent_news(self, *, tickers: Sequence[str], window: str = "last60min") -> list[NewsItem]:
        now = self._clock()
        since = now - timedelta(minutes=WINDOW_MINUTES.get(window, 60))
        wanted = {t.upper() for t in tickers}
        return [
            item for item in self._load() if since <= item.published_at <= now and wanted.intersection(item.tickers)
        ]
