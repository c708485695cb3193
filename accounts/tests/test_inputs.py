"""accounts.inputs: numbers are refused by their shape before any arithmetic (so a 9-character exponent costs
microseconds, not half a minute), bounds come from the model's validators, and strict JSON refuses what the database
or later steps would choke on."""

import time
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accounts.inputs import (
    InputError,
    NumberRangeError,
    parse_bounded_decimal,
    parse_bounded_int,
    preference_number_bounds,
    preference_number_parse,
    strict_json_loads,
)

HOSTILE_NUMBERS = [
    "1e1000000",
    "9e999999999",
    "1E+1000000",
    "-1e1000000",
    "NaN",
    "nan",
    "inf",
    "-Infinity",
    "sNaN",
    "1_000",
    "٣",
    "0x10",
    "1" * 5000,
    "",
    " ",
    "5 5",
    "--5",
    "1e1",
    True,
    None,
    [],
    {},
    float("nan"),
    float("inf"),
    10**4000,
    Decimal("1e1000000"),
    Decimal("NaN"),
]


@pytest.mark.parametrize("value", HOSTILE_NUMBERS, ids=lambda v: repr(v)[:24])
def test_hostile_numbers_are_refused_at_once_with_the_allowed_range(value):
    started = time.perf_counter()
    with pytest.raises(NumberRangeError) as refused:
        parse_bounded_int(value, minimum=1, maximum=20, unit="x")
    with pytest.raises(NumberRangeError):
        parse_bounded_decimal(value, minimum=Decimal("0.1"), maximum=Decimal("100"), unit="%")
    assert time.perf_counter() - started < 0.05
    assert str(refused.value) == "must be a whole number from 1x to 20x"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("5", 5), (" 7 ", 7), ("5.0", 5), ("10x", 10), ("10 X", 10), (3, 3), (3.0, 3), ("+4", 4), (Decimal("6"), 6)],
)
def test_integers_in_range_are_read(text, expected):
    assert parse_bounded_int(text, minimum=1, maximum=20, unit="x") == expected


@pytest.mark.parametrize("text", ["0", "21", "5.5", "-3", 2.5])
def test_integers_out_of_range_or_fractional_are_refused(text):
    with pytest.raises(NumberRangeError, match="from 1x to 20x"):
        parse_bounded_int(text, minimum=1, maximum=20, unit="x")


def test_decimals_accept_a_comma_and_the_unit_and_refuse_too_many_decimals():
    bounds = {"minimum": Decimal("0.1"), "maximum": Decimal("100"), "unit": "%", "places": 4}
    assert parse_bounded_decimal("2,5%", **bounds) == Decimal("2.5")
    assert parse_bounded_decimal(0.1, **bounds) == Decimal("0.1")
    with pytest.raises(NumberRangeError, match="at most 4 decimals"):
        parse_bounded_decimal("1.00001", **bounds)
    with pytest.raises(NumberRangeError, match=r"from 0\.1% to 100%"):
        parse_bounded_decimal("100.5", **bounds)


@given(st.text(max_size=40))
def test_any_text_is_read_or_refused_quickly(text):
    started = time.perf_counter()
    try:
        value = parse_bounded_decimal(text, minimum=Decimal(0), maximum=Decimal(1000), places=4)
    except NumberRangeError:
        pass
    else:
        assert Decimal(0) <= value <= Decimal(1000)
    assert time.perf_counter() - started < 0.05


def test_preference_bounds_come_from_the_one_table_and_the_leverage_cap(settings):
    settings.MAX_LEVERAGE = 20
    assert preference_number_bounds("leverage").allowed == "a whole number from 1x to 20x"
    assert preference_number_bounds("max_open_positions").allowed == "a whole number from 1 to 50"
    assert preference_number_bounds("risk_per_trade_pct").allowed == "a number from 0.05% to 10%"
    settings.MAX_LEVERAGE = 50
    assert preference_number_bounds("leverage").maximum == 50  # the platform's cap is the one leverage bound
    assert preference_number_parse("position_size_pct", "12.5") == Decimal("12.5")
    with pytest.raises(KeyError):
        preference_number_bounds("user")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"a": NaN}', "NaN"),
        (b'{"a": -Infinity}', "Infinity"),
        (b"[1e400]", "out of range"),
        (b'"\\ud800"', "surrogate"),
        (b'{"\\udfff": 1}', "surrogate"),
        (b'"a\\u0000b"', "NUL"),
        (b"[" * 40 + b"]" * 40, "nested"),
        (b"[" * 100_000, "not valid JSON"),
        (b"1" * 5000, "out of range"),
        (b"9" * 30, "out of range"),
        (b"\xff\xfe", "not UTF-8"),
        (b"{", "not valid JSON"),
        (b"", "not valid JSON"),
    ],
)
def test_strict_json_refuses_what_the_database_would_choke_on(body, message):
    with pytest.raises(InputError, match=message):
        strict_json_loads(body)


def test_strict_json_reads_ordinary_json():
    assert strict_json_loads(b'{"a": [1, 2.5, "x\\u00e9", null, true], "b": {"c": -3}}') == {
        "a": [1, 2.5, "xé", None, True],
        "b": {"c": -3},
    }
