"""``executor_for``: the one place that picks the Executor implementation for a user and a trading mode.

It sits above both implementations (``trading.executors.paper``, ``trading.executors.live``) and below the code that
executes positions (``trading.services``, ``trading.intents``, ``trading.flip``, ``trading.monitor``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trading.executors.base import Executor
from trading.executors.live import LiveExecutor
from trading.executors.paper import PaperExecutor

if TYPE_CHECKING:
    from accounts.models import TelegramUser


def executor_for(*, user: TelegramUser, mode: str) -> Executor:
    """The executor of ``user`` for ``mode`` ("paper" or "live"). The single place that picks the implementation."""
    if mode == "paper":
        return PaperExecutor(user=user)
    if mode == "live":
        return LiveExecutor(user=user)
    raise ValueError(f"unknown trading mode {mode!r} (expected 'paper' or 'live')")
