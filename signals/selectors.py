"""Reads of the signals app (other apps read signals through these)."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.symbols import symbol_canonical
from signals.models import ScanRun, Signal, Symbol


def signal_list_recent(*, limit: int = 10, source: str | None = None) -> list[Signal]:
    queryset = Signal.objects.select_related("symbol").order_by("-created_at", "-id")
    if source:
        queryset = queryset.filter(source=source)
    return list(queryset[:limit])


def signal_list_open() -> QuerySet[Signal]:
    return Signal.objects.select_related("symbol").filter(status=Signal.Status.OPEN).order_by("created_at", "id")


def signal_list_unpublished(*, created_before) -> QuerySet[Signal]:
    """Signals whose ``signal.created`` was never dispatched (crash between commit and dispatch)."""
    return Signal.objects.filter(published_at__isnull=True, created_at__lt=created_before).order_by("created_at")


def signal_list_not_fanned_out(*, announced_before, created_after) -> QuerySet[Signal]:
    """Open signals announced before ``announced_before`` that some consumer has not fanned out yet (its task was
    lost), created after ``created_after`` (older ones are given up)."""
    return Signal.objects.filter(
        fanned_out_at__isnull=True,
        status=Signal.Status.OPEN,
        published_at__lt=announced_before,
        created_at__gt=created_after,
    ).order_by("created_at")


def symbol_get(*, symbol: str) -> Symbol | None:
    """The market ``symbol`` names exactly, else the perpetual of its spelling ("doge", "DOGE/USDT";
    ``accounts.symbols``)."""
    row = Symbol.objects.filter(symbol=symbol).first()
    canonical = symbol_canonical(symbol)
    if row is None and canonical is not None and canonical != symbol:
        row = Symbol.objects.filter(symbol=canonical).first()
    return row


def symbol_list_scannable() -> list[str]:
    """Active, not globally muted symbols, in a stable order (batching depends on it)."""
    return list(
        Symbol.objects.filter(is_active=True, is_muted=False).order_by("symbol").values_list("symbol", flat=True)
    )


def symbol_list_muted() -> list[str]:
    return list(
        Symbol.objects.filter(is_active=True, is_muted=True).order_by("symbol").values_list("symbol", flat=True)
    )


def scan_run_latest(*, limit: int = 1) -> list[ScanRun]:
    """The latest scans (for the admin health page): last scan time, counts, skipped reasons."""
    return list(ScanRun.objects.order_by("-started_at", "-id")[:limit])
