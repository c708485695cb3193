"""What the dashboard and the API show, read through the owners' selectors (trading, signals), with a polite
fallback while a selector is not there yet. Also the server-side SVG of the equity curve (no JavaScript needed)."""

from __future__ import annotations

import logging
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

logger = logging.getLogger(__name__)


def pnl_summary_or_none(*, user, period: str) -> dict[str, Any] | None:
    """``trading.selectors.pnl_summary`` as a dict, or None when trading does not provide it (yet) or it fails."""
    try:
        from trading.selectors import pnl_summary
    except ImportError:
        return None
    try:
        summary = pnl_summary(user=user, period=period)
    except Exception:
        logger.warning("pnl_summary failed for user %s", user.pk, exc_info=True)
        return None
    if is_dataclass(summary):
        return asdict(summary)
    return dict(summary) if isinstance(summary, dict) else None


def _point(item: Any) -> tuple[datetime, float] | None:
    if isinstance(item, dict):
        moment = item.get("ts") or item.get("time") or item.get("at") or item.get("date") or item.get("timestamp")
        value = item.get("equity", item.get("value"))
    elif isinstance(item, list | tuple) and len(item) >= 2:
        moment, value = item[0], item[1]
    else:
        moment, value = getattr(item, "ts", None) or getattr(item, "at", None), getattr(item, "equity", None)
    if moment is None or value is None:
        return None
    if isinstance(moment, int | float):
        moment = datetime.fromtimestamp(moment / 1000 if moment > 10**11 else moment, tz=UTC)
    if not isinstance(moment, datetime):
        return None
    try:
        return moment, float(Decimal(str(value)))
    except (ArithmeticError, ValueError):
        return None


def equity_points(*, user) -> list[tuple[datetime, float]]:
    """``trading.selectors.equity_curve`` as (time, equity) pairs; [] when unavailable."""
    try:
        from trading.selectors import equity_curve
    except ImportError:
        return []
    try:
        curve = equity_curve(user=user)
    except Exception:
        logger.warning("equity_curve failed for user %s", user.pk, exc_info=True)
        return []
    if hasattr(curve, "ts") and hasattr(curve, "equity"):
        curve = list(zip(curve.ts, curve.equity, strict=False))
    points = [p for p in (_point(item) for item in (curve or [])) if p is not None]
    return sorted(points, key=lambda p: p[0])


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
    return {"width": width, "height": height, "points": coords, "low": low, "high": high,
            "first": values[0], "last": values[-1], "start": points[0][0], "end": points[-1][0],
            "rising": values[-1] >= values[0]}


def open_positions(*, user) -> list:
    try:
        from trading.selectors import position_list_open
    except ImportError:
        from trading.models import Position

        return list(Position.objects.filter(user=user, status=Position.Status.OPEN).select_related("symbol").order_by("-opened_at"))
    return list(position_list_open(user=user))


def recent_positions(*, user, limit: int = 20) -> list:
    """The user's most recently closed positions (``position_list_recent`` also lists open ones: those are left out,
    the page shows them in their own table)."""
    from trading.models import Position

    return list(Position.objects.filter(user=user, status=Position.Status.CLOSED).select_related("symbol")
                .order_by("-closed_at", "-pk")[:limit])


def signal_history(*, limit: int = 50, source: str | None = None) -> list:
    try:
        from signals.selectors import signal_list_recent
    except ImportError:
        from signals.models import Signal

        signals = Signal.objects.select_related("symbol").order_by("-created_at")
        if source:
            signals = signals.filter(source=source)
        return list(signals[:limit])
    return list(signal_list_recent(limit=limit, source=source))
