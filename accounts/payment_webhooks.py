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
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

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
    if len(msg_id) > 200:
        raise WebhookAuthenticationError("webhook-id is too long")
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
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise WebhookPayloadError("the body is not valid JSON") from None


# ---- Whop ---------------------------------------------------------------------------------------------------------

WHOP_ACTIVATING = frozenset({"membership.activated", "membership.went_valid", "payment.succeeded", "membership.renewed"})
WHOP_DEACTIVATING = frozenset({"membership.deactivated", "membership.went_invalid", "membership.cancelled",
                               "membership.canceled", "membership.expired", "payment.refunded"})


@dataclass(frozen=True)
class WhopMembershipChange:
    event_type: str
    active: bool | None  # None: an event we acknowledge but do not act on
    membership_id: str
    telegram_id: int | None
    plan: str
    amount: Decimal
    currency: str
    valid_until: datetime | None


def _timestamp(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        seconds = float(value)
        if seconds > 10**11:  # milliseconds
            seconds /= 1000
        return datetime.fromtimestamp(seconds, tz=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _decimal(value: Any) -> Decimal:
    try:
        amount = Decimal(str(value)) if value not in (None, "") else Decimal("0")
    except InvalidOperation:
        return Decimal("0")
    return amount if amount.is_finite() and amount >= 0 else Decimal("0")


def whop_membership_change(payload: Any) -> WhopMembershipChange:
    """Parse a Whop event (``{"type"|"action": ..., "data": {...}}``). The buyer's Telegram id travels in the
    checkout metadata (``data.metadata.telegram_id``), set when the bot builds the checkout link."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        raise WebhookPayloadError("expected a JSON object with a 'data' object")
    event_type = payload.get("type") or payload.get("action") or payload.get("event")
    if not isinstance(event_type, str) or not event_type:
        raise WebhookPayloadError("missing event type")
    data = payload["data"]
    membership = data.get("membership") if isinstance(data.get("membership"), dict) else {}
    membership_id = data.get("membership_id") or membership.get("id") or data.get("id")
    if not isinstance(membership_id, str | int) or not str(membership_id):
        raise WebhookPayloadError("missing membership id")
    metadata = data.get("metadata") or membership.get("metadata") or {}
    telegram_id = metadata.get("telegram_id") if isinstance(metadata, dict) else None
    try:
        telegram_id = int(telegram_id) if telegram_id not in (None, "") else None
    except (TypeError, ValueError):
        telegram_id = None
    plan = data.get("plan_id") or data.get("plan") or membership.get("plan_id") or "premium"
    if event_type in WHOP_ACTIVATING:
        active = True
    elif event_type in WHOP_DEACTIVATING:
        active = False
    else:
        active = None
    return WhopMembershipChange(
        event_type=event_type[:64],
        active=active,
        membership_id=str(membership_id)[:128],
        telegram_id=telegram_id,
        plan=str(plan)[:64] if isinstance(plan, str | int) else "premium",
        amount=_decimal(data.get("final_amount", data.get("amount", data.get("total")))),
        currency=str(data.get("currency") or "USD")[:8].upper(),
        valid_until=_timestamp(data.get("renewal_period_end") or data.get("expires_at") or membership.get("renewal_period_end")),
    )


# ---- Helius -------------------------------------------------------------------------------------------------------


def helius_transactions(payload: Any) -> list[dict[str, Any]]:
    """Helius posts a JSON array of (enhanced or raw) transactions; each must carry its signature."""
    if isinstance(payload, dict):
        payload = [payload]
    if not isinstance(payload, list) or not payload:
        raise WebhookPayloadError("expected a non-empty JSON array of transactions")
    transactions = []
    for item in payload:
        if not isinstance(item, dict):
            raise WebhookPayloadError("each transaction must be a JSON object")
        signature = item.get("signature")
        if signature is None and isinstance(item.get("transaction"), dict):  # raw webhook format
            sigs = item["transaction"].get("signatures") or []
            signature = sigs[0] if sigs else None
        if not isinstance(signature, str) or not 32 <= len(signature) <= 128:
            raise WebhookPayloadError("a transaction without a valid signature")
        transactions.append(item)
    return transactions


def helius_signature(transaction: Mapping[str, Any]) -> str:
    signature = transaction.get("signature")
    if signature is None:
        signature = transaction["transaction"]["signatures"][0]
    return signature


def helius_accounts(transaction: Mapping[str, Any]) -> set[str]:
    """Every account the transaction touches (a Solana Pay reference key shows up among them)."""
    accounts: set[str] = set()
    for entry in transaction.get("accountData") or []:
        if isinstance(entry, dict) and isinstance(entry.get("account"), str):
            accounts.add(entry["account"])
    for instruction in transaction.get("instructions") or []:
        if isinstance(instruction, dict):
            accounts.update(a for a in instruction.get("accounts") or [] if isinstance(a, str))
    raw = transaction.get("transaction")
    if isinstance(raw, dict) and isinstance(raw.get("message"), dict):
        accounts.update(a for a in raw["message"].get("accountKeys") or [] if isinstance(a, str))
    return accounts


def helius_amount(transaction: Mapping[str, Any]) -> tuple[Decimal, str]:
    """Total paid: USDC token transfers if any, else SOL native transfers (lamports → SOL)."""
    usdc = Decimal("0")
    for transfer in transaction.get("tokenTransfers") or []:
        if isinstance(transfer, dict):
            usdc += _decimal(transfer.get("tokenAmount"))
    if usdc > 0:
        return usdc, "USDC"
    lamports = Decimal("0")
    for transfer in transaction.get("nativeTransfers") or []:
        if isinstance(transfer, dict):
            lamports += _decimal(transfer.get("amount"))
    return lamports / Decimal(10**9), "SOL"
