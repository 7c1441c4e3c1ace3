"""The threaded HTTP server and `Simulator`, its handle for tests, benchmarks and the CLI."""

from __future__ import annotations

import enum
import itertools
import logging
import socket
import socketserver
import sys
import threading
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import Any

from ai.simulator.batches import BatchStore
from ai.simulator.handler import SimulatorHandler
from ai.simulator.script import Config, ScriptState, config_update

logger = logging.getLogger(__name__)


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True  # a hanging request must never keep the process alive
    request_queue_size = 128  # benchmarks open many connections at once

    def __init__(self, address: tuple[str, int], state: ScriptState) -> None:
        self.state = state
        self.batches = BatchStore()
        self.initial_config = state.config()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._ids = itertools.count(1)
        super().__init__(address, SimulatorHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name with getfqdn(), which can stall on DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def pause(self, seconds: float) -> bool:
        """Wait, unless the server stops first; True if the full time passed."""
        return not self._stopping.wait(seconds)

    def next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08d}"

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def reset(self) -> Config:
        self.state.clear_script()
        self.state.clear_requests()
        self.batches.clear()
        return self.state.configure(self.initial_config.as_dict())

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (a timeout test, a cancelled stream) is normal, not an error.
        if isinstance(sys.exception(), OSError):
            return
        logger.exception("simulator: request from %s failed", client_address)

    def stop(self) -> None:
        """Stop serving, wake waiting requests and close kept-alive connections."""
        self._stopping.set()
        self.shutdown()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                continue
        self.server_close()


class _Unset(enum.Enum):
    TOKEN = 0


UNSET = _Unset.TOKEN


class Simulator:
    """An OpenAI + Anthropic provider simulator on a local port (see the package docstring).

    The socket is bound on construction, so `port` and the URLs are known before `start()`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0.0,
        ttft_ms: float = 0.0,
        tokens_per_second: float = 0.0,
        answer: str | None = None,
        answer_tokens: int = 20,
        batch_polls: int = 0,
    ) -> None:
        settings = {
            "latency_ms": latency_ms,
            "ttft_ms": ttft_ms,
            "tokens_per_second": tokens_per_second,
            "answer": answer,
            "answer_tokens": answer_tokens,
            "batch_polls": batch_polls,
        }
        self._state = ScriptState(config_update(Config(), settings))
        self._server = SimulatorServer((host, port), self._state)
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Simulator:
        """Serve from a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},  # bounds how long stop() waits
                name=f"ai-simulator-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.stop()
            self._thread.join()
            self._thread = None
        else:
            self._server.server_close()

    def serve_forever(self) -> None:
        """Serve in the calling thread until KeyboardInterrupt (the CLI)."""
        try:
            self._server.serve_forever(poll_interval=0.25)
        finally:
            self._server.server_close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------------------------

    @property
    def host(self) -> str:
        host = self._server.server_name
        return "127.0.0.1" if host in ("", "0.0.0.0") else host  # noqa: S104 (a bind-all address)

    @property
    def port(self) -> int:
        return self._server.server_port

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.base_url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        # The Anthropic SDK adds /v1 itself.
        return self.base_url

    # -- script, log and defaults ------------------------------------------------------------

    def script(self, *steps: dict[str, Any]) -> int:
        """Queue steps (validated; ValueError if one is wrong); returns how many are pending."""
        return self._state.script(list(steps))

    def pending(self) -> list[dict[str, Any]]:
        """Steps not consumed yet, in order."""
        return self._state.pending()

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        """Received provider requests, oldest first; only those to `path` when given."""
        return self._state.requests(path)

    def clear(self) -> None:
        """Drop pending steps, the request log and the batches (the defaults stay)."""
        self._state.clear_script()
        self._state.clear_requests()
        self._server.batches.clear()

    def batches(self) -> list[dict[str, Any]]:
        """The batches created so far (both providers), oldest first: id, provider, status,
        custom ids, polls."""
        return self._server.batches.summary()

    def reset(self) -> None:
        """clear(), and restore the defaults given to the constructor."""
        self._server.reset()

    def configure(
        self,
        *,
        latency_ms: float | _Unset = UNSET,
        ttft_ms: float | _Unset = UNSET,
        tokens_per_second: float | _Unset = UNSET,
        answer: str | _Unset | None = UNSET,
        answer_tokens: int | _Unset = UNSET,
        batch_polls: int | _Unset = UNSET,
    ) -> dict[str, Any]:
        """Change the defaults (arguments left out keep their value; `answer=None` goes back to
        the derived answer); returns the resulting settings."""
        given = {
            "latency_ms": latency_ms,
            "ttft_ms": ttft_ms,
            "tokens_per_second": tokens_per_second,
            "answer": answer,
            "answer_tokens": answer_tokens,
            "batch_polls": batch_polls,
        }
        changes = {key: value for key, value in given.items() if value is not UNSET}
        return self._state.configure(changes).as_dict()

    def config(self) -> dict[str, Any]:
        return self._state.config().as_dict()
