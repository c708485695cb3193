"""One reading of a typed symbol; muting works on the base, however the mute or the market is spelt."""

import pytest

from accounts.symbols import symbol_base, symbol_canonical, symbol_is_muted, symbols_same_market


@pytest.mark.parametrize("typed", ["doge", "DOGE", " Doge ", "DOGEUSDT", "doge/usdt", "DOGE/USDT", "DOGE/USDT:USDT"])
def test_every_spelling_of_doge_is_the_usdt_perpetual(typed):
    assert symbol_canonical(typed) == "DOGE/USDT:USDT"
    assert symbol_base(typed) == "DOGE"
    assert symbol_is_muted("DOGE/USDT:USDT", [typed])
    assert symbols_same_market(typed, "DOGE/USDT:USDT")


@pytest.mark.parametrize("typed", ["", "   ", "<script>", "DOGE USDT", "DO GE", "DOGE/", "/USDT", None, 42, "A" * 21])
def test_what_is_not_a_symbol_is_none(typed):
    assert symbol_canonical(typed) is None
    assert symbol_base(typed) == "" if isinstance(typed, str) else True


def test_mute_matches_the_base_only():
    assert not symbol_is_muted("DOGEAI/USDT:USDT", ["DOGE"])
    assert symbol_is_muted("1000PEPE/USDT:USDT", ["1000pepe"])
    assert symbol_is_muted("NXT/BTC", ["NXT/BTC:BTC"])  # other quotes: still the base
    assert not symbol_is_muted("BTC/USDT:USDT", [])
    assert not symbol_is_muted("BTC/USDT:USDT", None)
