"""What the dashboard and the API show, read through the trading and signals selectors; also the server-side SVG
of the equity curve (no JavaScript needed)."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import datetime
from typing import Any

from signals.selectors import signal_list_recent
from trading.models import Position
from trading.selectors import equity_curve, pnl_summary, position_list_open

logger = logging.getLogger(__name__)


def pnl_summary_or_none(*, user, period: str) -> dict[str, Any] | None:
    """``trading.selectors.pnl_summary`` as a dict, or None when it fails (the page then says so politely)."""
    try:
        return asdict(pnl_summary(user=user, period=period))
    except Exception:
        logger.warning("pnl_summary failed for user %s", user.pk, exc_info=True)
        return None


def equity_points(*, user) -> list[tuple[datetime, float]]:
    """``trading.selectors.equity_curve`` as (time, equity) pairs in time order; [] when it fails."""
    try:
        curve = equity_curve(user=user)
    except Exception:
        logger.warning("equity_curve failed for user %s", user.pk, exc_info=True)
        return []
    return sorted(((point.at, float(point.equity)) for point in curve), key=lambda p: p[0])


def equity_svg(points: list[tuple[datetime, float]], *, width: int = 600, height: int = 200) -> dict[str, Any] | None:
    """Polyline coordinates for an inline, responsive SVG (viewBox), with min/max labels; None under two points."""
    if len(points) < 2:
        return None
    times = [p[0].timestamp() for p in points]
    values = [p[1] for p in points]
    t0, t1 = times[0], times[-1] if times[-1] > times[0] else times[0] + 1
    low, high = min(values), max(values)
    span = high - low or 1.0
    pad = 8
    coords = " ".join(
        f"{pad + (t - t0) / (t1 - t0) * (width - 2 * pad):.1f},{pad + (high - v) / span * (height - 2 * pad):.1f}"
        for t, v in zip(times, values, strict=True)
    )
    return {
        "width": width,
        "height": height,
        "points": coords,
        "low": low,
        "high": high,
        "first": values[0],
        "last": values[-1],
        "start": points[0][0],
        "end": points[-1][0],
        "rising": values[-1] >= values[0],
    }


def open_positions(*, user) -> list:
    return list(position_list_open(user=user))


def recent_positions(*, user, limit: int = 20) -> list:
    """The user's most recently closed positions (the open ones have their own table)."""
    return list(
        Position.objects.filter(user=user, status=Position.Status.CLOSED)
        .select_related("symbol")
        .order_by("-closed_at", "-pk")[:limit]
    )


def signal_history(*, limit: int = 50, source: str | None = None) -> list:
    return list(signal_list_recent(limit=limit, source=source))
