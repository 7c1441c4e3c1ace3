"""Script state shared by the server threads: default behaviour, queued steps and the request log.

Every public method takes one lock, so the server's threads and the test thread can script,
consume and read concurrently. Steps are validated when queued, so a typo fails in the test that
wrote it rather than as a puzzling default answer later.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

FAULTS = frozenset({"status", "hang", "cut", "sse_error", "malformed", "no_usage", "batch_expired"})
FILTER_KEYS = frozenset({"model", "path", "stream", "custom_id"})
TIMING_KEYS = frozenset({"latency_ms", "ttft_ms", "tokens_per_second", "answer", "answer_tokens"})
FAULT_KEYS = {
    "status": frozenset({"code", "retry_after", "retry_after_ms", "message", "error_type"}),
    "hang": frozenset({"seconds"}),
    "cut": frozenset({"after_tokens"}),
    "sse_error": frozenset({"after_tokens", "message", "error_type"}),
    "malformed": frozenset({"after_tokens"}),
    "no_usage": frozenset(),
    "batch_expired": frozenset(),
}
DEFAULT_AFTER_TOKENS = 2
DEFAULT_HANG_SECONDS = 30.0
REQUEST_LOG_LIMIT = 10_000


@dataclass(frozen=True)
class Config:
    """Defaults for requests no step matches (and for whatever a matching step leaves unset)."""

    latency_ms: float = 0.0
    ttft_ms: float = 0.0
    tokens_per_second: float = 0.0  # 0 = no delay between tokens
    answer: str | None = None  # None = derived from the last user message
    answer_tokens: int = 20
    batch_polls: int = 0  # looks at a batch that still find it in progress (0: ended at once)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Plan:
    """What one request will get: the fault kind ("ok" when none) and the resolved settings."""

    kind: str
    latency_ms: float
    ttft_ms: float
    tokens_per_second: float
    answer: str | None
    answer_tokens: int
    options: dict[str, Any]

    def option(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)


def _check_number(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{key} must be a non-negative number, got {value!r}")


def config_update(config: Config, changes: dict[str, Any]) -> Config:
    unknown = set(changes) - {field.name for field in dataclasses.fields(Config)}
    if unknown:
        raise ValueError(f"unknown config keys: {sorted(unknown)}")
    for key, value in changes.items():
        if key == "answer":
            if value is not None and not isinstance(value, str):
                raise ValueError("answer must be a string or null")
        elif key in ("answer_tokens", "batch_polls"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{key} must be a non-negative integer")
        else:
            _check_number(key, value)
    return dataclasses.replace(config, **changes)


def step_validate(step: Any) -> dict[str, Any]:
    """Check a step's shape and return a private copy of it; raise ValueError if it is wrong."""
    if not isinstance(step, dict):
        raise ValueError(f"a step is a dict, got {step!r}")
    kind = step.get("fault")
    if (kind is None) == (step.get("ok") is not True):
        raise ValueError(f'a step needs either "fault": KIND or "ok": true, got {step!r}')
    if kind is not None and kind not in FAULTS:
        raise ValueError(f"unknown fault {kind!r}; known: {sorted(FAULTS)}")
    allowed = {"fault", "ok"} | FILTER_KEYS | TIMING_KEYS | FAULT_KEYS.get(kind, frozenset())
    unknown = set(step) - allowed
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)} in step {step!r}")
    if kind == "status" and not (isinstance(step.get("code"), int) and 400 <= step["code"] <= 599):
        raise ValueError(f'a "status" step needs an integer "code" in 400..599, got {step!r}')
    for key in ("model", "path", "custom_id"):
        if key in step and not isinstance(step[key], str):
            raise ValueError(f"{key} must be a string, got {step[key]!r}")
    if "stream" in step and not isinstance(step["stream"], bool):
        raise ValueError(f"stream must be true or false, got {step['stream']!r}")
    config_update(Config(), {key: step[key] for key in TIMING_KEYS if key in step})
    for key in ("retry_after", "retry_after_ms", "seconds", "after_tokens"):
        if key in step:
            _check_number(key, step[key])
    return copy.deepcopy(step)


def _matches(
    step: dict[str, Any], *, path: str, model: str | None, stream: bool, custom_id: str | None
) -> bool:
    if "model" in step and step["model"] != model:
        return False
    if "custom_id" in step and step["custom_id"] != custom_id:
        return False
    if "path" in step and not path.startswith(step["path"]):
        return False
    return "stream" not in step or step["stream"] == stream


class ScriptState:
    def __init__(self, config: Config | None = None) -> None:
        self._lock = threading.Lock()
        self._config = config or Config()
        self._steps: list[dict[str, Any]] = []
        self._log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_LIMIT)

    def configure(self, changes: dict[str, Any]) -> Config:
        with self._lock:
            self._config = config_update(self._config, changes)
            return self._config

    def config(self) -> Config:
        with self._lock:
            return self._config

    def script(self, steps: list[Any]) -> int:
        """Queue steps (all or none, if one is invalid); return how many are pending."""
        checked = [step_validate(step) for step in steps]
        with self._lock:
            self._steps.extend(checked)
            return len(self._steps)

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._steps)

    def clear_script(self) -> int:
        with self._lock:
            count = len(self._steps)
            self._steps.clear()
            return count

    def take(
        self, *, path: str, model: str | None, stream: bool, custom_id: str | None = None
    ) -> Plan:
        """Consume the first step matching the request (or a batch's request `custom_id`) and
        resolve it against the defaults."""
        with self._lock:
            config = self._config
            step: dict[str, Any] = {}
            for index, candidate in enumerate(self._steps):
                if _matches(candidate, path=path, model=model, stream=stream, custom_id=custom_id):
                    step = self._steps.pop(index)
                    break
        options = {key: value for key, value in step.items() if key not in TIMING_KEYS}
        return Plan(
            kind=step.get("fault", "ok"),
            latency_ms=step.get("latency_ms", config.latency_ms),
            ttft_ms=step.get("ttft_ms", config.ttft_ms),
            tokens_per_second=step.get("tokens_per_second", config.tokens_per_second),
            answer=step.get("answer", config.answer),
            answer_tokens=step.get("answer_tokens", config.answer_tokens),
            options=options,
        )

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._log.append(entry)

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            entries = list(self._log)
        return [copy.deepcopy(entry) for entry in entries if path is None or entry["path"] == path]

    def clear_requests(self) -> int:
        with self._lock:
            count = len(self._log)
            self._log.clear()
            return count
