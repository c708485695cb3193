"""Talk to the bot like a user: inject into the local server, let the bridge poll it, read what came back."""

from telegram_bridge.bridge import polling_run


def say(bot_api, user_id: int, text: str, **sender) -> list[dict]:
    """Send ``text`` as the user; returns the messages the bot sent (or edited) in that chat in response."""
    before = len(bot_api.sent_messages(user_id))
    bot_api.inject_message(user_id=user_id, text=text, **sender)
    assert polling_run(timeout=2, max_updates=1) == 1
    return bot_api.sent_messages(user_id)[before:]


def press(bot_api, user_id: int, data: str, message_id: int | None = None) -> list[dict]:
    before = len(bot_api.sent_messages(user_id))
    bot_api.inject_callback(user_id=user_id, data=data, message_id=message_id)
    assert polling_run(timeout=2, max_updates=1) == 1
    return bot_api.sent_messages(user_id)[before:]


def buttons(message: dict) -> list[dict]:
    return [b for row in (message.get("reply_markup") or {}).get("inline_keyboard", []) for b in row]


def callback_data(message: dict) -> list[str]:
    return [b["callback_data"] for b in buttons(message) if "callback_data" in b]
