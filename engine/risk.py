"""Risk level of a signal: "low" | "medium" | "high", from volatility, room, confirmation and funding.

Points (higher is riskier), then ``score <= low_max`` → low, ``<= medium_max`` → medium, else high:

- volatility: ATR as % of price ``>= atr_pct_high`` → +2, ``>= atr_pct_elevated`` → +1;
- room: the opposing S/R level closer than ``sr_tight_atr`` ATRs → +1 (no level within the lookback → 0);
- confirmation: 4 of 4 checks → -1, 3 → 0, 2 → +1, fewer → +2;
- funding (per 8 h, the side that pays: longs when the rate is positive, shorts when negative):
  paying ``>= funding_extreme`` → +2, ``>= funding_elevated`` → +1; receiving funding never lowers the score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from engine.errors import InvalidParameters

RISK_LEVELS: tuple[str, ...] = ("low", "medium", "high")


@dataclass(frozen=True)
class RiskThresholds:
    atr_pct_elevated: float = 1.5
    atr_pct_high: float = 3.0
    sr_tight_atr: float = 1.0
    funding_elevated: float = 0.0003  # 0.03 % per 8 h (the usual baseline is 0.01 %)
    funding_extreme: float = 0.001  # 0.1 % per 8 h
    low_max: int = 0
    medium_max: int = 2


DEFAULT_THRESHOLDS = RiskThresholds()


def risk_score(
    *,
    atr_pct: float,
    sr_distance_atr: float | None,
    confirmations: int | Sequence[str],
    funding_rate: float | None = None,
    side: str,
    thresholds: RiskThresholds = DEFAULT_THRESHOLDS,
) -> int:
    """The integer score behind ``risk_level`` (exposed for explanations and tests)."""
    if side not in ("long", "short"):
        raise InvalidParameters(f"side must be 'long' or 'short', got {side!r}")
    if not math.isfinite(atr_pct) or atr_pct < 0:
        raise InvalidParameters(f"atr_pct must be a finite non-negative number, got {atr_pct!r}")
    count = confirmations if isinstance(confirmations, int) else len(confirmations)
    score = 0
    if atr_pct >= thresholds.atr_pct_high:
        score += 2
    elif atr_pct >= thresholds.atr_pct_elevated:
        score += 1
    if sr_distance_atr is not None and math.isfinite(sr_distance_atr) and sr_distance_atr < thresholds.sr_tight_atr:
        score += 1
    score += {4: -1, 3: 0, 2: 1}.get(count, 2 if count < 2 else -1)
    if funding_rate is not None and math.isfinite(funding_rate):
        paid = funding_rate if side == "long" else -funding_rate
        if paid >= thresholds.funding_extreme:
            score += 2
        elif paid >= thresholds.funding_elevated:
            score += 1
    return score


def risk_level(
    *,
    atr_pct: float,
    sr_distance_atr: float | None,
    confirmations: int | Sequence[str],
    funding_rate: float | None = None,
    side: str,
    thresholds: RiskThresholds = DEFAULT_THRESHOLDS,
) -> str:
    """ "low" | "medium" | "high" (see the module docstring for the scoring)."""
    score = risk_score(
        atr_pct=atr_pct,
        sr_distance_atr=sr_distance_atr,
        confirmations=confirmations,
        funding_rate=funding_rate,
        side=side,
        thresholds=thresholds,
    )
    if score <= thresholds.low_max:
        return "low"
    if score <= thresholds.medium_max:
        return "medium"
    return "high"


# --- maximum drawdown (account protection) ---------------------------------------------------------------------
# Pure arithmetic on numbers of one type (Decimal from the trading app, float in backtests): no rounding here.


def peak_after(peak, equity):
    """The peak equity after observing ``equity``: it never falls (``None``, no peak yet, starts at ``equity``)."""
    if peak is None or equity > peak:
        return equity
    return peak


def drawdown_pct(peak, equity):
    """How far ``equity`` is below ``peak``, in percent of the peak; 0 at or above the peak or without a positive
    peak (same number type as the inputs)."""
    if peak is None or not peak > 0 or equity >= peak:
        return type(equity)(0)
    return (peak - equity) / peak * 100


def drawdown_breached(peak, equity, max_drawdown_pct) -> bool:
    """True when ``equity`` is ``max_drawdown_pct`` % or more below ``peak`` (new entries are refused and
    auto-trading pauses). No positive peak yet: never. The limit must be positive."""
    if not max_drawdown_pct > 0:
        raise InvalidParameters(f"max_drawdown_pct must be positive, got {max_drawdown_pct!r}")
    if peak is None or not peak > 0:
        return False
    return drawdown_pct(peak, equity) >= max_drawdown_pct
