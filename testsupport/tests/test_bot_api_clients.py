"""The same scenarios against the local Bot API server through two independent client libraries.

Each test runs once with aiogram (the bot's transport) and once with python-telegram-bot; both must see the same
answers, the same recorded messages and Telegram's own error texts.
"""

from __future__ import annotations

import asyncio
import struct
import time
import zlib

import pytest

from testsupport.telegram_bot_api import LocalBotAPIServer
from testsupport.tests.bot_api_clients import CLIENTS, ApiFailure

KEYBOARD = {"inline_keyboard": [[{"text": "On", "callback_data": "s:t:on"}]]}
OTHER_KEYBOARD = {"inline_keyboard": [[{"text": "Off", "callback_data": "s:t:off"}]]}


def _png(width: int, height: int) -> bytes:
    """A real (tiny, grey) PNG image of the given size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def server():
    local = LocalBotAPIServer()
    local.start_in_thread()
    yield local
    local.stop()


@pytest.fixture(params=sorted(CLIENTS))
def run(request, server):
    """``run(scenario)`` runs ``async def scenario(client)`` with a fresh client of this test's library."""
    server.reset()
    server.strict_chats = False
    client_class = CLIENTS[request.param]

    def run_scenario(scenario, *, clients: int = 1):
        async def main():
            opened = [client_class(server.base_url) for _ in range(clients)]
            for client in opened:
                await client.__aenter__()
            try:
                return await scenario(*opened)
            finally:
                for client in opened:
                    await client.__aexit__(None, None, None)

        return asyncio.run(main())

    return run_scenario


def test_identity_and_a_message_in_html_are_answered_and_recorded(run, server):
    async def scenario(client):
        assert await client.username() == "perps_local_bot"
        return await client.send_message(42, "<b>Hello</b> &lt;you&gt;", parse_mode="HTML", markup=KEYBOARD)

    message = run(scenario)
    assert message["text"] == "Hello <you>" and message["chat_id"] == 42 and message["reply_markup"] == KEYBOARD
    [sent] = server.sent_messages(42)
    assert sent["text"] == "<b>Hello</b> &lt;you&gt;" and sent["parse_mode"].upper() == "HTML"
    assert sent["message_id"] == message["message_id"] and sent["reply_markup"] == KEYBOARD


def test_an_edit_that_only_changes_the_keyboard_is_accepted_an_identical_one_is_not(run, server):
    async def scenario(client):
        message = await client.send_message(7, "Settings", markup=KEYBOARD)
        toggled = await client.edit_text(7, message["message_id"], "Settings", markup=OTHER_KEYBOARD)
        assert toggled["reply_markup"] == OTHER_KEYBOARD and toggled["text"] == "Settings"
        with pytest.raises(ApiFailure) as same:
            await client.edit_text(7, message["message_id"], "Settings", markup=OTHER_KEYBOARD)
        assert same.value.kind == "bad_request" and same.value.message.startswith("message is not modified")
        back = await client.edit_markup(7, message["message_id"], KEYBOARD)
        assert back["reply_markup"] == KEYBOARD and back["text"] == "Settings"
        with pytest.raises(ApiFailure, match="message is not modified"):
            await client.edit_markup(7, message["message_id"], KEYBOARD)
        removed = await client.edit_markup(7, message["message_id"], None)
        assert removed["reply_markup"] is None
        return message["message_id"]

    message_id = run(scenario)
    assert [m["method"] for m in server.sent_messages(7)] == [
        "sendMessage",
        "editMessageText",
        "editMessageReplyMarkup",
        "editMessageReplyMarkup",
    ]
    assert server.messages[("7", message_id)]["reply_markup"] is None


def test_a_users_message_is_received_recorded_and_can_be_deleted_but_not_edited(run, server):
    server.inject_message(user_id=501, text="/connect okx KEY SECRET", username="ann")

    async def scenario(client):
        [update] = await client.updates(timeout=0)
        assert update["text"] == "/connect okx KEY SECRET" and update["from_id"] == 501
        with pytest.raises(ApiFailure, match="message can't be edited"):
            await client.edit_text(501, update["message_id"], "changed")
        assert await client.delete(501, update["message_id"]) is True
        with pytest.raises(ApiFailure, match="message to delete not found"):
            await client.delete(501, update["message_id"])
        return update

    update = run(scenario)
    [received] = server.received_messages(501)
    assert received["message_id"] == update["message_id"] and received["from_user_id"] == 501
    assert not server.message_exists(501, update["message_id"])
    assert server.calls_of("deleteMessage")[0]["from_user"] is True


def test_a_button_press_carries_the_message_and_is_answered_once(run, server):
    async def scenario(client):
        message = await client.send_message(502, "Pick one", markup=KEYBOARD)
        server.inject_callback(user_id=502, data="s:t:on", message_id=message["message_id"])
        [update] = await client.updates(timeout=0)
        assert update["callback_data"] == "s:t:on" and update["callback_message_id"] == message["message_id"]
        assert update["callback_message_text"] == "Pick one" and update["callback_markup"] == KEYBOARD
        assert await client.answer(update["callback_id"], "Saved.") is True
        with pytest.raises(ApiFailure, match="query is too old"):
            await client.answer(update["callback_id"], "again")
        with pytest.raises(ApiFailure, match="query is too old"):
            await client.answer("never-sent", "no")

    run(scenario)
    assert [c["text"] for c in server.calls_of("answerCallbackQuery")] == ["Saved."]


def test_photos_and_documents_upload_and_download_through_get_file(run, server):
    image = _png(3, 2)

    async def scenario(client):
        photo = await client.send_photo(503, image, caption="<b>equity</b>")
        document = await client.send_document(503, b"day,pnl\n1,2.5\n", "report.csv")
        assert document["document_name"] == "report.csv"
        assert await client.download(photo["photo_file_id"]) == image
        assert await client.download(document["document_file_id"]) == b"day,pnl\n1,2.5\n"
        again = await client.send_photo_again(503, photo["photo_file_id"])  # a file_id is reusable, as in Telegram
        assert again["photo_file_id"] == photo["photo_file_id"]
        with pytest.raises(ApiFailure, match="wrong file identifier/http url specified"):
            await client.send_photo_again(503, "no-such-file")
        with pytest.raises(ApiFailure, match="invalid file_id"):
            await client.download("no-such-file")
        return photo

    photo = run(scenario)
    assert photo["caption"] == "<b>equity</b>"  # no parse mode: the caption is shown as written
    sent = server.sent_messages(503)
    assert [m["method"] for m in sent] == ["sendPhoto", "sendDocument", "sendPhoto"]
    assert sent[0]["photo"]["size"] == len(image) and (sent[0]["photo"]["width"], sent[0]["photo"]["height"]) == (3, 2)


def test_chat_actions_commands_and_close(run, server):
    async def scenario(client):
        assert await client.chat_action(504, "typing") is True
        with pytest.raises(ApiFailure, match="wrong parameter action in request"):
            await client.chat_action(504, "dancing")
        assert await client.set_commands([("start", "Start"), ("pnl", "Your PnL")]) is True
        assert await client.commands() == [("start", "Start"), ("pnl", "Your PnL")]
        with pytest.raises(ApiFailure, match="bot_command_invalid"):
            await client.set_commands([("Bad-Name", "nope")])
        assert await client.commands() == [("start", "Start"), ("pnl", "Your PnL")]
        assert await client.close() is True

    run(scenario)
    assert [c["action"] for c in server.calls_of("sendChatAction")] == ["typing"]
    assert server.calls_of("close")


def test_long_polling_waits_for_an_update_and_confirms_by_offset(run, server):
    async def scenario(client):
        asyncio.get_running_loop().call_later(0.3, lambda: server.inject_message(user_id=505, text="/start"))
        started = time.monotonic()
        [update] = await client.updates(timeout=5)
        assert 0.2 < time.monotonic() - started < 4
        assert update["text"] == "/start" and update["chat_id"] == 505
        again = await client.updates(offset=update["update_id"], timeout=0)
        assert [u["update_id"] for u in again] == [update["update_id"]]  # not confirmed yet
        assert await client.updates(offset=update["update_id"] + 1, timeout=0) == []

    run(scenario)


def test_a_webhook_and_polling_exclude_each_other_as_in_telegram(run, server):
    async def scenario(client):
        assert await client.set_webhook("http://127.0.0.1:9/telegram/webhook", secret="s3cret") is True
        assert await client.webhook_url() == "http://127.0.0.1:9/telegram/webhook"
        with pytest.raises(ApiFailure) as conflict:
            await client.updates(timeout=0)
        assert conflict.value.kind == "conflict"
        assert conflict.value.message == (
            "conflict: can't use getupdates method while webhook is active; use "
            "deletewebhook to delete the webhook first"
        )
        assert await client.delete_webhook() is True
        assert await client.updates(timeout=0) == []

    run(scenario)


def test_a_second_poller_or_a_new_webhook_ends_the_running_long_poll_with_409(run, server):
    async def scenario(first, second):
        polling = asyncio.ensure_future(first.updates(timeout=10))
        await asyncio.sleep(0.3)
        assert await second.updates(timeout=0) == []
        with pytest.raises(ApiFailure) as other:
            await polling
        assert other.value.kind == "conflict" and "terminated by other getupdates request" in other.value.message
        polling = asyncio.ensure_future(first.updates(timeout=10))
        await asyncio.sleep(0.3)
        await second.set_webhook("http://127.0.0.1:9/telegram/webhook")
        with pytest.raises(ApiFailure) as webhook:
            await polling
        assert webhook.value.message == "conflict: terminated by setwebhook request"

    run(scenario, clients=2)
    assert server.stats["conflicts"] == 2


def test_refusals_carry_telegrams_codes_blocked_rate_limited_unknown_chat_server_error(run, server):
    async def scenario(client):
        server.block_chat(506)
        with pytest.raises(ApiFailure) as blocked:
            await client.send_message(506, "hi")
        assert (blocked.value.kind, blocked.value.message) == ("forbidden", "forbidden: bot was blocked by the user")
        server.set_rate_limit(1, burst=1)
        await client.send_message(507, "first")
        with pytest.raises(ApiFailure) as limited:
            await client.send_message(508, "too fast")
        assert limited.value.kind == "retry_after" and limited.value.retry_after == 1
        server.set_rate_limit(None)
        server.strict_chats = True
        with pytest.raises(ApiFailure) as unknown:
            await client.send_message(509, "who?")
        assert (unknown.value.kind, unknown.value.message) == ("bad_request", "chat not found")
        server.strict_chats = False
        with pytest.raises(ApiFailure, match="message to be replied not found"):
            await client.send_message(510, "re", reply_to=999_999)
        server.fail_next(1, status=502)
        with pytest.raises(ApiFailure) as failed:
            await client.send_message(510, "hi")
        assert failed.value.kind == "server_error"
        return await client.send_message(510, "hi")

    assert run(scenario)["text"] == "hi"
    assert [m["text"] for m in server.sent_messages()] == ["first", "hi"]
    assert server.stats["forbidden"] == 1 and server.stats["rate_limited"] == 1


@pytest.mark.parametrize("client_name", sorted(CLIENTS))
def test_a_wrong_token_is_refused_as_by_telegram(client_name):
    strict = LocalBotAPIServer(token="111:right-token")
    base_url = strict.start_in_thread()

    async def scenario():
        client = CLIENTS[client_name](base_url, "111:wrong-token")
        try:
            await client.__aenter__()
            await client.username()
        finally:
            await client.__aexit__(None, None, None)

    try:
        with pytest.raises(ApiFailure) as refused:
            asyncio.run(scenario())
    finally:
        strict.stop()
    assert refused.value.kind == "invalid_token"  # python-telegram-bot words the 401 itself
