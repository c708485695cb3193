"""A small local Telegram Bot API server (aiohttp) for tests, benchmarks and the offline demo.

It speaks the real wire protocol at ``{base}/bot{token}/{method}`` (multipart, url-encoded or JSON parameters; answers
``{"ok": true, "result": …}`` or ``{"ok": false, "error_code": …, "description": …, "parameters": …}``), so the real
aiogram client is what the tests drive. It implements what the bot uses — getMe, getUpdates (long polling),
setWebhook/deleteWebhook/getWebhookInfo, sendMessage, sendPhoto, editMessageText, deleteMessage,
answerCallbackQuery, setMyCommands — records every call, lets a test inject updates, and can misbehave on purpose:

* a global rate limit (and optionally one per chat) answered with real 429s carrying ``parameters.retry_after``;
  a request for a chat before its retry_after has passed is counted in ``stats["violations"]``;
* 403 "Forbidden: bot was blocked by the user" for chosen chats;
* transient 5xx answers for the next *n* requests;
* Telegram's HTML parse-mode check: unescaped ``<``/``&`` or unsupported tags get a 400 "can't parse entities".

Run it standalone with ``python manage.py run_local_bot_api --port 8081``, in a background thread with
``LocalBotAPIServer().start_in_thread()``, or for the demo with ``running_local_bot_api()`` which also points the
bot transport at it. Control endpoints for other processes: ``GET /_local/sent``, ``POST /_local/updates``,
``GET /_local/stats``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

from telegram_bridge.telegram_html import MESSAGE_LIMIT, telegram_html_errors, visible_text

SENDING_METHODS = frozenset({"sendmessage", "sendphoto", "editmessagetext"})
DEFAULT_TOKEN = "123456789:LOCAL-bot-api-test-token"  # noqa: S105 — a placeholder, not a secret


class _Gcra:
    """Generic cell rate algorithm: ``rate`` per second with ``burst`` requests of tolerance."""

    def __init__(self, rate: float, burst: int) -> None:
        self.interval = 1.0 / rate
        self.tolerance = max(burst - 1, 0) * self.interval
        self.tat = 0.0

    def wait(self, now: float) -> float:
        """0 and the request is counted, or the seconds to wait (nothing counted)."""
        tat = max(self.tat, now)
        allowed_at = tat - self.tolerance
        if allowed_at > now:
            return allowed_at - now
        self.tat = tat + self.interval
        return 0.0


class _ApiError(Exception):
    def __init__(self, code: int, description: str, parameters: dict | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters


class LocalBotAPIServer:
    def __init__(
        self,
        *,
        token: str | None = None,
        rate_limit_per_second: float | None = None,
        rate_limit_burst: int | None = None,
        chat_limit_per_second: float | None = None,
        bot_id: int = 123456789,
        bot_username: str = "perps_local_bot",
        check_html: bool = True,
    ) -> None:
        self.token = token  # None: any token is accepted
        self.bot = {"id": bot_id, "is_bot": True, "first_name": "Perps Signals (local)", "username": bot_username,
                    "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}
        self.check_html = check_html
        self._lock = threading.Lock()
        self._global_limit: _Gcra | None = None
        self._chat_limit_rate = chat_limit_per_second
        self._chat_limits: dict[str, _Gcra] = {}
        self.set_rate_limit(rate_limit_per_second, burst=rate_limit_burst)
        self._retry_deadline: dict[str, float] = {}
        self.blocked_chats: set[str] = set()
        self._fail_next: list[int] = []
        self._stall_next: list[float] = []  # getUpdates calls to leave unanswered, for how long
        self.sent: list[dict[str, Any]] = []  # every successful sending call, in order
        self.calls: list[dict[str, Any]] = []  # every other successful call (answerCallbackQuery, deleteMessage, …)
        self.messages: dict[tuple[str, int], dict[str, Any]] = {}
        self.commands: list[dict[str, Any]] = []
        self.webhook: dict[str, Any] = {"url": "", "secret_token": ""}
        self.stats = {"requests": 0, "rate_limited": 0, "violations": 0, "forbidden": 0, "server_errors": 0,
                      "bad_requests": 0, "parse_errors": 0, "stalled": 0}
        self._updates: list[dict[str, Any]] = []
        self._next_update_id = 1
        self._next_message_id = 1
        self._next_callback_id = 1
        self._updates_event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = False
        self.base_url = ""

    # --- configuration (thread-safe; call from tests) -------------------------------------------------------------
    def set_rate_limit(self, per_second: float | None, *, burst: int | None = None) -> None:
        """At most ``per_second`` sending calls per second overall; by default a tenth of a second of burst is
        tolerated (Telegram's limits are per second, not per exact interval)."""
        with self._lock:
            if per_second:
                self._global_limit = _Gcra(per_second, burst or max(1, math.ceil(per_second / 10)))
            else:
                self._global_limit = None

    def block_chat(self, chat_id: int | str) -> None:
        with self._lock:
            self.blocked_chats.add(str(chat_id))

    def fail_next(self, count: int, *, status: int = 502) -> None:
        with self._lock:
            self._fail_next.extend([status] * count)

    def stall_next_get_updates(self, count: int = 1, *, seconds: float = 30.0) -> None:
        """Leave the next ``count`` getUpdates unanswered for ``seconds`` (a half-open connection): the watchdog's test."""
        with self._lock:
            self._stall_next.extend([seconds] * count)

    def sent_messages(self, chat_id: int | str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in self.sent if chat_id is None or m["chat_id"] == str(chat_id)]

    def transcript(self, chat_id: int | str | None = None) -> list[str]:
        """What users saw, one line per message as the Telegram client would render it (for the demo's output)."""
        lines = []
        for message in self.sent_messages(chat_id):
            text = visible_text(message["text"]) if message["parse_mode"].upper() == "HTML" else message["text"]
            reply = f" (reply to #{message['reply_to_message_id']})" if message["reply_to_message_id"] else ""
            lines.append(f"→ chat {message['chat_id']} #{message['message_id']} {message['method']}{reply}:\n{text}")
        return lines

    def calls_of(self, method: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(c) for c in self.calls if c["method"] == method]

    def clear(self) -> None:
        with self._lock:
            self.sent.clear()
            self.calls.clear()
            self._retry_deadline.clear()
            self._fail_next.clear()
            self._stall_next.clear()
            for key in self.stats:
                self.stats[key] = 0

    # --- updates --------------------------------------------------------------------------------------------------
    def inject_update(self, update: dict[str, Any]) -> int:
        """Queue an update (an update_id is assigned when missing); a webhook, if set, receives it instead."""
        with self._lock:
            update = dict(update)
            update.setdefault("update_id", self._next_update_id)
            self._next_update_id = max(self._next_update_id, int(update["update_id"])) + 1
            self._updates.append(update)
            webhook = dict(self.webhook)
        if self._loop is not None:
            if webhook["url"]:
                asyncio.run_coroutine_threadsafe(self._push_webhook(update, webhook), self._loop)
            elif self._updates_event is not None:
                self._loop.call_soon_threadsafe(self._updates_event.set)
        return int(update["update_id"])

    def inject_message(self, *, user_id: int, text: str, username: str = "", first_name: str = "Test",
                       chat_id: int | None = None, chat_type: str = "private") -> int:
        chat = {"id": chat_id if chat_id is not None else user_id, "type": chat_type}
        if chat_type == "private":
            chat.update({"first_name": first_name, "username": username} if username else {"first_name": first_name})
        user = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        with self._lock:
            message_id = self._next_message_id
            self._next_message_id += 1
        message = {"message_id": message_id, "from": user, "chat": chat, "date": int(time.time()), "text": text}
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        with self._lock:
            self.messages[(str(chat["id"]), message_id)] = {"text": text, "from_user": True, "deleted": False}
        return self.inject_update({"message": message})

    def inject_callback(self, *, user_id: int, data: str, message_id: int | None = None, username: str = "",
                        first_name: str = "Test") -> int:
        user = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        with self._lock:
            callback_id = str(self._next_callback_id)
            self._next_callback_id += 1
            if message_id is None:
                mine = [k[1] for k in self.messages if k[0] == str(user_id)]
                message_id = max(mine) if mine else 1
        message = {"message_id": message_id, "chat": {"id": user_id, "type": "private", "first_name": first_name},
                   "date": int(time.time()), "text": "…", "from": self.bot}
        return self.inject_update(
            {"callback_query": {"id": callback_id, "from": user, "chat_instance": str(user_id), "data": data,
                                "message": message}}
        )

    def message_exists(self, chat_id: int | str, message_id: int) -> bool:
        with self._lock:
            message = self.messages.get((str(chat_id), int(message_id)))
            return bool(message) and not message["deleted"]

    async def _push_webhook(self, update: dict, webhook: dict) -> None:
        headers = {"X-Telegram-Bot-Api-Secret-Token": webhook["secret_token"]} if webhook["secret_token"] else {}
        # On failure the update stays queued (Telegram would retry later).
        with contextlib.suppress(Exception):
            async with (ClientSession(timeout=ClientTimeout(total=30)) as session,
                        session.post(webhook["url"], json=update, headers=headers) as response):
                if response.status == 200:
                    with self._lock:
                        self._updates = [u for u in self._updates if u["update_id"] != update["update_id"]]

    # --- HTTP -----------------------------------------------------------------------------------------------------
    def application(self) -> web.Application:
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/_local/sent", self._control_sent)
        app.router.add_get("/_local/stats", self._control_stats)
        app.router.add_post("/_local/updates", self._control_updates)
        return app

    async def _control_sent(self, request: web.Request) -> web.Response:
        return web.json_response(self.sent_messages(request.query.get("chat_id")))

    async def _control_stats(self, request: web.Request) -> web.Response:
        with self._lock:
            return web.json_response(dict(self.stats))

    async def _control_updates(self, request: web.Request) -> web.Response:
        update_id = self.inject_update(await request.json())
        return web.json_response({"ok": True, "update_id": update_id})

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            body = await request.json()
            params.update(body if isinstance(body, dict) else {})
        elif request.can_read_body:
            for key, value in (await request.post()).items():
                params[key] = value if isinstance(value, str) else {"filename": value.filename,
                                                                     "size": len(value.file.read())}
        return params

    async def _handle(self, request: web.Request) -> web.Response:
        token, method = request.match_info["token"], request.match_info["method"]
        with self._lock:
            self.stats["requests"] += 1
        try:
            if self.token is not None and token != self.token:
                raise _ApiError(401, "Unauthorized")
            params = await self._params(request)
            handler = getattr(self, f"_api_{method.lower()}", None)
            if handler is None:
                raise _ApiError(404, "Not Found: method not found")
            with self._lock:
                if self._fail_next:
                    status = self._fail_next.pop(0)
                    self.stats["server_errors"] += 1
                    raise _ApiError(status, "Internal Server Error: simulated")
            if method.lower() in SENDING_METHODS:
                self._admit(str(params.get("chat_id", "")))
            result = await handler(params)
        except _ApiError as error:
            body: dict[str, Any] = {"ok": False, "error_code": error.code, "description": error.description}
            if error.parameters:
                body["parameters"] = error.parameters
            if error.code == 400:
                with self._lock:
                    self.stats["bad_requests"] += 1
            return web.json_response(body, status=error.code)
        return web.json_response({"ok": True, "result": result})

    def _admit(self, chat_id: str) -> None:
        """Blocked chats, 429 deadlines and rate limits, checked before a sending method runs."""
        now = time.monotonic()
        with self._lock:
            if chat_id in self.blocked_chats:
                self.stats["forbidden"] += 1
                raise _ApiError(403, "Forbidden: bot was blocked by the user")
            deadline = self._retry_deadline.get(chat_id)
            if deadline is not None and now < deadline:
                self.stats["violations"] += 1
                self.stats["rate_limited"] += 1
                raise _ApiError(429, f"Too Many Requests: retry after {math.ceil(deadline - now)}",
                                {"retry_after": math.ceil(deadline - now)})
            wait = 0.0
            if self._chat_limit_rate:
                chat_limit = self._chat_limits.setdefault(chat_id, _Gcra(self._chat_limit_rate, 1))
                wait = chat_limit.wait(now)
            if not wait and self._global_limit is not None:
                wait = self._global_limit.wait(now)
            if wait:
                retry_after = max(1, math.ceil(wait))
                self._retry_deadline[chat_id] = now + retry_after
                self.stats["rate_limited"] += 1
                raise _ApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})

    # --- Bot API methods ------------------------------------------------------------------------------------------
    async def _api_getme(self, params: dict) -> dict:
        return self.bot

    async def _api_setmycommands(self, params: dict) -> bool:
        commands = json.loads(params.get("commands") or "[]") if isinstance(params.get("commands"), str) else params.get("commands", [])
        with self._lock:
            self.commands = list(commands)
            self.calls.append({"method": "setMyCommands", "commands": self.commands, "at": time.monotonic()})
        return True

    async def _api_setwebhook(self, params: dict) -> bool:
        secret = str(params.get("secret_token", ""))
        if secret and (len(secret) > 256 or not all(c.isalnum() or c in "_-" for c in secret)):
            raise _ApiError(400, "Bad Request: secret token contains unallowed characters")
        with self._lock:
            self.webhook = {"url": str(params.get("url", "")), "secret_token": secret}
            self.calls.append({"method": "setWebhook", "url": self.webhook["url"], "at": time.monotonic()})
        return True

    async def _api_deletewebhook(self, params: dict) -> bool:
        with self._lock:
            self.webhook = {"url": "", "secret_token": ""}
            if str(params.get("drop_pending_updates", "")).lower() == "true":
                self._updates.clear()
            self.calls.append({"method": "deleteWebhook", "at": time.monotonic()})
        return True

    async def _api_getwebhookinfo(self, params: dict) -> dict:
        with self._lock:
            return {"url": self.webhook["url"], "has_custom_certificate": False,
                    "pending_update_count": len(self._updates)}

    async def _api_getupdates(self, params: dict) -> list[dict]:
        with self._lock:
            stall = self._stall_next.pop(0) if self._stall_next else 0.0
            if stall:
                self.stats["stalled"] += 1
        if stall:
            stall_until = time.monotonic() + stall
            while time.monotonic() < stall_until and not self._stopping:
                await asyncio.sleep(0.05)
            return []
        offset = int(params.get("offset") or 0)
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        timeout = min(max(float(params.get("timeout") or 0), 0), 50)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self.webhook["url"]:
                    raise _ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                         "use deleteWebhook to delete the webhook first")
                if offset:
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                ready = self._updates[:limit]
                if ready or time.monotonic() >= deadline or self._stopping:
                    return [dict(u) for u in ready]
                assert self._updates_event is not None
                self._updates_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._updates_event.wait(), timeout=max(deadline - time.monotonic(), 0.001))

    def _chat(self, chat_id: str) -> dict:
        try:
            numeric = int(chat_id)
        except ValueError:
            if not chat_id.startswith("@"):
                raise _ApiError(400, "Bad Request: chat not found") from None
            return {"id": -1001000000000, "type": "channel", "title": chat_id}
        if numeric < 0:
            return {"id": numeric, "type": "supergroup", "title": f"group {numeric}"}
        return {"id": numeric, "type": "private", "first_name": f"user {numeric}"}

    def _check_text(self, text: str, parse_mode: str, *, limit: int = MESSAGE_LIMIT) -> None:
        if not text.strip():
            raise _ApiError(400, "Bad Request: message text is empty")
        if parse_mode.upper() == "HTML" and self.check_html:
            error = telegram_html_errors(text)
            if error:
                with self._lock:
                    self.stats["parse_errors"] += 1
                raise _ApiError(400, error)
            if len(visible_text(text)) > limit:
                raise _ApiError(400, "Bad Request: message is too long")
        elif len(text) > limit:
            raise _ApiError(400, "Bad Request: message is too long")

    def _record(self, method: str, params: dict, chat_id: str, **extra: Any) -> dict:
        markup = params.get("reply_markup")
        if isinstance(markup, str):
            markup = json.loads(markup)
        reply_to = params.get("reply_to_message_id")
        if reply_to is None and isinstance(params.get("reply_parameters"), str):
            reply_to = json.loads(params["reply_parameters"]).get("message_id")
        with self._lock:
            message_id = extra.pop("message_id", None) or self._next_message_id
            if message_id == self._next_message_id:
                self._next_message_id += 1
            record = {"method": method, "chat_id": chat_id, "message_id": int(message_id),
                      "text": extra.pop("text", ""), "parse_mode": str(params.get("parse_mode", "")),
                      "reply_to_message_id": int(reply_to) if reply_to else None, "reply_markup": markup,
                      "at": time.monotonic(), **extra}
            self.sent.append(record)
            if method != "editMessageText":
                self.messages[(chat_id, int(message_id))] = {"text": record["text"], "from_user": False,
                                                             "deleted": False}
            else:
                self.messages[(chat_id, int(message_id))]["text"] = record["text"]
        return record

    def _message_result(self, record: dict) -> dict:
        result = {"message_id": record["message_id"], "date": int(time.time()), "chat": self._chat(record["chat_id"]),
                  "from": self.bot}
        if record.get("text"):
            result["text"] = visible_text(record["text"]) if record["parse_mode"].upper() == "HTML" else record["text"]
        if record.get("reply_markup"):
            result["reply_markup"] = record["reply_markup"]
        return result

    async def _api_sendmessage(self, params: dict) -> dict:
        chat_id = str(params.get("chat_id", ""))
        text = str(params.get("text", ""))
        self._chat(chat_id)
        self._check_text(text, str(params.get("parse_mode", "")))
        return self._message_result(self._record("sendMessage", params, chat_id, text=text))

    async def _api_sendphoto(self, params: dict) -> dict:
        chat_id = str(params.get("chat_id", ""))
        self._chat(chat_id)
        photo = params.get("photo")
        if not photo:
            raise _ApiError(400, "Bad Request: there is no photo in the request")
        if isinstance(photo, str) and photo.startswith("attach://"):
            photo = params.get(photo.removeprefix("attach://"))
            if not photo:
                raise _ApiError(400, "Bad Request: wrong file attachment")
        caption = str(params.get("caption", ""))
        if caption:
            self._check_text(caption, str(params.get("parse_mode", "")), limit=1024)
        record = self._record("sendPhoto", params, chat_id, text=caption, photo=photo)
        result = self._message_result(record)
        result.pop("text", None)
        result["photo"] = [{"file_id": f"photo{record['message_id']}", "file_unique_id": f"u{record['message_id']}",
                            "width": 800, "height": 600}]
        if caption:
            result["caption"] = visible_text(caption)
        return result

    async def _api_editmessagetext(self, params: dict) -> dict:
        chat_id = str(params.get("chat_id", ""))
        message_id = int(params.get("message_id") or 0)
        text = str(params.get("text", ""))
        self._check_text(text, str(params.get("parse_mode", "")))
        with self._lock:
            message = self.messages.get((chat_id, message_id))
            if not message or message["deleted"] or message["from_user"]:
                raise _ApiError(400, "Bad Request: message to edit not found")
            if message["text"] == text:
                raise _ApiError(400, "Bad Request: message is not modified: specified new message content and reply "
                                     "markup are exactly the same as a current content and reply markup of the message")
        record = self._record("editMessageText", params, chat_id, text=text, message_id=message_id)
        return self._message_result(record)

    async def _api_deletemessage(self, params: dict) -> bool:
        chat_id, message_id = str(params.get("chat_id", "")), int(params.get("message_id") or 0)
        with self._lock:
            message = self.messages.get((chat_id, message_id))
            if not message or message["deleted"]:
                raise _ApiError(400, "Bad Request: message to delete not found")
            message["deleted"] = True
            self.calls.append({"method": "deleteMessage", "chat_id": chat_id, "message_id": message_id,
                               "at": time.monotonic()})
        return True

    async def _api_answercallbackquery(self, params: dict) -> bool:
        if not params.get("callback_query_id"):
            raise _ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        with self._lock:
            self.calls.append({"method": "answerCallbackQuery", "callback_query_id": params["callback_query_id"],
                               "text": str(params.get("text", "")), "at": time.monotonic()})
        return True

    # --- running --------------------------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._loop = asyncio.get_running_loop()
        self._updates_event = asyncio.Event()
        self._runner = web.AppRunner(self.application(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_port = self._runner.addresses[0][1]
        self.base_url = f"http://{host}:{bound_port}"
        return self.base_url

    async def stop_async(self) -> None:
        self._stopping = True
        if self._updates_event is not None:
            self._updates_event.set()  # long polls in progress answer now
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start_in_thread(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve from a daemon thread with its own event loop; returns the base URL."""
        started = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start(host, port))
            except BaseException as error:
                failure.append(error)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.stop_async())
            loop.close()

        self._thread = threading.Thread(target=serve, name="local-bot-api", daemon=True)
        self._thread.start()
        started.wait(10)
        if failure:
            raise failure[0]
        return self.base_url

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None


@contextlib.contextmanager
def running_local_bot_api(**server_options: Any) -> Iterator[LocalBotAPIServer]:
    """Start the local server in a background thread and point the bot transport at it for the duration.

    ``with running_local_bot_api() as server: …; server.sent_messages()`` lists what users got.
    """
    from django.conf import settings

    from telegram_bridge.transport import transport_reset

    server = LocalBotAPIServer(**server_options)
    base_url = server.start_in_thread()
    previous = (settings.TELEGRAM_API_BASE, settings.TELEGRAM_BOT_TOKEN)
    settings.TELEGRAM_API_BASE = base_url
    settings.TELEGRAM_BOT_TOKEN = previous[1] or DEFAULT_TOKEN
    transport_reset()
    try:
        yield server
    finally:
        settings.TELEGRAM_API_BASE, settings.TELEGRAM_BOT_TOKEN = previous
        transport_reset()
        server.stop()
