"""The news admin pages: staff can read articles and funding alerts (never edit them), others are refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from news.models import FundingAlert
from news.tests.factories import NewsArticleFactory
from signals.tests.factories import SymbolFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def rows():
    article = NewsArticleFactory(title="Exchange <b>hack</b> drains BTC", decision="signal", model_used="openai:gpt")
    alert = FundingAlert.objects.create(
        dedupe_key="funding:extreme:BTC/USDT:USDT:20261125T0800",
        kind=FundingAlert.Kind.EXTREME,
        symbol=SymbolFactory(symbol="BTC/USDT:USDT", base="BTC"),
        period_start=datetime(2026, 11, 25, 8, tzinfo=UTC),
        text="<b>BTC</b> funding 0.15 %",
        recipients=3,
    )
    return article, alert


def test_staff_reads_articles_and_alerts_but_cannot_edit(staff_client, rows):
    article, alert = rows
    page = staff_client.get(reverse("admin:news_newsarticle_changelist"))
    assert page.status_code == 200 and b"Exchange &lt;b&gt;hack&lt;/b&gt; drains BTC" in page.content
    assert reverse("admin:news_newsarticle_add").encode() not in page.content  # no "add" button
    for name, obj in (("admin:news_newsarticle_change", article), ("admin:news_fundingalert_change", alert)):
        change = staff_client.get(reverse(name, args=[obj.pk]))
        assert change.status_code == 200 and b'name="_save"' not in change.content  # view only
    assert staff_client.get(reverse("admin:news_fundingalert_changelist")).status_code == 200


def test_non_staff_are_sent_to_the_login(client, django_user_model, rows):
    client.force_login(django_user_model.objects.create_user("reader", password="a-long-password-1"))
    for name in ("admin:news_newsarticle_changelist", "admin:news_fundingalert_changelist"):
        response = client.get(reverse(name))
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
