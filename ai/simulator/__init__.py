"""Provider simulator: a local HTTP server speaking the OpenAI and Anthropic wire formats well
enough for the official SDKs, with scripted latency and faults. Standard library only, no Django.

In process (tests, benchmarks)::

    from ai.simulator import Simulator

    with Simulator(port=0) as sim:
        client = openai.OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0)
        anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key="sk-ant-test")  # no /v1
        sim.script({"fault": "status", "code": 429, "retry_after": 2}, {"ok": True})
        sim.requests("/v1/chat/completions")  # [{"path", "method", "model", "stream", ...}]

``Simulator(*, host="127.0.0.1", port=0, latency_ms=0, ttft_ms=0, tokens_per_second=0,
answer=None, answer_tokens=20, batch_polls=0)`` binds on construction; ``start()``/``stop()``
or ``with``.
Properties: ``host``, ``port``, ``base_url``, ``openai_base_url`` (+ "/v1"),
``anthropic_base_url`` (= base_url). Methods (thread-safe): ``script(*steps) -> pending count``
(validates, ValueError on a bad step), ``pending()``, ``requests(path=None)`` (the last 10,000
provider requests: path, method, model, stream, headers subset, time, client_port, fault,
body), ``clear()`` (steps + log), ``reset()`` (also the constructor's defaults),
``configure(latency_ms=, ttft_ms=, tokens_per_second=, answer=, answer_tokens=, batch_polls=)
-> settings``,
``config()``, ``batches()``.

Out of process: ``python -m ai.simulator --port 8500`` (see ``ai/simulator/__main__.py``), then
the same operations over HTTP: ``POST /_sim/script`` with ``{"steps": [...]}``,
``GET|DELETE /_sim/script``, ``GET /_sim/requests[?path=...]``, ``DELETE /_sim/requests``,
``GET|POST /_sim/config``, ``POST /_sim/reset``, ``GET /_sim/health``.

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/embeddings``, ``GET /v1/models`` (OpenAI,
or Anthropic's shape when the request has an ``anthropic-version`` header), ``POST /v1/messages``.

Batch APIs (``ai/simulator/batches.py``): OpenAI ``POST /v1/files`` (multipart, ``purpose=batch``),
``GET /v1/files/{id}[/content]``, ``POST /v1/batches``, ``GET /v1/batches/{id}``,
``POST /v1/batches/{id}/cancel`` (results as JSONL output and error files, by ``custom_id``);
Anthropic ``POST /v1/messages/batches``, ``GET /v1/messages/batches/{id}``,
``GET /v1/messages/batches/{id}/results`` (JSONL), ``POST /v1/messages/batches/{id}/cancel``.
Every request of a batch is answered at creation, each consuming a script step as a request to
its endpoint would (``path`` ``/v1/chat/completions`` or ``/v1/messages``; the step filter
``"custom_id"`` picks one request of a batch): a ``status`` step fails that request alone. A
batch stays in progress for the first ``batch_polls`` retrieves (``configure(batch_polls=N)``,
default 0: ended at the first look). A ``{"fault": "batch_expired"}`` step taken by the create
request ends the batch expired; cancelling a batch that has not ended ends it cancelled (both:
no request processed). ``batches()`` lists the batches made (id, provider, status, polls,
custom ids); ``clear()``/``reset()`` drop them.

Answers are deterministic: ``"Simulated answer: "`` + the first words of the last user message,
padded with filler words to ``answer_tokens`` (default 20) word-ish tokens, unless an ``answer``
is configured. Prompt tokens = whitespace-separated words across the system prompt and all
messages; completion tokens = tokens sent (one per stream chunk/delta), the same for stream and
non-stream. A request's ``max_tokens``/``max_completion_tokens`` below the answer's length cuts it
(``finish_reason="length"`` / ``stop_reason="max_tokens"``). Embeddings are unit vectors from a
hash of each input (``dimensions``, default 384; float or base64, as the SDK asks).

Script steps are consumed FIFO: a request takes the first step whose optional filters all match
(``"model"``: equal to the request's model; ``"path"``: a prefix of the request path;
``"stream"``: the request's stream flag; ``"custom_id"``: a batch request's id). No match:
default behaviour. Every step may set ``latency_ms`` (before headers), ``ttft_ms`` (before the
first token), ``tokens_per_second`` (0 = no delay), ``answer`` and ``answer_tokens``; unset ones
come from ``configure()``. A JSON (non-stream) answer is sent after latency + ttft + the tokens'
pacing. Steps:

- ``{"ok": True, ...}``: a normal answer with those overrides.
- ``{"fault": "status", "code": 429, "retry_after": 2, "retry_after_ms": ..., "message": ...,
  "error_type": ...}``: an error response in the provider's error JSON shape.
- ``{"fault": "hang", "seconds": 30}``: wait before sending anything (then answer normally).
  ``seconds`` defaults to 30; stopping the simulator ends the wait.
- ``{"fault": "cut", "after_tokens": 2}``: send that many tokens, then close the connection
  mid-body (no finish/usage chunk, ``[DONE]`` or ``message_stop``). ``after_tokens`` defaults
  to 2 here and for the next two faults.
- ``{"fault": "sse_error", "after_tokens": 2, "message": ..., "error_type": ...}``: tokens, then
  an in-band error event, then a clean end of the response.
- ``{"fault": "malformed", "after_tokens": 2}``: tokens, then a ``data:`` line that is not JSON.
- ``{"fault": "no_usage"}``: a normal answer without usage (OpenAI: no usage chunk or ``usage``
  key; Anthropic: usage counts zeroed, as its SDK needs the fields).

On a non-stream request the stream faults become: ``cut`` = half the JSON body then a closed
connection; ``malformed`` = a 200 whose body is not JSON; ``sse_error`` = HTTP 500
(OpenAI ``server_error``) or 529 (Anthropic ``overloaded_error``). Both SDKs then raise
``APIConnectionError`` (cut), ``json.JSONDecodeError`` (malformed) or their status error.

How the SDKs (max_retries=0) see the faults, checked by tests/test_simulator.py:

- status: ``BadRequestError`` (400), ``AuthenticationError`` (401), ``PermissionDeniedError``
  (403), ``RateLimitError`` (429, ``Retry-After`` on ``error.response.headers``),
  ``InternalServerError`` (500/503, 529 with openai); anthropic raises ``OverloadedError`` (an
  ``InternalServerError``) for 529 and ``ServiceUnavailableError`` for 503.
- hang: ``APITimeoutError`` once the client's timeout passes.
- cut: ``APIConnectionError`` (openai) / ``httpx2.RemoteProtocolError`` (anthropic, which does
  not wrap errors raised while iterating) from the stream iteration, after the tokens sent.
- sse_error: openai ``APIError`` (message and body from the event); anthropic ``APIStatusError``
  with ``status_code`` 200 and ``type == "overloaded_error"``.
- malformed: ``json.JSONDecodeError`` (a ValueError) from the iteration, in both SDKs.
- no_usage: openai ``chunk.usage`` stays None; anthropic usage reads 0.
"""

from ai.simulator.server import Simulator

__all__ = ["Simulator"]
