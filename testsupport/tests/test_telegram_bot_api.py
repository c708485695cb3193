"""The local Bot API server: the bot's own transport (aiogram) against it, and raw HTTP with bad input, which gets
Telegram's 400/404 answers and never a 500."""

import json
import threading
import time

import httpx
import pytest
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import BotCommand, BufferedInputFile

from telegram_bridge.transport import get_transport
from testsupport.telegram_bot_api import DEFAULT_TOKEN, json_parameters

pytestmark = pytest.mark.django_db


def call(coroutine):
    return get_transport().call(coroutine)


def test_get_me_and_send_message_are_recorded(bot_api):
    bot = get_transport().bot
    assert call(bot.get_me()).username == "perps_local_bot"
    message = call(bot.send_message(chat_id=42, text="<b>Hello</b> &lt;you&gt;"))
    assert message.text == "Hello <you>" and message.chat.id == 42
    [sent] = bot_api.sent_messages(42)
    assert sent["text"] == "<b>Hello</b> &lt;you&gt;" and sent["parse_mode"] == "HTML"
    assert sent["message_id"] == message.message_id


def test_unescaped_html_is_refused_like_telegram(bot_api):
    bot = get_transport().bot
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        call(bot.send_message(chat_id=42, text="<script>alert(1)</script>"))
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        call(bot.send_message(chat_id=42, text="fish & chips"))
    with pytest.raises(TelegramBadRequest, match="too long"):
        call(bot.send_message(chat_id=42, text="x" * 4097))
    assert bot_api.sent_messages() == []


def test_rate_limit_answers_429_with_retry_after_and_counts_violations(bot_api):
    bot_api.set_rate_limit(2, burst=1)
    bot = get_transport().bot
    call(bot.send_message(chat_id=1, text="first"))
    with pytest.raises(TelegramRetryAfter) as error:
        call(bot.send_message(chat_id=2, text="too fast"))
    assert error.value.retry_after == 1
    with pytest.raises(TelegramRetryAfter):  # chat 2 again before its retry_after: a violation
        call(bot.send_message(chat_id=2, text="still too fast"))
    assert bot_api.stats["violations"] == 1
    time.sleep(1.05)
    call(bot.send_message(chat_id=2, text="honoured"))
    assert [m["text"] for m in bot_api.sent_messages()] == ["first", "honoured"]


def test_blocked_chat_gets_403_and_transient_errors_are_5xx(bot_api):
    bot_api.block_chat(99)
    bot = get_transport().bot
    with pytest.raises(TelegramForbiddenError, match="blocked by the user"):
        call(bot.send_message(chat_id=99, text="hi"))
    bot_api.fail_next(1, status=502)
    with pytest.raises(TelegramServerError):
        call(bot.send_message(chat_id=98, text="hi"))
    call(bot.send_message(chat_id=98, text="hi"))
    assert len(bot_api.sent_messages(98)) == 1


def test_long_polling_waits_for_an_injected_update_and_confirms_by_offset(bot_api):
    bot = get_transport().bot
    threading.Timer(0.3, lambda: bot_api.inject_message(user_id=5, text="/start")).start()
    started = time.monotonic()
    updates = call(bot.get_updates(timeout=5))
    assert 0.2 < time.monotonic() - started < 4
    assert updates[0].message.text == "/start" and updates[0].message.from_user.id == 5
    again = call(bot.get_updates(offset=updates[0].update_id, timeout=0))
    assert [u.update_id for u in again] == [updates[0].update_id]  # not confirmed yet
    assert call(bot.get_updates(offset=updates[0].update_id + 1, timeout=0)) == []


def test_edit_delete_answer_commands_photo_and_webhook(bot_api):
    bot = get_transport().bot
    message = call(bot.send_message(chat_id=7, text="one"))
    call(bot.edit_message_text(chat_id=7, message_id=message.message_id, text="two"))
    with pytest.raises(TelegramBadRequest, match="not modified"):
        call(bot.edit_message_text(chat_id=7, message_id=message.message_id, text="two"))
    assert call(bot.delete_message(chat_id=7, message_id=message.message_id)) is True
    with pytest.raises(TelegramBadRequest, match="not found"):
        call(bot.edit_message_text(chat_id=7, message_id=message.message_id, text="three"))
    bot_api.inject_callback(user_id=7, data="x", message_id=message.message_id)
    [update] = call(bot.get_updates(timeout=0))
    assert call(bot.answer_callback_query(callback_query_id=update.callback_query.id, text="ok")) is True
    call(bot.get_updates(offset=update.update_id + 1, timeout=0))
    assert call(bot.set_my_commands(commands=[BotCommand(command="start", description="go")])) is True
    assert bot_api.commands == [{"command": "start", "description": "go"}]
    photo = call(
        bot.send_photo(chat_id=7, photo=BufferedInputFile(b"\x89PNG fake", filename="c.png"), caption="<b>c</b>")
    )
    assert photo.caption == "c" and bot_api.sent_messages(7)[-1]["photo"]["size"] == 9
    call(bot.set_webhook(url="http://127.0.0.1:1/hook", secret_token="s3cret"))
    with pytest.raises(TelegramConflictError):
        call(bot.get_updates(timeout=0))
    call(bot.delete_webhook())
    assert call(bot.get_updates(timeout=0)) == []


# --- bad input over raw HTTP ---------------------------------------------------------------------------------------


def api(bot_api, method: str, *, token: str = DEFAULT_TOKEN, **request) -> tuple[int, dict]:
    response = httpx.post(f"{bot_api.base_url}/bot{token}/{method}", timeout=10, **request)
    assert response.headers["content-type"].startswith("application/json")
    return response.status_code, response.json()


def refusal(code: int, description: str) -> dict:
    return {"ok": False, "error_code": code, "description": description}


def test_an_unknown_method_path_or_malformed_token_is_telegrams_404(bot_api):
    assert api(bot_api, "sendTelepathy", data={"chat_id": 1}) == (404, refusal(404, "Not Found"))
    assert api(bot_api, "getMe", token="not-a-token") == (404, refusal(404, "Not Found"))
    response = httpx.get(f"{bot_api.base_url}/no/such/path", timeout=10)
    assert (response.status_code, response.json()) == (404, refusal(404, "Not Found"))
    response = httpx.get(f"{bot_api.base_url}/file/bot{DEFAULT_TOKEN}/photos/none.jpg", timeout=10)
    assert (response.status_code, response.json()) == (404, refusal(404, "Not Found"))


@pytest.mark.parametrize(
    ("body", "description"),
    [
        ('{"chat_id": 1,', "Bad Request: expected parameter name"),
        ("[1, 2]", "Bad Request: JSON object expected"),
        ("{chat_id: 1}", "Bad Request: can't parse parameter name: Opening '\"' expected"),
        ('{"chat_id" 1}', "Bad Request: can't parse object, ':' expected"),
        ('{"chat_id": 1 "text": "x"}', "Bad Request: expected next field or object end"),
        ('{"chat_id": tru}', "Bad Request: can't parse parameter value: Expecting value"),
        ('{"chat_id": 1} tail', "Bad Request: unexpected data after object end"),
        ('"text" tail', "Bad Request: extra data after string"),
    ],
)
def test_a_malformed_json_body_gets_telegrams_400(bot_api, body, description):
    status, answer = api(bot_api, "sendMessage", content=body, headers={"Content-Type": "application/json"})
    assert (status, answer) == (400, refusal(400, description))
    assert bot_api.sent_messages() == [] and bot_api.stats["bad_requests"] == 1


def test_json_parameters_are_read_as_telegram_reads_them():
    assert json_parameters('{"chat_id": 42, "text": "hi", "reply_markup": {"inline_keyboard": []},}') == {
        "chat_id": "42",
        "text": "hi",
        "reply_markup": '{"inline_keyboard": []}',
    }
    assert json_parameters("  ") == {} and json_parameters('"raw"') == {"content": "raw"}


@pytest.mark.parametrize(
    ("method", "data", "description"),
    [
        ("sendMessage", {"text": "hi"}, "Bad Request: chat_id is empty"),
        ("sendMessage", {"chat_id": "abc", "text": "hi"}, "Bad Request: chat not found"),
        ("sendMessage", {"chat_id": "0", "text": "hi"}, "Bad Request: chat not found"),
        ("sendMessage", {"chat_id": "5"}, "Bad Request: message text is empty"),
        (
            "sendMessage",
            {"chat_id": "5", "text": "hi", "parse_mode": "Bold"},
            'Bad Request: unsupported parse_mode "Bold"',
        ),
        (
            "sendMessage",
            {"chat_id": "5", "text": "hi", "reply_markup": "{oops"},
            "Bad Request: can't parse reply keyboard markup JSON object",
        ),
        (
            "sendMessage",
            {"chat_id": "5", "text": "hi", "reply_markup": '{"inline_keyboard": [[{"text": "x"}]]}'},
            "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard",
        ),
        (
            "sendMessage",
            {
                "chat_id": "5",
                "text": "hi",
                "reply_markup": json.dumps({"inline_keyboard": [[{"text": "x", "callback_data": "y" * 65}]]}),
            },
            "Bad Request: BUTTON_DATA_INVALID",
        ),
        (
            "editMessageText",
            {"chat_id": "5", "message_id": "abc", "text": "x"},
            "Bad Request: message to edit not found",
        ),
        ("editMessageText", {"text": "x"}, "Bad Request: message identifier is not specified"),
        ("editMessageReplyMarkup", {"chat_id": "5", "message_id": "999999"}, "Bad Request: message to edit not found"),
        ("deleteMessage", {"chat_id": "5", "message_id": "abc"}, "Bad Request: message identifier is not specified"),
        ("deleteMessage", {"chat_id": "5", "message_id": "999999"}, "Bad Request: message to delete not found"),
        ("sendPhoto", {"chat_id": "5"}, "Bad Request: there is no photo in the request"),
        ("sendDocument", {"chat_id": "5"}, "Bad Request: there is no document in the request"),
        ("sendChatAction", {"chat_id": "5", "action": "dancing"}, "Bad Request: wrong parameter action in request"),
        ("getFile", {"file_id": "nope"}, "Bad Request: invalid file_id"),
        (
            "answerCallbackQuery",
            {"callback_query_id": "nope"},
            "Bad Request: query is too old and response timeout expired or query ID is invalid",
        ),
        ("setMyCommands", {"commands": "not json"}, "Bad Request: can't parse commands JSON object"),
        ("setMyCommands", {"commands": '{"command": "x"}'}, "Bad Request: expected an Array of BotCommand"),
        (
            "setWebhook",
            {"url": "http://127.0.0.1:1/hook", "secret_token": "has space"},
            "Bad Request: secret token contains unallowed characters",
        ),
        ("getUpdates", {"allowed_updates": "message"}, "Bad Request: can't parse allowed updates JSON object"),
    ],
)
def test_bad_parameters_get_telegrams_400_texts(bot_api, method, data, description):
    assert api(bot_api, method, data=data) == (400, refusal(400, description))


def test_integers_are_read_by_their_leading_digits_as_telegram_does(bot_api):
    """``offset=junk`` is offset 0 for Telegram (it reads leading digits), so the pending update is returned."""
    update_id = bot_api.inject_message(user_id=801, text="hello")
    response = httpx.get(
        f"{bot_api.base_url}/bot{DEFAULT_TOKEN}/getUpdates",
        params={"offset": "junk", "limit": "junk", "timeout": "junk"},
        timeout=10,
    )
    assert response.status_code == 200
    assert [u["update_id"] for u in response.json()["result"]] == [update_id]
    status, answer = api(bot_api, "getUpdates", data={"offset": f"{update_id + 1}abc", "timeout": "0"})
    assert status == 200 and answer["result"] == []  # "…abc" read as its digits: the update is confirmed


def test_sending_files_over_raw_multipart_and_reading_them_back(bot_api):
    status, answer = api(
        bot_api, "sendDocument", data={"chat_id": "5"}, files={"document": ("trades.csv", b"a,b\n1,2\n", "text/csv")}
    )
    assert status == 200 and answer["result"]["document"]["file_name"] == "trades.csv"
    status, empty = api(bot_api, "sendDocument", data={"chat_id": "5"}, files={"document": ("e.csv", b"", "text/csv")})
    assert (status, empty) == (400, refusal(400, "Bad Request: file must be non-empty"))
    status, file = api(bot_api, "getFile", data={"file_id": answer["result"]["document"]["file_id"]})
    download = httpx.get(f"{bot_api.base_url}/file/bot{DEFAULT_TOKEN}/{file['result']['file_path']}", timeout=10)
    assert download.content == b"a,b\n1,2\n" and file["result"]["file_size"] == 8


def test_the_control_endpoint_takes_only_update_objects_and_records_received_messages(bot_api):
    base = bot_api.base_url
    for body in ("[]", "junk", '"text"', "42"):
        response = httpx.post(f"{base}/_local/updates", content=body, timeout=10)
        assert (response.status_code, response.json()) == (
            400,
            refusal(400, "Bad Request: an update must be a JSON object"),
        )
    message = {
        "message_id": 5000,
        "date": 0,
        "chat": {"id": 802, "type": "private"},
        "text": "/start",
        "from": {"id": 802, "is_bot": False, "first_name": "Ann"},
    }
    response = httpx.post(f"{base}/_local/updates", json={"message": message}, timeout=10)
    assert response.status_code == 200 and response.json()["ok"] is True
    received = httpx.get(f"{base}/_local/received", params={"chat_id": 802}, timeout=10).json()
    assert [(m["message_id"], m["text"]) for m in received] == [(5000, "/start")]
    assert bot_api.message_exists(802, 5000)  # the bot may delete it, as it deletes a /connect with keys


def test_no_input_makes_the_server_fail_with_500(bot_api):
    """Every method with every kind of junk parameter answers 200, 400, 404 or 409, never a server error."""
    methods = [name.removeprefix("_api_") for name in dir(bot_api) if name.startswith("_api_")]
    junk = [
        {},
        {"chat_id": "abc", "message_id": "abc", "text": ""},
        {"chat_id": "-5", "message_id": "-1"},
        {"chat_id": "@", "offset": "-3", "limit": "1e9", "timeout": "-1", "file_id": "../../etc/passwd"},
        {"reply_markup": "[]", "commands": "[[]]", "allowed_updates": "{}", "action": "", "url": "ftp://x"},
        {
            "chat_id": "1",
            "photo": "attach://missing",
            "document": "https://example.invalid/a.pdf",
            "reply_parameters": "[]",
            "caption": "<b>open",
            "parse_mode": "HTML",
        },
    ]
    statuses = set()
    for method in methods:
        for data in junk:
            if method in {"close", "logout", "setwebhook", "deletewebhook", "setmycommands", "deletemycommands"}:
                continue  # these succeed with junk and change the server's state for the next request
            status, answer = api(bot_api, method, data=data)
            assert status in {200, 400, 404, 409}, (method, data, answer)
            assert answer["ok"] is (status == 200), (method, data, answer)
            statuses.add(status)
    assert statuses >= {200, 400}
