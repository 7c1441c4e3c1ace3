"""ai.gateway: the one seam every model call in Atrium goes through (DESIGN.md invariant 2).

    from ai.gateway import Caller, complete, stream, embed
    result = await complete(caller=Caller(tenant, "answer", request_id, user_id=...),
                            messages=[{"role": "user", "content": "..."}])
    async with stream(caller=..., messages=...) as s:
        async for item in s: ...   # Delta(text) ..., then Done(result)

Provider batches (many prompts as one OpenAI/Anthropic batch, at the batch price) are in
ai.gateway.batch: batch_submit, batch_poll, batch_collect, batch_cancel (+ *_sync).

Sync code uses complete_sync / embed_sync. Every call is switched (feature flags), guarded,
routed (plan tier, tenant policy, BYOK keys), retried and failed over, cached per tenant, and
metered exactly once in the usage ledger under (tenant, request id).
"""

from asgiref.sync import async_to_sync

from ai.gateway.batch import (
    BatchOutcome,
    BatchPrompt,
    BatchTicket,
    batch_cancel,
    batch_check,
    batch_collect,
    batch_poll,
    batch_submit,
)
from ai.gateway.core import EmbedResult, complete, embed
from ai.gateway.errors import (
    AIDisabled,
    AllProvidersFailed,
    GatewayError,
    InputRejected,
    ModelNotAllowed,
    ProviderRefused,
    ProviderRejectedRequest,
    StructuredOutputInvalid,
)
from ai.gateway.plan import GATEWAY_REFRESH_S, gateway_refresh
from ai.gateway.streaming import GatewayStream, stream
from ai.gateway.types import Caller, ContextDoc, Delta, Done, Prompt, Result

complete_sync = async_to_sync(complete)
embed_sync = async_to_sync(embed)
batch_submit_sync = async_to_sync(batch_submit)
batch_poll_sync = async_to_sync(batch_poll)
batch_collect_sync = async_to_sync(batch_collect)
batch_cancel_sync = async_to_sync(batch_cancel)

__all__ = [
    "GATEWAY_REFRESH_S",
    "AIDisabled",
    "AllProvidersFailed",
    "BatchOutcome",
    "BatchPrompt",
    "BatchTicket",
    "Caller",
    "ContextDoc",
    "Delta",
    "Done",
    "EmbedResult",
    "GatewayError",
    "GatewayStream",
    "InputRejected",
    "ModelNotAllowed",
    "Prompt",
    "ProviderRefused",
    "ProviderRejectedRequest",
    "Result",
    "StructuredOutputInvalid",
    "batch_cancel",
    "batch_cancel_sync",
    "batch_check",
    "batch_collect",
    "batch_collect_sync",
    "batch_poll",
    "batch_poll_sync",
    "batch_submit",
    "batch_submit_sync",
    "complete",
    "complete_sync",
    "embed",
    "embed_sync",
    "gateway_refresh",
    "stream",
]
