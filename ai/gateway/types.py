"""What callers hand the gateway and what they get back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ai.providers.base import ContextDoc, Usage

if TYPE_CHECKING:
    from tenants.models import Tenant


@dataclass(frozen=True)
class Caller:
    """Who is calling, for what, under which request id (unique per tenant: the usage ledger
    keeps exactly one record per tenant and request id)."""

    tenant: Tenant
    feature: str
    request_id: str
    user_id: int | None = None
    api_key_id: int | None = None

    @property
    def actor(self) -> str:
        if self.api_key_id is not None:
            return f"key:{self.api_key_id}"
        return f"user:{self.user_id}" if self.user_id is not None else "system"


@dataclass
class Prompt:
    """A registered prompt (ai.catalog PromptTemplate key) and the values for its placeholders."""

    key: str
    variables: dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    text: str
    model: str
    provider: str
    usage: Usage
    cost_micros: int
    cache_status: str
    outcome: str  # ok | incomplete | cancelled
    latency_ms: int
    ttft_ms: int | None = None
    prompt_version: str = ""
    attempts: int = 0
    fallback: bool = False
    label: str = ""  # "local extractive" when nothing was generated
    flags: list[str] = field(default_factory=list)  # guardrail findings
    data: Any = None  # parsed JSON for structured calls

    @property
    def complete(self) -> bool:
        return self.outcome == "ok"


@dataclass
class Delta:
    text: str


@dataclass
class Done:
    result: Result


StreamItem = Delta | Done

__all__ = ["Caller", "ContextDoc", "Delta", "Done", "Prompt", "Result", "StreamItem", "Usage"]
