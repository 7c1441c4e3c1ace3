"""The HTTP side: reading requests, writing JSON and chunked SSE, dispatching to endpoints.

Responses use HTTP/1.1 keep-alive (Content-Length, or chunked encoding for streams) so the SDKs'
connection pools are reused and a benchmark measures requests, not TCP handshakes.
"""

from __future__ import annotations

import json
import socket
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from ai.simulator import control, endpoints
from ai.simulator.wire import dumps

if TYPE_CHECKING:
    from ai.simulator.server import SimulatorServer

REASONS = {529: "Overloaded"}  # http.HTTPStatus has no 529
CONNECTION_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


class Stopped(Exception):
    """The server is shutting down while this request waits; drop it without a response."""


class ChunkedWriter:
    """A chunked response body. Events are batched into one chunk until the stream has to wait,
    so an unpaced stream costs a few writes, not one per token."""

    def __init__(self, handler: SimulatorHandler) -> None:
        self._handler = handler
        self._pending: list[bytes] = []

    def add(self, data: bytes) -> None:
        self._pending.append(data)

    def _chunk(self) -> bytes:
        payload = b"".join(self._pending)
        self._pending.clear()
        return b"%x\r\n%s\r\n" % (len(payload), payload) if payload else b""

    def flush(self) -> None:
        if self._pending:
            self._handler.wfile.write(self._chunk())

    def pause(self, seconds: float) -> None:
        if seconds > 0:
            self.flush()
            self._handler.pause(seconds)

    def close(self) -> None:
        # The last events and the terminator in one write: a client that stops reading at
        # [DONE] then usually finds the body complete and keeps the connection.
        self._handler.wfile.write(self._chunk() + b"0\r\n\r\n")


class SimulatorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server: SimulatorServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet: benchmarks send thousands of requests and tests read the request log instead.
        return

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    @property
    def route(self) -> str:
        return urlsplit(self.path).path

    @property
    def query(self) -> dict[str, str]:
        return {key: values[-1] for key, values in parse_qs(urlsplit(self.path).query).items()}

    def _dispatch(self) -> None:
        # Read the body first, whatever the route, so the connection stays usable for the next one.
        self._raw_body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            if self.route.startswith("/_sim/"):
                control.handle(self)
            else:
                endpoints.handle(self)
        except (Stopped, *CONNECTION_ERRORS):
            self.close_connection = True

    def json_body(self) -> Any:
        """The parsed request body ({} when empty); ValueError when it is not JSON."""
        return json.loads(self._raw_body) if self._raw_body else {}

    def pause(self, seconds: float) -> None:
        if seconds > 0 and not self.server.pause(seconds):
            raise Stopped

    def send_bytes(
        self,
        status: int,
        payload: bytes,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        length: int | None = None,
    ) -> None:
        """Send a whole response; `length` may promise more than `payload` (the "cut" fault)."""
        self.send_response(status, REASONS.get(status))
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload) if length is None else length))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, dumps(body), headers=headers)

    def start_stream(self, headers: dict[str, str]) -> ChunkedWriter:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        return ChunkedWriter(self)

    def abort(self) -> None:
        """Close the connection mid-response. A FIN, not a reset: the client still reads what
        was sent, then sees the body end early, so the fault is deterministic."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            return
