"""Helius enhanced-transaction payloads of Solana Pay transfers, in the shape Helius posts to a webhook.

The shape follows the example delivery of the Helius webhook documentation (https://www.helius.dev/docs/webhooks,
"Event payload example", enhanced type) and its enhanced-transaction field reference: ``accountData`` (each account
touched, ``nativeBalanceChange`` in lamports, ``tokenBalanceChanges`` with ``rawTokenAmount`` = integer text and
``decimals``), ``nativeTransfers`` (``amount`` in lamports), ``tokenTransfers`` (``tokenAmount`` as a UI float,
optionally ``rawTokenAmount``), ``instructions`` (the reference key is an account of the transfer instruction, as the
Solana Pay spec prescribes), ``transactionError`` (null, or the error object of a failed transaction), ``signature``,
``slot``, ``timestamp``, ``type``, ``source``.

Used by tests and the demo as the "wallet" that pays a request.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from accounts.solana_pay import amount_text, b58encode

SYSTEM_PROGRAM = "11111111111111111111111111111111"
TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"  # noqa: S105 — a program address
USDC_MINT = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
USDT_MINT = "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB"
NETWORK_FEE_LAMPORTS = 5000


def address_for(seed: str) -> str:
    """A stable, valid 32-byte base58 address named by ``seed`` (a wallet or token account of the tests)."""
    return b58encode(hashlib.sha256(seed.encode()).digest())


def signature_for(seed: str) -> str:
    """A stable, valid 64-byte base58 transaction signature."""
    return b58encode(hashlib.sha512(seed.encode()).digest())


def solana_pay_transaction(
    *,
    recipient: str,
    amount_base_units: int,
    reference: str | None,
    mint: str = "",
    decimals: int = 9,
    payer: str | None = None,
    signature: str | None = None,
    timestamp: datetime | int | None = None,
    failed: bool = False,
    raw_in_token_transfers: bool = True,
    slot: int = 312_456_789,
) -> dict[str, Any]:
    """One enhanced transaction: ``payer`` sends ``amount_base_units`` of SOL (``mint`` empty) or of the SPL token
    ``mint`` to ``recipient``, with ``reference`` (if any) as a read-only account of the transfer instruction.
    ``failed`` gives the transaction an ``InstructionError`` (it still lists what it attempted)."""
    payer = payer or address_for("payer-wallet")
    signature = signature or signature_for(f"{payer}:{recipient}:{amount_base_units}:{reference}:{mint}")
    if isinstance(timestamp, datetime):
        timestamp = int(timestamp.timestamp())
    refs = [reference] if reference else []
    accounts: list[dict[str, Any]] = [
        {
            "account": payer,
            "nativeBalanceChange": -NETWORK_FEE_LAMPORTS - (0 if mint else amount_base_units),
            "tokenBalanceChanges": [],
        },
    ]
    if mint:
        payer_tokens, recipient_tokens = address_for(f"ata:{payer}:{mint}"), address_for(f"ata:{recipient}:{mint}")
        accounts += [
            {
                "account": payer_tokens,
                "nativeBalanceChange": 0,
                "tokenBalanceChanges": [
                    {
                        "mint": mint,
                        "rawTokenAmount": {"decimals": decimals, "tokenAmount": f"-{amount_base_units}"},
                        "tokenAccount": payer_tokens,
                        "userAccount": payer,
                    }
                ],
            },
            {
                "account": recipient_tokens,
                "nativeBalanceChange": 0,
                "tokenBalanceChanges": [
                    {
                        "mint": mint,
                        "rawTokenAmount": {"decimals": decimals, "tokenAmount": str(amount_base_units)},
                        "tokenAccount": recipient_tokens,
                        "userAccount": recipient,
                    }
                ],
            },
            {"account": recipient, "nativeBalanceChange": 0, "tokenBalanceChanges": []},
        ]
        transfer = {
            "fromTokenAccount": payer_tokens,
            "fromUserAccount": payer,
            "mint": mint,
            "toTokenAccount": recipient_tokens,
            "toUserAccount": recipient,
            "tokenAmount": float(amount_text(amount_base_units, decimals)),
            "tokenStandard": "Fungible",
        }
        if raw_in_token_transfers:
            transfer["rawTokenAmount"] = {"decimals": decimals, "tokenAmount": str(amount_base_units)}
        token_transfers, native_transfers = [transfer], []
        instruction = {
            "accounts": [payer_tokens, mint, recipient_tokens, payer, *refs],
            "data": "g7nSCWBbNaMDb",
            "innerInstructions": [],
            "programId": TOKEN_PROGRAM,
        }
        program_account = TOKEN_PROGRAM
        description = f"{payer} transferred {amount_text(amount_base_units, decimals)} tokens to {recipient}."
        accounts.append({"account": mint, "nativeBalanceChange": 0, "tokenBalanceChanges": []})
    else:
        accounts.append({"account": recipient, "nativeBalanceChange": amount_base_units, "tokenBalanceChanges": []})
        token_transfers = []
        native_transfers = [{"amount": amount_base_units, "fromUserAccount": payer, "toUserAccount": recipient}]
        instruction = {
            "accounts": [payer, recipient, *refs],
            "data": "3Bxs411Dtc7pkFQj",
            "innerInstructions": [],
            "programId": SYSTEM_PROGRAM,
        }
        program_account = SYSTEM_PROGRAM
        description = f"{payer} transferred {amount_text(amount_base_units, 9)} SOL to {recipient}."
    accounts += [{"account": ref, "nativeBalanceChange": 0, "tokenBalanceChanges": []} for ref in refs]
    accounts.append({"account": program_account, "nativeBalanceChange": 0, "tokenBalanceChanges": []})
    return {
        "accountData": accounts,
        "description": "" if failed else description,
        "events": {},
        "fee": NETWORK_FEE_LAMPORTS,
        "feePayer": payer,
        "instructions": [instruction],
        "nativeTransfers": native_transfers,
        "signature": signature,
        "slot": slot,
        "source": "SOLANA_PROGRAM_LIBRARY" if mint else "SYSTEM_PROGRAM",
        "timestamp": timestamp if timestamp is not None else 1_790_000_000,
        "tokenTransfers": token_transfers,
        "transactionError": {"InstructionError": [0, {"Custom": 1}]} if failed else None,
        "type": "TRANSFER",
    }
