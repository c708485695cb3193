"""Symbol base → sector map for the correlation filter ("don't hold BTC and ETH at once").

Two symbols are correlated when they share a base asset (``BTC/USDT:USDT`` and ``BTC/USDC:USDC``) or a known
sector. Unknown bases fall in ``"other"``, which correlates only with the same base: guessing would block
unrelated trades. The map is data, not logic: extend ``SECTOR_MEMBERS`` as listings change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

OTHER = "other"

SECTOR_MEMBERS: dict[str, tuple[str, ...]] = {
    # BTC and ETH move together more than with anything else: one "major" sector blocks holding both.
    "major": ("BTC", "ETH", "WBTC", "WETH", "STETH", "CBBTC"),
    "l1": (
        "SOL",
        "BNB",
        "ADA",
        "AVAX",
        "DOT",
        "ATOM",
        "NEAR",
        "APT",
        "SUI",
        "SEI",
        "TRX",
        "TON",
        "ALGO",
        "XTZ",
        "EGLD",
        "FTM",
        "S",
        "KAS",
        "ICP",
        "HBAR",
        "EOS",
        "NEO",
        "KAVA",
        "INJ",
        "TIA",
        "FLOW",
        "MINA",
        "ONE",
        "ZIL",
        "WAVES",
        "CELO",
        "IOTA",
        "VET",
        "XLM",
        "XRP",
        "ETC",
        "BCH",
        "LTC",
        "XMR",
        "ZEC",
        "DASH",
        "BSV",
        "HYPE",
        "BERA",
        "MON",
        "QTUM",
        "ICX",
        "ROSE",
        "CFX",
        "CORE",
        "KLAY",
        "XDC",
        "FIL",
        "AR",
        "NXT",
    ),
    "l2": (
        "ARB",
        "OP",
        "MATIC",
        "POL",
        "STRK",
        "ZK",
        "IMX",
        "MNT",
        "METIS",
        "MANTA",
        "BLAST",
        "SCR",
        "TAIKO",
        "LRC",
        "SKL",
        "BOBA",
        "CELR",
        "ZRO",
        "W",
    ),
    "defi": (
        "UNI",
        "AAVE",
        "MKR",
        "SKY",
        "COMP",
        "CRV",
        "CVX",
        "SNX",
        "SUSHI",
        "YFI",
        "BAL",
        "1INCH",
        "LDO",
        "RPL",
        "PENDLE",
        "GMX",
        "DYDX",
        "JUP",
        "RAY",
        "ORCA",
        "CAKE",
        "ENA",
        "ETHFI",
        "EIGEN",
        "MORPHO",
        "LINK",
        "PYTH",
        "BAND",
        "API3",
        "UMA",
        "LQTY",
        "FXS",
        "RUNE",
        "JTO",
        "AERO",
        "ONDO",
        "SYRUP",
        "KMNO",
    ),
    "meme": (
        "DOGE",
        "SHIB",
        "PEPE",
        "FLOKI",
        "BONK",
        "WIF",
        "BOME",
        "MEME",
        "TURBO",
        "BRETT",
        "POPCAT",
        "MEW",
        "NEIRO",
        "MOG",
        "PNUT",
        "GOAT",
        "ACT",
        "TRUMP",
        "MELANIA",
        "FARTCOIN",
        "SPX",
        "PENGU",
        "DOGS",
        "BABYDOGE",
        "WOJAK",
        "LADYS",
        "SATS",
        "ORDI",
        "PEOPLE",
        "MYRO",
        "SLERF",
        "CHILLGUY",
        "MOODENG",
    ),
    "ai": (
        "FET",
        "AGIX",
        "OCEAN",
        "ASI",
        "TAO",
        "RNDR",
        "RENDER",
        "WLD",
        "ARKM",
        "AI16Z",
        "VIRTUAL",
        "AIXBT",
        "GRASS",
        "IO",
        "NMR",
        "AKT",
        "GLM",
        "CGPT",
        "PHB",
        "ZEREBRO",
        "GRIFFAIN",
        "COOKIE",
    ),
    "exchange": ("OKB", "CRO", "KCS", "HT", "LEO", "GT", "MX", "BGB", "WOO", "FTT", "BEST"),
    "gaming": ("AXS", "SAND", "MANA", "GALA", "ENJ", "ILV", "BEAM", "PIXEL", "YGG", "MAGIC", "APE", "PRIME", "RON"),
    "storage_infra": ("GRT", "THETA", "STX", "ENS", "QNT", "HNT", "IOTX", "ANKR", "STORJ", "SC", "BTT", "JASMY"),
}
# BNB is both a chain and an exchange token; it is listed once, under l1.

SECTOR_OF_BASE: dict[str, str] = {base: sector for sector, members in SECTOR_MEMBERS.items() for base in members}

# "1000PEPE", "1000000MOG", "10000SATS": contract multipliers name the same asset.
_NUMERIC_MULTIPLIER = re.compile(r"^10+(?=[A-Z])")


def base_of(symbol: str) -> str:
    """``"1000PEPE/USDT:USDT"`` → ``"PEPE"``; ``"kPEPE/USDC:USDC"`` → ``"PEPE"``; a bare base passes through."""
    base = symbol.split("/", 1)[0].split(":", 1)[0].strip()
    if base[:1] == "k" and base[1:].upper() in SECTOR_OF_BASE:  # lower-case k prefix = x1000 (Hyperliquid style)
        return base[1:].upper()
    return _NUMERIC_MULTIPLIER.sub("", base.upper())


def sector_of(symbol: str) -> str:
    """The sector of a symbol's base asset, ``"other"`` when unknown."""
    return SECTOR_OF_BASE.get(base_of(symbol), OTHER)


def is_correlated(symbol: str, open_symbols: Iterable[str]) -> bool:
    """True when ``symbol`` shares its base or a known sector with any of ``open_symbols``."""
    base = base_of(symbol)
    sector = SECTOR_OF_BASE.get(base, OTHER)
    for other in open_symbols:
        other_base = base_of(other)
        if other_base == base:
            return True
        if sector != OTHER and SECTOR_OF_BASE.get(other_base, OTHER) == sector:
            return True
    return False
