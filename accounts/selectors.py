"""Reads of the accounts app worth naming: revenue of the subscriptions."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal

from django.db.models import Count, Sum

from accounts.models import Payment


def revenue_by_plan_and_gateway(*, since: datetime | None = None) -> list[dict]:
    """Money received (paid payments, refunds excluded) per plan, gateway and currency, exact (summed in base
    units). Rows: plan, gateway, currency, payments, amount (Decimal), refunded (count of refunded payments)."""
    payments = Payment.objects.filter(status__in=[Payment.Status.PAID, Payment.Status.REFUNDED])
    if since is not None:
        payments = payments.filter(paid_at__gte=since)
    rows = (
        payments.values("plan__name", "gateway", "currency", "decimals", "status")
        .annotate(n=Count("id"), total=Sum("amount_base_units"))
        .order_by()
    )
    merged: dict[tuple, dict] = defaultdict(lambda: {"payments": 0, "amount": Decimal(0), "refunded": 0})
    for row in rows:
        key = (row["plan__name"], row["gateway"], row["currency"])
        if row["status"] == Payment.Status.PAID:
            merged[key]["payments"] += row["n"]
            merged[key]["amount"] += Decimal(row["total"] or 0).scaleb(-row["decimals"])
        else:
            merged[key]["refunded"] += row["n"]
    return [
        {"plan": plan, "gateway": gateway, "currency": currency, **values}
        for (plan, gateway, currency), values in sorted(merged.items())
    ]


def revenue_by_currency(*, since: datetime | None = None) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for row in revenue_by_plan_and_gateway(since=since):
        totals[row["currency"]] += row["amount"]
    return dict(sorted(totals.items()))
