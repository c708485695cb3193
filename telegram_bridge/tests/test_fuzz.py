"""Hypothesis against the one entry point (through the webhook view): malformed updates, huge texts, unknown
commands, HTML injection in names and arguments, callback data never issued, a banned user's commands.

Invariants: never a 500 and never an unhandled error; every outgoing message is valid Telegram HTML (the local server
answers 400 otherwise) and never carries the injected markup verbatim; refused actions change nothing.
"""

import itertools
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import TelegramUser
from accounts.tests.factories import TelegramUserFactory
from analytics.models import UserActivity
from telegram_bridge import keyboards, services
from telegram_bridge.texts import ADMIN_COMMANDS, COMMANDS

pytestmark = pytest.mark.django_db

SECRET = "fuzz-secret"
INJECTIONS = [
    "<i>PWN</i>",
    '<a href="javascript:alert(1)">x</a>',
    "</b><script>",
    "&lt;",
    "*bold* _it_ [l](http://x)",
    "&amp;&",
    "<",
    "\u202e\u0000",
    "<tg-spoiler>",
    "<b>" * 50,
]
_ids = itertools.count(50_000_000)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=15,
)
names = st.sampled_from(INJECTIONS) | st.text(max_size=40)
arguments = st.sampled_from(INJECTIONS) | st.text(max_size=60) | st.just("x" * 20_000)
command_names = st.sampled_from(sorted(COMMANDS) + sorted(ADMIN_COMMANDS)) | st.from_regex(
    r"[a-z_]{1,20}", fullmatch=True
)
texts = (
    st.builds(lambda c, a: f"/{c} {a}", command_names, arguments)
    | st.builds(lambda c: f"/{c}@perps_local_bot", command_names)
    | arguments
)
user_ids = st.sampled_from([70_001, 70_002, 70_003])  # 70_002 is an admin, 70_003 is banned


def _message(user_id, text, first_name, username):
    return {
        "message_id": next(_ids) % 1_000_000,
        "date": 0,
        "chat": {"id": user_id, "type": "private"},
        "from": {"id": user_id, "is_bot": False, "first_name": first_name, "username": username},
        "text": text,
    }


updates = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(["update_id", "message", "callback_query", "edited_message"]), json_values),
    st.builds(lambda u, t, f, n: {"message": _message(u, t, f, n)}, user_ids, texts, names, names),
    st.builds(
        lambda u, d, f: {
            "callback_query": {
                "id": "cb",
                "from": {"id": u, "is_bot": False, "first_name": f},
                "chat_instance": "1",
                "data": d,
                "message": {"message_id": 1, "date": 0, "chat": {"id": u, "type": "private"}},
            }
        },
        user_ids,
        st.text(max_size=80) | st.sampled_from(sorted(keyboards.issued_callback_data())),
        names,
    ),
)


@pytest.fixture
def fuzz_world(bot_api, settings, monkeypatch):
    settings.TELEGRAM_WEBHOOK_SECRET = SECRET
    settings.ADMIN_TELEGRAM_IDS = [70_002]
    banned = TelegramUserFactory(telegram_id=70_003, is_banned=True)
    failures = []

    def no_unhandled_errors(error, *, update_id):
        failures.append(repr(error))
        raise error

    monkeypatch.setattr(services, "update_error_text", no_unhandled_errors)
    return {"banned": banned, "failures": failures, "server": bot_api}


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(update=updates)
def test_fuzzed_updates_never_fail_and_every_reply_is_safe(client, fuzz_world, update):
    server, banned = fuzz_world["server"], fuzz_world["banned"]
    TelegramUser.objects.filter(pk=banned.pk).update(is_banned=True)  # the admin may have unbanned them
    banned.refresh_from_db()
    banned.preferences.refresh_from_db()
    before_banned = (banned.preferences.muted_symbols, banned.preferences.dm_alerts, banned.last_seen_at)
    if isinstance(update, dict) and ("message" in update or "callback_query" in update):
        update = {**update, "update_id": next(_ids)}
    sent_before = len(server.sent_messages())
    response = client.post(
        "/telegram/webhook",
        data=json.dumps(update),
        content_type="application/json",
        headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
    )
    assert response.status_code == 200, response.content
    assert fuzz_world["failures"] == []
    assert server.stats["parse_errors"] == 0  # every outgoing text parsed as Telegram HTML
    for message in server.sent_messages()[sent_before:]:
        for payload in ("<i>PWN</i>", "javascript:", "<script>", "<tg-spoiler>"):
            assert payload not in message["text"]
        assert len(message["text"]) <= 4096
    banned.refresh_from_db()
    banned.preferences.refresh_from_db()
    assert (banned.preferences.muted_symbols, banned.preferences.dm_alerts, banned.last_seen_at) == before_banned
    assert not UserActivity.objects.filter(user=banned).exists()


def test_callback_data_never_issued_changes_nothing(bot_api):
    from telegram_bridge.tests.bot_helpers import press, say

    say(bot_api, 70_010, "/start")
    user = TelegramUser.objects.get(telegram_id=70_010)
    snapshot = {
        f.name: getattr(user.preferences, f.name)
        for f in user.preferences._meta.concrete_fields
        if f.name != "updated_at"
    }
    for data in ("s:t:paper_mode", "s:t:is_admin", "s:c:leverage", "s:i:user_id", "d:admin", "x" * 64, "s:r:extreme"):
        press(bot_api, 70_010, data)
    user.preferences.refresh_from_db()
    assert snapshot == {name: getattr(user.preferences, name) for name in snapshot}
    answers = [c["text"] for c in bot_api.calls_of("answerCallbackQuery")]
    assert len(answers) == 7 and all("expired" in text for text in answers)
    assert list(UserActivity.objects.filter(user=user, kind="callback").values_list("name", flat=True).distinct()) == [
        "unknown"
    ]


def test_a_handler_crash_gets_a_friendly_reply_with_an_error_reference(bot_api, monkeypatch):
    from telegram_bridge import commands
    from telegram_bridge.tests.bot_helpers import say

    def broken(ctx, args):
        raise RuntimeError("database on fire")

    monkeypatch.setitem(commands.COMMAND_HANDLERS, "status", broken)
    [reply] = say(bot_api, 70_011, "/status")
    assert "something went wrong" in reply["text"] and "reference" in reply["text"]
    assert "fire" not in reply["text"]
