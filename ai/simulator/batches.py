"""Batch APIs: OpenAI Batch (a JSONL file uploaded with `purpose=batch`, then a batch over it,
results in an output and an error file) and Anthropic Message Batches (requests in the body,
results as JSONL at `results_url`).

Every request of a batch is answered when the batch is created, each consuming a script step
like a request of its own (its path is the request's endpoint, `/v1/chat/completions` or
`/v1/messages`, and a step may name its `custom_id`): a "status" step makes that request fail
with that error, anything else answers it (with the step's `answer`/`answer_tokens`). A batch
reports "in progress" to the first `batch_polls` retrieves (a setting, default 0), then ended.
The batch requests themselves consume steps too (a "status" step fails them, "hang" and
latency apply); a "batch_expired" step on the create request makes the batch end expired,
every request unprocessed. Cancelling a batch that has not ended ends it cancelled, every
request unprocessed."""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ai.simulator import content
from ai.simulator.script import DEFAULT_HANG_SECONDS, Plan
from ai.simulator.wire import Completion, Dialect, dumps

if TYPE_CHECKING:
    from ai.simulator.handler import SimulatorHandler

DAY_S = 24 * 3600


@dataclass
class Result:
    custom_id: str
    ok: bool
    body: dict[str, Any]  # the completion, or the provider's error JSON
    status: int = 200


@dataclass
class Batch:
    id: str
    provider: str  # openai | anthropic
    created: int
    results: list[Result]
    polls_left: int
    endpoint: str = ""
    input_file_id: str = ""
    state: str = "in_progress"  # in_progress | cancelling | completed | expired | cancelled
    expire: bool = False
    polls: int = 0
    ended_at: int | None = None
    cancel_at: int | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None

    @property
    def ended(self) -> bool:
        return self.state in ("completed", "expired", "cancelled")


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created: int = field(default_factory=lambda: int(time.time()))


class BatchStore:
    """Files and batches, shared by the server's threads (one lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, Batch] = {}

    def clear(self) -> None:
        with self.lock:
            self.files.clear()
            self.batches.clear()

    def summary(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {"id": b.id, "provider": b.provider, "status": b.state, "polls": b.polls,
                 "custom_ids": [r.custom_id for r in b.results]}
                for b in self.batches.values()
            ]  # fmt: skip


def handles(route: str) -> bool:
    return route.startswith(("/v1/files", "/v1/batches", "/v1/messages/batches"))


def handle(handler: SimulatorHandler, dialect: Dialect, headers: dict[str, str]) -> None:
    """Answer a batch or file request (the caller knows `handles(route)`)."""
    parts = handler.route.strip("/").split("/")  # v1, files|batches|messages, ...
    rid = headers[dialect.request_id_header]
    body: Any = {}
    if handler.command == "POST" and parts[1] != "files":
        try:
            body = handler.json_body()
        except ValueError as error:
            message = f"The request body is not valid JSON: {error}"
            handler.send_json(400, dialect.error_body(400, message, None, rid), headers)
            return
    plan = handler.server.state.take(path=handler.route, model=None, stream=False)
    handler.server.state.record(
        {
            "path": handler.route, "method": handler.command, "model": None, "stream": False,
            "headers": {}, "time": time.time(), "body": body if isinstance(body, dict) else {},
            "fault": None if plan.kind == "ok" else plan.kind,
        }
    )  # fmt: skip
    if plan.kind == "hang":
        handler.pause(float(plan.option("seconds", DEFAULT_HANG_SECONDS)))
    handler.pause(plan.latency_ms / 1000)
    if plan.kind == "status":
        status = int(plan.option("code"))
        error = dialect.error_body(status, plan.option("message"), plan.option("error_type"), rid)
        handler.send_json(status, error, headers)
        return
    store: BatchStore = handler.server.batches
    if parts[1] == "files":
        _files(handler, store, parts, headers, rid, dialect)
    elif parts[1] == "batches":
        _openai(handler, store, parts, body, plan, headers, rid, dialect)
    else:
        _anthropic(handler, store, parts, body, plan, headers, rid, dialect)


def _not_found(handler: SimulatorHandler, dialect: Dialect, headers: dict, rid: str) -> None:
    message = f"No such object: {handler.route} (simulated)."
    handler.send_json(404, dialect.error_body(404, message, None, rid), headers)


def _bad(handler: SimulatorHandler, dialect: Dialect, headers: dict, rid: str, msg: str) -> None:
    handler.send_json(400, dialect.error_body(400, msg, None, rid), headers)


# --- answering the requests of a batch -------------------------------------------------------


def _answer(
    handler: SimulatorHandler, dialect: Dialect, custom_id: str, path: str, request: Any
) -> Result:
    """One request of a batch, answered now (consuming a step like a request of its own)."""
    request = request if isinstance(request, dict) else {}
    model = request.get("model") if isinstance(request.get("model"), str) else None
    plan = handler.server.state.take(path=path, model=model, stream=False, custom_id=custom_id)
    if plan.kind == "status":
        status = int(plan.option("code"))
        rid = handler.server.next_id("req_sim")
        error = dialect.error_body(status, plan.option("message"), plan.option("error_type"), rid)
        return Result(custom_id, False, error, status)
    answer = plan.answer
    messages = request.get("messages")
    if answer is None:
        prompt = content.last_user_text(messages)
        answer = content.default_answer(prompt=prompt, answer_tokens=plan.answer_tokens)
    tokens = content.tokenize(answer)
    limit = request.get("max_completion_tokens", request.get("max_tokens"))
    truncated = isinstance(limit, int) and not isinstance(limit, bool) and limit < len(tokens)
    system = request.get("system") if path == "/v1/messages" else None
    completion = Completion(
        id=handler.server.next_id("msg_sim" if path == "/v1/messages" else "chatcmpl-sim"),
        model=str(model or "unknown"),
        created=int(time.time()),
        tokens=tokens[:limit] if truncated else tokens,
        prompt_tokens=content.prompt_tokens(messages=messages, system=system),
        truncated=truncated,
        with_usage=plan.kind != "no_usage",
        include_usage=False,
    )
    return Result(custom_id, True, dialect.completion_body(completion))


def _advance(batch: Batch) -> None:
    """A look at the batch: it ends once it has been looked at `polls_left` times."""
    batch.polls += 1
    if batch.ended:
        return
    if batch.state == "cancelling":
        batch.state, batch.ended_at = "cancelled", int(time.time())
    elif batch.polls_left > 0:
        batch.polls_left -= 1
    else:
        batch.state = "expired" if batch.expire else "completed"
        batch.ended_at = int(time.time())


def _processed(batch: Batch) -> bool:
    return batch.state == "completed"


# --- OpenAI: files and batches ---------------------------------------------------------------


def _files(
    handler: SimulatorHandler,
    store: BatchStore,
    parts: list[str],
    headers: dict[str, str],
    rid: str,
    dialect: Dialect,
) -> None:
    if handler.command == "POST" and len(parts) == 2:
        fields = _multipart(handler)
        upload = fields.get("file")
        if upload is None or not fields.get("purpose"):
            _bad(handler, dialect, headers, rid, "Send a multipart body with file and purpose.")
            return
        filename, data = upload
        stored = StoredFile(
            handler.server.next_id("file-sim"), filename or "upload", fields["purpose"][1].decode(),
            data,
        )  # fmt: skip
        with store.lock:
            store.files[stored.id] = stored
        handler.send_json(200, _file_object(stored), headers)
        return
    with store.lock:
        stored_file = store.files.get(parts[2]) if len(parts) >= 3 else None
    if stored_file is None:
        _not_found(handler, dialect, headers, rid)
    elif handler.command == "GET" and len(parts) == 4 and parts[3] == "content":
        handler.send_bytes(200, stored_file.data, content_type="application/octet-stream")
    elif handler.command == "GET" and len(parts) == 3:
        handler.send_json(200, _file_object(stored_file), headers)
    else:
        _not_found(handler, dialect, headers, rid)


def _multipart(handler: SimulatorHandler) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a multipart/form-data body: name -> (filename, bytes)."""
    content_type = handler.headers.get("Content-Type", "")
    if not content_type.startswith("multipart/form-data"):
        return {}
    raw = f"Content-Type: {content_type}\r\n\r\n".encode() + handler._raw_body
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            fields[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields


def _file_object(stored: StoredFile) -> dict[str, Any]:
    return {
        "id": stored.id, "object": "file", "bytes": len(stored.data),
        "created_at": stored.created, "filename": stored.filename, "purpose": stored.purpose,
        "status": "processed", "expires_at": None, "status_details": None,
    }  # fmt: skip


def _openai(
    handler: SimulatorHandler,
    store: BatchStore,
    parts: list[str],
    body: Any,
    plan: Plan,
    headers: dict[str, str],
    rid: str,
    dialect: Dialect,
) -> None:
    if handler.command == "POST" and len(parts) == 2:
        body = body if isinstance(body, dict) else {}
        with store.lock:
            source = store.files.get(str(body.get("input_file_id")))
        if source is None or source.purpose != "batch":
            _bad(handler, dialect, headers, rid, "input_file_id must name a file of purpose batch.")
            return
        endpoint = str(body.get("endpoint") or "")
        results = []
        try:
            for line in source.data.decode().splitlines():
                if line.strip():
                    request = json.loads(line)
                    cid = str(request.get("custom_id"))
                    path = str(request.get("url") or endpoint)
                    results.append(_answer(handler, dialect, cid, path, request.get("body")))
        except (ValueError, AttributeError):
            _bad(handler, dialect, headers, rid, "The input file is not valid JSONL.")
            return
        batch = Batch(
            handler.server.next_id("batch_sim"), "openai", int(time.time()), results,
            handler.server.state.config().batch_polls, endpoint=endpoint,
            input_file_id=source.id, expire=plan.kind == "batch_expired",
        )  # fmt: skip
        with store.lock:
            store.batches[batch.id] = batch
        handler.send_json(200, _openai_batch(batch, status="validating"), headers)
        return
    with store.lock:
        batch = store.batches.get(parts[2]) if len(parts) >= 3 else None
        if batch is None or batch.provider != "openai":
            batch = None
        elif handler.command == "GET" and len(parts) == 3:
            _advance(batch)
            _openai_files(handler, store, batch)
        elif handler.command == "POST" and len(parts) == 4 and parts[3] == "cancel":
            if not batch.ended:
                batch.state, batch.cancel_at = "cancelling", int(time.time())
        else:
            batch = None
        answer = _openai_batch(batch) if batch is not None else None
    if answer is None:
        _not_found(handler, dialect, headers, rid)
    else:
        handler.send_json(200, answer, headers)


def _openai_files(handler: SimulatorHandler, store: BatchStore, batch: Batch) -> None:
    """Once ended: the output file (answers) and the error file (errors, unprocessed)."""
    if not batch.ended or batch.output_file_id or batch.error_file_id:
        return
    output: list[bytes] = []
    errors: list[bytes] = []
    for result in batch.results:
        line: dict[str, Any] = {"id": handler.server.next_id("batch_req_sim"),
                                "custom_id": result.custom_id, "error": None}  # fmt: skip
        if not _processed(batch):
            code = "batch_expired" if batch.state == "expired" else "batch_cancelled"
            line.update(response=None, error={"code": code, "message": f"{code} (simulated)"})
            errors.append(dumps(line))
            continue
        line["response"] = {
            "status_code": result.status, "request_id": handler.server.next_id("req_sim"),
            "body": result.body,
        }  # fmt: skip
        (output if result.ok else errors).append(dumps(line))
    for kind, lines in (("output", output), ("error", errors)):
        if not lines:
            continue
        stored = StoredFile(
            handler.server.next_id("file-sim"), f"batch_{kind}.jsonl", "batch_output",
            b"\n".join(lines) + b"\n",
        )  # fmt: skip
        store.files[stored.id] = stored
        if kind == "output":
            batch.output_file_id = stored.id
        else:
            batch.error_file_id = stored.id


def _openai_batch(batch: Batch, *, status: str | None = None) -> dict[str, Any]:
    state = status or batch.state
    done = _processed(batch)
    failed = sum(1 for r in batch.results if not r.ok) if done else 0
    return {
        "id": batch.id, "object": "batch", "endpoint": batch.endpoint, "errors": None,
        "input_file_id": batch.input_file_id, "completion_window": "24h", "status": state,
        "output_file_id": batch.output_file_id, "error_file_id": batch.error_file_id,
        "created_at": batch.created, "in_progress_at": batch.created,
        "expires_at": batch.created + DAY_S, "finalizing_at": None,
        "completed_at": batch.ended_at if state == "completed" else None, "failed_at": None,
        "expired_at": batch.ended_at if state == "expired" else None,
        "cancelling_at": batch.cancel_at,
        "cancelled_at": batch.ended_at if state == "cancelled" else None,
        "request_counts": {"total": len(batch.results),
                           "completed": len(batch.results) - failed if done else 0,
                           "failed": failed},
        "metadata": None,
    }  # fmt: skip


# --- Anthropic: Message Batches --------------------------------------------------------------


def _anthropic(
    handler: SimulatorHandler,
    store: BatchStore,
    parts: list[str],
    body: Any,
    plan: Plan,
    headers: dict[str, str],
    rid: str,
    dialect: Dialect,
) -> None:
    base = f"http://{handler.headers.get('Host', '127.0.0.1')}"
    if handler.command == "POST" and len(parts) == 3:
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            _bad(handler, dialect, headers, rid, "requests: a non-empty list.")
            return
        results = []
        for request in requests:
            if not isinstance(request, dict) or not isinstance(request.get("custom_id"), str):
                _bad(handler, dialect, headers, rid, "Each request needs custom_id and params.")
                return
            cid = request["custom_id"]
            results.append(_answer(handler, dialect, cid, "/v1/messages", request.get("params")))
        batch = Batch(
            handler.server.next_id("msgbatch_sim"), "anthropic", int(time.time()), results,
            handler.server.state.config().batch_polls, expire=plan.kind == "batch_expired",
        )  # fmt: skip
        with store.lock:
            store.batches[batch.id] = batch
        handler.send_json(200, _anthropic_batch(batch, base), headers)
        return
    with store.lock:
        batch = store.batches.get(parts[3]) if len(parts) >= 4 else None
        if batch is None or batch.provider != "anthropic":
            batch = None
        elif handler.command == "GET" and len(parts) == 4:
            _advance(batch)
        elif handler.command == "POST" and len(parts) == 5 and parts[4] == "cancel":
            if not batch.ended:
                batch.state, batch.cancel_at = "cancelling", int(time.time())
        elif handler.command == "GET" and len(parts) == 5 and parts[4] == "results":
            if not batch.ended:
                batch = None
            else:
                lines = [dumps(_anthropic_result(batch, r)) for r in batch.results]
                handler.send_bytes(
                    200, b"\n".join(lines) + b"\n", content_type="application/binary",
                    headers=headers,
                )  # fmt: skip
                return
        else:
            batch = None
        answer = _anthropic_batch(batch, base) if batch is not None else None
    if answer is None:
        _not_found(handler, dialect, headers, rid)
    else:
        handler.send_json(200, answer, headers)


def _anthropic_result(batch: Batch, result: Result) -> dict[str, Any]:
    if batch.state == "expired":
        outcome: dict[str, Any] = {"type": "expired"}
    elif batch.state == "cancelled":
        outcome = {"type": "canceled"}
    elif result.ok:
        outcome = {"type": "succeeded", "message": result.body}
    else:
        outcome = {"type": "errored", "error": result.body}
    return {"custom_id": result.custom_id, "result": outcome}


def _iso(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")


def _anthropic_batch(batch: Batch, base: str) -> dict[str, Any]:
    status = {"in_progress": "in_progress", "cancelling": "canceling"}.get(batch.state, "ended")
    n = len(batch.results)
    counts = {"processing": 0 if batch.ended else n, "succeeded": 0, "errored": 0,
              "canceled": 0, "expired": 0}  # fmt: skip
    if batch.ended:
        for result in batch.results:
            kind = _anthropic_result(batch, result)["result"]["type"]
            counts[kind] += 1
    return {
        "id": batch.id, "type": "message_batch", "processing_status": status,
        "request_counts": counts, "ended_at": _iso(batch.ended_at),
        "created_at": _iso(batch.created), "expires_at": _iso(batch.created + DAY_S),
        "archived_at": None, "cancel_initiated_at": _iso(batch.cancel_at),
        "results_url": f"{base}/v1/messages/batches/{batch.id}/results" if batch.ended else None,
    }  # fmt: skip
