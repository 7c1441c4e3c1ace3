"""Rendering registered prompts: the active version, or a sticky A/B candidate."""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from typing import Any

from ai.gateway.config import Snapshot
from ai.gateway.errors import GatewayError


@dataclass(frozen=True)
class RenderedPrompt:
    system: str
    version_label: str  # e.g. "answer@v3", recorded on every response


def _bucket(*parts: str) -> int:
    digest = hashlib.sha256(":".join(parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100


def prompt_render(
    snapshot: Snapshot, key: str, variables: dict[str, Any], *, sticky: str
) -> RenderedPrompt:
    """The system prompt for `key`. A caller (tenant + actor in `sticky`) always lands on the
    same side of an A/B split, so a conversation never flips between versions."""
    choice = snapshot.prompts.get(key)
    if choice is None or choice.active is None:
        raise GatewayError(f"Prompt '{key}' has no active version.")
    version = choice.active
    if choice.candidate is not None and _bucket(sticky, key) < choice.candidate_percent:
        version = choice.candidate
    fields = {name for _, name, _, _ in string.Formatter().parse(version.system) if name}
    values = {name: variables.get(name, "") for name in fields}
    return RenderedPrompt(version.system.format(**values), version.label)
