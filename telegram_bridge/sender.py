"""The one sender: Delivery rows in, Telegram messages out, exactly once per (chat, dedupe key) as far as possible.

* rows are stored by ``telegram_bridge.deliveries`` (no aiogram there); ``deliveries_send`` claims rows (``SELECT …
  FOR UPDATE SKIP LOCKED``), renews the claim every ``CLAIM_RENEW_SECONDS`` while it works (a claim older than
  ``CLAIM_LEASE`` is a dead worker's and is taken over), sends them through aiogram on the transport loop — every
  send waits for its slot in the shared token buckets, a 429 pushes the chat's bucket past ``retry_after`` and the
  message is retried, transient errors back off, 403 marks the user inactive — and writes each outcome back within
  ~50 ms. When the database is unreachable at that moment (an outage), the outcomes of messages already sent are kept
  and written as soon as it is back (for up to ``RECORD_PATIENCE_SECONDS``), so a database outage never resends them.

The only window for a duplicate is a worker dying between Telegram accepting a message and the outcome being
written (Telegram has no idempotency key); a lost message is impossible: an unsent row stays pending or claimed and
is sent by the retried task (acks_late) or the sweeper.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import random
import time
from collections import defaultdict
from typing import Any

from aiogram.exceptions import (
    TelegramAPIError,
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
from django.db import InterfaceError, OperationalError, connections

from telegram_bridge.deliveries import (
    CLAIM_RENEW_SECONDS,
    Outcome,
    SendReport,
    deliveries_claim,
    deliveries_claim_renew,
    deliveries_record,
    deliveries_sendable_ids,
)
from telegram_bridge.models import Delivery
from telegram_bridge.rate_limit import SendRateLimiter
from telegram_bridge.transport import TelegramTransport, get_transport

logger = logging.getLogger(__name__)

MAX_TRANSIENT_ATTEMPTS = 5
MAX_RETRY_AFTERS = 20
IN_FLIGHT_PER_PROCESS = 32
RECORD_PATIENCE_SECONDS = 180.0  # how long sent outcomes are held while the database is unreachable
_DATABASE_DOWN = (OperationalError, InterfaceError)


async def _send_one(transport: TelegramTransport, limiter: SendRateLimiter, row: dict[str, Any]) -> Outcome:
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
                reply_parameters=ReplyParameters(message_id=reply_to, allow_sending_without_reply=True)
                if reply_to
                else None,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
            return Outcome(row["id"], Delivery.Status.SENT, message_id=message.message_id, retry_afters=retry_afters)
        except TelegramRetryAfter as error:
            retry_afters += 1
            await limiter.penalize(chat_id, error.retry_after)
            if retry_afters >= MAX_RETRY_AFTERS:
                return Outcome(row["id"], Delivery.Status.PENDING, error="flood control", retry_afters=retry_afters)
        except TelegramForbiddenError as error:
            return Outcome(
                row["id"], Delivery.Status.BLOCKED, error=str(error.message)[:300], retry_afters=retry_afters
            )
        except (TelegramBadRequest, TelegramNotFound, TelegramMigrateToChat, TelegramUnauthorizedError) as error:
            return Outcome(row["id"], Delivery.Status.FAILED, error=str(error.message)[:300], retry_afters=retry_afters)
        except (TelegramServerError, TelegramNetworkError) as error:
            transient += 1
            if transient >= MAX_TRANSIENT_ATTEMPTS:
                return Outcome(
                    row["id"], Delivery.Status.PENDING, error=str(error.message)[:300], retry_afters=retry_afters
                )
            await asyncio.sleep(min(0.25 * 2**transient, 8) * (0.5 + random.random()))


async def _send_chat(transport, limiter, semaphore, rows: list[dict], outcomes: queue.Queue) -> None:
    """One chat's messages in order (parts of a long text must not overtake each other)."""
    async with semaphore:
        for row in rows:
            try:
                outcome = await _send_one(transport, limiter, row)
            except Exception as error:
                logger.exception("delivery %s: unexpected error", row["id"])
                outcome = Outcome(row["id"], Delivery.Status.PENDING, error=type(error).__name__)
            outcomes.put(outcome)


async def _send_all(transport, rows: list[dict], outcomes: queue.Queue) -> None:
    limiter = transport_limiter(transport)
    semaphore = asyncio.Semaphore(IN_FLIGHT_PER_PROCESS)
    by_chat: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_chat[row["chat_id"]].append(row)
    await asyncio.gather(
        *(_send_chat(transport, limiter, semaphore, chat_rows, outcomes) for chat_rows in by_chat.values())
    )


def transport_limiter(transport: TelegramTransport) -> SendRateLimiter:
    limiter = getattr(transport, "limiter", None)
    if limiter is None:
        limiter = transport.limiter = SendRateLimiter()
    return limiter


def _drop_broken_connections() -> None:
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None:
            connection.close_if_unusable_or_obsolete()


def _record_patiently(batch: list[Outcome], rows_by_id: dict, report: SendReport) -> None:
    """``deliveries_record``, waiting for the database to come back: these messages were sent, their outcome must not
    be lost (the rows would be sent again once their claim ran out)."""
    deadline = time.monotonic() + RECORD_PATIENCE_SECONDS
    attempt = 0
    while True:
        try:
            deliveries_record(batch, rows_by_id, report)
            return
        except _DATABASE_DOWN as error:
            if time.monotonic() > deadline:
                raise
            attempt += 1
            if attempt == 1:
                logger.warning(
                    "recording %d sent deliveries: database unreachable (%s); waiting for it", len(batch), error
                )
            _drop_broken_connections()
            time.sleep(min(0.25 * 2 ** min(attempt, 5), 4.0))


def _renew_claims(outstanding: set[int]) -> None:
    try:
        deliveries_claim_renew(delivery_ids=outstanding)
    except _DATABASE_DOWN as error:  # the lease outlasts a short outage; the next renewal tries again
        logger.warning("renewing the claim of %d deliveries failed: %s", len(outstanding), error)
        _drop_broken_connections()


def deliveries_send(*, delivery_ids: list[int]) -> SendReport:
    """Send the claimable rows among ``delivery_ids`` and record each outcome as it arrives."""
    report = SendReport()
    rows, report.busy = deliveries_claim(delivery_ids=delivery_ids)
    if not rows:
        return report
    # Rows of users who blocked the bot in the meantime are not sent.
    rows_by_id = {row.id: row for row in rows}
    payload = [
        {
            "id": r.id,
            "chat_id": r.chat_id,
            "text": r.text,
            "reply_markup": r.reply_markup,
            "reply_to_message_id": r.reply_to_message_id,
        }
        for r in rows
    ]
    outcomes: queue.Queue[Outcome] = queue.Queue()
    transport = get_transport()
    future = transport.submit(_send_all(transport, payload, outcomes))
    outstanding = set(rows_by_id)
    renewed_at = time.monotonic()
    while outstanding:
        if time.monotonic() - renewed_at >= CLAIM_RENEW_SECONDS:
            _renew_claims(outstanding)
            renewed_at = time.monotonic()
        batch = []
        try:
            batch.append(outcomes.get(timeout=1.0))
            while len(batch) < 200:
                batch.append(outcomes.get(timeout=0.05))
        except queue.Empty:
            pass
        if batch:
            _record_patiently(batch, rows_by_id, report)
            outstanding.difference_update(outcome.delivery_id for outcome in batch)
        elif future.done():
            future.result()  # surfaces a crash of the send loop
            break
    return report


def telegram_call(coroutine_factory, *, chat_id: str | None = None, timeout: float = 30) -> Any:
    """Run one direct Bot API call (answerCallbackQuery, deleteMessage, editMessageText) now; None on API errors.

    ``coroutine_factory(bot)`` returns the coroutine; with ``chat_id`` the call takes a slot in the chat's bucket.
    """
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
            report = deliveries_send(delivery_ids=ids[start : start + batch_size])
            for name in ("sent", "blocked", "failed", "retry_later", "busy", "retry_afters"):
                setattr(total, name, getattr(total, name) + getattr(report, name))
            total.errors.extend(report.errors)
            progress += report.sent + report.blocked + report.failed
        if not progress:
            break
    total.retry_later = Delivery.objects.filter(status=Delivery.Status.PENDING).count()
    return total
