"""A local Telegram Bot API server (aiohttp) for tests, benchmarks and the offline demo.

It speaks the real wire protocol at ``{base}/bot{token}/{method}`` and serves uploaded files at
``{base}/file/bot{token}/{file_path}``, so real clients drive it unchanged: aiogram (the bot's own transport) and
python-telegram-bot are both checked against it in ``testsupport/tests``. Parameters arrive as in Telegram — query
string, url-encoded or multipart form, or a JSON object (parsed by the rules of Telegram's own HTTP reader, so a
malformed body gets Telegram's 400 text) — and every value is read as text, as Telegram does: integers by their
leading digits (``offset=junk`` reads as 0, exactly like the real server), JSON-valued parameters (``reply_markup``,
``commands``, ``allowed_updates``) parsed with Telegram's error texts. Answers are ``{"ok": true, "result": …}`` or
``{"ok": false, "error_code": …, "description": …, "parameters": …}``; bad input is a 400 ``"Bad Request: …"``,
an unknown method or path a 404 ``"Not Found"``, never a 500.

Methods: getMe, getChat, getUpdates (long polling; a newer getUpdates ends an older one with 409 "terminated by
other getUpdates request", setWebhook ends it with 409 "terminated by setWebhook request", and getUpdates while a
webhook is set is the 409 Telegram gives), setWebhook/deleteWebhook/getWebhookInfo, sendMessage, sendPhoto,
sendDocument, sendChatAction, editMessageText, editMessageCaption, editMessageReplyMarkup (an edit is refused as
"message is not modified" only when text *and* keyboard are unchanged, as in Telegram), deleteMessage (the bot's
messages and the users' own), answerCallbackQuery (only for queries it delivered, once), getFile,
setMyCommands/getMyCommands/deleteMyCommands, close, logOut.

It records every message it receives (injected user updates: ``received_messages()``) and sends
(``sent_messages()``, ``transcript()``) and every other call (``calls_of()``), lets a test inject updates, and can
misbehave on purpose:

* a global rate limit (and optionally one per chat) answered with real 429s carrying ``parameters.retry_after``;
  a request for a chat before its retry_after has passed is counted in ``stats["violations"]``;
* 403 "Forbidden: bot was blocked by the user" for chosen chats;
* transient 5xx answers for the next *n* requests;
* stalled getUpdates (a half-open connection) for the bridge's watchdog;
* Telegram's HTML parse-mode check: unescaped ``<``/``&`` or unsupported tags get a 400 "can't parse entities";
* ``strict_chats=True``: only chats that wrote to the bot (or ``chat_add``) exist, others are "chat not found".

Run it standalone with ``python manage.py run_local_bot_api --port 8081``, in a background thread with
``LocalBotAPIServer().start_in_thread()``, or for the demo with ``running_local_bot_api()`` which also points the
bot transport at it. Control endpoints for other processes: ``GET /_local/sent``, ``GET /_local/received``,
``POST /_local/updates`` (one update object), ``GET /_local/stats``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

from telegram_bridge.telegram_html import MESSAGE_LIMIT, telegram_html_errors, visible_text

SENDING_METHODS = frozenset(
    {"sendmessage", "sendphoto", "senddocument", "editmessagetext", "editmessagecaption", "editmessagereplymarkup"}
)
DEFAULT_TOKEN = "123456789:LOCAL-bot-api-test-token"  # noqa: S105 — a placeholder, not a secret
CAPTION_LIMIT = 1024
LONG_POLL_MAX_TIMEOUT = 50
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
BUTTON_ACTIONS = frozenset(
    {
        "url",
        "callback_data",
        "web_app",
        "login_url",
        "switch_inline_query",
        "switch_inline_query_current_chat",
        "switch_inline_query_chosen_chat",
        "copy_text",
        "callback_game",
        "pay",
    }
)
UPDATE_KINDS = (
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "callback_query",
    "my_chat_member",
    "chat_member",
    "inline_query",
    "chosen_inline_result",
    "shipping_query",
    "pre_checkout_query",
    "poll",
    "poll_answer",
    "chat_join_request",
    "message_reaction",
    "message_reaction_count",
    "business_message",
)
# Telegram sends these only when asked for by name in allowed_updates.
OPT_IN_UPDATE_KINDS = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
TOKEN_FORMAT = re.compile(r"\d+:[\w-]+")
COMMAND_FORMAT = re.compile(r"[a-z0-9_]{1,32}")
INTEGER_TEXT = re.compile(r"-?\d+")
_JSON = json.JSONDecoder()


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


def _bad(text: str) -> _ApiError:
    """A 400 as Telegram words it: ``Bad Request: `` and the reason."""
    return _ApiError(400, f"Bad Request: {text}")


def _integer(text: str | None, default: int = 0) -> int:
    """Telegram's reading of an integer parameter: an optional minus and the leading digits; anything else is 0."""
    if not text:
        return default
    match = re.match(r"-?\d*", text.strip())
    digits = match.group(0) if match else ""
    return int(digits) if digits.lstrip("-") else 0


def _boolean(text: str | None) -> bool:
    return (text or "").strip().lower() in {"true", "1"}


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def json_parameters(body: str) -> dict[str, str]:
    """A JSON request body → Telegram's parameters (every value as text), with the real server's 400 texts.

    Mirrors the HTTP reader of Telegram's Bot API server: a JSON string becomes the parameter ``content``; otherwise
    the body must be one object whose string values are taken as they are and whose other values (numbers, objects,
    arrays) are kept as their JSON text.
    """
    position = _skip_space(body, 0)
    if position == len(body):
        return {}
    if body[position] == '"':
        try:
            value, end = _JSON.raw_decode(body, position)
        except json.JSONDecodeError as error:
            raise _bad(f"can't parse string content: {error.msg}") from None
        if end != len(body):
            raise _bad("extra data after string")
        return {"content": value}
    if body[position] != "{":
        raise _bad("JSON object expected")
    position += 1
    parameters: dict[str, str] = {}
    while True:
        position = _skip_space(body, position)
        if position < len(body) and body[position] == "}":
            if _skip_space(body, position + 1) == len(body):
                return parameters
            raise _bad("unexpected data after object end")
        if position == len(body):
            raise _bad("expected parameter name")
        if body[position] != '"':
            raise _bad("can't parse parameter name: Opening '\"' expected")
        try:
            key, position = _JSON.raw_decode(body, position)
        except json.JSONDecodeError as error:
            raise _bad(f"can't parse parameter name: {error.msg}") from None
        position = _skip_space(body, position)
        if position == len(body) or body[position] != ":":
            raise _bad("can't parse object, ':' expected")
        position = _skip_space(body, position + 1)
        try:
            value, end = _JSON.raw_decode(body, position)
        except json.JSONDecodeError as error:
            raise _bad(f"can't parse parameter value: {error.msg}") from None
        parameters[key] = value if isinstance(value, str) else body[position:end]
        position = _skip_space(body, end)
        if position < len(body) and body[position] == "}":
            continue
        if position < len(body) and body[position] == ",":
            position += 1
            continue
        raise _bad("expected next field or object end")


def _json_argument(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        raise _bad(f"can't parse {what} JSON object") from None


def _png_size(content: bytes) -> tuple[int, int] | None:
    if content[:8] == b"\x89PNG\r\n\x1a\n" and len(content) >= 24 and content[12:16] == b"IHDR":
        return struct.unpack(">II", content[16:24])
    return None


# A ChatMemberAdministrator's rights as the Bot API lists them (every field is required in its answers).
ADMINISTRATOR_RIGHTS = {
    "can_be_edited": False,
    "is_anonymous": False,
    "can_manage_chat": True,
    "can_delete_messages": True,
    "can_manage_video_chats": False,
    "can_restrict_members": True,
    "can_promote_members": False,
    "can_change_info": True,
    "can_invite_users": True,
    "can_post_stories": False,
    "can_edit_stories": False,
    "can_delete_stories": False,
    "can_send_welcome_messages": False,
}


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
        strict_chats: bool = False,
    ) -> None:
        self.token = token  # None: any well-formed token is accepted
        self.bot = {
            "id": bot_id,
            "is_bot": True,
            "first_name": "Perps Signals (local)",
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.check_html = check_html
        self.strict_chats = strict_chats
        self._lock = threading.Lock()
        self._global_limit: _Gcra | None = None
        self._chat_limit_rate = chat_limit_per_second
        self._chat_limits: dict[str, _Gcra] = {}
        self.set_rate_limit(rate_limit_per_second, burst=rate_limit_burst)
        self._retry_deadline: dict[str, float] = {}
        self.blocked_chats: set[str] = set()
        self.chat_admins: dict[str, set[int]] = {}  # group/channel id -> user ids getChatMember calls admins
        self._fail_next: list[int] = []
        self._stall_next: list[float] = []  # getUpdates calls to leave unanswered, for how long
        self.sent: list[dict[str, Any]] = []  # every successful sending call, in order
        self.received: list[dict[str, Any]] = []  # every user message injected as an update, in order
        self.calls: list[dict[str, Any]] = []  # every other successful call (answerCallbackQuery, deleteMessage, …)
        self.messages: dict[tuple[str, int], dict[str, Any]] = {}  # (chat, message id) → its current state
        self.chats: dict[str, dict[str, Any]] = {}  # chats that wrote to the bot: id → Telegram's Chat object
        self.files: dict[str, dict[str, Any]] = {}  # file_id → {file_unique_id, file_path, content, …}
        self.commands: list[dict[str, Any]] = []
        self.webhook: dict[str, Any] = {"url": "", "secret_token": ""}
        self.stats = {
            "requests": 0,
            "rate_limited": 0,
            "violations": 0,
            "forbidden": 0,
            "server_errors": 0,
            "bad_requests": 0,
            "parse_errors": 0,
            "stalled": 0,
            "conflicts": 0,
        }
        self._updates: list[dict[str, Any]] = []
        self._callbacks: set[str] = set()  # callback query ids delivered and not answered yet
        self._next_update_id = 1
        self._next_message_id = 1
        self._next_callback_id = 1
        self._next_file = 1
        self._poll_generation = 0  # each getUpdates takes the next number; an older poll sees it and ends (409)
        self._wakeup: asyncio.Event | None = None
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

    def chat_add(self, chat: dict[str, Any]) -> None:
        """Make a chat known (with ``strict_chats`` only known chats exist), e.g. a group or a channel."""
        with self._lock:
            self.chats[str(chat["id"])] = dict(chat)
            if chat.get("username"):
                self.chats[f"@{chat['username']}"] = dict(chat)

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

    def received_messages(self, chat_id: int | str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in self.received if chat_id is None or m["chat_id"] == str(chat_id)]

    def transcript(self, chat_id: int | str | None = None, *, with_received: bool = False) -> list[str]:
        """What users saw, one entry per message as the Telegram client would render it (for the demo's output);
        ``with_received`` interleaves what the users wrote (``←``) with the bot's messages (``→``)."""
        entries: list[tuple[float, str]] = []
        for message in self.sent_messages(chat_id):
            text = visible_text(message["text"]) if message["parse_mode"].upper() == "HTML" else message["text"]
            reply = f" (reply to #{message['reply_to_message_id']})" if message["reply_to_message_id"] else ""
            entries.append(
                (
                    message["at"],
                    f"→ chat {message['chat_id']} #{message['message_id']} {message['method']}{reply}:\n{text}",
                )
            )
        if with_received:
            for message in self.received_messages(chat_id):
                entries.append(
                    (
                        message["at"],
                        f"← chat {message['chat_id']} #{message['message_id']} from "
                        f"{message['from_user_id']}:\n{message['text']}",
                    )
                )
        return [line for _, line in sorted(entries, key=lambda entry: entry[0])]

    def calls_of(self, method: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(c) for c in self.calls if c["method"] == method]

    def clear(self) -> None:
        """Forget what was recorded and the pending misbehaviour (messages and chats stay, as in Telegram)."""
        with self._lock:
            self.sent.clear()
            self.received.clear()
            self.calls.clear()
            self._retry_deadline.clear()
            self._fail_next.clear()
            self._stall_next.clear()
            for key in self.stats:
                self.stats[key] = 0

    def reset(self) -> None:
        """A fresh server for the next test: recordings, limits, blocked chats, webhook and pending updates."""
        self.clear()
        self.set_rate_limit(None)
        with self._lock:
            self.blocked_chats.clear()
            self.chat_admins.clear()
            self.webhook = {"url": "", "secret_token": ""}
            self._updates.clear()
            self._callbacks.clear()
            self.commands = []
        self._wake_pollers()

    # --- updates --------------------------------------------------------------------------------------------------
    def inject_update(self, update: dict[str, Any]) -> int:
        """Queue an update (an update_id is assigned when missing); a webhook, if set, receives it instead.

        A user's message in it is recorded (``received_messages()``; the bot may delete it), a callback query's id
        becomes answerable once."""
        if not isinstance(update, dict):
            raise TypeError("an update is a JSON object")
        with self._lock:
            update = dict(update)
            update.setdefault("update_id", self._next_update_id)
            self._next_update_id = max(self._next_update_id, int(update["update_id"])) + 1
            self._record_received(update)
            self._updates.append(update)
            webhook = dict(self.webhook)
        if self._loop is not None:
            if webhook["url"]:
                asyncio.run_coroutine_threadsafe(self._push_webhook(update, webhook), self._loop)
            else:
                self._loop.call_soon_threadsafe(self._wake_pollers)
        return int(update["update_id"])

    def _record_received(self, update: dict[str, Any]) -> None:
        """(Under the lock.) Remember the users' messages and chats and the callback ids an update carries."""
        for kind in ("message", "edited_message", "channel_post", "edited_channel_post", "business_message"):
            message = update.get(kind)
            if not isinstance(message, dict) or not isinstance(message.get("chat"), dict):
                continue
            chat = message["chat"]
            chat_key, message_id = str(chat.get("id")), int(message.get("message_id") or 0)
            self.chats.setdefault(chat_key, dict(chat))
            self._next_message_id = max(self._next_message_id, message_id + 1)
            text = str(message.get("text") or message.get("caption") or "")
            if kind.startswith("edited_"):
                if (chat_key, message_id) in self.messages:
                    self.messages[(chat_key, message_id)]["text"] = text
                continue
            self.messages[(chat_key, message_id)] = {
                "text": text,
                "from_user": True,
                "deleted": False,
                "kind": "text",
                "reply_markup": None,
                "parse_mode": "",
            }
            self.received.append(
                {
                    "update_id": update["update_id"],
                    "chat_id": chat_key,
                    "message_id": message_id,
                    "from_user_id": (message.get("from") or {}).get("id"),
                    "text": text,
                    "at": time.monotonic(),
                }
            )
        callback = update.get("callback_query")
        if isinstance(callback, dict) and callback.get("id"):
            self._callbacks.add(str(callback["id"]))

    def inject_message(
        self,
        *,
        user_id: int,
        text: str,
        username: str = "",
        first_name: str = "Test",
        chat_id: int | None = None,
        chat_type: str = "private",
    ) -> int:
        chat: dict[str, Any] = {"id": chat_id if chat_id is not None else user_id, "type": chat_type}
        if chat_type == "private":
            chat.update({"first_name": first_name, "username": username} if username else {"first_name": first_name})
        else:
            chat["title"] = f"group {chat['id']}"
        user = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        with self._lock:
            message_id = self._next_message_id
            self._next_message_id += 1
        message = {"message_id": message_id, "from": user, "chat": chat, "date": int(time.time()), "text": text}
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return self.inject_update({"message": message})

    def inject_callback(
        self, *, user_id: int, data: str, message_id: int | None = None, username: str = "", first_name: str = "Test"
    ) -> int:
        """A press on an inline button of the bot's message ``message_id`` (default: its latest in this chat)."""
        user = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        chat_key = str(user_id)
        with self._lock:
            callback_id = str(self._next_callback_id)
            self._next_callback_id += 1
            if message_id is None:
                mine = [key[1] for key, state in self.messages.items() if key[0] == chat_key and not state["from_user"]]
                message_id = max(mine) if mine else 1
            state = self.messages.get((chat_key, int(message_id))) or {}
        chat = self.chats.get(chat_key) or {"id": user_id, "type": "private", "first_name": first_name}
        message: dict[str, Any] = {"message_id": message_id, "chat": chat, "date": int(time.time()), "from": self.bot}
        if state.get("kind", "text") == "text":
            message["text"] = visible_text(state.get("text") or "…")
        if state.get("reply_markup"):
            message["reply_markup"] = state["reply_markup"]
        return self.inject_update(
            {
                "callback_query": {
                    "id": callback_id,
                    "from": user,
                    "chat_instance": chat_key,
                    "data": data,
                    "message": message,
                }
            }
        )

    def set_chat_admins(self, chat_id: int | str, user_ids: set[int] | list[int]) -> None:
        """Who getChatMember reports as an administrator of a group or channel (everyone else: member)."""
        with self._lock:
            self.chat_admins[str(chat_id)] = set(user_ids)

    def inject_bot_membership(
        self,
        *,
        chat_id: int,
        status: str,
        by_user_id: int,
        chat_type: str = "supergroup",
        title: str = "Traders",
        old_status: str = "left",
    ) -> int:
        """``my_chat_member`` as Telegram sends it when a user adds the bot to (status "member"/"administrator") or
        removes it from (status "left"/"kicked") a group or channel."""
        chat = {"id": chat_id, "type": chat_type, "title": title}
        with self._lock:
            self.chats.setdefault(str(chat_id), dict(chat))
        bot = {key: self.bot[key] for key in ("id", "is_bot", "first_name", "username")}
        member: dict[str, Any] = {"status": status, "user": bot}
        if status == "administrator":
            member.update(ADMINISTRATOR_RIGHTS)
        elif status == "kicked":
            member["until_date"] = 0
        return self.inject_update(
            {
                "my_chat_member": {
                    "chat": chat,
                    "from": {"id": by_user_id, "is_bot": False, "first_name": "Admin"},
                    "date": int(time.time()),
                    "old_chat_member": {"status": old_status, "user": bot},
                    "new_chat_member": member,
                }
            }
        )

    def inject_group_callback(
        self, *, user_id: int, chat_id: int, data: str, message_id: int, chat_type: str = "supergroup"
    ) -> int:
        """A press on an inline button of the bot's message ``message_id`` in a group."""
        with self._lock:
            callback_id = str(self._next_callback_id)
            self._next_callback_id += 1
            chat = self.chats.get(str(chat_id)) or {"id": chat_id, "type": chat_type, "title": f"group {chat_id}"}
        message = {"message_id": message_id, "chat": chat, "date": int(time.time()), "text": "…", "from": self.bot}
        return self.inject_update(
            {
                "callback_query": {
                    "id": callback_id,
                    "from": {"id": user_id, "is_bot": False, "first_name": "Test"},
                    "chat_instance": str(chat_id),
                    "data": data,
                    "message": message,
                }
            }
        )

    def message_exists(self, chat_id: int | str, message_id: int) -> bool:
        with self._lock:
            message = self.messages.get((str(chat_id), int(message_id)))
            return bool(message) and not message["deleted"]

    def _wake_pollers(self) -> None:
        """(In the server's loop.) Every waiting getUpdates looks again: new updates, a webhook, a newer poll."""
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = asyncio.Event()

    async def _push_webhook(self, update: dict, webhook: dict) -> None:
        headers = {"X-Telegram-Bot-Api-Secret-Token": webhook["secret_token"]} if webhook["secret_token"] else {}
        # On failure the update stays queued (Telegram would retry later).
        with contextlib.suppress(Exception):
            async with (
                ClientSession(timeout=ClientTimeout(total=30)) as session,
                session.post(webhook["url"], json=update, headers=headers) as response,
            ):
                if response.status == 200:
                    with self._lock:
                        self._updates = [u for u in self._updates if u["update_id"] != update["update_id"]]

    # --- HTTP -----------------------------------------------------------------------------------------------------
    def application(self) -> web.Application:
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        app.router.add_get("/_local/sent", self._control_sent)
        app.router.add_get("/_local/received", self._control_received)
        app.router.add_get("/_local/stats", self._control_stats)
        app.router.add_post("/_local/updates", self._control_updates)
        app.router.add_route("*", "/{anything:.*}", self._not_found)
        return app

    @staticmethod
    def _error_response(error: _ApiError) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": error.code, "description": error.description}
        if error.parameters:
            body["parameters"] = error.parameters
        headers = (
            {"Retry-After": str(error.parameters["retry_after"])}
            if (error.parameters or {}).get("retry_after")
            else None
        )
        return web.json_response(body, status=error.code, headers=headers)

    async def _not_found(self, request: web.Request) -> web.Response:
        return self._error_response(_ApiError(404, "Not Found"))

    async def _control_sent(self, request: web.Request) -> web.Response:
        return web.json_response(self.sent_messages(request.query.get("chat_id")))

    async def _control_received(self, request: web.Request) -> web.Response:
        return web.json_response(self.received_messages(request.query.get("chat_id")))

    async def _control_stats(self, request: web.Request) -> web.Response:
        with self._lock:
            return web.json_response(dict(self.stats))

    async def _control_updates(self, request: web.Request) -> web.Response:
        try:
            update = json.loads(await request.text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            update = None
        if not isinstance(update, dict):
            return self._error_response(_bad("an update must be a JSON object"))
        return web.json_response({"ok": True, "update_id": self.inject_update(update)})

    def _check_token(self, token: str) -> None:
        if not TOKEN_FORMAT.fullmatch(token):
            raise _ApiError(404, "Not Found")  # Telegram answers a malformed token like an unknown path
        if self.token is not None and token != self.token:
            raise _ApiError(401, "Unauthorized")

    async def _download(self, request: web.Request) -> web.StreamResponse:
        try:
            self._check_token(request.match_info["token"])
        except _ApiError as error:
            return self._error_response(error)
        path = request.match_info["path"]
        with self._lock:
            stored = next((f for f in self.files.values() if f["file_path"] == path), None)
        if stored is None or stored["content"] is None:
            return self._error_response(_ApiError(404, "Not Found"))
        return web.Response(body=stored["content"], content_type=stored["mime_type"])

    async def _params(self, request: web.Request) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
        """The parameters (all text, as Telegram reads them) and the uploaded files of one request."""
        params: dict[str, str] = dict(request.query)
        files: dict[str, dict[str, Any]] = {}
        if not request.can_read_body:
            return params, files
        if request.content_type == "application/json":
            try:
                body = (await request.read()).decode("utf-8")
            except UnicodeDecodeError:
                raise _bad("request body is not valid UTF-8") from None
            params.update(json_parameters(body))
        elif request.content_type in {"application/x-www-form-urlencoded", "multipart/form-data"}:
            try:
                form = await request.post()
            except (ValueError, AssertionError, UnicodeDecodeError):
                raise _bad("can't parse request body") from None
            for key, value in form.items():
                if isinstance(value, str):
                    params[key] = value
                else:
                    files[key] = {
                        "filename": value.filename or "file",
                        "content": value.file.read(),
                        "mime_type": value.content_type or "application/octet-stream",
                    }
        # Any other content type: the body is ignored, as Telegram does.
        return params, files

    async def _handle(self, request: web.Request) -> web.Response:
        token, method = request.match_info["token"], request.match_info["method"]
        with self._lock:
            self.stats["requests"] += 1
        try:
            self._check_token(token)
            handler = getattr(self, f"_api_{method.lower()}", None)
            if handler is None:
                raise _ApiError(404, "Not Found")
            params, files = await self._params(request)
            with self._lock:
                if self._fail_next:
                    status = self._fail_next.pop(0)
                    self.stats["server_errors"] += 1
                    raise _ApiError(status, "Internal Server Error: simulated")
            if method.lower() in SENDING_METHODS:
                self._admit(params.get("chat_id", ""))
            result = await handler(params, files)
        except _ApiError as error:
            with self._lock:
                if error.code == 400:
                    self.stats["bad_requests"] += 1
                elif error.code == 409:
                    self.stats["conflicts"] += 1
            return self._error_response(error)
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
                raise _ApiError(
                    429,
                    f"Too Many Requests: retry after {math.ceil(deadline - now)}",
                    {"retry_after": math.ceil(deadline - now)},
                )
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

    # --- argument readers (Telegram's rules and texts) -------------------------------------------------------------
    def _chat(self, chat_id: str) -> tuple[str, dict[str, Any]]:
        """The chat a ``chat_id`` names: its key in the records and Telegram's Chat object."""
        chat_id = chat_id.strip()
        if not chat_id:
            raise _bad("chat_id is empty")
        with self._lock:
            known = self.chats.get(chat_id)
        if chat_id.startswith("@"):
            if known is not None:
                return chat_id, known
            if self.strict_chats or len(chat_id) < 2:
                raise _bad("chat not found")
            return chat_id, {"id": -1001000000000, "type": "channel", "title": chat_id, "username": chat_id[1:]}
        if not INTEGER_TEXT.fullmatch(chat_id) or int(chat_id) == 0:
            raise _bad("chat not found")
        key = str(int(chat_id))
        with self._lock:
            known = self.chats.get(key)
        if known is not None:
            return key, known
        if self.strict_chats:
            raise _bad("chat not found")
        numeric = int(key)
        if numeric < 0:
            return key, {"id": numeric, "type": "supergroup", "title": f"group {numeric}"}
        return key, {"id": numeric, "type": "private", "first_name": f"user {numeric}"}

    def _check_text(self, text: str, parse_mode: str, *, limit: int = MESSAGE_LIMIT, caption: bool = False) -> None:
        if not text.strip() and not caption:
            raise _bad("message text is empty")
        mode = parse_mode.strip().lower()
        if mode not in {"", "html", "markdown", "markdownv2"}:
            raise _bad(f'unsupported parse_mode "{parse_mode}"')
        if mode == "html" and self.check_html:
            error = telegram_html_errors(text)
            if error:
                with self._lock:
                    self.stats["parse_errors"] += 1
                raise _ApiError(400, error)
            length = len(visible_text(text))
        else:
            length = len(text)
        if length > limit:
            raise _bad("message caption is too long" if caption else "message is too long")

    @staticmethod
    def _reply_markup(raw: str | None) -> dict | None:
        if not raw:
            return None
        markup = _json_argument(raw, "reply keyboard markup")
        if not isinstance(markup, dict):
            raise _bad("object expected as reply markup")
        if "inline_keyboard" in markup:
            rows = markup["inline_keyboard"]
            if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
                raise _bad('field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays')
            for row in rows:
                for button in row:
                    if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                        raise _bad('can\'t parse inline keyboard button: Field "text" must be of type String')
                    if not BUTTON_ACTIONS & button.keys():
                        raise _bad(
                            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                        )
                    if "callback_data" in button and not 1 <= len(str(button["callback_data"]).encode()) <= 64:
                        raise _bad("BUTTON_DATA_INVALID")
        return markup

    def _reply_to(self, params: dict[str, str], chat_key: str) -> int | None:
        """The message this one replies to; a missing one is refused unless allow_sending_without_reply."""
        reply_to, allow_without = (
            _integer(params.get("reply_to_message_id")),
            _boolean(params.get("allow_sending_without_reply")),
        )
        if params.get("reply_parameters"):
            reply = _json_argument(params["reply_parameters"], "reply parameters")
            if not isinstance(reply, dict):
                raise _bad("object expected as reply parameters")
            reply_to = _integer(str(reply.get("message_id", "")))
            allow_without = bool(reply.get("allow_sending_without_reply"))
        if not reply_to:
            return None
        if not self.message_exists(chat_key, reply_to) and not allow_without:
            raise _bad("message to be replied not found")
        return reply_to

    def _input_file(self, params: dict[str, str], files: dict[str, dict], field: str, kind: str) -> dict | None:
        """The file sent as ``field``: a fresh upload (stored, getFile serves it), a known file_id, or an URL."""
        upload = files.get(field)
        value = params.get(field, "")
        if upload is None and value.startswith("attach://"):
            upload = files.get(value.removeprefix("attach://"))
            if upload is None:
                raise _bad("wrong file identifier/HTTP URL specified")
        if upload is not None:
            if not upload["content"]:
                raise _bad("file must be non-empty")
            with self._lock:
                number = self._next_file
                self._next_file += 1
                extension = upload["filename"].rsplit(".", 1)[-1] if "." in upload["filename"] else "dat"
                folder = "photos" if kind == "photo" else "documents"
                stored = {
                    "file_id": f"{kind}-{number}-{int(time.time())}",
                    "file_unique_id": f"u{kind[:1]}{number}",
                    "file_path": f"{folder}/file_{number}.{extension if kind != 'photo' else 'jpg'}",
                    "content": upload["content"],
                    "filename": upload["filename"],
                    "mime_type": upload["mime_type"],
                    "file_size": len(upload["content"]),
                }
                self.files[stored["file_id"]] = stored
            return stored
        if not value:
            return None
        with self._lock:
            known = self.files.get(value)
        if known is not None:
            return known
        if value.startswith(("http://", "https://")):
            return {
                "file_id": f"url-{abs(hash(value))}",
                "file_unique_id": f"url{abs(hash(value)) % 10**8}",
                "file_path": "",
                "content": None,
                "filename": value.rsplit("/", 1)[-1] or "file",
                "mime_type": "application/octet-stream",
                "file_size": 0,
                "url": value,
            }
        raise _bad("wrong file identifier/HTTP URL specified")

    def _message_key(self, params: dict[str, str], what: str) -> tuple[str, int, dict[str, Any]]:
        """The chat, message id and chat object an edit addresses (Telegram's checks and texts)."""
        message_id = _integer(params.get("message_id"))
        if not params.get("chat_id", "").strip() and message_id == 0:
            if params.get("inline_message_id"):
                raise _bad("MESSAGE_ID_INVALID")
            raise _bad("message identifier is not specified")
        chat_key, chat = self._chat(params.get("chat_id", ""))
        if message_id <= 0:
            raise _bad(f"{what} not found")
        return chat_key, message_id, chat

    # --- recording --------------------------------------------------------------------------------------------------
    def _record(
        self,
        method: str,
        params: dict,
        chat_id: str,
        *,
        reply_markup: dict | None = None,
        reply_to: int | None = None,
        kind: str = "text",
        **extra: Any,
    ) -> dict:
        with self._lock:
            message_id = extra.pop("message_id", None) or self._next_message_id
            if message_id == self._next_message_id:
                self._next_message_id += 1
            record = {
                "method": method,
                "chat_id": chat_id,
                "message_id": int(message_id),
                "text": extra.pop("text", ""),
                "parse_mode": str(params.get("parse_mode", "")),
                "reply_to_message_id": reply_to,
                "reply_markup": reply_markup,
                "at": time.monotonic(),
                **extra,
            }
            self.sent.append(record)
            if method.startswith("send"):
                self.messages[(chat_id, int(message_id))] = {
                    "text": record["text"],
                    "from_user": False,
                    "deleted": False,
                    "kind": kind,
                    "reply_markup": reply_markup,
                    "parse_mode": record["parse_mode"],
                    "extra": extra,
                }
            else:
                state = self.messages[(chat_id, int(message_id))]
                state.update(text=record["text"], reply_markup=reply_markup, parse_mode=record["parse_mode"])
        return record

    def _message_result(self, record: dict, chat: dict, *, edited: bool = False) -> dict:
        with self._lock:
            state = dict(self.messages.get((record["chat_id"], record["message_id"])) or {})
        result: dict[str, Any] = {
            "message_id": record["message_id"],
            "date": int(time.time()),
            "chat": chat,
            "from": self.bot,
        }
        if edited:
            result["edit_date"] = int(time.time())
        text = state.get("text", record.get("text", ""))
        shown = visible_text(text) if state.get("parse_mode", "").upper() == "HTML" else text
        kind = state.get("kind", "text")
        if kind == "text":
            result["text"] = shown
        else:
            stored = (state.get("extra") or {}).get(kind) or {}
            if kind == "photo":
                result["photo"] = [
                    {
                        "file_id": stored.get("file_id", ""),
                        "file_unique_id": stored.get("file_unique_id", ""),
                        "file_size": stored.get("size", 0),
                        "width": stored.get("width", 800),
                        "height": stored.get("height", 600),
                    }
                ]
            else:
                result["document"] = {
                    "file_id": stored.get("file_id", ""),
                    "file_unique_id": stored.get("file_unique_id", ""),
                    "file_name": stored.get("filename", "file"),
                    "mime_type": stored.get("mime_type", "application/octet-stream"),
                    "file_size": stored.get("size", 0),
                }
            if shown:
                result["caption"] = shown
        if record.get("reply_to_message_id"):
            with self._lock:
                replied = self.messages.get((record["chat_id"], record["reply_to_message_id"]))
            if replied is not None and not replied["deleted"]:
                result["reply_to_message"] = {
                    "message_id": record["reply_to_message_id"],
                    "date": int(time.time()),
                    "chat": chat,
                    "text": visible_text(replied["text"]),
                }
        if state.get("reply_markup"):
            result["reply_markup"] = state["reply_markup"]
        return result

    # --- Bot API methods ------------------------------------------------------------------------------------------
    async def _api_getme(self, params: dict, files: dict) -> dict:
        return self.bot

    async def _api_getchat(self, params: dict, files: dict) -> dict:
        _, chat = self._chat(params.get("chat_id", ""))
        return chat

    async def _api_close(self, params: dict, files: dict) -> bool:
        with self._lock:
            self.calls.append({"method": "close", "at": time.monotonic()})
        return True

    async def _api_logout(self, params: dict, files: dict) -> bool:
        with self._lock:
            self.calls.append({"method": "logOut", "at": time.monotonic()})
        return True

    async def _api_setmycommands(self, params: dict, files: dict) -> bool:
        commands = _json_argument(params.get("commands") or "[]", "commands")
        if not isinstance(commands, list):
            raise _bad("expected an Array of BotCommand")
        menu = []
        for command in commands:
            if not isinstance(command, dict):
                raise _bad("expected an Object of BotCommand")
            name, description = command.get("command"), command.get("description")
            if not isinstance(name, str) or not isinstance(description, str):
                raise _bad(
                    'field "command" must be of type String'
                    if not isinstance(name, str)
                    else 'field "description" must be of type String'
                )
            if not COMMAND_FORMAT.fullmatch(name.removeprefix("/")):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(description.strip()) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
            menu.append({"command": name.removeprefix("/"), "description": description})
        with self._lock:
            self.commands = menu
            self.calls.append({"method": "setMyCommands", "commands": menu, "at": time.monotonic()})
        return True

    async def _api_getmycommands(self, params: dict, files: dict) -> list[dict]:
        with self._lock:
            return [dict(command) for command in self.commands]

    async def _api_deletemycommands(self, params: dict, files: dict) -> bool:
        with self._lock:
            self.commands = []
            self.calls.append({"method": "deleteMyCommands", "at": time.monotonic()})
        return True

    async def _api_setwebhook(self, params: dict, files: dict) -> bool:
        url = params.get("url", "").strip()
        secret = params.get("secret_token", "")
        if secret and (len(secret) > 256 or not all(c.isalnum() or c in "_-" for c in secret)):
            raise _bad("secret token contains unallowed characters")
        if url and not url.startswith(("http://", "https://")):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        allowed = (
            _json_argument(params["allowed_updates"], "allowed updates") if params.get("allowed_updates") else None
        )
        with self._lock:
            self.webhook = {"url": url, "secret_token": secret if url else "", "allowed_updates": allowed}
            self.calls.append({"method": "setWebhook", "url": url, "at": time.monotonic()})
        self._wake_pollers()  # a long poll in progress ends with 409 "terminated by setWebhook request"
        return True

    async def _api_deletewebhook(self, params: dict, files: dict) -> bool:
        with self._lock:
            self.webhook = {"url": "", "secret_token": ""}
            if _boolean(params.get("drop_pending_updates")):
                self._updates.clear()
            self.calls.append({"method": "deleteWebhook", "at": time.monotonic()})
        return True

    async def _api_getwebhookinfo(self, params: dict, files: dict) -> dict:
        with self._lock:
            self.calls.append({"method": "getWebhookInfo", "at": time.monotonic()})
            info: dict[str, Any] = {
                "url": self.webhook["url"],
                "has_custom_certificate": False,
                "pending_update_count": len(self._updates),
            }
            if self.webhook["url"]:
                info["max_connections"] = 40
                if self.webhook.get("allowed_updates"):
                    info["allowed_updates"] = self.webhook["allowed_updates"]
            return info

    async def _api_getupdates(self, params: dict, files: dict) -> list[dict]:
        with self._lock:
            if self.webhook["url"]:
                raise _ApiError(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first",
                )
            self._poll_generation += 1
            generation = self._poll_generation
            stall = self._stall_next.pop(0) if self._stall_next else 0.0
            if stall:
                self.stats["stalled"] += 1
        self._wake_pollers()  # an older long poll ends: "terminated by other getUpdates request"
        if stall:
            stall_until = time.monotonic() + stall
            while time.monotonic() < stall_until and not self._stopping:
                await asyncio.sleep(0.05)
            return []
        offset = _integer(params.get("offset"))
        limit = min(max(_integer(params.get("limit"), 100), 1), 100)
        timeout = min(max(_integer(params.get("timeout")), 0), LONG_POLL_MAX_TIMEOUT)
        allowed = None
        if params.get("allowed_updates"):
            allowed = _json_argument(params["allowed_updates"], "allowed updates")
            if not isinstance(allowed, list):
                raise _bad("expected an Array of String as allowed_updates")
        wanted = (
            {kind for kind in allowed if isinstance(kind, str)} if allowed else set(UPDATE_KINDS) - OPT_IN_UPDATE_KINDS
        )
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self.webhook["url"]:
                    raise _ApiError(409, "Conflict: terminated by setWebhook request")
                if self._poll_generation != generation:
                    raise _ApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; make sure that only one "
                        "bot instance is running",
                    )
                if offset < 0:
                    self._updates = self._updates[offset:]
                elif offset:
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                # Updates of kinds not asked for are never delivered (Telegram does not even create them).
                self._updates = [
                    u
                    for u in self._updates
                    if any(kind in u for kind in wanted) or not any(kind in u for kind in UPDATE_KINDS)
                ]
                ready = self._updates[:limit]
                if ready or time.monotonic() >= deadline or self._stopping:
                    return [dict(u) for u in ready]
                assert self._wakeup is not None
                wakeup = self._wakeup
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout=max(deadline - time.monotonic(), 0.001))

    async def _api_sendmessage(self, params: dict, files: dict) -> dict:
        chat_key, chat = self._chat(params.get("chat_id", ""))
        text = params.get("text", "")
        self._check_text(text, params.get("parse_mode", ""))
        markup = self._reply_markup(params.get("reply_markup"))
        reply_to = self._reply_to(params, chat_key)
        record = self._record("sendMessage", params, chat_key, text=text, reply_markup=markup, reply_to=reply_to)
        return self._message_result(record, chat)

    async def _send_file(self, params: dict, files: dict, kind: str, method: str) -> dict:
        chat_key, chat = self._chat(params.get("chat_id", ""))
        stored = self._input_file(params, files, kind, kind)
        if stored is None:
            raise _bad(f"there is no {kind} in the request")
        caption = params.get("caption", "")
        self._check_text(caption, params.get("parse_mode", ""), limit=CAPTION_LIMIT, caption=True)
        markup = self._reply_markup(params.get("reply_markup"))
        reply_to = self._reply_to(params, chat_key)
        width, height = _png_size(stored["content"] or b"") or (800, 600)
        summary = {
            "filename": stored["filename"],
            "size": stored["file_size"],
            "file_id": stored["file_id"],
            "file_unique_id": stored["file_unique_id"],
            "mime_type": stored["mime_type"],
            "width": width,
            "height": height,
        }
        record = self._record(
            method, params, chat_key, text=caption, reply_markup=markup, reply_to=reply_to, kind=kind, **{kind: summary}
        )
        return self._message_result(record, chat)

    async def _api_sendphoto(self, params: dict, files: dict) -> dict:
        return await self._send_file(params, files, "photo", "sendPhoto")

    async def _api_senddocument(self, params: dict, files: dict) -> dict:
        return await self._send_file(params, files, "document", "sendDocument")

    async def _api_sendchataction(self, params: dict, files: dict) -> bool:
        chat_key, _ = self._chat(params.get("chat_id", ""))
        action = params.get("action", "")
        if action not in CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        with self._lock:
            if chat_key in self.blocked_chats:
                raise _ApiError(403, "Forbidden: bot was blocked by the user")
            self.calls.append(
                {"method": "sendChatAction", "chat_id": chat_key, "action": action, "at": time.monotonic()}
            )
        return True

    def _editable(self, chat_key: str, message_id: int) -> dict[str, Any]:
        with self._lock:
            message = self.messages.get((chat_key, message_id))
            if not message or message["deleted"]:
                raise _bad("message to edit not found")
            if message["from_user"]:
                raise _bad("message can't be edited")
            return dict(message)

    async def _api_editmessagetext(self, params: dict, files: dict) -> dict:
        text = params.get("text", "")
        self._check_text(text, params.get("parse_mode", ""))
        chat_key, message_id, chat = self._message_key(params, "message to edit")
        markup = self._reply_markup(params.get("reply_markup"))
        message = self._editable(chat_key, message_id)
        if message["kind"] != "text":
            raise _bad("there is no text in the message to edit")
        if message["text"] == text and message["reply_markup"] == markup:
            raise _ApiError(400, NOT_MODIFIED)
        record = self._record(
            "editMessageText", params, chat_key, text=text, message_id=message_id, reply_markup=markup
        )
        return self._message_result(record, chat, edited=True)

    async def _api_editmessagecaption(self, params: dict, files: dict) -> dict:
        caption = params.get("caption", "")
        self._check_text(caption, params.get("parse_mode", ""), limit=CAPTION_LIMIT, caption=True)
        chat_key, message_id, chat = self._message_key(params, "message to edit")
        markup = self._reply_markup(params.get("reply_markup"))
        message = self._editable(chat_key, message_id)
        if message["kind"] == "text":
            raise _bad("there is no caption in the message to edit")
        if message["text"] == caption and message["reply_markup"] == markup:
            raise _ApiError(400, NOT_MODIFIED)
        record = self._record(
            "editMessageCaption", params, chat_key, text=caption, message_id=message_id, reply_markup=markup
        )
        return self._message_result(record, chat, edited=True)

    async def _api_editmessagereplymarkup(self, params: dict, files: dict) -> dict:
        chat_key, message_id, chat = self._message_key(params, "message to edit")
        markup = self._reply_markup(params.get("reply_markup"))
        message = self._editable(chat_key, message_id)
        if message["reply_markup"] == markup:
            raise _ApiError(400, NOT_MODIFIED)
        params = {**params, "parse_mode": message["parse_mode"]}
        record = self._record(
            "editMessageReplyMarkup", params, chat_key, text=message["text"], message_id=message_id, reply_markup=markup
        )
        return self._message_result(record, chat, edited=True)

    async def _api_deletemessage(self, params: dict, files: dict) -> bool:
        chat_key, _ = self._chat(params.get("chat_id", ""))
        message_id = _integer(params.get("message_id"))
        if message_id <= 0:
            raise _bad("message identifier is not specified")
        with self._lock:
            message = self.messages.get((chat_key, message_id))
            if not message or message["deleted"]:
                raise _bad("message to delete not found")
            message["deleted"] = True
            self.calls.append(
                {
                    "method": "deleteMessage",
                    "chat_id": chat_key,
                    "message_id": message_id,
                    "from_user": message["from_user"],
                    "at": time.monotonic(),
                }
            )
        return True

    async def _api_getchatmember(self, params: dict, files: dict) -> dict:
        chat_key, _ = self._chat(params.get("chat_id", ""))
        user_id = _integer(params.get("user_id"))
        if user_id <= 0:
            raise _bad("invalid user_id specified")
        user = {"id": user_id, "is_bot": False, "first_name": f"user {user_id}"}
        with self._lock:
            admin = user_id in self.chat_admins.get(chat_key, set())
        if not admin:
            return {"status": "member", "user": user}
        return {"status": "administrator", "user": user, **ADMINISTRATOR_RIGHTS}

    async def _api_answercallbackquery(self, params: dict, files: dict) -> bool:
        callback_id = params.get("callback_query_id", "")
        text = params.get("text", "")
        if len(text) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        with self._lock:
            if callback_id not in self._callbacks:
                raise _ApiError(400, QUERY_INVALID)
            self._callbacks.discard(callback_id)
            self.calls.append(
                {
                    "method": "answerCallbackQuery",
                    "callback_query_id": callback_id,
                    "text": text,
                    "show_alert": _boolean(params.get("show_alert")),
                    "at": time.monotonic(),
                }
            )
        return True

    async def _api_getfile(self, params: dict, files: dict) -> dict:
        file_id = params.get("file_id", "").strip()
        with self._lock:
            stored = self.files.get(file_id)
        if stored is None:
            raise _bad("invalid file_id")
        return {
            "file_id": stored["file_id"],
            "file_unique_id": stored["file_unique_id"],
            "file_size": stored["file_size"],
            "file_path": stored["file_path"],
        }

    # --- running --------------------------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._runner = web.AppRunner(self.application(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_port = self._runner.addresses[0][1]
        self.base_url = f"http://{host}:{bound_port}"
        return self.base_url

    async def stop_async(self) -> None:
        self._stopping = True
        self._wake_pollers()  # long polls in progress answer now
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
    # Django settings and the bot's transport (aiogram, seconds to import) only when the server is wired to the bot:
    # the server itself also runs without Django (run_local_bot_api, python-telegram-bot tests).
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
