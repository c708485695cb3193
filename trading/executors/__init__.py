"""Executors: how a decided position reaches a market (paper simulation or a live exchange).

* ``base``: the ``Executor`` port (a protocol; imports no implementation);
* ``paper``: ``PaperExecutor``, simulated fills on the user's paper account;
* ``live``: ``LiveExecutor``, orders on the user's exchange through ``exchanges``;
* ``factory``: ``executor_for(user=, mode=)``, the one place that picks between them.

The executors write their books through ``trading.ledger`` and name their orders through ``trading.orders``; they
never import ``trading.services`` (which drives them) nor a task module.
"""
