"""Run the provider simulator in the foreground until Ctrl-C.

    python -m ai.simulator --port 8500 [--host 127.0.0.1] [--latency-ms N] [--ttft-ms N]
                           [--tokens-per-second N] [--answer-tokens N]

OpenAI clients use base_url http://HOST:PORT/v1, Anthropic clients http://HOST:PORT. Script
faults over HTTP, e.g.::

    curl -X POST localhost:8500/_sim/script -d '{"steps": [{"fault": "status", "code": 529}]}'

The endpoints, step format and fault behaviours are documented in ai/simulator/__init__.py.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

from ai.simulator.server import Simulator

logger = logging.getLogger("ai.simulator")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ai.simulator",
        description="Run the OpenAI + Anthropic provider simulator until Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before headers")
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="delay before the first token")
    parser.add_argument(
        "--tokens-per-second", type=float, default=0.0, help="stream pacing (0 = unpaced)"
    )
    parser.add_argument("--answer-tokens", type=int, default=20, help="default answer length")
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Stop cleanly on `kill` too, and on Ctrl-C even when started in the background (where the
    # shell makes the process ignore SIGINT).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    simulator = Simulator(
        host=args.host,
        port=args.port,
        latency_ms=args.latency_ms,
        ttft_ms=args.ttft_ms,
        tokens_per_second=args.tokens_per_second,
        answer_tokens=args.answer_tokens,
    )
    logger.info(
        "Provider simulator on %s (OpenAI base_url %s, Anthropic base_url %s); Ctrl-C stops it.",
        simulator.base_url,
        simulator.openai_base_url,
        simulator.anthropic_base_url,
    )
    try:
        simulator.serve_forever()
    except KeyboardInterrupt:
        logger.info("Stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
