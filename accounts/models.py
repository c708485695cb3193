"""Users of the bot, their preferences, subscriptions and exchange credentials."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone as django_timezone

from accounts.crypto import decrypt_secret, encrypt_secret
from accounts.preference_bounds import WithinBounds
from accounts.solana_pay import currency_of_mint, solana_address_valid
from accounts.symbols import symbol_canonical
from config.model_fields import MoneyField, PercentField

RISK_LEVELS = ("low", "medium", "high")


class TelegramUser(models.Model):
    telegram_id = models.BigIntegerField(unique=True)
    username = models.CharField(max_length=64, blank=True)
    first_name = models.CharField(max_length=128, blank=True)
    language = models.CharField(max_length=8, default="en")
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA name, used for PnL day boundaries")
    is_admin = models.BooleanField(default=False)
    is_banned = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True, help_text="False once the user blocked the bot (Telegram 403)")
    auto_trading_enabled = models.BooleanField(default=False)
    auto_trading_paused_reason = models.CharField(max_length=200, blank=True)
    web_user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="telegram_user"
    )
    joined_at = models.DateTimeField(default=django_timezone.now)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["is_active", "is_banned"], name="tguser_active_banned_idx")]

    def __str__(self) -> str:
        return f"@{self.username}" if self.username else str(self.telegram_id)

    @property
    def is_effective_admin(self) -> bool:
        return self.is_admin or self.telegram_id in settings.ADMIN_TELEGRAM_IDS


class PnlPeriod(models.TextChoices):
    TODAY = "today", "Today"
    WEEK = "week", "This week"
    MONTH = "month", "This month"
    ALL = "all", "All time"


class SizingMode(models.TextChoices):
    PERCENT = "percent", "% of balance"
    RISK = "risk", "Risk % to stop"


def validate_risk_levels(value) -> None:
    if not isinstance(value, list) or not value or any(level not in RISK_LEVELS for level in value):
        raise ValidationError(f"Choose one or more of: {', '.join(RISK_LEVELS)}.")


MAX_MUTED_SYMBOLS = 200


def validate_symbol_list(value) -> None:
    if not isinstance(value, list) or any(not isinstance(s, str) or symbol_canonical(s) is None for s in value):
        raise ValidationError("Muted symbols are coin names such as DOGE or PEPE, separated by commas.")
    if len(value) > MAX_MUTED_SYMBOLS:
        raise ValidationError(f"You can mute at most {MAX_MUTED_SYMBOLS} symbols.")


class UserPreferences(models.Model):
    """Every per-user setting. Bot, web form and API change them only through ``accounts.services.preferences_update``
    (normalises, checks the bounds of ``accounts.preference_bounds`` and the invariants)."""

    user = models.OneToOneField(TelegramUser, on_delete=models.CASCADE, related_name="preferences")
    muted_symbols = models.JSONField(default=list, blank=True, validators=[validate_symbol_list])
    default_pnl_period = models.CharField(max_length=8, choices=PnlPeriod.choices, default=PnlPeriod.TODAY)
    dm_alerts = models.BooleanField(default=True)
    news_signals = models.BooleanField(default=True, help_text="Receive and trade news-based signals")
    flow_signals = models.BooleanField(default=True, help_text="Receive and trade order-flow signals")
    auto_flip = models.BooleanField(default=False, help_text="Flip an open position on a strong opposite flow signal")
    sizing_mode = models.CharField(max_length=8, choices=SizingMode.choices, default=SizingMode.PERCENT)
    position_size_pct = PercentField(default=Decimal("5"), validators=[WithinBounds("position_size_pct")])
    risk_per_trade_pct = PercentField(default=Decimal("1"), validators=[WithinBounds("risk_per_trade_pct")])
    max_open_positions = models.PositiveSmallIntegerField(default=3, validators=[WithinBounds("max_open_positions")])
    accepted_risk_levels = models.JSONField(default=list, validators=[validate_risk_levels])
    paper_mode = models.BooleanField(default=True)
    correlation_filter = models.BooleanField(default=True)
    funding_alerts = models.BooleanField(default=False)
    leverage = models.PositiveSmallIntegerField(default=5, validators=[WithinBounds("leverage")])
    trailing_stop = models.BooleanField(default=True)
    daily_loss_limit_pct = PercentField(default=Decimal("5"), validators=[WithinBounds("daily_loss_limit_pct")])
    max_drawdown_pct = PercentField(default=Decimal("20"), validators=[WithinBounds("max_drawdown_pct")])
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "user preferences"

    def __str__(self) -> str:
        return f"preferences of {self.user}"

    def save(self, *args, **kwargs):
        if not self.accepted_risk_levels:
            self.accepted_risk_levels = ["low", "medium"]
        super().save(*args, **kwargs)


class Feature(models.TextChoices):
    """What a paid plan unlocks. Signals stay free for everyone; a plan unlocks what costs money to run."""

    LIVE_TRADING = "live_trading", "Live auto-trading on your exchange"
    NEWS_TRADING = "news_trading", "Auto-trading on news signals"
    FLOW_TRADING = "flow_trading", "Auto-trading on order-flow signals and flips"
    MORE_POSITIONS = "more_positions", "More open positions at once"


def validate_features(value) -> None:
    if not isinstance(value, list) or any(f not in Feature.values for f in value) or len(set(value)) != len(value):
        raise ValidationError(f"Features must be a list of distinct values among: {', '.join(Feature.values)}.")


def validate_solana_address(value: str) -> None:
    """A base58 Solana public key (32 bytes)."""
    if value and not solana_address_valid(value):
        raise ValidationError("Not a Solana address (base58, 32 bytes).")


class Plan(models.Model):
    """A subscription plan (managed in the admin): its price on each gateway, its period and what it unlocks."""

    code = models.SlugField(max_length=32, unique=True, help_text="short id used in links and buttons, e.g. pro")
    name = models.CharField(max_length=64)
    description = models.CharField(max_length=200, blank=True)
    period_days = models.PositiveSmallIntegerField(
        default=30, validators=[MinValueValidator(1), MaxValueValidator(3660)]
    )
    features = models.JSONField(default=list, blank=True, validators=[validate_features])
    price_usd = MoneyField(default=Decimal("0"), help_text="shown to users; Whop charges the price of its own plan")
    whop_plan_id = models.CharField(
        max_length=64,
        unique=True,
        null=True,
        blank=True,
        help_text="plan_… id of the same plan on Whop (empty: not sold on Whop)",
    )
    solana_amount = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="price in integer base units: lamports for SOL, the token's smallest unit for an SPL token "
        "(empty: not sold for Solana)",
    )
    solana_mint = models.CharField(
        max_length=44,
        blank=True,
        validators=[validate_solana_address],
        help_text="SPL token mint (e.g. USDC); empty: native SOL",
    )
    solana_decimals = models.PositiveSmallIntegerField(
        default=9, validators=[MaxValueValidator(18)], help_text="decimals of the mint (9 for SOL, 6 for USDC)"
    )
    is_active = models.BooleanField(default=True, help_text="offered by /subscribe")
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "pk"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if not self.solana_mint and self.solana_decimals != 9:
            raise ValidationError({"solana_decimals": "Native SOL has 9 decimals (lamports)."})

    @property
    def solana_currency(self) -> str:
        return currency_of_mint(self.solana_mint)


class Subscription(models.Model):
    """A period of a plan for a user: a Whop membership (external_id = mem_…), or Solana / admin time."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        CANCELLED = "cancelled"
        EXPIRED = "expired"
        REFUNDED = "refunded"

    class Source(models.TextChoices):
        WHOP = "whop"
        SOLANA = "solana"
        ADMIN = "admin"

    user = models.ForeignKey(TelegramUser, on_delete=models.CASCADE, related_name="subscriptions")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    source = models.CharField(max_length=16, choices=Source.choices)
    external_id = models.CharField(
        max_length=128,
        null=True,
        blank=True,
        unique=True,
        help_text="Whop membership id (mem_…); empty for Solana and admin time",
    )
    valid_until = models.DateTimeField(null=True, blank=True, help_text="empty: open-ended (admin grant)")
    reminded_for = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="the valid_until an expiry reminder was sent for"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["status", "valid_until"], name="subscription_status_until_idx")]

    def __str__(self) -> str:
        return f"{self.plan} for {self.user} ({self.status})"

    @property
    def is_current(self) -> bool:
        return self.status == self.Status.ACTIVE and (
            self.valid_until is None or self.valid_until > django_timezone.now()
        )


class Payment(models.Model):
    """Money received (or expected): one row per Whop payment, per Solana Pay request, per admin refund record.

    Amounts are exact integers in the currency's smallest unit (cents, lamports, token base units) with their
    number of decimals; never floats. A pending Solana row is the transfer request shown to the user: its
    ``reference`` is the unique key the paying transaction must carry."""

    class Gateway(models.TextChoices):
        WHOP = "whop"
        SOLANA = "solana"

    class Status(models.TextChoices):
        PENDING = "pending"
        PAID = "paid"
        EXPIRED = "expired"
        REFUNDED = "refunded"

    user = models.ForeignKey(TelegramUser, on_delete=models.CASCADE, related_name="payments")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="payments")
    gateway = models.CharField(max_length=16, choices=Gateway.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    amount_base_units = models.PositiveBigIntegerField(help_text="in the smallest unit: cents, lamports, token units")
    decimals = models.PositiveSmallIntegerField()
    currency = models.CharField(max_length=16)
    mint = models.CharField(max_length=44, blank=True, help_text="SPL token mint; empty for SOL and Whop")
    recipient = models.CharField(max_length=44, blank=True, help_text="merchant wallet the transfer must reach")
    reference = models.CharField(
        max_length=44, unique=True, null=True, blank=True, help_text="Solana Pay reference key of this request"
    )
    external_id = models.CharField(
        max_length=128,
        unique=True,
        null=True,
        blank=True,
        help_text="Whop payment id (pay_…) or Solana transaction signature",
    )
    subscription = models.ForeignKey(
        Subscription, null=True, blank=True, on_delete=models.SET_NULL, related_name="payments"
    )
    expires_at = models.DateTimeField(null=True, blank=True, help_text="a pending request is not honoured after")
    paid_at = models.DateTimeField(null=True, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["status", "expires_at"], name="payment_status_expires_idx")]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} {self.gateway} for {self.plan} by {self.user} ({self.status})"

    @property
    def amount(self) -> Decimal:
        return Decimal(self.amount_base_units).scaleb(-self.decimals)


class Exchange(models.TextChoices):
    KUCOIN_FUTURES = "kucoinfutures", "KuCoin Futures"
    OKX = "okx", "OKX"
    MEXC = "mexc", "MEXC"
    BITUNIX = "bitunix", "Bitunix"


@dataclass(frozen=True)
class ApiSecrets:
    """Decrypted credentials, in memory only. Its repr never shows a secret."""

    api_key: str
    secret: str
    passphrase: str = ""

    def __repr__(self) -> str:
        return f"ApiSecrets(api_key=…{self.api_key[-4:]}, secret=***, passphrase=***)"

    __str__ = __repr__


class ExchangeCredential(models.Model):
    """One exchange account of a user; secrets only ever stored encrypted (MultiFernet)."""

    user = models.ForeignKey(TelegramUser, on_delete=models.CASCADE, related_name="credentials")
    exchange = models.CharField(max_length=16, choices=Exchange.choices)
    api_key_encrypted = models.TextField(editable=False)
    api_secret_encrypted = models.TextField(editable=False)
    passphrase_encrypted = models.TextField(blank=True, editable=False)
    last4 = models.CharField(max_length=4, editable=False)
    is_active = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=200, blank=True)
    validated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user"], condition=Q(is_active=True), name="one_active_credential_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.get_exchange_display()} key …{self.last4} of {self.user}"

    def set_secrets(self, secrets: ApiSecrets) -> None:
        self.api_key_encrypted = encrypt_secret(secrets.api_key)
        self.api_secret_encrypted = encrypt_secret(secrets.secret)
        self.passphrase_encrypted = encrypt_secret(secrets.passphrase) if secrets.passphrase else ""
        self.last4 = secrets.api_key[-4:]

    def secrets(self) -> ApiSecrets:
        return ApiSecrets(
            api_key=decrypt_secret(self.api_key_encrypted),
            secret=decrypt_secret(self.api_secret_encrypted),
            passphrase=decrypt_secret(self.passphrase_encrypted) if self.passphrase_encrypted else "",
        )


class WebhookEvent(models.Model):
    """One delivery of a payment provider, stored before any work so a repeat (same provider + event id) is a no-op."""

    class Provider(models.TextChoices):
        WHOP = "whop"
        HELIUS = "helius"

    class Status(models.TextChoices):
        RECEIVED = "received"
        PROCESSED = "processed"
        IGNORED = "ignored"
        REJECTED = "rejected"  # a payment that does not satisfy the conditions: stored, reported to operators
        FAILED = "failed"

    provider = models.CharField(max_length=16, choices=Provider.choices)
    event_id = models.CharField(max_length=200, help_text="webhook-id (Whop) or transaction signature (Helius)")
    event_type = models.CharField(max_length=64, blank=True)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED)
    error = models.TextField(blank=True)
    received_at = models.DateTimeField(default=django_timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["provider", "event_id"], name="unique_webhook_event")]
        indexes = [models.Index(fields=["status", "received_at"], name="webhook_status_received_idx")]
        db_table = "analytics_webhookevent"

    def __str__(self) -> str:
        return f"{self.provider} {self.event_id} ({self.status})"


class LoginToken(models.Model):
    """A one-time web dashboard login link. Only the SHA-256 of the token is stored; single use, short-lived."""

    user = models.ForeignKey("accounts.TelegramUser", on_delete=models.CASCADE, related_name="login_tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["expires_at"], name="logintoken_expires_idx")]
        db_table = "analytics_logintoken"

    def __str__(self) -> str:
        return f"login link of {self.user} (until {self.expires_at:%Y-%m-%d %H:%M})"


class TelegramChat(models.Model):
    """A group, supergroup or channel the bot was added to: it receives signal cards filtered by its own settings.

    Registered when Telegram reports the bot's membership (``my_chat_member``), unregistered when the bot is removed
    or a send is refused with 403. The filters are the same ones a user has (signal sources, accepted risk levels,
    muted symbols): ``accounts.policy`` reads them duck-typed, ``accounts.services.chat_filters_update`` writes them
    with the same normalisation and checks as ``preferences_update``."""

    class Kind(models.TextChoices):
        GROUP = "group", "Group"
        SUPERGROUP = "supergroup", "Supergroup"
        CHANNEL = "channel", "Channel"

    chat_id = models.BigIntegerField(unique=True, help_text="Telegram chat id (negative for groups and channels)")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    title = models.CharField(max_length=255, blank=True)
    username = models.CharField(max_length=64, blank=True, help_text="public @username, if any")
    is_active = models.BooleanField(default=True, help_text="False once the bot was removed or refused (403)")
    added_by = models.ForeignKey(
        TelegramUser, null=True, blank=True, on_delete=models.SET_NULL, related_name="chats_added"
    )
    news_signals = models.BooleanField(default=True)
    flow_signals = models.BooleanField(default=True)
    accepted_risk_levels = models.JSONField(default=list, validators=[validate_risk_levels])
    muted_symbols = models.JSONField(default=list, blank=True, validators=[validate_symbol_list])
    registered_at = models.DateTimeField(default=django_timezone.now)
    unregistered_at = models.DateTimeField(null=True, blank=True)
    unregistered_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        indexes = [models.Index(fields=["is_active"], name="tgchat_active_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.title or self.chat_id}"

    def save(self, *args, **kwargs):
        if not self.accepted_risk_levels:
            self.accepted_risk_levels = ["low", "medium"]
        super().save(*args, **kwargs)
