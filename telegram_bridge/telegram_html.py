"""Telegram's HTML parse mode: escaping user text, splitting long messages, and checking text the way Telegram does.

Telegram accepts a small set of tags; every other ``<``, ``>`` and ``&`` must be escaped. ``telegram_html_errors`` is
what the local Bot API server answers with a 400 "can't parse entities", so a missing ``escape`` fails a test.
"""

from __future__ import annotations

import html
import re

MESSAGE_LIMIT = 4096

ALLOWED_TAGS = frozenset(
    {
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "code",
        "pre",
        "blockquote",
        "tg-emoji",
    }
)
_TOKEN = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[^<>]*)?)>|&(?:[a-zA-Z]+|#\d+|#x[0-9a-fA-F]+);|[<>&]")


def escape(value: object) -> str:
    """Escape any user-supplied value for HTML parse mode."""
    return html.escape(str(value), quote=True)


def telegram_html_errors(text: str) -> str | None:
    """None when Telegram would parse ``text``; otherwise a description like Telegram's 400 answer."""
    stack: list[str] = []
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if token in {"<", ">", "&"}:
            return f"Bad Request: can't parse entities: unescaped {token!r} at byte offset {match.start()}"
        if token.startswith("&"):
            continue
        closing, name = match.group(1), match.group(2).lower()
        if name not in ALLOWED_TAGS:
            return f'Bad Request: can\'t parse entities: Unsupported start tag "{name}" at byte offset {match.start()}'
        if closing:
            if not stack or stack[-1] != name:
                return f'Bad Request: can\'t parse entities: Unmatched end tag "{name}" at byte offset {match.start()}'
            stack.pop()
        else:
            stack.append(name)
    if stack:
        return f"Bad Request: can't parse entities: Can't find end tag corresponding to start tag \"{stack[-1]}\""
    return None


def visible_text(text: str) -> str:
    """The text a user sees: tags removed, entities decoded."""
    return html.unescape(re.sub(r"<[^<>]*>", "", text))


def _safe_cut(text: str, limit: int) -> int:
    """A cut position ≤ limit that is not inside a tag or an entity, preferring a line break."""
    newline = text.rfind("\n", 0, limit)
    if newline > limit // 2:
        return newline + 1
    cut = limit
    last_lt, last_gt = text.rfind("<", 0, cut), text.rfind(">", 0, cut)
    if last_lt > last_gt:  # inside a tag
        cut = last_lt
    last_amp, last_semi = text.rfind("&", 0, cut), text.rfind(";", 0, cut)
    if last_amp > last_semi and cut - last_amp < 12:  # inside an entity
        cut = last_amp
    return max(cut, 1)


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split HTML into parts of at most ``limit`` characters; tags open at a cut are closed and reopened."""
    parts: list[str] = []
    reopen = ""
    rest = text
    while rest:
        rest = reopen + rest
        if len(rest) <= limit:
            parts.append(rest)
            break
        budget = limit - 64  # room for closing the tags left open
        cut = _safe_cut(rest, budget)
        head, rest = rest[:cut], rest[cut:]
        stack: list[str] = []
        for match in re.finditer(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)[^<>]*>", head):
            if match.group(1):
                if stack and stack[-1][0] == match.group(2).lower():
                    stack.pop()
            else:
                stack.append((match.group(2).lower(), match.group(0)))
        head += "".join(f"</{name}>" for name, _ in reversed(stack))
        reopen = "".join(opening for _, opening in stack)
        parts.append(head)
    return parts
