"""`Idempotency-Key` on API POSTs that create or spend (IETF httpapi-idempotency-key-header).

The first request with a key runs; its response (status and body) is kept for a day and a
retry with the same key and the same request gets it again, marked `Idempotent-Replayed:
true`, without running anything (nothing stored or billed twice). The same key with another
request is refused (422); a retry while the first is still running gets 409. A request that
ends in an exception keeps nothing, so its retry runs again. Keys are per API key.

A streamed response is kept (and replayed as the same events) only when it ended with the
marker its view set as `response.complete_marker` (chat's `data: [DONE]`); a stream that broke
off keeps nothing, so its retry runs again."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

import redis
from asgiref.sync import sync_to_async
from django.http import HttpResponseBase, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from saas.lib.redis import sync_client

HEADER = "Idempotency-Key"
KEPT_S = 24 * 3600
# How long a running request holds its key: longer than any request may run, so a crashed
# process frees its keys on its own.
RUNNING_S = 15 * 60
_VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, as the draft's sf-string

PARAMETER = OpenApiParameter(
    HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description=(
        "Makes a retry safe: the same key with the same request within 24 hours returns the "
        "first response (`Idempotent-Replayed: true`) and runs nothing again; the same key "
        "with a different request is refused (422), and one still running answers 409. "
        "1-255 visible ASCII characters, unique per request (a UUID)."
    ),
)


class IdempotencyConflict(exceptions.APIException):
    status_code = 409
    wait = 1  # DRF sends it as Retry-After
    default_detail = "A request with this Idempotency-Key is still running. Retry in a moment."


class IdempotencyMismatch(exceptions.APIException):
    status_code = 422
    default_detail = "This Idempotency-Key was used with a different request. Use a new key."


class IdempotencyUnavailable(exceptions.APIException):
    status_code = 503
    wait = 5
    default_detail = "Idempotent requests are unavailable for a moment. Retry shortly."


@dataclass
class IdempotencyClaim:
    """A running request's hold on its key."""

    redis_key: str
    fingerprint: str

    def keep(self, status: int, body: Any) -> None:
        """Store the response for retries (bodies that JSON can carry)."""
        record = {"state": "done", "fingerprint": self.fingerprint, "status": status}
        record["body"] = json.loads(json.dumps(body, cls=JSONEncoder))
        _call(lambda r: r.set(self.redis_key, json.dumps(record), ex=KEPT_S))

    def keep_stream(self, status: int, content_type: str, events: list[bytes]) -> None:
        record = {
            "state": "done", "fingerprint": self.fingerprint, "status": status,
            "stream": [event.decode() for event in events], "content_type": content_type,
        }  # fmt: skip
        _call(lambda r: r.set(self.redis_key, json.dumps(record), ex=KEPT_S))

    def release(self) -> None:
        _call(lambda r: r.delete(self.redis_key))

    def watch(self, response: StreamingHttpResponse) -> None:
        """Keep the streamed events once the stream ends complete; release the key otherwise
        (broken off, or the client left)."""
        marker = getattr(response, "complete_marker", None)
        status, content_type = response.status_code, response["Content-Type"]
        events: list[bytes] = []

        def settle() -> None:
            if marker is not None and events and events[-1] == marker:
                self.keep_stream(status, content_type, events)
            else:
                self.release()

        if response.is_async:
            source = response.streaming_content

            async def recorded_async():
                try:
                    async for event in source:
                        events.append(bytes(event))
                        yield event
                finally:
                    await sync_to_async(settle)()

            response.streaming_content = recorded_async()
        else:
            source = response.streaming_content

            def recorded():
                try:
                    for event in source:
                        events.append(bytes(event))
                        yield event
                finally:
                    settle()

            response.streaming_content = recorded()


def idempotent(handler: Callable[..., Response]) -> Callable[..., Response]:
    """For an APIView method: with an Idempotency-Key header, run it at most once per key.
    The handler finds its claim as `request.idempotency` (None without the header)."""

    @wraps(handler)
    def run(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        request.idempotency = None
        key = request.headers.get(HEADER)
        if key is None:
            return handler(view, request, *args, **kwargs)
        claim_or_replay = claim(request, key)
        if not isinstance(claim_or_replay, IdempotencyClaim):
            return claim_or_replay
        request.idempotency = claim_or_replay
        try:
            response = handler(view, request, *args, **kwargs)
        except BaseException:
            claim_or_replay.release()
            raise
        if response.status_code >= 500:  # not an answer to keep: let a retry run again
            claim_or_replay.release()
        elif getattr(response, "streaming", False):
            claim_or_replay.watch(response)
        elif isinstance(response, Response):
            claim_or_replay.keep(response.status_code, response.data)
        else:  # a body this module cannot replay: the retry runs again
            claim_or_replay.release()
        return response

    return run


def claim(request: Request, key: str) -> IdempotencyClaim | HttpResponseBase:
    """Hold `key` for this request, or the stored response of its first use."""
    if not _VALID_KEY.match(key):
        raise exceptions.ValidationError(
            {HEADER: ["Use 1-255 visible ASCII characters (e.g. a UUID)."]}
        )
    api_key = request.auth
    digest = hashlib.sha256(key.encode()).hexdigest()
    redis_key = f"atrium:idempotency:{request.tenant.schema_name}:{api_key.pk}:{digest}"
    fingerprint = request_fingerprint(request)
    running = json.dumps({"state": "running", "fingerprint": fingerprint})
    if _call(lambda r: r.set(redis_key, running, nx=True, ex=RUNNING_S)):
        return IdempotencyClaim(redis_key, fingerprint)
    raw = _call(lambda r: r.get(redis_key))
    if raw is None:  # expired in between: treat as new
        return claim(request, key)
    record = json.loads(raw)
    if record["fingerprint"] != fingerprint:
        raise IdempotencyMismatch()
    if record["state"] != "done":
        raise IdempotencyConflict()
    if "stream" in record:
        events = [event.encode() for event in record["stream"]]
        response = StreamingHttpResponse(
            iter(events), status=record["status"], content_type=record["content_type"]
        )
        response["Cache-Control"] = "no-cache"
    else:
        response = Response(record["body"], status=record["status"])
    response["Idempotent-Replayed"] = "true"
    return response


def request_fingerprint(request: Request) -> str:
    """What makes two requests the same: method, path, query and the parsed body (uploaded
    files by their content), independent of JSON key order or multipart boundaries."""
    digest = hashlib.sha256(f"{request.method} {request.get_full_path()}\n".encode())
    data = request.data
    if hasattr(data, "lists"):  # multipart / form: values and files per field
        for name, values in sorted(data.lists()):
            digest.update(json.dumps(name).encode())
            for value in values:
                is_file = hasattr(value, "chunks")
                digest.update(_file_digest(value) if is_file else str(value).encode())
    else:
        digest.update(json.dumps(data, sort_keys=True, cls=JSONEncoder).encode())
    return digest.hexdigest()


def _file_digest(upload: Any) -> bytes:
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    return digest.digest()


def _call(operation: Callable[[redis.Redis], Any]) -> Any:
    try:
        return operation(sync_client())
    except redis.RedisError:
        # Running the request without its key could store or bill it twice on a retry.
        raise IdempotencyUnavailable() from None
