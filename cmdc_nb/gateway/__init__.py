"""Reach beyond the notebook: an HTTP/SSE gateway with the A2A protocol (`cmdc-nb serve`).

    from cmdc_nb.gateway import Gateway, create_gateway_key
    key = create_gateway_key(me, name="ci")        # key.key is shown once
    gw = Gateway(models=["scripted/demo"], tools=[search])
    await gw.start()                               # from a notebook cell: serves in the background

See `docs/gateway.md` for the routes, the A2A endpoint, webhooks and the guardrails.
"""

from cmdc_nb.gateway.guardrails import Guardrails
from cmdc_nb.gateway.keys import (
    IssuedKey,
    authenticate_gateway_key,
    create_gateway_key,
    list_gateway_keys,
    revoke_gateway_key,
)
from cmdc_nb.gateway.runtime import GatewayConfig, Webhook
from cmdc_nb.gateway.server import Gateway
from cmdc_nb.gateway.webhooks import list_webhook_deliveries, sign, verify

__all__ = [
    "Gateway",
    "GatewayConfig",
    "Guardrails",
    "IssuedKey",
    "Webhook",
    "authenticate_gateway_key",
    "create_gateway_key",
    "list_gateway_keys",
    "list_webhook_deliveries",
    "revoke_gateway_key",
    "sign",
    "verify",
]
