"""Live updates over WebSockets (Django Channels).

* One socket per browser tab at ``/ws/live/``, authenticated by the dashboard's session. Anonymous sockets are closed
  with code 4401, a banned user's with 4403. A user joins ``user.<telegram user id>`` (their own events only); staff
  also join ``staff``. The handshake's Origin is checked first (config/asgi.py, ``config.security``).
* A ban closes the user's open sockets: the ban publishes ``user.banned``, whose consumer here sends ``live.close`` to
  the user's group (every socket of that user, in every web process, through the channel layer).
* Events reach the sockets from the same domain events the Telegram broadcaster consumes (``config/events.py``):
  the Celery tasks below are subscribers in ``settings.DOMAIN_EVENT_CONSUMERS`` and ``group_send`` to the channel
  layer (Redis when REDIS_URL is set, in-memory otherwise). Consumers never poll the database.
* The admin stream gets a health snapshot (scan runs, queue lengths, heartbeat age, error counts) pushed by a beat
  task, plus broadcast progress events.

Client protocol: the server sends ``{"type": <event>, ...}`` frames. The client may send ``{"type": "ping"}`` (answer
``{"type": "pong"}``); anything else gets ``{"type": "error", "error": …}`` and the socket stays open.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from asgiref.sync import async_to_sync
from celery import shared_task
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.utils import timezone

from accounts.models import TelegramUser
from accounts.policy import WEB, SignalFacts, signal_reaches_user
from analytics.selectors import heartbeat_age_seconds
from config.events import outbox_waiting
from config.observability import error_counts
from signals.models import ScanRun, Signal
from trading.models import Position
from web.templatetags.numbers import ago, utc

logger = logging.getLogger(__name__)

STAFF_GROUP = "staff"
CLOSE_UNAUTHENTICATED = 4401
CLOSE_BANNED = 4403
MAX_CLIENT_FRAME = 4096


def user_group(telegram_user_id: int) -> str:
    return f"user.{telegram_user_id}"


class LiveUpdatesConsumer(AsyncJsonWebsocketConsumer):
    groups_joined: list[str]

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.groups_joined = []
        telegram_user_id, banned = await self._telegram_user(user)
        if banned:
            await self.close(code=CLOSE_BANNED)
            return
        if telegram_user_id is not None:
            self.groups_joined.append(user_group(telegram_user_id))
        if user.is_staff:
            self.groups_joined.append(STAFF_GROUP)
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send_json(
            {"type": "hello", "streams": ["user" if telegram_user_id else None, "staff" if user.is_staff else None]}
        )

    async def disconnect(self, code):
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """Parse defensively: a malformed frame gets an error frame, never a closed socket."""
        if bytes_data is not None or text_data is None:
            await self.send_json({"type": "error", "error": "send JSON text frames"})
            return
        if len(text_data) > MAX_CLIENT_FRAME:
            await self.send_json({"type": "error", "error": "frame too large"})
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            await self.send_json({"type": "error", "error": "malformed JSON"})
            return
        if not isinstance(message, dict) or message.get("type") != "ping":
            await self.send_json({"type": "error", "error": 'unknown message; send {"type": "ping"}'})
            return
        await self.send_json({"type": "pong"})

    async def live_event(self, event: dict[str, Any]):
        """Handler of group messages of type ``live.event``: forward the payload to the browser."""
        await self.send_json(event["payload"])

    async def live_close(self, event: dict[str, Any]):
        """Handler of ``live.close`` (the user was banned): close this socket."""
        await self.close(code=event.get("code", CLOSE_BANNED))

    @database_sync_to_async
    def _telegram_user(self, user) -> tuple[int | None, bool]:
        """(TelegramUser pk, banned) of the web user; (None, False) for an operator without a Telegram account."""

        row = TelegramUser.objects.filter(web_user=user).values_list("pk", "is_banned").first()
        return (row[0], row[1]) if row else (None, False)


def push(group: str, payload: dict[str, Any]) -> None:
    """Send ``payload`` to every socket of ``group`` (no-op for an empty group)."""
    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.group_send)(group, {"type": "live.event", "payload": payload})


def _signal_payload(signal) -> dict[str, Any]:
    return {
        "type": "signal",
        "id": signal.pk,
        "symbol": signal.symbol.symbol,
        "side": signal.side,
        "source": signal.source,
        "entry": str(signal.entry),
        "stop": str(signal.stop),
        "tp1": str(signal.tp1),
        "tp2": str(signal.tp2),
        "risk_level": signal.risk_level,
        "status": signal.status,
        "outcome": signal.outcome,
        "outcome_pnl_pct": None if signal.outcome_pnl_pct is None else str(signal.outcome_pnl_pct),
        "created_at": signal.created_at.isoformat(),
    }


@shared_task(name="web.live_updates.push_signal", ignore_result=True, time_limit=60)
def push_signal(signal_id: int) -> int:
    """Consumer of signal.created / signal.closed: to the sockets of the users ``accounts.policy.signal_reaches_user``
    admits on the web (the rules of the Telegram card, without the chat's own conditions)."""

    signal = Signal.objects.select_related("symbol").filter(pk=signal_id).first()
    if signal is None:
        return 0
    payload = _signal_payload(signal)
    facts = SignalFacts.of(signal)
    sent = 0
    users = TelegramUser.objects.filter(web_user__isnull=False, is_banned=False).select_related("preferences")
    for user in users.iterator():
        if signal_reaches_user(user=user, signal=facts, channel=WEB):
            push(user_group(user.pk), payload)
            sent += 1
    return sent


@shared_task(name="web.live_updates.push_position", ignore_result=True, time_limit=60)
def push_position(position_id: int) -> None:
    """Consumer of position.opened/updated/closed: to the owner's sockets only."""

    position = Position.objects.select_related("symbol").filter(pk=position_id).first()
    if position is None:
        return
    push(
        user_group(position.user_id),
        {
            "type": "position",
            "id": position.pk,
            "symbol": position.symbol.symbol,
            "side": position.side,
            "mode": position.mode,
            "status": position.status,
            "quantity": str(position.remaining_quantity),
            "entry_price": None if position.entry_price is None else str(position.entry_price),
            "stop_price": str(position.stop_price),
            "realised_pnl": str(position.realised_pnl),
            "net_pnl": str(position.net_pnl),
            "close_reason": position.close_reason,
        },
    )


def admin_health_snapshot() -> dict[str, Any]:
    snapshot: dict[str, Any] = {
        "type": "health",
        "heartbeat_age_seconds": heartbeat_age_seconds(),
        "errors_today": error_counts(),
        "events_waiting": outbox_waiting(),
    }
    last = ScanRun.objects.order_by("-pk").values().first()
    snapshot["last_scan"] = json.loads(json.dumps(last, default=str)) if last else None
    if last:  # the cell's text as the page renders it: "2024-01-31 14:05 UTC (3 min ago)"
        moment = last["finished_at"] or last["started_at"]
        snapshot["last_scan_text"] = f"{utc(moment)} ({ago((timezone.now() - moment).total_seconds())})"
    snapshot["queue_lengths"] = queue_lengths()
    return snapshot


def queue_lengths() -> dict[str, int | None]:
    """Messages waiting per Celery queue (Redis broker), None when there is no broker to ask."""
    from django.conf import settings

    names = ("scan", "trade", "telegram", "default")
    if not settings.CELERY_BROKER_URL.startswith("redis"):
        return dict.fromkeys(names)
    import redis

    try:
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=2, socket_timeout=2)
        return {name: int(client.llen(name)) for name in names}
    except redis.RedisError:
        return dict.fromkeys(names)


@shared_task(name="web.live_updates.sockets_close_banned", ignore_result=True, time_limit=30)
def sockets_close_banned(*, user_id: int) -> None:
    """Consumer of ``user.banned``: close every open socket of the user (their group), wherever it is served."""
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(user_group(user_id), {"type": "live.close", "code": CLOSE_BANNED})


@shared_task(name="web.live_updates.push_admin_health", ignore_result=True, time_limit=30)
def push_admin_health() -> None:
    push(STAFF_GROUP, admin_health_snapshot())


@shared_task(name="web.live_updates.push_broadcast_progress", ignore_result=True, time_limit=30)
def push_broadcast_progress(*, broadcast_id: str, queued: int, total: int, done: bool) -> None:
    """Consumer of ``broadcast.progress``: the operators' control panel shows how far a broadcast got."""
    push(STAFF_GROUP, {"type": "broadcast", "id": broadcast_id, "queued": queued, "total": total, "done": done})
