"""The one exception hierarchy of the pure engine."""


class EngineError(Exception):
    """Base class of every error raised by ``engine``."""


class InvalidParameters(EngineError, ValueError):
    """Parameters that cannot work together (e.g. fast EMA >= slow EMA, a negative multiple)."""


class InsufficientData(EngineError):
    """Too few (or unusable) candles for the requested computation."""


class UnknownSymbol(EngineError, KeyError):
    """A symbol that is not in the data given to the engine (e.g. a backtest asked for a symbol with no candles)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class OrderBelowMinimum(EngineError, ValueError):
    """A computed order size that is below the market's minimum quantity or minimum notional after rounding."""
