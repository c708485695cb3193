"""Executors: how a decided position reaches a market (paper simulation or a live exchange).

The port is ``trading.executors.base.Executor``; pick an implementation with ``executor_for(user=, mode=)``.
"""

from trading.executors.base import Executor, executor_for

__all__ = ["Executor", "executor_for"]
