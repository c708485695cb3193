"""The one sender: Delivery rows in, Telegram messages out, exactly once per (chat, dedupe key) as far as possible.

* ``deliveries_create`` stores what to send (long texts split into parts ``key``, ``key#2``, …); a repeat is a no-op.
* ``deliveries_send`` claims rows (``SELECT … FOR UPDATE SKIP LOCKED``; a claim expires after ``CLAIM_LEASE`` so a
  dead worker's rows are taken over), sends them through aiogram on the transport loop — every send waits for its
  slot in the shared token buckets, a 429 pushes the chat's bucket past ``retry_after`` and the message is retried,
  transient errors back off, 403 marks the user inactive — and writes each outcome back within ~50 ms.

The only window for a duplicate is a worker dying between Telegram accepting a message and the outcome being
written (Telegram has no idempotency key); a lost message is impossible: an unsent row stays pending or claimed and
is sent by the retried task (acks_late) or the sweeper.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import InlineKeyboardMarkup, LinkPreviewOptions, ReplyParameters
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from telegram_bridge.models import Delivery
from telegram_bridge.rate_limit import SendRateLimiter
from telegram_bridge.telegram_html import split_message, telegram_html_errors
from telegram_bridge.transport import TelegramTransport, get_transport

logger = logging.getLogger(__name__)

CLAIM_LEASE = timedelta(minutes=5)
MAX_TRANSIENT_ATTEMPTS = 5
MAX_RETRY_AFTERS = 20
IN_FLIGHT_PER_PROCESS = 32


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


def _parts(message: OutgoingMessage) -> list[Delivery]:
    text = message.text if telegram_html_errors(message.text) is None else _escape_all(message.text)
    pieces = split_message(text)
    rows = []
    for index, piece in enumerate(pieces):
        rows.append(Delivery(
            chat_id=str(message.chat_id),
            dedupe_key=message.dedupe_key if index == 0 else f"{message.dedupe_key}#{index + 1}",
            user_id=message.user_id,
            text=piece,
            reply_markup=message.reply_markup if index == len(pieces) - 1 else None,
            reply_to_message_id=message.reply_to_message_id if index == 0 else None,
        ))
    return rows


def _escape_all(text: str) -> str:
    from telegram_bridge.telegram_html import escape

    logger.warning("outgoing text was not valid Telegram HTML; sent fully escaped")
    return escape(text)


def deliveries_create(*, messages: Iterable[OutgoingMessage], batch_size: int = 1000) -> list[int]:
    """Store the messages (existing (chat, key) pairs are left alone); ids of those not yet sent, in order."""
    rows: list[Delivery] = []
    for message in messages:
        rows.extend(_parts(message))
    if not rows:
        return []
    Delivery.objects.bulk_create(rows, ignore_conflicts=True, batch_size=batch_size)
    by_key: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        by_key[row.dedupe_key].add(row.chat_id)
    ids: list[int] = []
    for key, chats in by_key.items():
        chat_list = list(chats)
        for start in range(0, len(chat_list), batch_size):
            ids.extend(
                Delivery.objects.filter(dedupe_key=key, chat_id__in=chat_list[start:start + batch_size])
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
            Delivery.objects.select_for_update(skip_locked=True).filter(id__in=delivery_ids).filter(claimable).order_by("id")
        )
        Delivery.objects.filter(id__in=[r.id for r in rows]).update(
            status=Delivery.Status.SENDING, claimed_at=now, attempts=F("attempts") + 1
        )
    busy = Delivery.objects.filter(id__in=delivery_ids, status=Delivery.Status.SENDING).exclude(
        id__in=[r.id for r in rows]).count()
    return rows, busy


@dataclass
class _Outcome:
    delivery_id: int
    status: str
    message_id: int | None = None
    error: str = ""
    retry_afters: int = 0


async def _send_one(transport: TelegramTransport, limiter: SendRateLimiter, row: dict[str, Any]) -> _Outcome:
    chat_id, bot = row["chat_id"], transport.bot
    retry_afters = transient = 0
    reply_to = row["reply_to_message_id"]
    markup = InlineKeyboardMarkup.model_validate(row["reply_markup"]) if row["reply_markup"] else None
    while True:
        await limiter.wait_for_slot(chat_id)
        try:
            message = await bot.send_message(
                chat_id=chat_id,
                text=row["text"],
                reply_markup=markup,
                reply_parameters=ReplyParameters(message_id=reply_to, allow_sending_without_reply=True) if reply_to else None,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
            return _Outcome(row["id"], Delivery.Status.SENT, message_id=message.message_id, retry_afters=retry_afters)
        except TelegramRetryAfter as error:
            retry_afters += 1
            await limiter.penalize(chat_id, error.retry_after)
            if retry_afters >= MAX_RETRY_AFTERS:
                return _Outcome(row["id"], Delivery.Status.PENDING, error="flood control", retry_afters=retry_afters)
        except TelegramForbiddenError as error:
            return _Outcome(row["id"], Delivery.Status.BLOCKED, error=str(error.message)[:300], retry_afters=retry_afters)
        except (TelegramBadRequest, TelegramNotFound, TelegramMigrateToChat, TelegramUnauthorizedError) as error:
            return _Outcome(row["id"], Delivery.Status.FAILED, error=str(error.message)[:300], retry_afters=retry_afters)
        except (TelegramServerError, TelegramNetworkError) as error:
            transient += 1
            if transient >= MAX_TRANSIENT_ATTEMPTS:
                return _Outcome(row["id"], Delivery.Status.PENDING, error=str(error.message)[:300],
                                retry_afters=retry_afters)
            await asyncio.sleep(min(0.25 * 2 ** transient, 8) * (0.5 + random.random()))


async def _send_chat(transport, limiter, semaphore, rows: list[dict], outcomes: queue.Queue) -> None:
    """One chat's messages in order (parts of a long text must not overtake each other)."""
    async with semaphore:
        for row in rows:
            try:
                outcome = await _send_one(transport, limiter, row)
            except Exception as error:
                logger.exception("delivery %s: unexpected error", row["id"])
                outcome = _Outcome(row["id"], Delivery.Status.PENDING, error=type(error).__name__)
            outcomes.put(outcome)


async def _send_all(transport, rows: list[dict], outcomes: queue.Queue) -> None:
    limiter = transport_limiter(transport)
    semaphore = asyncio.Semaphore(IN_FLIGHT_PER_PROCESS)
    by_chat: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_chat[row["chat_id"]].append(row)
    await asyncio.gather(*(_send_chat(transport, limiter, semaphore, chat_rows, outcomes) for chat_rows in by_chat.values()))


def transport_limiter(transport: TelegramTransport) -> SendRateLimiter:
    limiter = getattr(transport, "limiter", None)
    if limiter is None:
        limiter = transport.limiter = SendRateLimiter()
    return limiter


def _record(outcomes: list[_Outcome], rows_by_id: dict[int, Delivery], report: SendReport) -> None:
    now = timezone.now()
    changed = []
    blocked_users = set()
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
        elif outcome.status == Delivery.Status.FAILED:
            report.failed += 1
            report.errors.append(outcome.error)
        else:
            row.claimed_at = None
            report.retry_later += 1
        changed.append(row)
    Delivery.objects.bulk_update(changed, ["status", "error", "message_id", "sent_at", "claimed_at"])
    if blocked_users:
        from telegram_bridge.services import telegram_users_mark_blocked

        telegram_users_mark_blocked(user_ids=blocked_users)


def deliveries_send(*, delivery_ids: list[int]) -> SendReport:
    """Send the claimable rows among ``delivery_ids`` and record each outcome as it arrives."""
    report = SendReport()
    rows, report.busy = deliveries_claim(delivery_ids=delivery_ids)
    if not rows:
        return report
    # Rows of users who blocked the bot in the meantime are not sent.
    rows_by_id = {row.id: row for row in rows}
    payload = [{"id": r.id, "chat_id": r.chat_id, "text": r.text, "reply_markup": r.reply_markup,
                "reply_to_message_id": r.reply_to_message_id} for r in rows]
    outcomes: queue.Queue[_Outcome] = queue.Queue()
    transport = get_transport()
    future = transport.submit(_send_all(transport, payload, outcomes))
    remaining = len(rows)
    while remaining:
        batch = []
        try:
            batch.append(outcomes.get(timeout=1.0))
            while len(batch) < 200:
                batch.append(outcomes.get(timeout=0.05))
        except queue.Empty:
            pass
        if batch:
            _record(batch, rows_by_id, report)
            remaining -= len(batch)
        elif future.done():
            future.result()  # surfaces a crash of the send loop
            break
    return report


def telegram_call(coroutine_factory, *, chat_id: str | None = None, timeout: float = 30) -> Any:
    """Run one direct Bot API call (answerCallbackQuery, deleteMessage, editMessageText) now; None on API errors.

    ``coroutine_factory(bot)`` returns the coroutine; with ``chat_id`` the call takes a slot in the chat's bucket.
    """
    from aiogram.exceptions import TelegramAPIError

    transport = get_transport()

    async def run():
        if chat_id is not None:
            await transport_limiter(transport).wait_for_slot(str(chat_id))
        return await coroutine_factory(transport.bot)

    try:
        return transport.call(run(), timeout=timeout)
    except TelegramAPIError as error:
        logger.info("telegram call failed: %s", error.message)
        return None


def deliveries_sendable_ids(*, limit: int = 50_000) -> list[int]:
    """Rows nobody is sending: pending, or claimed by a worker whose lease ran out (it died)."""
    now = timezone.now()
    sendable = Q(status=Delivery.Status.PENDING) | Q(status=Delivery.Status.SENDING, claimed_at__lt=now - CLAIM_LEASE)
    return list(Delivery.objects.filter(sendable).order_by("id").values_list("id", flat=True)[:limit])


def deliveries_send_pending(*, batch_size: int = 500, max_rounds: int = 3) -> SendReport:
    """Send every waiting delivery now, in this process, and return the totals.

    For the offline demo and for operators: the same claim/send/record path as the Celery task, so a row is
    never sent twice even if a worker runs at the same time. Rows that still fail transiently stay pending (the
    sweeper retries them); at most ``max_rounds`` passes so a dead server cannot keep the caller forever.
    """
    total = SendReport()
    for _ in range(max_rounds):
        ids = deliveries_sendable_ids()
        if not ids:
            break
        progress = 0
        for start in range(0, len(ids), batch_size):
            report = deliveries_send(delivery_ids=ids[start:start + batch_size])
            for name in ("sent", "blocked", "failed", "retry_later", "busy", "retry_afters"):
                setattr(total, name, getattr(total, name) + getattr(report, name))
            total.errors.extend(report.errors)
            progress += report.sent + report.blocked + report.failed
        if not progress:
            break
    total.retry_later = Delivery.objects.filter(status=Delivery.Status.PENDING).count()
    return total
