from datetime import UTC, datetime

import factory
from factory.django import DjangoModelFactory

from news.models import NewsArticle
from news.sources.base import normalised_title_hash, url_hash


class NewsArticleFactory(DjangoModelFactory):
    class Meta:
        model = NewsArticle

    url = factory.Sequence(lambda n: f"https://news.example.com/story-{n}")
    external_id = factory.LazyAttribute(lambda o: url_hash(o.url))
    title = factory.Sequence(lambda n: f"Story number {n} about ETH")
    title_hash = factory.LazyAttribute(lambda o: normalised_title_hash(o.title))
    source = "cryptonews"
    source_name = "CoinDesk"
    text = ""
    tickers = factory.LazyFunction(lambda: ["ETH"])
    published_at = factory.LazyFunction(lambda: datetime(2026, 11, 25, 9, 50, tzinfo=UTC))
    provider_sentiment = "Positive"
    rank_position = 0
