"""What each exchange can do and how it wants to be asked: one table, read by every adapter (Freqtrade's ``_ft_has``).

Adapters ask ``capabilities(exchange_id)`` instead of testing ``if exchange_id == "okx"`` in their code paths, so a
difference between exchanges is stated once, next to the others, with the reason. Values were read in ccxt 4.5.90's
source and checked offline against the recorded real requests in ``trading/tests/fixtures/ccxt_static`` (contract
suite: ``trading/tests/test_exchange_contracts.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

TriggerStyle = Literal["stop_loss_price", "trigger_type", "position_tpsl"]
LeverageStyle = Literal["margin_mode_with_leverage", "margin_mode_then_cross_leverage", "per_position_type", "bitunix"]


@dataclass(frozen=True)
class ExchangeCapabilities:
    exchange_id: str
    via_ccxt: bool = True
    # client order ids
    client_id_param: str = "clientOrderId"  # the param carrying our client order id on a regular order
    trigger_client_id_param: str | None = "clientOrderId"  # ... on a stop / take-profit (None: triggers carry none)
    # Keys ccxt would add on its own to a trigger order that must NOT be sent (OKX: a random ``clOrdId`` next to our
    # ``algoClOrdId`` becomes the trigger's client id on the exchange, so a look-up by ours misses it).
    trigger_forbidden_params: tuple[str, ...] = ()
    cancel_by_client_id: Literal["ccxt", "endpoint", "no"] = "ccxt"  # how a cancel by client id is sent
    order_lookup: Literal["ccxt", "mexc_contract_api", "bitunix"] = "ccxt"  # how orders are fetched by client id
    # stops and take-profits
    trigger_style: TriggerStyle = (
        "stop_loss_price"  # ccxt stopLossPrice/takeProfitPrice; MEXC triggerType; Bitunix TP/SL
    )
    stop_params: MappingProxyType = field(default_factory=lambda: MappingProxyType({"reduceOnly": True}))
    trigger_query_params: MappingProxyType = field(default_factory=lambda: MappingProxyType({"trigger": True}))
    trigger_flag_on_fetch: bool = True  # fetch/cancel of a trigger order needs ``{"trigger": True}``
    # account
    balance_params: MappingProxyType = field(default_factory=lambda: MappingProxyType({"type": "swap"}))
    equity_field: Literal["total", "info_equity", "totalEq", "none"] = "total"
    leverage_style: LeverageStyle = "margin_mode_with_leverage"
    leverage_on_order: bool = False  # isolated leverage sent with every order
    # restrictions: orders through the API refused for most accounts (said at /connect, mapped to OrderApiRestricted)
    futures_order_api_restricted: bool = False

    def params(self, name: str) -> dict[str, Any]:
        """A mutable copy of one of the parameter templates (``stop_params``, ``trigger_query_params``, ...)."""
        return dict(getattr(self, name))


CAPABILITIES: dict[str, ExchangeCapabilities] = {
    "okx": ExchangeCapabilities(
        exchange_id="okx",
        client_id_param="clOrdId",
        trigger_client_id_param="algoClOrdId",
        trigger_forbidden_params=("clOrdId",),
        trigger_query_params=MappingProxyType({"trigger": True, "ordType": "conditional"}),
        balance_params=MappingProxyType({}),
        equity_field="totalEq",  # the account's USD-equivalent equity over every currency (details[].eq is one coin)
        leverage_style="margin_mode_with_leverage",
    ),
    "kucoinfutures": ExchangeCapabilities(
        exchange_id="kucoinfutures",
        client_id_param="clientOid",
        trigger_client_id_param="clientOid",
        trigger_flag_on_fetch=False,  # stop orders are served by the same order endpoints
        equity_field="total",  # ccxt's total is accountEquity
        leverage_style="margin_mode_then_cross_leverage",
        leverage_on_order=True,
    ),
    "mexc": ExchangeCapabilities(
        exchange_id="mexc",
        client_id_param="externalOid",
        trigger_client_id_param="externalOid",
        order_lookup="mexc_contract_api",  # order/external/{symbol}/{externalOid}; plan orders from their list
        cancel_by_client_id="endpoint",  # order/cancel_with_external; ccxt's cancel_order would send [null]
        trigger_style="trigger_type",
        equity_field="info_equity",  # ccxt's total is available + frozen; the raw row's equity is the figure
        leverage_style="per_position_type",
        leverage_on_order=True,
        # MEXC keeps its futures order API closed to most accounts (orders answer code 1002 "Contract not allow place
        # order!"); reading balances and positions works for everyone.
        futures_order_api_restricted=True,
    ),
    "bitunix": ExchangeCapabilities(
        exchange_id="bitunix",
        via_ccxt=False,
        client_id_param="clientId",
        trigger_client_id_param=None,  # TP/SL orders carry no client id: found by symbol, kind, trigger and size
        cancel_by_client_id="endpoint",
        order_lookup="bitunix",
        trigger_style="position_tpsl",
        trigger_flag_on_fetch=False,
        balance_params=MappingProxyType({}),
        equity_field="none",
        leverage_style="bitunix",
    ),
}


def capabilities(exchange_id: str) -> ExchangeCapabilities:
    try:
        return CAPABILITIES[exchange_id]
    except KeyError:
        raise KeyError(f"no capability table for exchange {exchange_id!r}; known: {', '.join(CAPABILITIES)}") from None


CCXT_TRADING_EXCHANGES = tuple(e for e, c in CAPABILITIES.items() if c.via_ccxt)
