"""Numbers and JSON typed by people or sent by other systems, checked by shape and bounds before any arithmetic.

One parser for the bot, the web forms and the REST API:

* ``parse_bounded_int`` / ``parse_bounded_decimal`` look at the text first (at most ``MAX_NUMBER_CHARS`` characters,
  plain ``[+-]digits[.digits]``: no exponent, no NaN/inf, no underscores, no non-ASCII digits), and only then build
  the number and compare it with the bounds. ``1e1000000`` is refused by its shape in microseconds; converting it
  first (``int(Decimal("1e1000000"))``) takes half a minute. The error says what is allowed.
* ``preference_number_parse`` applies them to a numeric preference, with its bounds from ``accounts.preference_bounds``
  (leverage also capped by ``settings.MAX_LEVERAGE``), so every interface states the same range.
* ``strict_json_loads`` parses a request body as RFC 8259 JSON and refuses what the standard library would let
  through and the database or a later step would choke on: NaN/Infinity, numbers too long or out of float range,
  lone surrogates, NUL characters, integers beyond 64 bits, nesting beyond ``MAX_JSON_DEPTH``, more than
  ``MAX_JSON_NODES`` values. The payment webhooks (accounts/payment_webhooks.py) parse their bodies with it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from accounts.models import UserPreferences
from accounts.preference_bounds import PREFERENCE_BOUNDS

MAX_NUMBER_CHARS = 32
MAX_JSON_DEPTH = 32
MAX_JSON_NODES = 20_000  # values (objects, arrays, strings, numbers, keys) in one body
MAX_JSON_NUMBER_CHARS = 40  # characters of a float literal in a JSON body
MAX_JSON_INT = 2**63 - 1  # what PostgreSQL jsonb and SQLite store as received, and what any of our senders uses
_NUMBER = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$")


class InputError(ValueError):
    """Input that does not have the required type, shape or range; the message is safe to show to the sender."""


class NumberRangeError(InputError):
    """A number that cannot be read or is out of range. ``allowed`` describes what is accepted, e.g.
    "a whole number from 1x to 20x"; ``str(error)`` is "must be " + allowed."""

    def __init__(self, allowed: str):
        self.allowed = allowed
        super().__init__(f"must be {allowed}")


def _plain(value: Decimal | int) -> str:
    return format(value.normalize(), "f") if isinstance(value, Decimal) else str(value)


def allowed_range(*, minimum: Decimal | int, maximum: Decimal | int, unit: str = "", integer: bool = False) -> str:
    kind = "a whole number" if integer else "a number"
    return f"{kind} from {_plain(minimum)}{unit} to {_plain(maximum)}{unit}"


def _number_text(value: Any, *, unit: str, allowed: str) -> str:
    """The canonical decimal text of ``value`` (str, int, float or Decimal), or NumberRangeError."""
    if isinstance(value, bool) or value is None:
        raise NumberRangeError(allowed)
    if isinstance(value, int):
        text = str(value) if value.bit_length() <= 128 else ""
    elif isinstance(value, float):
        text = repr(value) if math.isfinite(value) else ""
        if "e" in text or "E" in text:  # a float this far from our ranges: out of range whatever its value
            text = ""
    elif isinstance(value, Decimal):
        text = format(value, "f") if value.is_finite() and abs(value.adjusted()) <= MAX_NUMBER_CHARS else ""
    elif isinstance(value, str):
        text = value if len(value) <= MAX_NUMBER_CHARS + len(unit) + 2 else ""
        text = text.strip().replace(",", ".")
        if unit and text.lower().endswith(unit.lower()):
            text = text[: -len(unit)].rstrip()
    else:
        text = ""
    if not text or len(text) > MAX_NUMBER_CHARS or not _NUMBER.match(text):
        raise NumberRangeError(allowed)
    return text


def parse_bounded_decimal(
    value: Any, *, minimum: Decimal, maximum: Decimal, unit: str = "", places: int = 4
) -> Decimal:
    """``value`` as a Decimal within [minimum, maximum] with at most ``places`` decimals, else NumberRangeError."""
    allowed = allowed_range(minimum=minimum, maximum=maximum, unit=unit)
    number = Decimal(_number_text(value, unit=unit, allowed=allowed))  # ≤ 32 plain digits: constant time
    if not minimum <= number <= maximum:
        raise NumberRangeError(allowed)
    if number.normalize().as_tuple().exponent < -places:  # int: the number is finite
        raise NumberRangeError(f"{allowed}, with at most {places} decimals")
    return number


def parse_bounded_int(value: Any, *, minimum: int, maximum: int, unit: str = "") -> int:
    """``value`` as an int within [minimum, maximum] ("5" and "5.0" are 5; "5.5" is refused), else NumberRangeError."""
    allowed = allowed_range(minimum=minimum, maximum=maximum, unit=unit, integer=True)
    number = Decimal(_number_text(value, unit=unit, allowed=allowed))
    if number != number.to_integral_value() or not minimum <= number <= maximum:
        raise NumberRangeError(allowed)
    return int(number)


# ---- numeric preferences ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NumberBounds:
    minimum: Decimal | int
    maximum: Decimal | int
    unit: str
    integer: bool
    places: int = 4

    @property
    def allowed(self) -> str:
        return allowed_range(minimum=self.minimum, maximum=self.maximum, unit=self.unit, integer=self.integer)


def preference_number_bounds(name: str) -> NumberBounds:
    """The range of a numeric preference, from ``accounts.preference_bounds`` (the one source of bounds)."""
    bound = PREFERENCE_BOUNDS[name]
    field = UserPreferences._meta.get_field(name)
    if bound.whole:
        return NumberBounds(
            minimum=int(bound.minimum), maximum=int(bound.upper()), unit=bound.unit, integer=True, places=0
        )
    return NumberBounds(
        minimum=bound.minimum, maximum=bound.upper(), unit=bound.unit, integer=False, places=field.decimal_places
    )


def preference_number_parse(name: str, value: Any) -> int | Decimal:
    """Parse a numeric preference (bot text, form field or JSON value); NumberRangeError says the allowed range."""
    bounds = preference_number_bounds(name)
    if bounds.integer:
        return parse_bounded_int(value, minimum=int(bounds.minimum), maximum=int(bounds.maximum), unit=bounds.unit)
    return parse_bounded_decimal(
        value, minimum=Decimal(bounds.minimum), maximum=Decimal(bounds.maximum), unit=bounds.unit, places=bounds.places
    )


# ---- JSON bodies --------------------------------------------------------------------------------------------------


def _json_constant(name: str):
    raise InputError(f"{name} is not a JSON value")


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > 19 or abs(number := int(text)) > MAX_JSON_INT:
        raise InputError("a number in the JSON body is out of range")
    return number


def _json_float(text: str) -> float:
    if len(text) > MAX_JSON_NUMBER_CHARS:
        raise InputError("a number in the JSON body is too long")
    number = float(text)
    if not math.isfinite(number):  # 1e400 parses as inf
        raise InputError("a number in the JSON body is out of range")
    return number


def _json_check_strings(value: Any) -> None:
    """Walk the parsed body (without recursion): depth, size, and every string and key storable as received."""
    stack, seen = [(value, 0)], 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > MAX_JSON_NODES:
            raise InputError("the JSON body has too many values")
        if depth > MAX_JSON_DEPTH:
            raise InputError(f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep")
        if isinstance(node, str):
            _text_check(node)
        elif isinstance(node, dict):
            for key, item in node.items():
                _text_check(key)
                stack.append((item, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)


def _text_check(text: str) -> None:
    if "\x00" in text:
        raise InputError("the JSON body contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("the JSON body contains a lone surrogate (invalid Unicode)") from None


def strict_json_loads(body: bytes | str) -> Any:
    """Parse ``body`` as strict JSON; InputError (with a message safe to return) when it is not acceptable."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes | bytearray) else body
    except UnicodeDecodeError:
        raise InputError("the body is not UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_json_constant, parse_int=_json_int, parse_float=_json_float)
    except InputError:
        raise
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        raise InputError("the body is not valid JSON") from None
    _json_check_strings(value)
    return value
