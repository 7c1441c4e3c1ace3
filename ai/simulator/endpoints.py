"""Provider endpoints: each request consumes a script step (or gets the defaults) and is answered
in its provider's dialect, with the step's timing and fault applied."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ai.simulator import batches, content
from ai.simulator.anthropic_wire import AnthropicWire
from ai.simulator.openai_wire import OpenAIWire
from ai.simulator.script import DEFAULT_AFTER_TOKENS, DEFAULT_HANG_SECONDS, Plan
from ai.simulator.wire import Completion, Dialect, dumps

if TYPE_CHECKING:
    from ai.simulator.handler import SimulatorHandler

OPENAI = OpenAIWire()
ANTHROPIC = AnthropicWire()
MODELS = [
    "gpt-4o-mini",
    "gpt-4o",
    "text-embedding-3-small",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
]
LOGGED_HEADERS = (
    "authorization",
    "x-api-key",
    "anthropic-version",
    "anthropic-beta",
    "openai-organization",
    "openai-project",
    "idempotency-key",
    "x-stainless-retry-count",
    "x-request-id",
    "traceparent",
    "user-agent",
)
# The HTTP status a stream-only "sse_error" becomes on a JSON (non-stream) request.
IN_BAND_ERROR_STATUS = {"openai": 500, "anthropic": 529}


def dialect_for(handler: SimulatorHandler) -> Dialect:
    # /v1/models is shared by both providers; only the Anthropic SDK sends anthropic-version.
    if handler.route.startswith("/v1/messages") or "anthropic-version" in handler.headers:
        return ANTHROPIC
    return OPENAI


def handle(handler: SimulatorHandler) -> None:
    dialect = dialect_for(handler)
    route = (handler.command, handler.route)
    respond = ROUTES.get(route)
    request_id = handler.server.next_id("req_sim")
    headers = {dialect.request_id_header: request_id}
    if batches.handles(handler.route):
        batches.handle(handler, dialect, headers)
        return
    if respond is None:
        body = dialect.error_body(404, f"Unknown route {route[0]} {route[1]}.", None, request_id)
        handler.send_json(404, body, headers)
        return
    try:
        body = handler.json_body()
    except ValueError as error:
        message = f"The request body is not valid JSON: {error}"
        handler.send_json(400, dialect.error_body(400, message, None, request_id), headers)
        return
    body = body if isinstance(body, dict) else {}
    model = body.get("model") if isinstance(body.get("model"), str) else None
    stream = body.get("stream") is True
    plan = handler.server.state.take(path=handler.route, model=model, stream=stream)
    handler.server.state.record(
        {
            "path": handler.route,
            "method": handler.command,
            "model": model,
            "stream": stream,
            "headers": {k: handler.headers[k] for k in LOGGED_HEADERS if k in handler.headers},
            "time": time.time(),
            # The client's TCP port: the same one on two requests means one kept-alive
            # connection (tests check that clients reuse their connections).
            "client_port": handler.client_address[1],
            "fault": None if plan.kind == "ok" else plan.kind,
            "body": body,
        }
    )
    if plan.kind == "hang":
        handler.pause(float(plan.option("seconds", DEFAULT_HANG_SECONDS)))
    handler.pause(plan.latency_ms / 1000)
    if plan.kind == "status":
        send_status_error(handler, dialect, plan, headers, request_id)
        return
    respond(handler, dialect, body, plan, headers)


def send_status_error(
    handler: SimulatorHandler, dialect: Dialect, plan: Plan, headers: dict[str, str], rid: str
) -> None:
    status = int(plan.option("code"))
    error = dialect.error_body(status, plan.option("message"), plan.option("error_type"), rid)
    if plan.option("retry_after") is not None:
        headers["Retry-After"] = _number(plan.option("retry_after"))
    if plan.option("retry_after_ms") is not None:
        headers["retry-after-ms"] = _number(plan.option("retry_after_ms"))
    handler.send_json(status, error, headers)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def send_body(
    handler: SimulatorHandler,
    dialect: Dialect,
    plan: Plan,
    body: dict[str, Any],
    headers: dict[str, str],
) -> None:
    """A JSON response, or its non-stream counterpart of a stream fault."""
    payload = dumps(body)
    if plan.kind == "cut":
        handler.send_bytes(200, payload[: len(payload) // 2], headers=headers, length=len(payload))
        handler.abort()
    elif plan.kind == "malformed":
        handler.send_bytes(200, payload[: len(payload) // 2], headers=headers)
    elif plan.kind == "sse_error":
        status = IN_BAND_ERROR_STATUS["anthropic" if dialect is ANTHROPIC else "openai"]
        rid = headers[dialect.request_id_header]
        error = dialect.error_body(status, plan.option("message"), plan.option("error_type"), rid)
        handler.send_json(status, error, headers)
    else:
        handler.send_json(200, body, headers)


def completion_for(
    handler: SimulatorHandler, plan: Plan, body: dict[str, Any], *, system: Any, prefix: str
) -> Completion:
    messages = body.get("messages")
    answer = plan.answer
    if answer is None:
        prompt = content.last_user_text(messages)
        answer = content.default_answer(prompt=prompt, answer_tokens=plan.answer_tokens)
    tokens = content.tokenize(answer)
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    truncated = isinstance(limit, int) and not isinstance(limit, bool) and limit < len(tokens)
    stream_options = body.get("stream_options")
    return Completion(
        id=handler.server.next_id(prefix),
        model=str(body.get("model") or "unknown"),
        created=int(time.time()),
        tokens=tokens[:limit] if truncated else tokens,
        prompt_tokens=content.prompt_tokens(messages=messages, system=system),
        truncated=truncated,
        with_usage=plan.kind != "no_usage",
        include_usage=isinstance(stream_options, dict)
        and stream_options.get("include_usage") is True,
    )


def generate(
    handler: SimulatorHandler,
    dialect: Dialect,
    plan: Plan,
    completion: Completion,
    headers: dict[str, str],
    stream: bool,
) -> None:
    interval = 1 / plan.tokens_per_second if plan.tokens_per_second > 0 else 0.0
    if not stream:
        # A JSON answer arrives once the whole answer is "generated".
        steps = max(completion.completion_tokens - 1, 0)
        handler.pause(plan.ttft_ms / 1000 + steps * interval)
        send_body(handler, dialect, plan, dialect.completion_body(completion), headers)
        return
    writer = handler.start_stream(headers)
    started = time.monotonic()
    for event in dialect.stream_start(completion):
        writer.add(event)
    stop_at = None
    if plan.kind in ("cut", "sse_error", "malformed"):
        stop_at = int(plan.option("after_tokens", DEFAULT_AFTER_TOKENS))
    for index, token in enumerate(completion.tokens):
        if index == stop_at:
            break
        # Paced from the start, not token to token, so sleep overshoot does not accumulate.
        writer.pause(started + plan.ttft_ms / 1000 + index * interval - time.monotonic())
        writer.add(dialect.stream_token(completion, token))
    if plan.kind == "cut":
        writer.flush()
        handler.abort()
        return
    if plan.kind == "sse_error":
        writer.add(dialect.stream_error(plan.option("message"), plan.option("error_type")))
    elif plan.kind == "malformed":
        writer.add(dialect.stream_malformed(completion))
    else:
        for event in dialect.stream_end(completion):
            writer.add(event)
    writer.close()


def chat_completions(
    handler: SimulatorHandler,
    dialect: Dialect,
    body: dict[str, Any],
    plan: Plan,
    headers: dict[str, str],
) -> None:
    completion = completion_for(handler, plan, body, system=None, prefix="chatcmpl-sim")
    generate(handler, dialect, plan, completion, headers, body.get("stream") is True)


def messages(
    handler: SimulatorHandler,
    dialect: Dialect,
    body: dict[str, Any],
    plan: Plan,
    headers: dict[str, str],
) -> None:
    completion = completion_for(handler, plan, body, system=body.get("system"), prefix="msg_sim")
    generate(handler, dialect, plan, completion, headers, body.get("stream") is True)


def embeddings(
    handler: SimulatorHandler,
    dialect: Dialect,
    body: dict[str, Any],
    plan: Plan,
    headers: dict[str, str],
) -> None:
    dimensions = body.get("dimensions")
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
        dimensions = content.DEFAULT_DIMENSIONS
    inputs = content.embedding_inputs(body.get("input"))
    if not inputs:
        rid = headers[dialect.request_id_header]
        message = "'input' must be a non-empty string or array."
        handler.send_json(400, dialect.error_body(400, message, None, rid), headers)
        return
    vectors = [content.embedding_vector(text, dimensions=dimensions) for text, _ in inputs]
    encoded: list[list[float] | str] = list(vectors)
    if body.get("encoding_format") == "base64":
        encoded = [content.encode_base64(vector) for vector in vectors]
    prompt_tokens = sum(count for _, count in inputs) if plan.kind != "no_usage" else 0
    response = OPENAI.embeddings_body(
        model=str(body.get("model") or "unknown"), embeddings=encoded, prompt_tokens=prompt_tokens
    )
    send_body(handler, dialect, plan, response, headers)


def models(
    handler: SimulatorHandler,
    dialect: Dialect,
    body: dict[str, Any],
    plan: Plan,
    headers: dict[str, str],
) -> None:
    send_body(handler, dialect, plan, dialect.models_body(MODELS, 1_700_000_000), headers)


ROUTES = {
    ("POST", "/v1/chat/completions"): chat_completions,
    ("POST", "/v1/messages"): messages,
    ("POST", "/v1/embeddings"): embeddings,
    ("GET", "/v1/models"): models,
}
