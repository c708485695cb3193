"""Positions, orders with client order ids, fills, paper accounts and the daily risk state."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import Q
from django.utils import timezone

from config.model_fields import MoneyField, PriceField, QuantityField, decimal_plain


class TradingMode(models.TextChoices):
    PAPER = "paper", "Paper"
    LIVE = "live", "Live"


class PaperAccount(models.Model):
    user = models.OneToOneField("accounts.TelegramUser", on_delete=models.CASCADE, related_name="paper_account")
    starting_balance = MoneyField()
    balance = MoneyField(help_text="Cash: starting balance + realised PnL − fees − funding")
    peak_equity = MoneyField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"paper account of {self.user}: {self.balance:.2f}"


class LiveAccount(models.Model):
    """The user's exchange account as the drawdown rule sees it: the peak equity (wallet balance + unrealised PnL,
    read through the exchange client's ``fetch_balance``/``fetch_positions`` on reconcile passes and live entry
    checks) and the last equity observed. ``peak_equity`` is null after a resume until the next observation."""

    user = models.OneToOneField("accounts.TelegramUser", on_delete=models.CASCADE, related_name="live_account")
    exchange = models.CharField(max_length=16, help_text="Exchange id the peak was measured on")
    peak_equity = MoneyField(null=True, blank=True)
    equity = MoneyField(null=True, blank=True, help_text="Last equity observed")
    observed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"live account of {self.user} on {self.exchange}: peak {self.peak_equity:.2f}"


class Position(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending entry"
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"
        FAILED = "failed", "Failed"

    class CloseReason(models.TextChoices):
        SL = "sl", "Stop loss"
        TP1 = "tp1", "Take profit 1"
        TP2 = "tp2", "Take profit 2"
        TRAILING = "trailing", "Trailing stop"
        BREAKEVEN = "breakeven", "Break-even stop"
        EXPIRY = "expiry", "Expired"
        MANUAL = "manual", "Closed manually"
        FLIP = "flip", "Flipped"
        EXCHANGE = "exchange", "Closed on the exchange"

    user = models.ForeignKey("accounts.TelegramUser", on_delete=models.PROTECT, related_name="positions")
    signal = models.ForeignKey(
        "signals.Signal", null=True, blank=True, on_delete=models.PROTECT, related_name="positions"
    )
    symbol = models.ForeignKey("signals.Symbol", on_delete=models.PROTECT, related_name="positions")
    side = models.CharField(max_length=5, choices=[("long", "Long"), ("short", "Short")])
    mode = models.CharField(max_length=5, choices=TradingMode.choices)
    exchange = models.CharField(max_length=16, help_text="'paper' or the exchange id")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    leverage = models.PositiveSmallIntegerField(default=1)
    quantity = QuantityField(help_text="Base-asset quantity at entry")
    remaining_quantity = QuantityField()
    entry_price = PriceField(null=True, blank=True)
    stop_price = PriceField()
    tp1_price = PriceField(null=True, blank=True)
    tp2_price = PriceField(null=True, blank=True)
    initial_stop_price = PriceField()
    tp1_done = models.BooleanField(default=False)
    trailing_active = models.BooleanField(default=False)
    best_price = PriceField(null=True, blank=True, help_text="Best price since entry, anchors the trailing stop")
    atr = PriceField(null=True, blank=True)
    monitored_until_ts = models.BigIntegerField(
        null=True, blank=True, help_text="Open time (ms) of the last candle the position monitor applied"
    )
    realised_pnl = MoneyField(default=Decimal("0"), help_text="Gross realised PnL, before fees and funding")
    fees = MoneyField(default=Decimal("0"))
    funding = MoneyField(default=Decimal("0"), help_text="Funding paid (positive) or received (negative)")
    close_reason = models.CharField(max_length=10, choices=CloseReason.choices, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # A retried execution of the same signal for the same user can never open a second position.
            models.UniqueConstraint(
                fields=["user", "signal"], condition=Q(signal__isnull=False), name="one_position_per_user_signal"
            ),
        ]
        indexes = [
            models.Index(fields=["user", "status"], name="position_user_status_idx"),
            models.Index(fields=["status", "symbol"], name="position_status_symbol_idx"),
            models.Index(fields=["user", "closed_at"], name="position_user_closed_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.mode} {self.side} {self.symbol} {decimal_plain(self.quantity)} ({self.status})"

    @property
    def net_pnl(self) -> Decimal:
        """Realised − fees − funding: the one figure the "Position closed" message, the dashboard, the REST API and
        the live push show (funding is settled before a paper close, so it is final once closed)."""
        return self.realised_pnl - self.fees - self.funding


class Order(models.Model):
    class State(models.TextChoices):
        NEW = "new", "New (not sent)"
        SUBMITTED = "submitted", "Submitted"
        OPEN = "open", "Open on the exchange"
        PARTIALLY_FILLED = "partially_filled", "Partially filled"
        FILLED = "filled", "Filled"
        CANCELLED = "cancelled", "Cancelled"
        REJECTED = "rejected", "Rejected"

    # Allowed transitions of the order state machine; terminal states have none.
    TRANSITIONS: dict[str, frozenset[str]] = {
        "new": frozenset({"submitted", "open", "filled", "partially_filled", "rejected", "cancelled"}),
        "submitted": frozenset({"open", "partially_filled", "filled", "cancelled", "rejected"}),
        "open": frozenset({"partially_filled", "filled", "cancelled"}),
        "partially_filled": frozenset({"partially_filled", "filled", "cancelled"}),
        "filled": frozenset(),
        "cancelled": frozenset(),
        "rejected": frozenset(),
    }

    class Leg(models.TextChoices):
        ENTRY = "entry"
        STOP_LOSS = "sl"
        TP1 = "tp1"
        TP2 = "tp2"
        CLOSE = "close"

    class Type(models.TextChoices):
        MARKET = "market"
        LIMIT = "limit"
        STOP_MARKET = "stop_market"
        TAKE_PROFIT = "take_profit"

    position = models.ForeignKey(Position, on_delete=models.PROTECT, related_name="orders")
    client_order_id = models.CharField(max_length=64, unique=True)
    exchange_order_id = models.CharField(max_length=128, blank=True)
    exchange = models.CharField(max_length=16)
    leg = models.CharField(max_length=8, choices=Leg.choices)
    type = models.CharField(max_length=16, choices=Type.choices)
    side = models.CharField(max_length=4, choices=[("buy", "Buy"), ("sell", "Sell")])
    quantity = QuantityField()
    price = PriceField(null=True, blank=True)
    trigger_price = PriceField(null=True, blank=True)
    reduce_only = models.BooleanField(default=False)
    state = models.CharField(max_length=20, choices=State.choices, default=State.NEW)
    filled_quantity = QuantityField(default=Decimal("0"))
    average_price = PriceField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["state"], name="order_state_idx"),
            models.Index(fields=["exchange", "exchange_order_id"], name="order_exchange_id_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.client_order_id} {self.side} {decimal_plain(self.quantity)} ({self.state})"

    def can_transition(self, new_state: str) -> bool:
        return new_state in self.TRANSITIONS[self.state]

    def transition(self, new_state: str) -> None:
        """Move along the state machine; raises ValueError on an illegal transition. The caller saves."""
        if new_state == self.state and new_state != self.State.PARTIALLY_FILLED:
            return
        if not self.can_transition(new_state):
            raise ValueError(f"order {self.client_order_id}: illegal transition {self.state} -> {new_state}")
        self.state = new_state


class Fill(models.Model):
    class Liquidity(models.TextChoices):
        TAKER = "taker"
        MAKER = "maker"

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="fills")
    position = models.ForeignKey(Position, on_delete=models.PROTECT, related_name="fills")
    trade_id = models.CharField(max_length=128, help_text="Exchange trade id, or a deterministic id for paper fills")
    price = PriceField()
    quantity = QuantityField()
    fee = MoneyField(default=Decimal("0"))
    fee_currency = models.CharField(max_length=10, default="USDT")
    liquidity = models.CharField(max_length=5, choices=Liquidity.choices, default=Liquidity.TAKER)
    realised_pnl = MoneyField(default=Decimal("0"), help_text="Gross PnL realised by this fill (exits)")
    filled_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["order", "trade_id"], name="unique_fill_per_order_trade")]
        indexes = [models.Index(fields=["position", "filled_at"], name="fill_position_time_idx")]

    def __str__(self) -> str:
        return f"fill {self.quantity} @ {self.price} ({self.order.client_order_id})"


class DailyRiskState(models.Model):
    """Per user and UTC day: realised PnL so far and whether the daily loss limit stopped new entries."""

    user = models.ForeignKey("accounts.TelegramUser", on_delete=models.CASCADE, related_name="daily_risk_states")
    day = models.DateField()
    start_equity = MoneyField()
    realised_pnl = MoneyField(default=Decimal("0"))
    positions_opened = models.PositiveIntegerField(default=0)
    loss_limit_hit = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "day"], name="unique_daily_risk_state")]

    def __str__(self) -> str:
        return f"{self.user} {self.day}: {self.realised_pnl}"


class TradingSwitch(models.Model):
    """The global auto-trading switch (one row, pk=1): an operator pauses every new entry at once."""

    auto_trading_paused = models.BooleanField(default=False)
    reason = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "trading switch"

    def __str__(self) -> str:
        return "auto-trading paused" if self.auto_trading_paused else "auto-trading on"

    @classmethod
    def current(cls) -> TradingSwitch:
        switch, _ = cls.objects.get_or_create(pk=1)
        return switch


class TradeRefusal(models.Model):
    """The risk manager refused to open a position for a user on a signal; recorded once, notified once."""

    class Reason(models.TextChoices):
        GLOBAL_PAUSE = "global_pause", "Auto-trading paused by the operator"
        BANNED = "banned", "Account suspended"
        AUTO_TRADING_OFF = "auto_trading_off", "Auto-trading is off"
        NO_EXCHANGE = "no_exchange", "No exchange connected"
        PLAN_REQUIRED = "plan_required", "Part of a paid plan"
        USER_PAUSED = "user_paused", "Your auto-trading is paused"
        MAX_POSITIONS = "max_positions", "Maximum open positions reached"
        SYMBOL_BUSY = "symbol_busy", "A position on this symbol is already open"
        RISK_LEVEL = "risk_level", "Risk level not accepted"
        MUTED_SYMBOL = "muted_symbol", "Symbol muted"
        SOURCE_DISABLED = "source_disabled", "Signal source disabled"
        CORRELATED = "correlated", "Correlated with an open position"
        DAILY_LOSS = "daily_loss", "Daily loss limit reached"
        DRAWDOWN = "drawdown", "Maximum drawdown reached"
        SIGNAL_CLOSED = "signal_closed", "Signal no longer open"
        SIZE = "size", "Position size below the market minimum"
        EXECUTION = "execution", "Execution failed"

    user = models.ForeignKey("accounts.TelegramUser", on_delete=models.CASCADE, related_name="trade_refusals")
    signal = models.ForeignKey("signals.Signal", on_delete=models.CASCADE, related_name="trade_refusals")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    detail = models.CharField(max_length=300, blank=True)
    notified = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "signal"], name="one_refusal_per_user_signal")]
        indexes = [models.Index(fields=["user", "created_at"], name="refusal_user_created_idx")]

    def __str__(self) -> str:
        return f"{self.user} refused {self.signal_id}: {self.reason}"


class ExecutionIntent(models.Model):
    """One (signal, user) that the trading fan-out of ``signal.created`` admitted (a user with auto-trading on, not
    banned), stored for all of them in one transaction before any task is queued; decided exactly once.

    ``trading.intents`` executes one intent per small task (the risk manager and the user policy decide; the outcome
    is written back here) and its sweeper queues again every intent still pending after ``due_at`` — the task was
    lost with Redis, the worker was killed, the database was down — so the queue is only a doorbell."""

    class Outcome(models.TextChoices):
        PENDING = "pending", "Not decided yet"
        OPENED = "opened", "Position opened"
        REFUSED = "refused", "Refused"
        SKIPPED = "skipped", "Signal no longer open"
        FAILED = "failed", "Failed"

    signal = models.ForeignKey("signals.Signal", on_delete=models.CASCADE, related_name="execution_intents")
    user = models.ForeignKey("accounts.TelegramUser", on_delete=models.CASCADE, related_name="execution_intents")
    outcome = models.CharField(max_length=8, choices=Outcome.choices, default=Outcome.PENDING)
    reason = models.CharField(
        max_length=16, blank=True, help_text="TradeRefusal reason, or why it was skipped or failed"
    )
    detail = models.CharField(max_length=300, blank=True)
    position = models.ForeignKey(Position, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Executions started")
    created_at = models.DateTimeField(default=timezone.now)
    due_at = models.DateTimeField(help_text="Still pending after this: the sweeper queues it again")
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["signal", "user"], name="one_intent_per_signal_user")]
        indexes = [
            models.Index(fields=["due_at"], condition=Q(outcome="pending"), name="intent_pending_due_idx"),
        ]

    def __str__(self) -> str:
        return f"intent {self.signal_id}/{self.user_id}: {self.outcome}"


class FundingCharge(models.Model):
    """Funding paid (positive) or received (negative) by a position at one funding time; charged once."""

    position = models.ForeignKey(Position, on_delete=models.PROTECT, related_name="funding_charges")
    funding_time = models.DateTimeField()
    rate = models.DecimalField(max_digits=16, decimal_places=10)
    mark_price = PriceField()
    quantity = QuantityField()
    amount = MoneyField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["position", "funding_time"], name="one_funding_charge_per_time")]
        indexes = [models.Index(fields=["funding_time"], name="funding_charge_time_idx")]

    def __str__(self) -> str:
        return f"funding {self.amount} on position {self.position_id} @ {self.funding_time:%Y-%m-%d %H:%M}"
