"""Finished backtests sent to the Telegram admins who asked (consumer of the ``backtest.finished`` event)."""

from __future__ import annotations

import logging

from aiogram.types import BufferedInputFile
from django.core.cache import cache

from analytics.backtesting import backtest_report_caption, backtest_report_recipients
from telegram_bridge.sender import telegram_call

logger = logging.getLogger(__name__)


def backtest_report_send(*, run) -> bool:
    """Send a finished run to its Telegram admins (``backtest_report_recipients``): the equity/drawdown PNG with the
    key metrics as caption, or the failure reason. Once per run and admin (a re-run task does not send it again; a
    failed send is retried by the next call). Returns True when something was sent."""
    if run.status not in ("succeeded", "failed"):
        return False
    recipients = backtest_report_recipients(run)
    if not recipients:
        return False
    caption = backtest_report_caption(run)
    png = b""
    if run.status == "succeeded" and run.equity_curve:
        try:
            with run.equity_curve.open("rb") as handle:
                png = handle.read()
        except OSError:
            png = b""
    any_sent = False
    for chat_id in recipients:
        key = f"backtest:reported:{run.pk}:{chat_id}"
        if not cache.add(key, "1", 7 * 86_400):
            continue
        try:
            if png:
                photo = BufferedInputFile(png, filename=f"backtest-{run.pk}.png")
                sent = telegram_call(
                    lambda bot, chat_id=chat_id, photo=photo: bot.send_photo(chat_id, photo, caption=caption),
                    chat_id=str(chat_id),
                )
            else:
                sent = telegram_call(
                    lambda bot, chat_id=chat_id: bot.send_message(chat_id, caption), chat_id=str(chat_id)
                )
        except Exception:  # Telegram down or not configured: the run itself stays done; the report is best effort
            logger.warning("backtest %s: the Telegram report to %s could not be sent", run.pk, chat_id, exc_info=True)
            sent = None
        if sent is None:
            cache.delete(key)  # a later call may succeed
            continue
        any_sent = True
    return any_sent
