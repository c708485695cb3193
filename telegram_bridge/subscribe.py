"""/subscribe in the bot: the plans, then a Whop checkout link or a Solana Pay request (link + QR code).

Thin: plans, checkouts and requests come from ``accounts.subscriptions``; this module only renders them. Callback
data: ``sub:plans`` (the plans), ``sub:<plan code>:whop`` and ``sub:<plan code>:sol`` (plan codes are slugs of at
most 32 characters).
"""

from __future__ import annotations

import logging
import re

from accounts.models import Plan
from accounts.solana_pay import amount_text, qr_png
from accounts.subscriptions import (
    CheckoutError,
    plan_features_text,
    plan_for_sale,
    plan_prices_text,
    plans_for_sale,
    solana_payment_request_create,
    subscription_current,
    whop_checkout_create,
)
from telegram_bridge import keyboards
from telegram_bridge.telegram_html import escape
from telegram_bridge.update_context import UpdateContext

logger = logging.getLogger(__name__)

CALLBACK_PREFIX = "sub:"
PLANS_CALLBACK = "sub:plans"
CALLBACK = re.compile(r"^sub:([a-z0-9_-]{1,32}):(whop|sol)$")


def subscribe_markup(plans: list[Plan]) -> dict:
    rows = []
    for plan in plans:
        row = []
        if plan.whop_plan_id:
            row.append({"text": f"💳 {plan.name} by card", "callback_data": f"sub:{plan.code}:whop"})
        if plan.solana_amount:
            row.append({"text": f"◎ {plan.name} with Solana", "callback_data": f"sub:{plan.code}:sol"})
        if row:
            rows.append(row)
    rows.append(keyboards.back_row())
    return {"inline_keyboard": rows}


def subscribe_text(ctx: UpdateContext, plans: list[Plan]) -> str:
    lines = ["<b>Plans</b> — signals are free for everyone; a plan unlocks what costs to run."]
    current = subscription_current(user=ctx.user)
    if current is not None:
        until = f"until {current.valid_until:%Y-%m-%d}" if current.valid_until else "with no end date"
        lines.append(f"Your plan: <b>{escape(current.plan.name)}</b>, {until}.")
    for plan in plans:
        lines += [
            "",
            f"<b>{escape(plan.name)}</b> — {plan.period_days} days: {escape(plan_prices_text(plan))}",
            f"Unlocks: {escape(plan_features_text(plan))}.",
        ]
        if plan.description:
            lines.append(escape(plan.description))
    if not plans:
        lines += ["", "No plan is on sale right now."]
    return "\n".join(lines)


def subscribe_show(ctx: UpdateContext) -> None:
    """/subscribe: the plans on sale with a button per way to pay."""
    plans = plans_for_sale()
    ctx.show(subscribe_text(ctx, plans), markup=subscribe_markup(plans))


def subscribe_callback(ctx: UpdateContext, data: str) -> str:
    """A plan's payment button (or the plans). Returns the activity name."""
    if data == PLANS_CALLBACK:
        ctx.answer()
        subscribe_show(ctx)
        return data
    match = CALLBACK.match(data)
    plan = plan_for_sale(code=match.group(1)) if match else None
    if plan is None:
        ctx.answer("This plan is no longer on sale. Send /subscribe for the current plans.")
        return "unknown"
    ctx.answer()
    try:
        if match.group(2) == "whop":
            url = whop_checkout_create(user=ctx.user, plan=plan)
            ctx.reply(
                f"💳 <b>{escape(plan.name)}</b>: pay on Whop's secure checkout. Your plan starts as soon as "
                "Whop confirms the payment; I will message you.",
                markup={"inline_keyboard": [[{"text": "Open the checkout", "url": url}]]},
            )
        else:
            _solana_request_send(ctx, plan)
    except CheckoutError as error:
        ctx.reply("⚠️ " + escape(str(error)))
    return f"sub:{match.group(2)}"


def _solana_request_send(ctx: UpdateContext, plan: Plan) -> None:
    request = solana_payment_request_create(user=ctx.user, plan=plan)
    payment = request.payment
    caption = (
        f"◎ <b>{escape(plan.name)}</b>: send exactly <b>{amount_text(payment.amount_base_units, payment.decimals)} "
        f"{escape(payment.currency)}</b> with a Solana Pay wallet: scan the code, or open this link in the "
        f"wallet:\n<code>{escape(request.url)}</code>\n"
        f"The request is valid until {payment.expires_at:%H:%M} UTC; your plan starts once the payment is "
        "confirmed on chain, and I will message you."
    )
    # aiogram takes seconds to import: only a process that sends loads it (see telegram_bridge.sending).
    from aiogram.types import BufferedInputFile

    from telegram_bridge.sender import telegram_call

    photo = BufferedInputFile(qr_png(request.url), filename="solana-pay.png")
    chat_id = ctx.chat_id
    try:
        sent = telegram_call(lambda bot: bot.send_photo(chat_id, photo, caption=caption), chat_id=chat_id)
    except Exception:  # the QR code is a convenience: the link alone is enough to pay
        logger.warning("Solana Pay QR code not sent", exc_info=True)
        sent = None
    if sent is None:
        ctx.reply(caption)
