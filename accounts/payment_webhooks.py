"""Authenticity checks and payload parsing of the payment providers' webhooks (pure functions, no database).

Whop signs with Standard Webhooks (https://www.standardwebhooks.com/): headers ``webhook-id``,
``webhook-timestamp`` (Unix seconds) and ``webhook-signature`` (one or more space-separated ``v1,<base64>``);
signature = base64(HMAC-SHA256(key, "{id}.{timestamp}.{raw body}")) where key is the secret's bytes, or the
base64-decoded part after ``whsec_``. Deliveries whose timestamp is more than 5 minutes off are replays.

Helius sends back, in the ``Authorization`` header, the value configured on the webhook; there is no HMAC.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from accounts.inputs import InputError, strict_json_loads
from accounts.solana_pay import amount_text, currency_of_mint, solana_address_valid, solana_signature_valid
from accounts.telegram_ids import telegram_id_valid

TIMESTAMP_TOLERANCE_SECONDS = 5 * 60


class WebhookAuthenticationError(Exception):
    """Missing or wrong signature / token, or a stale timestamp: answer 401."""


class WebhookPayloadError(Exception):
    """The body is not what the provider sends: answer 400."""


def standard_webhooks_key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            raise WebhookAuthenticationError("the configured webhook secret is not valid base64") from None
    return secret.encode()


def standard_webhooks_sign(*, secret: str, msg_id: str, timestamp: int | str, body: bytes) -> str:
    """``v1,<base64>`` for a delivery (what the sender puts in webhook-signature; used by the tests too)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(standard_webhooks_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def standard_webhooks_verify(*, secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None) -> str:
    """Verify a Standard Webhooks delivery; returns the webhook-id or raises WebhookAuthenticationError."""
    if not secret:
        raise WebhookAuthenticationError("no webhook secret is configured")
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not msg_id or not timestamp or not signatures:
        raise WebhookAuthenticationError("missing webhook-id, webhook-timestamp or webhook-signature header")
    if len(msg_id) > 200 or not msg_id.isascii() or not msg_id.isprintable():
        raise WebhookAuthenticationError("webhook-id is too long or not printable ASCII")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookAuthenticationError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - sent_at) > TIMESTAMP_TOLERANCE_SECONDS:
        raise WebhookAuthenticationError("webhook-timestamp is more than 5 minutes off")
    expected = standard_webhooks_sign(secret=secret, msg_id=msg_id, timestamp=timestamp, body=body).encode()
    matched = False
    for candidate in signatures.split(" "):
        # compare every candidate (no early exit), each in constant time
        matched |= hmac.compare_digest(expected, candidate.strip().encode())
    if not matched:
        raise WebhookAuthenticationError("no matching signature")
    return msg_id


def authorization_verify(*, expected: str, received: str) -> None:
    """Helius: the Authorization header must equal the configured token (constant time)."""
    if not expected:
        raise WebhookAuthenticationError("no Helius auth token is configured")
    if not received or not hmac.compare_digest(expected.encode(), received.encode()):
        raise WebhookAuthenticationError("wrong Authorization header")


def json_body(body: bytes) -> Any:
    """The body as JSON, refusing what JSON does not allow (NaN, Infinity) and what cannot be stored as received
    (NUL, lone surrogates, numbers beyond 64 bits or not finite): ``accounts.inputs.strict_json_loads``."""
    try:
        return strict_json_loads(body)
    except InputError as error:
        raise WebhookPayloadError(str(error)) from None


# ---- shared field checks -------------------------------------------------------------------------------------------

EARLIEST = datetime(2015, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_EVENT_TYPE = re.compile(r"^[a-z0-9_.]{1,64}$")


def _telegram_id(value: Any) -> int | None:
    """None when absent; the id when it can be a Telegram user; WebhookPayloadError otherwise."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        value = int(value)
    if not telegram_id_valid(value):
        raise WebhookPayloadError("metadata.telegram_id is not a Telegram user id")
    return value


def _id(value: Any, what: str, *, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise WebhookPayloadError(f"missing {what}")
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        value = str(value)
    if not isinstance(value, str) or not _ID.match(value):
        raise WebhookPayloadError(f"{what} is not a valid id")
    return value


def _timestamp(value: Any, what: str) -> datetime | None:
    """ISO 8601 text or Unix seconds (ms tolerated), between 2015 and 2100; None when absent."""
    if value is None or value == "":
        return None
    parsed: datetime | None = None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 14:
        value = int(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
        if math.isfinite(seconds) and abs(seconds) < 1e14:
            if seconds > 1e11:
                seconds /= 1000
            parsed = datetime.fromtimestamp(seconds, tz=UTC) if 0 <= seconds < 4.2e9 else None
    elif isinstance(value, str) and len(value) <= 40:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
    if parsed is None or not EARLIEST <= parsed < LATEST:
        raise WebhookPayloadError(f"{what} is not a valid time")
    return parsed


def _cents(value: Any, what: str) -> int | None:
    """A money amount (number or numeric text, as Whop sends it) in integer cents; never via binary floats beyond
    their shortest text (``6.9`` is read as the decimal 6.9)."""
    if value is None or value == "":
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | str)
        or (isinstance(value, str) and len(value) > 30)
    ):
        raise WebhookPayloadError(f"{what} is not an amount")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise WebhookPayloadError(f"{what} is not an amount") from None
    if not amount.is_finite() or amount < 0 or amount > Decimal(10) ** 9:
        raise WebhookPayloadError(f"{what} is not an amount")
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _object(value: Any, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebhookPayloadError(f"{what} must be an object")
    return value


# ---- Whop ----------------------------------------------------------------------------------------------------------

WHOP_ACTIVATING = frozenset({"membership.activated", "membership.went_valid"})
WHOP_PAYMENT = frozenset({"payment.succeeded"})
WHOP_DEACTIVATING = frozenset(
    {
        "membership.deactivated",
        "membership.went_invalid",
        "membership.cancelled",
        "membership.canceled",
        "membership.expired",
    }
)
WHOP_REFUND = frozenset({"payment.refunded", "refund.created"})


@dataclass(frozen=True)
class WhopEvent:
    """One Whop delivery, reduced to what the subscriptions need."""

    event_type: str
    action: str  # "activate" | "payment" | "deactivate" | "refund" | "ignore"
    membership_id: str | None
    payment_id: str | None
    whop_plan_id: str | None
    telegram_id: int | None
    period_end: datetime | None  # the membership's renewal_period_end: validity comes from it
    paid_at: datetime | None
    amount_cents: int | None
    currency: str


def _plan_id(data: dict, membership: dict) -> str | None:
    for holder in (data, membership):
        plan = holder.get("plan")
        if isinstance(plan, dict):
            plan = plan.get("id")
        plan = plan if plan not in (None, "") else holder.get("plan_id")
        if plan not in (None, ""):
            return _id(plan, "plan id")
    return None


def whop_event(payload: Any) -> WhopEvent:
    """Parse a Whop delivery (``{"type": …, "data": {…}}``, API v1, or ``{"action": …}`` of v2).

    The buyer's Telegram id travels in the checkout metadata (``data.metadata.telegram_id``, or the membership's),
    set when /subscribe creates the checkout. Impossible ids, times and amounts raise WebhookPayloadError (400)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        raise WebhookPayloadError("expected a JSON object with a 'data' object")
    event_type = payload.get("type") or payload.get("action") or payload.get("event")
    if not isinstance(event_type, str) or not _EVENT_TYPE.match(event_type):
        raise WebhookPayloadError("missing or invalid event type")
    data = payload["data"]
    if event_type in WHOP_ACTIVATING or event_type in WHOP_DEACTIVATING:
        action = "activate" if event_type in WHOP_ACTIVATING else "deactivate"
        membership, payment_id = data, None
        membership_id = _id(data.get("id") or data.get("membership_id"), "membership id", required=True)
    elif event_type in WHOP_PAYMENT or event_type in WHOP_REFUND:
        action = "payment" if event_type in WHOP_PAYMENT else "refund"
        payment = _object(data.get("payment"), "data.payment") if event_type == "refund.created" else data
        payment_id = _id(payment.get("id"), "payment id", required=True)
        membership = _object(payment.get("membership"), "membership")
        membership_id = _id(
            membership.get("id") or payment.get("membership_id") or data.get("membership_id"), "membership id"
        )
    else:
        action, membership, payment_id = "ignore", _object(data.get("membership"), "membership"), None
        membership_id = _id(data.get("membership_id") or membership.get("id") or data.get("id"), "id")
    metadata = _object(data.get("metadata"), "metadata") or _object(membership.get("metadata"), "metadata")
    currency = data.get("currency") or membership.get("currency") or "usd"
    if not isinstance(currency, str) or not currency.isascii() or not currency.isalpha() or len(currency) > 8:
        raise WebhookPayloadError("currency is not a currency code")
    amount_source = data.get("payment") if event_type == "refund.created" else data
    amount_source = amount_source if isinstance(amount_source, dict) else {}
    amount = next(
        (amount_source.get(k) for k in ("final_amount", "total", "amount") if amount_source.get(k) is not None), None
    )
    return WhopEvent(
        event_type=event_type,
        action=action,
        membership_id=membership_id,
        payment_id=payment_id,
        whop_plan_id=_plan_id(data, membership),
        telegram_id=_telegram_id(metadata.get("telegram_id")),
        period_end=_timestamp(
            data.get("renewal_period_end") or membership.get("renewal_period_end"), "renewal_period_end"
        ),
        paid_at=_timestamp(data.get("paid_at") or data.get("created_at"), "paid_at"),
        amount_cents=_cents(amount, "amount"),
        currency=currency.upper(),
    )


# ---- Helius --------------------------------------------------------------------------------------------------------

MAX_TRANSACTIONS_PER_DELIVERY = 100


def _address_or_blank(value: Any, what: str) -> str:
    if value in (None, ""):
        return ""
    if not solana_address_valid(value):
        raise WebhookPayloadError(f"{what} is not a Solana address")
    return value


def _list_of_objects(value: Any, what: str) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list) or any(not isinstance(item, dict) for item in value):
        raise WebhookPayloadError(f"{what} must be a list of objects")
    return value


def _integer(value: Any, what: str, *, signed: bool = False) -> int:
    """An exact integer amount (lamports, token base units): a JSON integer or integer text, never a float."""
    if (
        isinstance(value, str)
        and len(value) <= 30
        and (value.lstrip("-") if signed else value).isdigit()
        and value.isascii()
    ):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or (value < 0 and not signed):
        raise WebhookPayloadError(f"{what} is not an integer amount")
    return value


def _raw_token_amount(value: Any, what: str, *, signed: bool = False) -> tuple[int, int] | None:
    if value is None:
        return None
    raw = _object(value, what)
    decimals = raw.get("decimals")
    if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 18:
        raise WebhookPayloadError(f"{what}.decimals is not a number of decimals")
    return _integer(raw.get("tokenAmount"), f"{what}.tokenAmount", signed=signed), decimals


def helius_transaction_validate(transaction: Any) -> dict[str, Any]:
    """Check the shape of one enhanced transaction (what the payment check reads); raises WebhookPayloadError."""
    if not isinstance(transaction, dict):
        raise WebhookPayloadError("each transaction must be a JSON object")
    if not solana_signature_valid(transaction.get("signature")):
        raise WebhookPayloadError("a transaction without a valid signature (enhanced transactions are expected)")
    if transaction.get("timestamp") is not None:
        _timestamp(transaction["timestamp"], "timestamp")
    for transfer in _list_of_objects(transaction.get("nativeTransfers"), "nativeTransfers"):
        _address_or_blank(transfer.get("fromUserAccount"), "nativeTransfers.fromUserAccount")
        _address_or_blank(transfer.get("toUserAccount"), "nativeTransfers.toUserAccount")
        _integer(transfer.get("amount"), "nativeTransfers.amount")
    for transfer in _list_of_objects(transaction.get("tokenTransfers"), "tokenTransfers"):
        for key in ("fromUserAccount", "toUserAccount", "fromTokenAccount", "toTokenAccount", "mint"):
            _address_or_blank(transfer.get(key), f"tokenTransfers.{key}")
        token_amount = transfer.get("tokenAmount")
        if token_amount is not None and (isinstance(token_amount, bool) or not isinstance(token_amount, int | float)):
            raise WebhookPayloadError("tokenTransfers.tokenAmount is not a number")
        _raw_token_amount(transfer.get("rawTokenAmount"), "tokenTransfers.rawTokenAmount")
    for entry in _list_of_objects(transaction.get("accountData"), "accountData"):
        _address_or_blank(entry.get("account"), "accountData.account")
        if entry.get("nativeBalanceChange") is not None:
            _integer(entry["nativeBalanceChange"], "accountData.nativeBalanceChange", signed=True)
        for change in _list_of_objects(entry.get("tokenBalanceChanges"), "tokenBalanceChanges"):
            for key in ("userAccount", "tokenAccount", "mint"):
                _address_or_blank(change.get(key), f"tokenBalanceChanges.{key}")
            _raw_token_amount(change.get("rawTokenAmount"), "tokenBalanceChanges.rawTokenAmount", signed=True)
    for instruction in _list_of_objects(transaction.get("instructions"), "instructions"):
        accounts = instruction.get("accounts") or []
        if not isinstance(accounts, list) or any(not isinstance(a, str) for a in accounts):
            raise WebhookPayloadError("instructions.accounts must be a list of addresses")
    return transaction


def helius_transactions(payload: Any) -> list[dict[str, Any]]:
    """Helius posts a JSON array of enhanced transactions; each is checked (``helius_transaction_validate``)."""
    if isinstance(payload, dict):
        payload = [payload]
    if not isinstance(payload, list) or not payload:
        raise WebhookPayloadError("expected a non-empty JSON array of transactions")
    if len(payload) > MAX_TRANSACTIONS_PER_DELIVERY:
        raise WebhookPayloadError("too many transactions in one delivery")
    return [helius_transaction_validate(item) for item in payload]


def helius_signature(transaction: Mapping[str, Any]) -> str:
    return transaction["signature"]


def helius_timestamp(transaction: Mapping[str, Any]) -> datetime | None:
    return _timestamp(transaction.get("timestamp"), "timestamp")


def helius_accounts(transaction: Mapping[str, Any]) -> set[str]:
    """Every account the transaction touches (a Solana Pay reference key shows up among them)."""
    accounts: set[str] = set()
    for entry in transaction.get("accountData") or []:
        if isinstance(entry, dict) and isinstance(entry.get("account"), str):
            accounts.add(entry["account"])
    for instruction in transaction.get("instructions") or []:
        if isinstance(instruction, dict):
            accounts.update(a for a in instruction.get("accounts") or [] if isinstance(a, str))
            for inner in instruction.get("innerInstructions") or []:
                if isinstance(inner, dict):
                    accounts.update(a for a in inner.get("accounts") or [] if isinstance(a, str))
    return accounts


@dataclass(frozen=True)
class SolanaPaymentCheck:
    received_base_units: int
    reason: str  # empty: the transaction pays the request

    @property
    def ok(self) -> bool:
        return not self.reason


def helius_payment_check(
    transaction: Mapping[str, Any], *, reference: str, recipient: str, mint: str, price_base_units: int, decimals: int
) -> SolanaPaymentCheck:
    """Does this (validated) enhanced transaction pay the request? All amounts are exact integers.

    It must have succeeded (``transactionError`` null), carry the request's reference key among its accounts, move
    the plan's asset — native SOL when ``mint`` is empty, else that SPL mint with the plan's decimals — to the
    merchant wallet ``recipient``, and the amount received there must be at least the price."""
    currency = currency_of_mint(mint)
    if transaction.get("transactionError") is not None:
        return SolanaPaymentCheck(0, "the transaction failed on chain (transactionError is set)")
    if reference not in helius_accounts(transaction):
        return SolanaPaymentCheck(0, "the payment reference is not among the transaction's accounts")
    native_in = sum(
        t["amount"] for t in transaction.get("nativeTransfers") or [] if t.get("toUserAccount") == recipient
    )
    token_transfers_in = [t for t in transaction.get("tokenTransfers") or [] if t.get("toUserAccount") == recipient]
    if not mint:
        received = native_in
        if received == 0 and token_transfers_in:
            other = currency_of_mint(token_transfers_in[0].get("mint") or "")
            return SolanaPaymentCheck(0, f"paid in another token ({other}); the price is in SOL")
    else:
        wrong = [t for t in token_transfers_in if t.get("mint") != mint]
        matching = [t for t in token_transfers_in if t.get("mint") == mint]
        if not matching:
            if wrong:
                other = currency_of_mint(wrong[0].get("mint") or "")
                return SolanaPaymentCheck(0, f"wrong token mint ({other}); the price is in {currency}")
            if native_in:
                return SolanaPaymentCheck(0, f"paid in SOL; the price is in {currency}")
            return SolanaPaymentCheck(0, "nothing reached the merchant wallet")
        received = 0
        raw_amounts = [_raw_token_amount(t.get("rawTokenAmount"), "rawTokenAmount") for t in matching]
        if all(raw is not None for raw in raw_amounts):
            for amount, token_decimals in raw_amounts:
                if token_decimals != decimals:
                    return SolanaPaymentCheck(
                        0, f"the token has {token_decimals} decimals, the plan expects {decimals}"
                    )
                received += amount
        else:  # exact amounts from the merchant's token balance change (the float tokenAmount is never used)
            for entry in transaction.get("accountData") or []:
                for change in entry.get("tokenBalanceChanges") or []:
                    if change.get("userAccount") == recipient and change.get("mint") == mint:
                        raw = _raw_token_amount(change.get("rawTokenAmount"), "rawTokenAmount", signed=True)
                        if raw is None:
                            continue
                        if raw[1] != decimals:
                            return SolanaPaymentCheck(
                                0, f"the token has {raw[1]} decimals, the plan expects {decimals}"
                            )
                        received += max(raw[0], 0)
    if received == 0:
        return SolanaPaymentCheck(0, "nothing reached the merchant wallet")
    if received < price_base_units:
        return SolanaPaymentCheck(
            received,
            f"paid {amount_text(received, decimals)} {currency}, less than the price "
            f"{amount_text(price_base_units, decimals)} {currency}",
        )
    return SolanaPaymentCheck(received, "")
