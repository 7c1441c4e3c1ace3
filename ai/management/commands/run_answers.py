"""`manage.py run_answers`: an answer runner (ai.conversations.runner) in the foreground.
SIGTERM or Ctrl-C stops it after its running answers (ANSWER_RUNNER_SHUTDOWN_S at most)."""

from __future__ import annotations

import asyncio
import signal

from django.core.management.base import BaseCommand

from ai.conversations.runner import AnswerRunner


class Command(BaseCommand):
    help = "Generate chat answers: take them from the queue and stream them until stopped."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--concurrency", type=int, help="answers at once (ANSWER_RUNNER_CONCURRENCY)"
        )

    def handle(self, *args, concurrency: int | None = None, **options) -> None:
        asyncio.run(self._serve(AnswerRunner(concurrency=concurrency)))

    async def _serve(self, runner: AnswerRunner) -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        self.stdout.write(f"answer runner {runner.name}: {runner.concurrency} answers at once")
        await runner.serve(stopping)
        self.stdout.write(f"answer runner {runner.name}: stopped")
