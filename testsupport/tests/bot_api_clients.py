"""Two independent Bot API client libraries behind one small interface, to run the same scenarios with each.

aiogram is the bot's own transport; python-telegram-bot is a second, unrelated implementation of the wire protocol
(its own HTTP stack, httpx, its own request encoding and error mapping). A scenario that passes with both says the
local server speaks Telegram's protocol, not one client's habits. Every failure is raised as ``ApiFailure`` with a
kind (``bad_request``, ``conflict``, ``forbidden``, ``retry_after``, ``server_error``, ``invalid_token``) and
Telegram's description in lower case without the ``bad request:`` prefix (python-telegram-bot strips it).
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import aiogram
import aiogram.exceptions as aiogram_errors
import telegram
import telegram.error as ptb_errors
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import BotCommand as AiogramCommand
from aiogram.types import BufferedInputFile
from aiogram.types import InlineKeyboardMarkup as AiogramKeyboard

from testsupport.telegram_bot_api import DEFAULT_TOKEN


class ApiFailure(Exception):
    def __init__(self, kind: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind, self.message, self.retry_after = kind, message, retry_after


def _normal(message: str) -> str:
    message = message.lower()
    return message.removeprefix("bad request: ")


def _message(
    chat_id: Any,
    message_id: int,
    text: str | None,
    caption: str | None,
    markup: dict | None,
    photo_file_id: str | None = None,
    document: tuple[str, str] | None = None,
) -> dict:
    return {
        "chat_id": int(chat_id),
        "message_id": message_id,
        "text": text,
        "caption": caption,
        "reply_markup": markup,
        "photo_file_id": photo_file_id,
        "document_file_id": document[0] if document else None,
        "document_name": document[1] if document else None,
    }


class AiogramClient:
    name = "aiogram"

    def __init__(self, base_url: str, token: str = DEFAULT_TOKEN) -> None:
        self.base_url, self.token = base_url, token

    async def __aenter__(self) -> AiogramClient:
        self.bot = aiogram.Bot(self.token, session=AiohttpSession(api=TelegramAPIServer.from_base(self.base_url)))
        return self

    async def __aexit__(self, *exc) -> None:
        await self.bot.session.close()

    async def _call(self, coroutine):
        try:
            return await coroutine
        except aiogram_errors.TelegramRetryAfter as error:
            raise ApiFailure("retry_after", _normal(error.message), error.retry_after) from error
        except aiogram_errors.TelegramBadRequest as error:
            raise ApiFailure("bad_request", _normal(error.message)) from error
        except aiogram_errors.TelegramConflictError as error:
            raise ApiFailure("conflict", _normal(error.message)) from error
        except aiogram_errors.TelegramForbiddenError as error:
            raise ApiFailure("forbidden", _normal(error.message)) from error
        except (aiogram_errors.TelegramUnauthorizedError, aiogram_errors.TelegramNotFound) as error:
            raise ApiFailure("invalid_token", _normal(error.message)) from error
        except aiogram_errors.TelegramServerError as error:
            raise ApiFailure("server_error", _normal(error.message)) from error

    @staticmethod
    def _keyboard(markup: dict | None) -> AiogramKeyboard | None:
        return AiogramKeyboard.model_validate(markup) if markup else None

    @staticmethod
    def _out(message) -> dict:
        markup = message.reply_markup.model_dump(exclude_none=True) if message.reply_markup else None
        return _message(
            message.chat.id,
            message.message_id,
            message.text,
            message.caption,
            markup,
            message.photo[-1].file_id if message.photo else None,
            (message.document.file_id, message.document.file_name) if message.document else None,
        )

    async def username(self) -> str:
        return (await self._call(self.bot.get_me())).username

    async def send_message(
        self,
        chat_id,
        text: str,
        *,
        parse_mode: str | None = None,
        markup: dict | None = None,
        reply_to: int | None = None,
    ) -> dict:
        reply = aiogram.types.ReplyParameters(message_id=reply_to) if reply_to else None
        return self._out(
            await self._call(
                self.bot.send_message(
                    chat_id=chat_id,
                    text=text,
                    parse_mode=parse_mode,
                    reply_markup=self._keyboard(markup),
                    reply_parameters=reply,
                )
            )
        )

    async def edit_text(self, chat_id, message_id: int, text: str, *, markup: dict | None = None) -> dict:
        return self._out(
            await self._call(
                self.bot.edit_message_text(
                    chat_id=chat_id, message_id=message_id, text=text, reply_markup=self._keyboard(markup)
                )
            )
        )

    async def edit_markup(self, chat_id, message_id: int, markup: dict | None) -> dict:
        return self._out(
            await self._call(
                self.bot.edit_message_reply_markup(
                    chat_id=chat_id, message_id=message_id, reply_markup=self._keyboard(markup)
                )
            )
        )

    async def delete(self, chat_id, message_id: int) -> bool:
        return await self._call(self.bot.delete_message(chat_id=chat_id, message_id=message_id))

    async def answer(self, callback_id: str, text: str) -> bool:
        return await self._call(self.bot.answer_callback_query(callback_query_id=callback_id, text=text))

    async def chat_action(self, chat_id, action: str) -> bool:
        return await self._call(self.bot.send_chat_action(chat_id=chat_id, action=action))

    async def send_photo(self, chat_id, content: bytes, *, caption: str = "") -> dict:
        return self._out(
            await self._call(
                self.bot.send_photo(
                    chat_id=chat_id, photo=BufferedInputFile(content, filename="chart.png"), caption=caption or None
                )
            )
        )

    async def send_document(self, chat_id, content: bytes, filename: str) -> dict:
        return self._out(
            await self._call(
                self.bot.send_document(chat_id=chat_id, document=BufferedInputFile(content, filename=filename))
            )
        )

    async def send_photo_again(self, chat_id, file_id: str) -> dict:
        return self._out(await self._call(self.bot.send_photo(chat_id=chat_id, photo=file_id)))

    async def download(self, file_id: str) -> bytes:
        file = await self._call(self.bot.get_file(file_id))
        buffer = io.BytesIO()
        await self.bot.download_file(file.file_path, destination=buffer)
        return buffer.getvalue()

    async def set_commands(self, commands: list[tuple[str, str]]) -> bool:
        return await self._call(
            self.bot.set_my_commands(commands=[AiogramCommand(command=c, description=d) for c, d in commands])
        )

    async def commands(self) -> list[tuple[str, str]]:
        return [(c.command, c.description) for c in await self._call(self.bot.get_my_commands())]

    async def updates(self, *, offset: int | None = None, timeout: int = 0) -> list[dict]:
        result = await self._call(self.bot.get_updates(offset=offset, timeout=timeout, request_timeout=timeout + 10))
        return [_update(u.model_dump(mode="json", exclude_none=True, by_alias=True)) for u in result]

    async def set_webhook(self, url: str, secret: str = "") -> bool:
        return await self._call(self.bot.set_webhook(url=url, secret_token=secret or None))

    async def webhook_url(self) -> str:
        return (await self._call(self.bot.get_webhook_info())).url

    async def delete_webhook(self) -> bool:
        return await self._call(self.bot.delete_webhook())

    async def close(self) -> bool:
        return await self._call(self.bot.close())


class PtbClient:
    name = "python-telegram-bot"

    def __init__(self, base_url: str, token: str = DEFAULT_TOKEN) -> None:
        self.bot = telegram.Bot(token, base_url=f"{base_url}/bot", base_file_url=f"{base_url}/file/bot")

    async def __aenter__(self) -> PtbClient:
        await self._call(self.bot.initialize())  # python-telegram-bot's own start: getMe
        return self

    async def __aexit__(self, *exc) -> None:
        await self.bot.shutdown()

    async def _call(self, coroutine):
        try:
            return await coroutine
        except ptb_errors.RetryAfter as error:
            wait = error._retry_after
            seconds = int(wait.total_seconds()) if isinstance(wait, dt.timedelta) else int(wait)
            raise ApiFailure("retry_after", _normal(error.message), seconds) from error
        except ptb_errors.BadRequest as error:
            raise ApiFailure("bad_request", _normal(error.message)) from error
        except ptb_errors.Conflict as error:
            raise ApiFailure("conflict", _normal(error.message)) from error
        except ptb_errors.Forbidden as error:
            raise ApiFailure("forbidden", _normal(error.message)) from error
        except ptb_errors.InvalidToken as error:
            raise ApiFailure("invalid_token", _normal(error.message)) from error
        except ptb_errors.NetworkError as error:
            raise ApiFailure("server_error", _normal(error.message)) from error

    @staticmethod
    def _keyboard(markup: dict | None) -> telegram.InlineKeyboardMarkup | None:
        if not markup:
            return None
        return telegram.InlineKeyboardMarkup(
            [
                [
                    telegram.InlineKeyboardButton(b["text"], callback_data=b.get("callback_data"), url=b.get("url"))
                    for b in row
                ]
                for row in markup["inline_keyboard"]
            ]
        )

    @staticmethod
    def _out(message) -> dict:
        markup = message.reply_markup.to_dict() if message.reply_markup else None
        return _message(
            message.chat.id,
            message.message_id,
            message.text,
            message.caption,
            markup,
            message.photo[-1].file_id if message.photo else None,
            (message.document.file_id, message.document.file_name) if message.document else None,
        )

    async def username(self) -> str:
        return (await self._call(self.bot.get_me())).username

    async def send_message(
        self,
        chat_id,
        text: str,
        *,
        parse_mode: str | None = None,
        markup: dict | None = None,
        reply_to: int | None = None,
    ) -> dict:
        reply = telegram.ReplyParameters(message_id=reply_to) if reply_to else None
        return self._out(
            await self._call(
                self.bot.send_message(
                    chat_id=chat_id,
                    text=text,
                    parse_mode=parse_mode,
                    reply_markup=self._keyboard(markup),
                    reply_parameters=reply,
                )
            )
        )

    async def edit_text(self, chat_id, message_id: int, text: str, *, markup: dict | None = None) -> dict:
        return self._out(
            await self._call(
                self.bot.edit_message_text(
                    chat_id=chat_id, message_id=message_id, text=text, reply_markup=self._keyboard(markup)
                )
            )
        )

    async def edit_markup(self, chat_id, message_id: int, markup: dict | None) -> dict:
        return self._out(
            await self._call(
                self.bot.edit_message_reply_markup(
                    chat_id=chat_id, message_id=message_id, reply_markup=self._keyboard(markup)
                )
            )
        )

    async def delete(self, chat_id, message_id: int) -> bool:
        return await self._call(self.bot.delete_message(chat_id=chat_id, message_id=message_id))

    async def answer(self, callback_id: str, text: str) -> bool:
        return await self._call(self.bot.answer_callback_query(callback_query_id=callback_id, text=text))

    async def chat_action(self, chat_id, action: str) -> bool:
        return await self._call(self.bot.send_chat_action(chat_id=chat_id, action=action))

    async def send_photo(self, chat_id, content: bytes, *, caption: str = "") -> dict:
        return self._out(
            await self._call(
                self.bot.send_photo(
                    chat_id=chat_id, photo=telegram.InputFile(content, filename="chart.png"), caption=caption or None
                )
            )
        )

    async def send_document(self, chat_id, content: bytes, filename: str) -> dict:
        return self._out(await self._call(self.bot.send_document(chat_id=chat_id, document=content, filename=filename)))

    async def send_photo_again(self, chat_id, file_id: str) -> dict:
        return self._out(await self._call(self.bot.send_photo(chat_id=chat_id, photo=file_id)))

    async def download(self, file_id: str) -> bytes:
        file = await self._call(self.bot.get_file(file_id))
        return bytes(await self._call(file.download_as_bytearray()))

    async def set_commands(self, commands: list[tuple[str, str]]) -> bool:
        return await self._call(self.bot.set_my_commands(commands=[telegram.BotCommand(c, d) for c, d in commands]))

    async def commands(self) -> list[tuple[str, str]]:
        return [(c.command, c.description) for c in await self._call(self.bot.get_my_commands())]

    async def updates(self, *, offset: int | None = None, timeout: int = 0) -> list[dict]:
        result = await self._call(self.bot.get_updates(offset=offset, timeout=timeout, read_timeout=timeout + 10))
        return [_update(u.to_dict()) for u in result]

    async def set_webhook(self, url: str, secret: str = "") -> bool:
        return await self._call(self.bot.set_webhook(url=url, secret_token=secret or None))

    async def webhook_url(self) -> str:
        return (await self._call(self.bot.get_webhook_info())).url

    async def delete_webhook(self) -> bool:
        return await self._call(self.bot.delete_webhook())

    async def close(self) -> bool:
        return await self._call(self.bot.close())


def _update(data: dict) -> dict:
    """The parts of an update the scenarios look at, the same whichever library parsed it."""
    message = data.get("message") or {}
    callback = data.get("callback_query") or {}
    callback_message = callback.get("message") or {}
    return {
        "update_id": data["update_id"],
        "text": message.get("text"),
        "message_id": message.get("message_id"),
        "from_id": (message.get("from") or {}).get("id"),
        "chat_id": (message.get("chat") or {}).get("id"),
        "callback_id": callback.get("id"),
        "callback_data": callback.get("data"),
        "callback_message_id": callback_message.get("message_id"),
        "callback_message_text": callback_message.get("text"),
        "callback_markup": callback_message.get("reply_markup"),
    }


CLIENTS = {"aiogram": AiogramClient, "python-telegram-bot": PtbClient}
