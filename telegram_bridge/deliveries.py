"""Deliveries: what the bot has to send, stored once per (chat, dedupe key) before anything is sent.

* ``deliveries_create`` stores what to send (long texts split into parts ``key``, ``key#2``, …); a repeat is a no-op.
* ``deliveries_claim`` claims rows (``SELECT … FOR UPDATE SKIP LOCKED``); the sender renews its claim every
  ``CLAIM_RENEW_SECONDS`` while it works, so a claim older than ``CLAIM_LEASE`` belongs to a dead worker and is taken
  over; ``deliveries_record`` writes each outcome back.
* ``deliveries_due`` is the sweeper's pick: rows still pending after their ``due_at`` (the task that should have sent
  them was lost: Redis crash, worker killed, database down when it ran) and rows whose claim ran out. The queue is only
  a doorbell; a re-queued row's next due time backs off with its age (``REQUEUE_BACKOFF_MAX_SECONDS`` at most).

This module does not import aiogram (5–10 s to import): storing a message costs a process nothing; only the processes
that send (``telegram_bridge.sender``) load it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.services import telegram_chats_unregister, telegram_users_mark_blocked
from telegram_bridge.models import Delivery
from telegram_bridge.telegram_html import escape, split_message, telegram_html_errors

logger = logging.getLogger(__name__)

# A live sender renews its claim every CLAIM_RENEW_SECONDS (also while it waits for flood control or for the database
# to come back), so a claim older than CLAIM_LEASE is a dead worker's. The lease outlasts a database outage of ~50 s
# (renewals fail meanwhile) before another worker may take the rows over.
CLAIM_LEASE = timedelta(seconds=60)
CLAIM_RENEW_SECONDS = 5.0


@dataclass(frozen=True)
class OutgoingMessage:
    chat_id: str
    text: str
    dedupe_key: str
    user_id: int | None = None
    reply_markup: dict | None = None
    reply_to_message_id: int | None = None


@dataclass
class SendReport:
    sent: int = 0
    blocked: int = 0
    failed: int = 0
    retry_later: int = 0
    busy: int = 0  # claimed by another live worker
    retry_afters: int = 0
    errors: list[str] = field(default_factory=list)


def _first_deadline() -> timedelta:
    return timedelta(seconds=settings.TELEGRAM_DELIVERY_DEADLINE_SECONDS)


def _parts(message: OutgoingMessage, *, due_at) -> list[Delivery]:
    text = message.text if telegram_html_errors(message.text) is None else _escape_all(message.text)
    pieces = split_message(text)
    rows = []
    for index, piece in enumerate(pieces):
        rows.append(
            Delivery(
                due_at=due_at,
                chat_id=str(message.chat_id),
                dedupe_key=message.dedupe_key if index == 0 else f"{message.dedupe_key}#{index + 1}",
                user_id=message.user_id,
                text=piece,
                reply_markup=message.reply_markup if index == len(pieces) - 1 else None,
                reply_to_message_id=message.reply_to_message_id if index == 0 else None,
            )
        )
    return rows


def _escape_all(text: str) -> str:
    logger.warning("outgoing text was not valid Telegram HTML; sent fully escaped")
    return escape(text)


def deliveries_create(*, messages: Iterable[OutgoingMessage], batch_size: int = 1000) -> list[int]:
    """Store the messages (existing (chat, key) pairs are left alone) in one transaction; ids of those not yet sent,
    in order."""
    due_at = timezone.now() + _first_deadline()
    rows: list[Delivery] = []
    for message in messages:
        rows.extend(_parts(message, due_at=due_at))
    if not rows:
        return []
    Delivery.objects.bulk_create(rows, ignore_conflicts=True, batch_size=batch_size)  # all batches: one transaction
    by_key: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        by_key[row.dedupe_key].add(row.chat_id)
    ids: list[int] = []
    for key, chats in by_key.items():
        chat_list = list(chats)
        for start in range(0, len(chat_list), batch_size):
            ids.extend(
                Delivery.objects.filter(dedupe_key=key, chat_id__in=chat_list[start : start + batch_size])
                .filter(status__in=[Delivery.Status.PENDING, Delivery.Status.SENDING])
                .values_list("id", flat=True)
            )
    return sorted(ids)


def deliveries_claim(*, delivery_ids: list[int]) -> tuple[list[Delivery], int]:
    """Claim the sendable rows among ``delivery_ids``; returns them and the number held by other live workers."""
    now = timezone.now()
    claimable = Q(status=Delivery.Status.PENDING) | Q(status=Delivery.Status.SENDING, claimed_at__lt=now - CLAIM_LEASE)
    with transaction.atomic():
        rows = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(id__in=delivery_ids)
            .filter(claimable)
            .order_by("id")
        )
        Delivery.objects.filter(id__in=[r.id for r in rows]).update(
            status=Delivery.Status.SENDING, claimed_at=now, attempts=F("attempts") + 1
        )
    busy = (
        Delivery.objects.filter(id__in=delivery_ids, status=Delivery.Status.SENDING)
        .exclude(id__in=[r.id for r in rows])
        .count()
    )
    return rows, busy


def deliveries_claim_renew(*, delivery_ids: Iterable[int]) -> int:
    """The sender is still working on these rows: push their claim forward (rows it recorded are left alone)."""
    return Delivery.objects.filter(id__in=list(delivery_ids), status=Delivery.Status.SENDING).update(
        claimed_at=timezone.now()
    )


@dataclass
class Outcome:
    delivery_id: int
    status: str
    message_id: int | None = None
    error: str = ""
    retry_afters: int = 0


def deliveries_record(outcomes: list[Outcome], rows_by_id: dict[int, Delivery], report: SendReport) -> None:
    now = timezone.now()
    changed = []
    blocked_users, blocked_chats = set(), set()
    for outcome in outcomes:
        row = rows_by_id[outcome.delivery_id]
        row.status, row.error = outcome.status, outcome.error
        report.retry_afters += outcome.retry_afters
        if outcome.status == Delivery.Status.SENT:
            row.message_id, row.sent_at = outcome.message_id, now
            report.sent += 1
        elif outcome.status == Delivery.Status.BLOCKED:
            report.blocked += 1
            if row.user_id:
                blocked_users.add(row.user_id)
            elif _group_chat_id(row.chat_id) is not None:
                blocked_chats.add(_group_chat_id(row.chat_id))
        elif outcome.status == Delivery.Status.FAILED:
            report.failed += 1
            report.errors.append(outcome.error)
        else:
            row.claimed_at = None
            report.retry_later += 1
        changed.append(row)
    Delivery.objects.bulk_update(changed, ["status", "error", "message_id", "sent_at", "claimed_at"])
    if blocked_users:
        telegram_users_mark_blocked(user_ids=blocked_users)
    if blocked_chats:  # the bot was removed from a group or channel: it is unregistered, no more cards
        telegram_chats_unregister(chat_ids=blocked_chats, reason="Telegram refused a message (403)")


def _group_chat_id(chat_id: str) -> int | None:
    try:
        number = int(chat_id)
    except ValueError:
        return None
    return number if number < 0 else None


def deliveries_due(*, limit: int = 50_000) -> list[int]:
    """The sweeper's pick: pending rows past their due time (their next due time is pushed back: as long again as
    they have waited, between the first deadline and ``REQUEUE_BACKOFF_MAX_SECONDS``) and rows whose claim ran out."""
    now = timezone.now()
    first, cap = _first_deadline(), timedelta(seconds=settings.REQUEUE_BACKOFF_MAX_SECONDS)
    pending_due = Q(status=Delivery.Status.PENDING) & (
        Q(due_at__lt=now) | Q(due_at__isnull=True, created_at__lt=now - first)
    )
    with transaction.atomic():
        pending = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(pending_due)
            .order_by("id")
            .only("id", "created_at", "due_at")[:limit]
        )
        for row in pending:
            row.due_at = now + min(max(now - row.created_at, first), cap)
        Delivery.objects.bulk_update(pending, ["due_at"], batch_size=1000)
    lapsed = Delivery.objects.filter(status=Delivery.Status.SENDING, claimed_at__lt=now - CLAIM_LEASE)
    ids = {row.id for row in pending} | set(lapsed.values_list("id", flat=True)[:limit])
    return sorted(ids)


def deliveries_sendable_ids(*, limit: int = 50_000) -> list[int]:
    """Rows nobody is sending: pending, or claimed by a worker whose lease ran out (it died)."""
    now = timezone.now()
    sendable = Q(status=Delivery.Status.PENDING) | Q(status=Delivery.Status.SENDING, claimed_at__lt=now - CLAIM_LEASE)
    return list(Delivery.objects.filter(sendable).order_by("id").values_list("id", flat=True)[:limit])
