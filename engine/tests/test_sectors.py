from __future__ import annotations

from collections import Counter

import pytest

from engine.sectors import OTHER, SECTOR_MEMBERS, base_of, is_correlated, sector_of


@pytest.mark.parametrize(
    ("symbol", "base", "sector"),
    [
        ("BTC/USDT:USDT", "BTC", "major"),
        ("ETH/USDC:USDC", "ETH", "major"),
        ("SOL/USDT:USDT", "SOL", "l1"),
        ("ARB/USDT:USDT", "ARB", "l2"),
        ("AAVE/USDT:USDT", "AAVE", "defi"),
        ("1000PEPE/USDT:USDT", "PEPE", "meme"),
        ("1000000MOG/USDT:USDT", "MOG", "meme"),
        ("kPEPE/USDC:USDC", "PEPE", "meme"),
        ("KAVA/USDT:USDT", "KAVA", "l1"),
        ("1INCH/USDT:USDT", "1INCH", "defi"),
        ("FET/USDT:USDT", "FET", "ai"),
        ("OKB/USDT:USDT", "OKB", "exchange"),
        ("NOTAREALCOIN/USDT:USDT", "NOTAREALCOIN", OTHER),
        ("doge", "DOGE", "meme"),
    ],
)
def test_base_and_sector(symbol, base, sector):
    assert base_of(symbol) == base
    assert sector_of(symbol) == sector


def test_every_base_belongs_to_one_sector():
    counts = Counter(base for members in SECTOR_MEMBERS.values() for base in members)
    assert [base for base, n in counts.items() if n > 1] == []


def test_correlation_filter():
    assert is_correlated("ETH/USDT:USDT", ["BTC/USDT:USDT"])  # the product's own example
    assert is_correlated("WIF/USDT:USDT", ["XRP/USDT:USDT", "1000PEPE/USDT:USDT"])
    assert is_correlated("BTC/USDC:USDC", ["BTC/USDT:USDT"])  # same base, other settle
    assert not is_correlated("SOL/USDT:USDT", ["BTC/USDT:USDT", "UNI/USDT:USDT"])
    assert not is_correlated("FOO/USDT:USDT", ["BAR/USDT:USDT"])  # unknown sectors do not match each other
    assert is_correlated("FOO/USDT:USDT", ["FOO/USDT:USDT"])
    assert not is_correlated("BTC/USDT:USDT", [])
