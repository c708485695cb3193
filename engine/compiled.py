"""Compiled inner loops: numba when it is installed, the pure-NumPy paths otherwise.

A few loops of the engine cannot be vectorised without overhead (the recursive smoothers of EMA/RSI/ATR/ADX, rolling
windows, swing points and the nearest swing level per bar, the candle checks, the scan of an open position's candles
for its exit). Each is written twice, next to its caller: the vectorised NumPy version (always available) and a plain
loop marked with ``@loop``, which numba compiles to machine code on its first call. ``cache=True``: later processes
load it from numba's on-disk cache (``__pycache__`` beside the source, or ``NUMBA_CACHE_DIR``) instead of compiling
again; compiling every loop takes several seconds once, loading them about a second. The two versions give the same
results (``engine/tests/test_compiled.py`` runs both on real and random candles and compares them); callers pick
one with ``enabled()``.

numba is imported on the first compiled call, not when the engine is imported: processes that never backtest or
scan do not pay for it.

Public API
----------
``loop(fn)``          marks a numba-compatible function; ``fn.compiled()`` returns the compiled dispatcher.
``enabled() -> bool`` True when numba is importable and ``numpy_only()`` is not in force.
``numpy_only()``      context manager: the engine runs its NumPy paths inside it (tests, comparisons).
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

_lock = threading.Lock()
_numba: list[Any] = []  # [module] once imported, [None] when numba is not installed
_numpy_only = threading.local()


def _numba_module() -> Any:
    if not _numba:
        with _lock:
            if not _numba:
                try:
                    _numba.append(importlib.import_module("numba"))
                except ImportError:
                    _numba.append(None)
    return _numba[0]


def enabled() -> bool:
    """Whether the engine uses its compiled loops (numba importable, not inside ``numpy_only()``)."""
    if getattr(_numpy_only, "depth", 0):
        return False
    return _numba_module() is not None


@contextlib.contextmanager
def numpy_only() -> Iterator[None]:
    """Run the NumPy paths in this thread while the block lasts."""
    _numpy_only.depth = getattr(_numpy_only, "depth", 0) + 1
    try:
        yield
    finally:
        _numpy_only.depth -= 1


class CompiledLoop:
    """A plain-Python loop (``.python``) and its numba-compiled twin (``.compiled()``, built on first use)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.python = fn
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__
        self._dispatcher: Callable[..., Any] | None = None

    def compiled(self) -> Callable[..., Any]:
        if self._dispatcher is None:
            numba = _numba_module()
            if numba is None:
                raise RuntimeError("numba is not installed; check engine.compiled.enabled() before compiling")
            with _lock:
                if self._dispatcher is None:
                    try:
                        self._dispatcher = numba.njit(cache=True, nogil=True)(self.python)
                    except RuntimeError:  # no writable cache location (read-only install, no NUMBA_CACHE_DIR)
                        self._dispatcher = numba.njit(nogil=True)(self.python)
        return self._dispatcher

    def __call__(self, *args: Any) -> Any:
        return self.compiled()(*args)


def loop(fn: Callable[..., Any]) -> CompiledLoop:
    return CompiledLoop(fn)
