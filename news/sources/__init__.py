"""News sources behind one port (`NewsSource`): the CryptoNews API live, recorded articles for the offline demo."""

from news.sources.base import NewsItem, NewsSource, NewsSourceError

__all__ = ["NewsItem", "NewsSource", "NewsSourceError"]
