"""Handling polled updates: different users concurrently, each user's updates in order, each under a time limit.

``UpdateDispatcher.submit(update)`` puts the update on its sender's queue. A sender's queue is drained by one worker
thread at a time (so one user's updates keep their order and never race each other), different senders' queues by
different threads of a bounded pool (``TELEGRAM_BRIDGE_CONCURRENCY``), so one slow update never delays another
user's. With one worker the update is handled in the calling thread, as before (the test suite's default).

Every update runs under ``TELEGRAM_HANDLER_TIME_LIMIT_SECONDS``. When it runs over, a watchdog:

1. marks the update cut off, so nothing the handler still queues is sent (``UpdateContext.flush`` drops it);
2. tells the user politely, at once (its own stored delivery, de-duplicated per update);
3. raises ``HandlerTimeLimitExceeded`` in the handler's thread, like Celery's soft time limit: Python code stops at
   its next instruction (the transaction, if any, rolls back). A call blocked inside C (a slow query) stops when it
   returns; the user has had the answer in the meantime.

``HandlerTimeLimitExceeded`` derives from BaseException, so the handlers' ``except Exception`` blocks let it through.

Nothing is lost on a crash: ``confirm_offset`` never confirms an update that has not started (started ones are
recorded in TelegramUpdate by ``update_seen`` and skipped after a restart).
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection

from telegram_bridge.deliveries import OutgoingMessage, deliveries_create
from telegram_bridge.sending import deliveries_enqueue
from telegram_bridge.services import update_handle
from telegram_bridge.update_context import update_cut_off_clear, update_cut_off_mark

logger = logging.getLogger(__name__)

TIME_LIMIT_TEXT = (
    "⏳ Sorry, that took too long and was stopped. Please try again in a moment; if it keeps happening, send /help."
)
_RUNNING, _DONE, _CUT_OFF = "running", "done", "cut off"


class HandlerTimeLimitExceeded(BaseException):
    """Raised inside a handler's thread when its update ran over the time limit."""


def _thread_raise(thread_id: int, exception: type[BaseException] | None) -> None:
    """Raise ``exception`` in the thread at its next bytecode (None clears a pending one)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exception) if exception else None
    )


def update_sender_key(update: Any) -> str:
    """The queue an update belongs to: its sender (so one user's updates stay in order)."""
    if isinstance(update, dict):
        for kind in ("message", "callback_query", "my_chat_member", "edited_message"):
            part = update.get(kind)
            sender = part.get("from") if isinstance(part, dict) else None
            if isinstance(sender, dict) and isinstance(sender.get("id"), int):
                return f"user:{sender['id']}"
        return f"update:{update.get('update_id')}"
    return "update:?"


def _update_chat_id(update: dict) -> str | None:
    message = update.get("message")
    if not isinstance(message, dict):
        callback = update.get("callback_query")
        message = callback.get("message") if isinstance(callback, dict) else None
    chat = message.get("chat") if isinstance(message, dict) else None
    chat_id = chat.get("id") if isinstance(chat, dict) else None
    return str(chat_id) if isinstance(chat_id, int) else None


class _Run:
    def __init__(self, update: dict):
        self.update = update
        self.thread_id = threading.get_ident()
        self.state = _RUNNING
        self.lock = threading.Lock()


class UpdateDispatcher:
    def __init__(
        self,
        *,
        workers: int | None = None,
        time_limit: float | None = None,
        handle: Callable[[Any], None] = update_handle,
    ) -> None:
        self.workers = max(1, workers if workers is not None else settings.TELEGRAM_BRIDGE_CONCURRENCY)
        self.time_limit = time_limit if time_limit is not None else settings.TELEGRAM_HANDLER_TIME_LIMIT_SECONDS
        self.handle = handle
        self.cut_off = 0  # updates stopped by the time limit
        self._executor = (
            ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="bridge-update")
            if self.workers > 1
            else None
        )
        self._lock = threading.Condition()
        self._queues: dict[str, deque[dict]] = {}  # a key is present while its queue is being drained
        self._waiting: set[int] = set()  # submitted, not started
        self._known: set[int] = set()  # submitted by this process (getUpdates may return them again)

    # ---- submitting ------------------------------------------------------------------------------------------------

    def submit(self, update: dict) -> bool:
        """Queue the update behind its sender's earlier ones; False if it was already submitted."""
        update_id = update.get("update_id") if isinstance(update, dict) else None
        key = update_sender_key(update)
        with self._lock:
            if update_id in self._known:
                return False
            if isinstance(update_id, int):
                self._known.add(update_id)
                self._waiting.add(update_id)
            queue = self._queues.get(key)
            if queue is not None:  # a worker is draining this sender's queue: it takes this one next
                queue.append(update)
                return True
            self._queues[key] = deque([update])
        if self._executor is None:
            self._drain(key)
        else:
            self._executor.submit(self._drain, key)
        return True

    def confirm_offset(self, *, next_offset: int | None) -> int | None:
        """The getUpdates offset that confirms only updates already started: the oldest waiting one, else
        ``next_offset`` (one past the newest fetched)."""
        with self._lock:
            offset = min(self._waiting) if self._waiting else next_offset
            if offset is not None:
                self._known = {update_id for update_id in self._known if update_id >= offset}
            return offset

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted update is handled (or cut off); False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._queues, timeout=timeout)

    def close(self, *, timeout: float | None = None) -> bool:
        idle = self.wait_idle(timeout)
        if self._executor is not None:
            self._executor.shutdown(wait=idle, cancel_futures=True)
        return idle

    # ---- handling --------------------------------------------------------------------------------------------------

    def _drain(self, key: str) -> None:
        while True:
            with self._lock:
                queue = self._queues[key]
                if not queue:
                    del self._queues[key]
                    self._lock.notify_all()
                    return
                update = queue.popleft()
                self._waiting.discard(update.get("update_id"))
            try:
                self._handle_limited(update)
            except BaseException:  # never leave the sender's queue without a worker
                logger.exception("update %s: the dispatcher failed", update.get("update_id"))
            finally:
                if self._executor is not None:
                    close_old_connections()

    def _handle_limited(self, update: dict) -> None:
        run = _Run(update)
        watchdog = threading.Timer(self.time_limit, self._cut_off, args=(run,))
        watchdog.daemon = True
        try:
            try:
                if self._executor is not None:
                    close_old_connections()
                watchdog.start()
                self.handle(update)
            finally:
                watchdog.cancel()
                with run.lock:
                    finished_in_time = run.state == _RUNNING
                    run.state = _DONE if finished_in_time else run.state
                if not finished_in_time:
                    _thread_raise(run.thread_id, None)  # the handler returned before the cut-off fired: drop it
        except HandlerTimeLimitExceeded:
            logger.warning("update %s cut off after %.0f s", update.get("update_id"), self.time_limit)
        finally:
            if run.state == _CUT_OFF:
                update_cut_off_clear(update.get("update_id"))

    def _cut_off(self, run: _Run) -> None:
        with run.lock:
            if run.state != _RUNNING:
                return
            run.state = _CUT_OFF
            update_id = run.update.get("update_id")
            update_cut_off_mark(update_id)
            _thread_raise(run.thread_id, HandlerTimeLimitExceeded)
        self.cut_off += 1
        logger.error("update %s ran over the %.0f s time limit; stopped", update_id, self.time_limit)
        chat_id = _update_chat_id(run.update)
        if chat_id is None:
            return
        try:
            ids = deliveries_create(
                messages=[
                    OutgoingMessage(chat_id=chat_id, text=TIME_LIMIT_TEXT, dedupe_key=f"update:{update_id}:time-limit")
                ]
            )
            deliveries_enqueue(ids)
        except Exception as error:  # the apology is best effort; the cut-off itself has happened
            logger.warning("update %s: time-limit notice not sent (%s)", update_id, type(error).__name__)
        finally:
            connection.close()  # this watchdog thread's own connection
