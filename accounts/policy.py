"""The user policy: every rule that decides, for one user, whether a signal reaches them and whether it may open a
position for them. The Telegram broadcast, the live WebSocket push and the risk manager call these functions and
keep no copy of the rules.

The policy sits below ``signals`` and ``trading``: it takes plain facts (``SignalFacts``: symbol, side, risk level,
source; or any object shaped like a ``signals.Signal``, read duck-typed) and the user with their preferences, and
never imports those apps. What only ``trading`` knows (the open positions, the operator's switch, the daily loss
state) is passed in as facts too.

Rules, in the order they are checked for a position (the first one that refuses wins):
banned → auto-trading off → auto-trading paused → signal source off → risk level not accepted → symbol muted →
live mode without the plan's live trading → live mode without a connected, verified exchange → a news or flow signal
without the plan that trades it → a position on the symbol already open → max open positions (the free plan's cap
unless the plan lifts it) → correlated with an open position (when the filter is on). A signal reaches a user (card or live push) when they
are not banned, their chat is open (Telegram only: not blocked, DM alerts on) and the source, risk level and mute
rules accept it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from accounts.entitlements import open_positions_limit, user_features
from accounts.models import Feature
from accounts.symbols import symbol_canonical, symbol_is_muted, symbols_same_market
from engine.sectors import is_correlated

DEFAULT_RISK_LEVELS = ("low", "medium")
TELEGRAM = "telegram"
WEB = "web"
CHANNELS = (TELEGRAM, WEB)
# Signal sources whose positions a plan unlocks (their cards stay free); technical signals trade on every plan.
SOURCE_FEATURES = {"news": Feature.NEWS_TRADING, "flow": Feature.FLOW_TRADING}


@dataclass(frozen=True)
class SignalFacts:
    """What the policy needs of a signal."""

    symbol: str
    side: str
    risk_level: str
    source: str

    @classmethod
    def of(cls, signal) -> SignalFacts:
        """Facts of a ``SignalFacts`` or of any signal-shaped object (``signal.symbol`` a Symbol row or a string)."""
        if isinstance(signal, SignalFacts):
            return signal
        symbol = getattr(signal.symbol, "symbol", signal.symbol)
        return cls(symbol=str(symbol), side=signal.side, risk_level=signal.risk_level, source=signal.source)


@dataclass(frozen=True)
class PolicyRefusal:
    """Why not. ``reason`` is one of the ``trading.TradeRefusal.Reason`` values; ``detail`` is written for the user."""

    reason: str
    detail: str


# ---- signals: who receives a card or a live push ------------------------------------------------------------------


def signal_refused_by_preferences(*, preferences, signal) -> PolicyRefusal | None:
    """The preference rules every interface shares: signal source, accepted risk levels, muted symbols."""
    facts = SignalFacts.of(signal)
    if preferences is None:
        return None
    if facts.source == "news" and not preferences.news_signals:
        return PolicyRefusal("source_disabled", "news signals are off in your settings")
    if facts.source == "flow" and not preferences.flow_signals:
        return PolicyRefusal("source_disabled", "order-flow signals are off in your settings")
    if facts.risk_level not in (preferences.accepted_risk_levels or DEFAULT_RISK_LEVELS):
        return PolicyRefusal("risk_level", f"risk level {facts.risk_level} is not among your accepted levels")
    if symbol_is_muted(facts.symbol, preferences.muted_symbols):
        return PolicyRefusal(
            "muted_symbol", f"{symbol_canonical(facts.symbol) or facts.symbol} is muted in your settings"
        )
    return None


def signal_reaches_user(*, user, signal, channel: str = TELEGRAM) -> bool:
    """May ``signal`` be shown to ``user`` on ``channel`` ("telegram": the card in their private chat; "web": the
    live push to their dashboard)? ``user.preferences`` is read (select it with the user)."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    if user.is_banned:
        return False
    preferences = getattr(user, "preferences", None)
    if channel == TELEGRAM and (not user.is_active or preferences is None or not preferences.dm_alerts):
        return False
    return signal_refused_by_preferences(preferences=preferences, signal=signal) is None


def signal_reaches_chat(*, chat, signal) -> bool:
    """May ``signal``'s card be posted in a registered group or channel? The same source, risk level and mute rules
    as a user's, read from the chat's own filters (set by a group admin)."""
    if not chat.is_active:
        return False
    return signal_refused_by_preferences(preferences=chat, signal=signal) is None


# ---- positions: may a signal open one for the user ----------------------------------------------------------------


def live_exchange_ready(*, user) -> bool:
    """A connected (active) exchange whose keys were verified against the exchange."""
    return user.credentials.filter(is_active=True, validated_at__isnull=False).exists()


def position_allowed_for_user(
    *,
    user,
    signal,
    open_symbols: Sequence[str],
    exchange_ready: bool | Callable[[], bool] | None = None,
    features: Collection[str] | None = None,
) -> PolicyRefusal | None:
    """None when ``signal`` may open a position for ``user``, else the first rule that refuses.

    ``open_symbols``: the symbols of the user's pending and open positions. ``exchange_ready``: whether a live
    position has a connected, verified exchange (a bool or a callable asked only in live mode; None: looked up).
    ``features``: what the user's plan unlocks (None: looked up with ``accounts.entitlements.user_features``)."""
    preferences = user.preferences
    unlocked = user_features(user) if features is None else frozenset(features)
    facts = SignalFacts.of(signal)
    if user.is_banned:
        return PolicyRefusal("banned", "your account is suspended")
    if not user.auto_trading_enabled:
        return PolicyRefusal("auto_trading_off", "auto-trading is off for your account")
    if user.auto_trading_paused_reason:
        return PolicyRefusal("user_paused", user.auto_trading_paused_reason)
    refused = signal_refused_by_preferences(preferences=preferences, signal=facts)
    if refused is not None:
        return refused
    if not preferences.paper_mode:
        refused = live_mode_refusal(user=user, features=unlocked, exchange_ready=exchange_ready)
        if refused is not None:
            return refused
    paid_source = SOURCE_FEATURES.get(facts.source)
    if paid_source is not None and paid_source not in unlocked:
        return PolicyRefusal("plan_required", f"trading on {facts.source} signals is part of a paid plan (/subscribe)")
    symbol = symbol_canonical(facts.symbol) or facts.symbol
    if any(symbols_same_market(symbol, other) for other in open_symbols):
        # one position per symbol: exchanges net a one-way account's long and short
        return PolicyRefusal("symbol_busy", f"you already have a position on {symbol}")
    limit = open_positions_limit(preferred=preferences.max_open_positions, features=unlocked)
    if len(open_symbols) >= limit:
        detail = f"{len(open_symbols)} of {limit} positions open"
        if limit < preferences.max_open_positions:
            detail += " (the free plan's limit; /subscribe for more)"
        return PolicyRefusal("max_positions", detail)
    if preferences.correlation_filter and is_correlated(symbol, list(open_symbols)):
        return PolicyRefusal("correlated", f"{symbol} is in the same sector as an open position")
    return None


def live_mode_refusal(
    *, user, features: Collection[str] | None = None, exchange_ready: bool | Callable[[], bool] | None = None
) -> PolicyRefusal | None:
    """The one rule of live trading: a plan that unlocks it, then a connected, verified exchange. None when the user
    may trade live. Switching to live mode, switching auto-trading on in live mode and opening a live position all
    ask here (``exchange_ready``/``features`` as in ``position_allowed_for_user``)."""
    unlocked = user_features(user) if features is None else frozenset(features)
    if Feature.LIVE_TRADING not in unlocked:
        return PolicyRefusal("plan_required", "live trading is part of a paid plan (/subscribe)")
    ready = exchange_ready() if callable(exchange_ready) else exchange_ready
    if not (live_exchange_ready(user=user) if ready is None else ready):
        return PolicyRefusal("no_exchange", "live trading needs a connected exchange (/connect in the bot)")
    return None


def trading_mode_for_user(*, user) -> str:
    """ "paper" or "live": the mode a new position of ``user`` opens in."""
    return "paper" if user.preferences.paper_mode else "live"


# ---- auto-trading: what switching it on needs, and its state ------------------------------------------------------

# An app above accounts that owns a prerequisite of auto-trading (trading: the paper account) registers a check at
# start-up (its AppConfig.ready), so accounts never imports it. A check gets the user and their preferences as they
# will be once the change is saved, and returns what is missing (a sentence for the user) or None.
AutoTradingRequirement = Callable[..., str | None]
_AUTO_TRADING_REQUIREMENTS: list[AutoTradingRequirement] = []


def auto_trading_requirement_register(check: AutoTradingRequirement) -> AutoTradingRequirement:
    if check not in _AUTO_TRADING_REQUIREMENTS:
        _AUTO_TRADING_REQUIREMENTS.append(check)
    return check


_AUTO_TRADING_LIVE_MISSING = {
    "plan_required": "live trading is part of a paid plan: send /subscribe in the Telegram bot, or switch to paper "
    "trading",
    "no_exchange": "live trading needs a connected exchange: connect one with /connect in the Telegram bot, or "
    "switch to paper trading",
}


def auto_trading_missing(*, user, preferences) -> list[str]:
    """What auto-trading needs and the user lacks (empty: it can be switched on). Live mode: what
    ``live_mode_refusal`` asks (a plan with live trading, a connected, verified exchange); paper mode: what the registered checks ask (trading: a paper account with a balance)."""
    missing = []
    if user.is_banned:
        missing.append("your account is suspended")
    live_refused = None if preferences.paper_mode else live_mode_refusal(user=user)
    if live_refused is not None:
        missing.append(_AUTO_TRADING_LIVE_MISSING[live_refused.reason])
    for check in _AUTO_TRADING_REQUIREMENTS:
        text = check(user=user, preferences=preferences)
        if text:
            missing.append(text)
    return missing


@dataclass(frozen=True)
class AutoTradingStatus:
    """The state of a user's auto-trading as every interface shows it.

    ``state``: "on" (new signals open positions), "paused" (switched on, but a rule holds new entries), "off".
    ``action``: the one thing that turns it back on — "resume" (/resume or the Resume button), "switch_on"
    (/autotrade on or the switch), "wait_tomorrow" (nothing to do: the daily limit resets), "wait_operator"
    (paused for everybody), "" when it is on."""

    state: str
    reason: str = ""
    action: str = ""

    @property
    def is_on(self) -> bool:
        return self.state == "on"


def auto_trading_status(*, user, daily_loss_hit: bool = False, global_pause_reason: str = "") -> AutoTradingStatus:
    """The user's auto-trading state from their flags and the trading facts passed in."""
    if user.is_banned:
        return AutoTradingStatus("off", "your account is suspended")
    if not user.auto_trading_enabled:
        return AutoTradingStatus("off", user.auto_trading_paused_reason or "switched off", "switch_on")
    if user.auto_trading_paused_reason:
        return AutoTradingStatus("paused", user.auto_trading_paused_reason, "resume")
    if daily_loss_hit:
        return AutoTradingStatus("paused", "daily loss limit reached", "resume")
    if global_pause_reason:
        return AutoTradingStatus(
            "paused", f"paused for everybody by the operator ({global_pause_reason})", "wait_operator"
        )
    return AutoTradingStatus("on")
